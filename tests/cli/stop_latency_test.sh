#!/usr/bin/env bash
# A stop signal is honoured inside a step, not only between steps (docs/reliability.md R19): with
# steps of seconds (a wider model and batch than tiny.yaml), SIGTERM or SIGINT right after step 1
# abandons step 2 (after a micro-batch's forward, before any node of its backward, or between
# micro-batches), checkpoints step 1 and exits 143 or 130 in well under a step, where waiting for
# the step to end takes at least a step; the resume from that checkpoint continues bitwise.
# Waiting for the step would complete step 2 (checked) and take a step or more; the bound, 0.85 of a
# step, leaves room for the forward that runs to its end (about a third of a step with one
# micro-batch) and for the checkpoint's fsyncs on a loaded machine.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

slow=(model.d_model=128 train.batch_size=256 train.checkpoint_every=0 train.eval_examples=0)
expect_status 0 train "$SCRATCH/straight" "${slow[@]}" train.steps=3
# The time of one step, from the uninterrupted run (elapsed_s of step 2 minus step 1's).
step_s=$(grep '"kind":"train"' "$SCRATCH/straight/metrics.jsonl" |
  sed -E 's/.*"elapsed_s":([0-9.eE+-]+).*/\1/' | awk 'NR == 1 {a = $1} NR == 2 {print $1 - a}')
awk -v s="$step_s" 'BEGIN {exit !(s >= 1.5)}' ||
  fail "a step takes ${step_s}s: too short to measure the stop latency"

now_ms() { date +%s%3N; }

# stop_case NAME SIGNAL EXPECTED_STATUS MAX_STEPS OVERRIDES...: signals the run right after step 1
# is logged; the stop must take less than MAX_STEPS steps.
stop_case() {
  local name=$1 signal=$2 want=$3 bound=$4
  shift 4
  local run=$SCRATCH/$name
  "$HYPNOS" train "$TINY" --out "$run" "${slow[@]}" train.steps=100 "$@" \
    >"$run.out" 2>"$run.err" &
  local pid=$!
  BACKGROUND_PIDS+=("$pid")
  step_reached() { (($(last_train_step "$run/metrics.jsonl") >= 1)); }
  wait_for 300 "step 1 ($name)" step_reached
  local signalled rc=0
  signalled=$(now_ms)
  kill "-$signal" "$pid"
  wait "$pid" || rc=$?
  local took_ms=$(($(now_ms) - signalled))
  [[ $rc == "$want" ]] || fail "$name: exited $rc after SIG$signal, expected $want: $(tail -3 "$run.err")"
  [[ $(last_train_step "$run/metrics.jsonl") == 1 ]] || fail "$name: step 2 was completed"
  [[ $(checkpoint_steps "$run") == 1 ]] || fail "$name: no checkpoint of step 1 alone"
  awk -v t="$took_ms" -v s="$step_s" -v b="$bound" 'BEGIN {exit !(t / 1000 < b * s)}' ||
    fail "$name: the stop took ${took_ms} ms, a step ${step_s} s: it waited for the step to end"
  echo "$name: stopped ${took_ms} ms after SIG$signal (a step takes ${step_s} s)"
}

stop_case term TERM 143 0.85
stop_case int_accum INT 130 0.85 train.grad_accum=4

expect_status 0 train "$SCRATCH/term" "${slow[@]}" train.steps=3 --resume
grep -q '"event":"resume","step":1,' "$SCRATCH/term/events.jsonl" || fail "no resume from step 1"
diff <(losses "$SCRATCH/straight/metrics.jsonl") <(losses "$SCRATCH/term/metrics.jsonl") ||
  fail "the run resumed after an abandoned step differs from the uninterrupted run"
same_weights "$(checkpoint "$SCRATCH/straight" 3)" "$(checkpoint "$SCRATCH/term" 3)"
echo "stop latency: ok"
