#!/usr/bin/env bash
# `hypnos eval` follows train's rules and writes nothing into the run but its own findings:
# run.device=cuda on a machine without a GPU exits 2 (train does too) instead of running on the
# CPU; an override that changes the trained model (model.d_model, train.param_dtype) exits 2 naming
# the key with both values, and leaves events.jsonl as it was (no checkpoint_rejected records for
# its own mistake).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

run=$SCRATCH/run
expect_status 0 train "$run" train.steps=10
events=$(sha256sum <"$run/events.jsonl")

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "a GPU is present: the run.device=cuda refusal is not checked here"
else
  for device in "run.device=cuda" "--device cuda"; do
    rc=0
    # shellcheck disable=SC2086  # two words for the flag form
    "$HYPNOS" eval "$run" $device >"$SCRATCH/cuda.out" 2>"$SCRATCH/cuda.err" || rc=$?
    [[ $rc == 2 ]] || fail "eval $device without a GPU exited $rc, expected 2"
    grep -q "run.device is cuda but no CUDA device is available" "$SCRATCH/cuda.err" ||
      fail "eval $device: no device error: $(cat "$SCRATCH/cuda.err")"
    rc=0
    train "$SCRATCH/cuda_train" run.device=cuda || rc=$?
    [[ $rc == 2 ]] || fail "train run.device=cuda without a GPU exited $rc, expected 2"
  done
fi

rc=0
"$HYPNOS" eval "$run" model.d_model=64 >"$SCRATCH/wide.out" 2>"$SCRATCH/wide.err" || rc=$?
[[ $rc == 2 ]] || fail "eval model.d_model=64 exited $rc, expected 2: $(cat "$SCRATCH/wide.err")"
grep -q "eval cannot change the trained model: model.d_model: 32 -> 64" "$SCRATCH/wide.err" ||
  fail "the refusal does not name model.d_model: $(cat "$SCRATCH/wide.err")"
# The weights' dtype is the trained model's too (the checkpoint holds them in it).
rc=0
"$HYPNOS" eval "$run" train.param_dtype=bf16 train.precision=bf16 >"$SCRATCH/bf16.out" \
  2>"$SCRATCH/bf16.err" || rc=$?
[[ $rc == 2 ]] || fail "eval train.param_dtype=bf16 exited $rc, expected 2"
grep -q "eval cannot change the trained model: train.param_dtype: fp32 -> bf16" \
  "$SCRATCH/bf16.err" || fail "the refusal does not name train.param_dtype: $(cat "$SCRATCH/bf16.err")"
[[ $(sha256sum <"$run/events.jsonl") == "$events" ]] || fail "eval wrote into events.jsonl"

# What eval may change: the evaluation (more sleep passes at test time).
expect_status 0 eval_run more_sleep "$run"
"$HYPNOS" eval "$run" sleep.n_passes=3 >"$SCRATCH/n3.out" 2>"$SCRATCH/n3.err" ||
  fail "eval sleep.n_passes=3 failed: $(cat "$SCRATCH/n3.err")"
grep -q 'N = 3' "$SCRATCH/n3.out" || fail "eval did not use N = 3"
[[ $(sha256sum <"$run/events.jsonl") == "$events" ]] || fail "eval wrote into events.jsonl"
echo "eval follows train's rules and writes nothing: ok"
