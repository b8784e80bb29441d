#!/usr/bin/env bash
# R6: kill -9 during a save (the save.before_commit fault point: every file of the new checkpoint
# written and fsynced, not yet renamed into place). The previous checkpoint stays the latest and
# loads; the partial one is never listed and is removed by the next save.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/straight" train.steps=20
expect_status 0 train "$SCRATCH/run" train.steps=10
rc=0
HYPNOS_FAULT=save.before_commit train "$SCRATCH/run" train.steps=20 --resume || rc=$?
[[ $rc == 137 ]] || fail "the run killed during its save exited $rc, expected 137"

[[ $(checkpoint_steps "$SCRATCH/run") == 10 ]] || fail "expected only checkpoint 10 to be complete"
partial=("$SCRATCH"/run/checkpoints/step_00000020.tmp-*)
[[ -d ${partial[0]} ]] || fail "the killed save left no staging directory (did the fault fire?)"
[[ -f ${partial[0]}/manifest.json ]] || fail "the fault fired before the manifest was written"

# The checkpoint of step 10 loads (eval picks the newest valid one and never sees the partial one).
expect_status 0 eval_run eval "$SCRATCH/run"
grep -q '^checkpoint step 10,' "$SCRATCH/eval.out" || fail "eval did not load checkpoint 10"

expect_status 0 train "$SCRATCH/run" train.steps=20 --resume
grep -q '"event":"resume","step":10,' "$SCRATCH/run/events.jsonl" || fail "no resume from step 10"
[[ ! -e ${partial[0]} ]] || fail "the partial checkpoint was not cleaned up by the next save"
[[ $(checkpoint_steps "$SCRATCH/run" | tr '\n' ' ') == "10 20 " ]] ||
  fail "checkpoints not 10 and 20"
no_duplicate_steps "$SCRATCH/run/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/run/metrics.jsonl") ||
  fail "the resumed run's losses differ from the uninterrupted run's"
same_weights "$(checkpoint "$SCRATCH/straight" 20)" "$(checkpoint "$SCRATCH/run" 20)"
echo "R6 kill -9 during a save: ok"
