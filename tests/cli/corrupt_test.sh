#!/usr/bin/env bash
# R7: corrupted checkpoints (one flipped byte in the weights, a truncated optimizer file, a flipped
# byte in the manifest) are refused before deserialisation with "checksum mismatch: <file>" on
# stderr and in events.jsonl; `hypnos eval` and --resume fall back to the newest valid checkpoint,
# and nothing crashes, not even when no checkpoint is valid.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# flip_byte FILE OFFSET: inverts every bit of one byte in place.
flip_byte() {
  local old
  old=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
  printf "\\x$(printf %02x $((old ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

expect_status 0 train "$SCRATCH/straight" train.steps=30
expect_status 0 train "$SCRATCH/run" train.steps=30
[[ $(checkpoint_steps "$SCRATCH/run" | tr '\n' ' ') == "10 20 30 " ]] || fail "expected 10 20 30"
weights30="$(checkpoint "$SCRATCH/run" 30)/model.safetensors"
flip_byte "$weights30" $(($(stat -c %s "$weights30") / 2))
optimizer20="$(checkpoint "$SCRATCH/run" 20)/optimizer.pt"
truncate -s $(($(stat -c %s "$optimizer20") / 2)) "$optimizer20"

rc=0
eval_run eval "$SCRATCH/run" || rc=$?
[[ $rc == 0 ]] || fail "eval exited $rc: $(cat "$SCRATCH/eval.err")"
grep -q "^checksum mismatch: .*step_00000030/model.safetensors" "$SCRATCH/eval.err" ||
  fail "no checksum mismatch for the flipped byte on eval's stderr"
grep -q "^checksum mismatch: .*step_00000020/optimizer.pt" "$SCRATCH/eval.err" ||
  fail "no checksum mismatch for the truncated file on eval's stderr"
grep -q '^checkpoint step 10,' "$SCRATCH/eval.out" || fail "eval did not fall back to checkpoint 10"
rejection='"event":"checkpoint_rejected".*"problem":"checksum mismatch: '
rejection+='.*step_00000030/model.safetensors"'
grep -q "$rejection" \
  "$SCRATCH/run/events.jsonl" || fail "eval's rejection is not in events.jsonl"

# --resume falls back the same way, and the rerun steps replace the corrupt checkpoints.
rejected_before=$(grep -c checkpoint_rejected "$SCRATCH/run/events.jsonl")
expect_status 0 train "$SCRATCH/run" train.steps=30 --resume
grep -q "^checksum mismatch: .*step_00000030/model.safetensors" "$SCRATCH/run.err" ||
  fail "no checksum mismatch on the resumed run's stderr"
(($(grep -c checkpoint_rejected "$SCRATCH/run/events.jsonl") == rejected_before + 2)) ||
  fail "the resume did not log both rejections in events.jsonl"
grep -q '"event":"resume","step":10,' "$SCRATCH/run/events.jsonl" || fail "no resume from step 10"
no_duplicate_steps "$SCRATCH/run/metrics.jsonl"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/run/metrics.jsonl") ||
  fail "the resumed run's losses differ from the uninterrupted run's"
for s in 20 30; do
  same_weights "$(checkpoint "$SCRATCH/straight" $s)" "$(checkpoint "$SCRATCH/run" $s)"
done
expect_status 0 eval_run eval2 "$SCRATCH/run"
grep -q '^checkpoint step 30,' "$SCRATCH/eval2.out" ||
  fail "the rewritten checkpoint 30 does not load"

# No valid checkpoint at all: a clear error and exit 1, never a crash.
for s in 10 20 30; do flip_byte "$(checkpoint "$SCRATCH/run" $s)/manifest.json" 20; done
rc=0
eval_run eval3 "$SCRATCH/run" || rc=$?
[[ $rc == 1 ]] || fail "eval with no valid checkpoint exited $rc, expected 1"
grep -q "no valid checkpoint" "$SCRATCH/eval3.err" || fail "no 'no valid checkpoint' message"
[[ $(grep -c "^checksum mismatch: .*manifest.json" "$SCRATCH/eval3.err") == 3 ]] ||
  fail "expected three manifest checksum mismatches"
echo "R7 corrupted checkpoint: ok"
