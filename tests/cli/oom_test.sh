#!/usr/bin/env bash
# R11: out of memory. A model whose weights cannot be allocated (model.d_model=1000000: a 4 TB
# projection) and a batch that cannot (train.batch_size=1000000000 with one micro-batch) each give
# one line on stderr naming what was being done and the config, exit 4, and no checkpoint.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# oom_case NAME PHASE OVERRIDES...
oom_case() {
  local name=$1 phase=$2
  shift 2
  local rc=0
  train "$SCRATCH/$name" "$@" || rc=$?
  [[ $rc == 4 ]] || fail "$name: exited $rc, expected 4: $(head -c 600 "$SCRATCH/$name.err")"
  local line
  line=$(grep '^hypnos train: out of memory' "$SCRATCH/$name.err") ||
    fail "$name: no out-of-memory line on stderr"
  [[ $(wc -l <<<"$line") == 1 ]] || fail "$name: more than one out-of-memory line"
  [[ $line == *"out of memory while $phase:"* ]] ||
    fail "$name: the line does not name '$phase': $line"
  [[ $line == *"model.d_model="*"train.batch_size="* ]] ||
    fail "$name: the line has no config: $line"
  ! grep -q 'frame #' "$SCRATCH/$name.err" || fail "$name: a backtrace on stderr"
  grep -q '"event":"out_of_memory"' "$SCRATCH/$name/events.jsonl" || fail "$name: no event"
  [[ -z $(ls -A "$SCRATCH/$name/checkpoints" 2>/dev/null) ]] ||
    fail "$name: a checkpoint was written"
}

oom_case weights "building the model" model.d_model=1000000 model.n_heads=1
oom_case batch "training step 1" train.batch_size=1000000000 train.eval_examples=0
echo "R11 out of memory: ok"
