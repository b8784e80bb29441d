#!/usr/bin/env bash
# R5: kill -9 in the middle of a run. The resume restarts from the last complete checkpoint, loses
# no more than the checkpoint interval, logs no step twice, and continues bitwise like an
# uninterrupted run. Both a real kill -9 from outside and the step.after_update fault point (an
# update done, its record not yet written) are tried.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/straight" train.steps=40

# A real kill -9 from outside, once step 23 is logged (checkpoints 10 and 20 are complete).
"$HYPNOS" train "$TINY" --out "$SCRATCH/run" train.steps=40 \
  >"$SCRATCH/run.out" 2>"$SCRATCH/run.err" &
pid=$!
BACKGROUND_PIDS+=("$pid")
step_reached() { (($(last_train_step "$SCRATCH/run/metrics.jsonl") >= 23)); }
wait_for 120 "step 23" step_reached
kill -9 "$pid"
rc=0
wait "$pid" || rc=$?
[[ $rc == 137 ]] || fail "the killed run exited $rc, expected 137 (SIGKILL)"
killed_at=$(last_train_step "$SCRATCH/run/metrics.jsonl")
((killed_at < 40)) || fail "the run finished before it was killed"
latest=$(checkpoint_steps "$SCRATCH/run" | tail -n 1)
((killed_at - latest <= 10)) || fail "checkpoint $latest is more than an interval before $killed_at"

expect_status 0 train "$SCRATCH/run" train.steps=40 --resume
grep -q "\"event\":\"resume\",\"step\":$latest," "$SCRATCH/run/events.jsonl" ||
  fail "the resume did not start from checkpoint $latest"
no_duplicate_steps "$SCRATCH/run/metrics.jsonl"
[[ $(train_steps "$SCRATCH/run/metrics.jsonl" | wc -l) == 40 ]] ||
  fail "steps missing after the resume"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/run/metrics.jsonl") ||
  fail "the resumed run's losses differ from the uninterrupted run's"
same_weights "$(checkpoint "$SCRATCH/straight" 40)" "$(checkpoint "$SCRATCH/run" 40)"

# The fault point: SIGKILL right after the first update, before any checkpoint; the resume starts
# over from step 0 and ends where the uninterrupted run ends.
rc=0
HYPNOS_FAULT=step.after_update train "$SCRATCH/early" train.steps=40 || rc=$?
[[ $rc == 137 ]] || fail "HYPNOS_FAULT=step.after_update exited $rc, expected 137"
[[ -z $(checkpoint_steps "$SCRATCH/early") ]] || fail "a checkpoint appeared before step 10"
expect_status 0 train "$SCRATCH/early" train.steps=40 --resume
grep -q '"event":"resume","step":0,' "$SCRATCH/early/events.jsonl" || fail "expected a resume at 0"
no_duplicate_steps "$SCRATCH/early/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/early/metrics.jsonl") ||
  fail "the run restarted from step 0 differs from the uninterrupted run"
echo "R5 kill -9 mid-run: ok (killed after step $killed_at, resumed from $latest)"
