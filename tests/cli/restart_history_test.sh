#!/usr/bin/env bash
# A resume that finds no valid checkpoint starts over at step 0 with one consistent history: the
# records of the steps that run again leave metrics.jsonl (moved to metrics.dropped.jsonl, said in
# events.jsonl), so the curves hold one run. Two ways to get there: killed before the first
# checkpoint, and every checkpoint corrupt. The corrupt checkpoints are set aside under
# checkpoints/rejected/, never deleted nor replaced by the new saves of their steps.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

expect_status 0 train "$SCRATCH/straight" train.steps=20

# 1. Killed (-9) after a few logged steps, before the first checkpoint.
run=$SCRATCH/early
"$HYPNOS" train "$TINY" --out "$run" train.steps=100000 train.checkpoint_every=100000 \
  >"$run.out" 2>"$run.err" &
pid=$!
BACKGROUND_PIDS+=("$pid")
step_reached() { (($(last_train_step "$run/metrics.jsonl") >= 5)); }
wait_for 120 "step 5" step_reached
kill -9 "$pid"
wait "$pid" || true
logged=$(wc -l <"$run/metrics.jsonl")
[[ -z $(checkpoint_steps "$run") ]] || fail "a checkpoint exists before step 100000"
expect_status 0 train "$run" train.steps=20 --resume
grep -q '"event":"resume","step":0,' "$run/events.jsonl" || fail "no resume from step 0"
grep -q "\"event\":\"metrics_dropped\",\"after_step\":0,\"records\":$logged," "$run/events.jsonl" ||
  fail "events.jsonl does not say that $logged records were dropped"
no_duplicate_steps "$run/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$run/metrics.jsonl") ||
  fail "metrics.jsonl is not the history of one run from step 0"
[[ $(wc -l <"$run/metrics.dropped.jsonl") == "$logged" ]] ||
  fail "metrics.dropped.jsonl does not hold the $logged records of the killed run"

# 2. Every checkpoint corrupt (their manifests flipped): start over, set them aside untouched.
run=$SCRATCH/corrupt
expect_status 0 train "$run" train.steps=20
for s in 10 20; do
  m="$(checkpoint "$run" $s)/manifest.json"
  printf 'X' | dd of="$m" bs=1 seek=20 conv=notrunc status=none
done
before=$(cd "$run/checkpoints" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
records=$(wc -l <"$run/metrics.jsonl")
expect_status 0 train "$run" train.steps=20 --resume
grep -q '"event":"resume","step":0,' "$run/events.jsonl" || fail "no resume from step 0"
grep -q "\"event\":\"metrics_dropped\",\"after_step\":0,\"records\":$records," \
  "$run/events.jsonl" || fail "events.jsonl does not say that the $records records were dropped"
no_duplicate_steps "$run/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$run/metrics.jsonl") ||
  fail "metrics.jsonl is not the history of one run from step 0"
for s in 10 20; do
  grep -q "\"event\":\"checkpoint_set_aside\",\"checkpoint\":\"$(checkpoint "$run" $s)\"" \
    "$run/events.jsonl" || fail "checkpoint $s was not set aside"
done
after=$(cd "$run/checkpoints/rejected" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
[[ "$before" == "$after" ]] || fail "the corrupt checkpoints were changed, not set aside"
same_weights "$(checkpoint "$SCRATCH/straight" 20)" "$(checkpoint "$run" 20)"
echo "restart from step 0 keeps one history: ok"
