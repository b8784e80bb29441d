#!/usr/bin/env bash
# R9: SIGTERM in the middle of a run (no periodic checkpoint due) writes a checkpoint at the current
# step within seconds and exits 143 (128 + SIGTERM, so a scheduler does not read it as success); the
# resume continues bitwise like an uninterrupted run. Then the same for 2 Gloo ranks under
# scripts/launch.sh, which forwards the signal and exits 143 too: the ranks receive it between
# different steps and must still agree on the step they checkpoint.
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
[[ $rc == 143 ]] || fail "the run exited $rc after SIGTERM, expected 143: $(tail -3 "$SCRATCH/run.err")"
((took <= 10)) || fail "the run took $took s to stop after SIGTERM"
stopped_at=$(last_train_step "$SCRATCH/run/metrics.jsonl")
((stopped_at < 40)) || fail "the run finished before the signal arrived"
[[ $(checkpoint_steps "$SCRATCH/run") == "$stopped_at" ]] ||
  fail "expected exactly one checkpoint, at step $stopped_at: $(checkpoint_steps "$SCRATCH/run")"
grep -q "\"event\":\"signal\",\"step\":$stopped_at,\"signal\":15," "$SCRATCH/run/events.jsonl" ||
  fail "no signal event"

expect_status 0 train "$SCRATCH/run" train.steps=40 train.checkpoint_every=0 --resume
grep -q "\"event\":\"resume\",\"step\":$stopped_at," "$SCRATCH/run/events.jsonl" ||
  fail "the resume did not start from step $stopped_at"
no_duplicate_steps "$SCRATCH/run/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/run/metrics.jsonl") ||
  fail "the resumed run's losses differ from the uninterrupted run's"
same_weights "$(checkpoint "$SCRATCH/straight" 40)" "$(checkpoint "$SCRATCH/run" 40)"
echo "R9 SIGTERM, 1 rank: ok (stopped at step $stopped_at in ${took}s)"

launch() {
  HYPNOS_BINARY="$HYPNOS" bash "$SOURCE_DIR/scripts/launch.sh" --nproc 2 train "$TINY" --out "$1" \
    train.steps=30 train.checkpoint_every=0 train.eval_examples=0 distributed.timeout_s=20 "${@:2}"
}
launch "$SCRATCH/straight2" >"$SCRATCH/straight2.out" 2>&1 || fail "the 2-rank run failed"
# Not through the function: $! must be launch.sh itself, not a subshell around it.
HYPNOS_BINARY="$HYPNOS" bash "$SOURCE_DIR/scripts/launch.sh" --nproc 2 train "$TINY" \
  --out "$SCRATCH/run2" train.steps=30 train.checkpoint_every=0 train.eval_examples=0 \
  distributed.timeout_s=20 >"$SCRATCH/run2.out" 2>&1 &
launcher=$!
BACKGROUND_PIDS+=("$launcher")
step_reached2() { (($(last_train_step "$SCRATCH/run2/metrics.jsonl") >= 10)); }
wait_for 120 "step 10 of the 2-rank run" step_reached2
signalled=$SECONDS
kill -TERM "$launcher"
rc=0
wait "$launcher" || rc=$?
took=$((SECONDS - signalled))
[[ $rc == 143 ]] ||
  fail "2 ranks: launch.sh exited $rc after SIGTERM, expected 143: $(tail -4 "$SCRATCH/run2.out")"
((took <= 10)) || fail "2 ranks: took $took s to stop after SIGTERM"
stopped_at=$(last_train_step "$SCRATCH/run2/metrics.jsonl")
[[ $(checkpoint_steps "$SCRATCH/run2") == "$stopped_at" ]] ||
  fail "2 ranks: no checkpoint at $stopped_at"
launch "$SCRATCH/run2" --resume >"$SCRATCH/run2.resume.out" 2>&1 ||
  fail "2 ranks: the resume failed"
no_duplicate_steps "$SCRATCH/run2/metrics.jsonl"
diff <(losses "$SCRATCH/straight2/metrics.jsonl") <(losses "$SCRATCH/run2/metrics.jsonl") ||
  fail "2 ranks: the resumed run's losses differ from the uninterrupted run's"
same_weights "$(checkpoint "$SCRATCH/straight2" 30)" "$(checkpoint "$SCRATCH/run2" 30)"
echo "R9 SIGTERM, 2 ranks under launch.sh: ok (stopped at step $stopped_at in ${took}s)"
