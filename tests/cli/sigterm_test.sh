#!/usr/bin/env bash
# R9: SIGTERM in the middle of a run (no periodic checkpoint due) writes a checkpoint at the current
# step within seconds and exits 0; the resume continues bitwise like an uninterrupted run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/straight" train.steps=40 train.checkpoint_every=0

"$HYPNOS" train "$TINY" --out "$SCRATCH/run" train.steps=40 train.checkpoint_every=0 \
  >"$SCRATCH/run.out" 2>"$SCRATCH/run.err" &
pid=$!
BACKGROUND_PIDS+=("$pid")
step_reached() { (($(last_train_step "$SCRATCH/run/metrics.jsonl") >= 15)); }
wait_for 120 "step 15" step_reached
signalled=$SECONDS
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
took=$((SECONDS - signalled))
[[ $rc == 0 ]] || fail "the run exited $rc after SIGTERM, expected 0: $(tail -3 "$SCRATCH/run.err")"
((took <= 10)) || fail "the run took $took s to stop after SIGTERM"
stopped_at=$(last_train_step "$SCRATCH/run/metrics.jsonl")
((stopped_at < 40)) || fail "the run finished before the signal arrived"
[[ $(checkpoint_steps "$SCRATCH/run") == "$stopped_at" ]] ||
  fail "expected exactly one checkpoint, at step $stopped_at: $(checkpoint_steps "$SCRATCH/run")"
grep -q "\"event\":\"signal\",\"step\":$stopped_at," "$SCRATCH/run/events.jsonl" || fail "no signal event"

expect_status 0 train "$SCRATCH/run" train.steps=40 train.checkpoint_every=0 --resume
grep -q "\"event\":\"resume\",\"step\":$stopped_at," "$SCRATCH/run/events.jsonl" ||
  fail "the resume did not start from step $stopped_at"
no_duplicate_steps "$SCRATCH/run/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/run/metrics.jsonl") ||
  fail "the resumed run's losses differ from the uninterrupted run's"
same_weights "$(checkpoint "$SCRATCH/straight" 40)" "$(checkpoint "$SCRATCH/run" 40)"
echo "R9 SIGTERM: ok (stopped at step $stopped_at in ${took}s)"
