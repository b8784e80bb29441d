#!/usr/bin/env bash
# One writer per run directory: while a run trains into D, a second `hypnos train --out D --resume`
# (a scheduler's requeue while the old job still lives) exits 2 at once naming D and the holder's
# pid, and changes nothing; of two runs started together into a fresh D exactly one trains;
# `hypnos eval` reads D without the lock; after kill -9 of the holder the lock is gone and the
# resume continues from the last checkpoint.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

run=$SCRATCH/run
"$HYPNOS" train "$TINY" --out "$run" train.steps=100000 train.checkpoint_every=5 \
  >"$run.out" 2>"$run.err" &
holder=$!
BACKGROUND_PIDS+=("$holder")
step_reached() { (($(last_train_step "$run/metrics.jsonl") >= 6)); }
wait_for 120 "step 6" step_reached

# A second writer: --resume (and a plain start) into the locked directory exit 2 at once.
for extra in --resume ""; do
  rc=0
  started=$SECONDS
  # shellcheck disable=SC2086  # $extra is one flag or nothing
  timeout 60 "$HYPNOS" train "$TINY" --out "$run" train.steps=100000 train.checkpoint_every=5 \
    $extra >"$SCRATCH/second.out" 2>"$SCRATCH/second.err" || rc=$?
  [[ $rc == 2 ]] || fail "a second writer ($extra) exited $rc, expected 2: $(tail -3 "$SCRATCH/second.err")"
  ((SECONDS - started <= 10)) || fail "the second writer took $((SECONDS - started)) s to give up"
  grep -q "run directory $run is in use by another hypnos train (pid $holder," \
    "$SCRATCH/second.err" || fail "the refusal does not name $run and pid $holder: $(cat "$SCRATCH/second.err")"
done
kill -0 "$holder" || fail "the first run died"
grep -q '"event":"resume"' "$run/events.jsonl" && fail "the second writer wrote a resume event"
no_duplicate_steps "$run/metrics.jsonl"

# A reader needs no lock.
expect_status 0 eval_run eval "$run"
grep -q '^checkpoint step [0-9]*,' "$SCRATCH/eval.out" || fail "eval printed no checkpoint step"

# kill -9 leaves no stale lock: the resume takes it and continues from the newest checkpoint.
kill -9 "$holder"
wait "$holder" || true
latest=$(checkpoint_steps "$run" | tail -n 1)
expect_status 0 train "$run" train.steps=$((latest + 3)) train.checkpoint_every=5 --resume
grep -q "\"event\":\"resume\",\"step\":$latest," "$run/events.jsonl" ||
  fail "the resume after kill -9 did not start from step $latest"
no_duplicate_steps "$run/metrics.jsonl"

# Two runs started together into one fresh directory: one trains, the other is refused.
both=$SCRATCH/both
"$HYPNOS" train "$TINY" --out "$both" train.steps=30 >"$both.a.out" 2>"$both.a.err" &
a=$!
"$HYPNOS" train "$TINY" --out "$both" train.steps=30 >"$both.b.out" 2>"$both.b.err" &
b=$!
BACKGROUND_PIDS+=("$a" "$b")
rc_a=0 rc_b=0
wait "$a" || rc_a=$?
wait "$b" || rc_b=$?
[[ "$rc_a $rc_b" == "0 2" || "$rc_a $rc_b" == "2 0" ]] ||
  fail "two starts into one directory exited $rc_a and $rc_b, expected 0 and 2"
no_duplicate_steps "$both/metrics.jsonl"
[[ $(train_steps "$both/metrics.jsonl" | wc -l) == 30 ]] || fail "$both/metrics.jsonl mixes runs"
echo "one writer per run directory: ok"
