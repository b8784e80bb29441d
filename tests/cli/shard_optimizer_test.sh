#!/usr/bin/env bash
# train.shard_optimizer (ZeRO-1 over whole parameters, docs/design.md 2.1) on 2 Gloo ranks: the
# sharded run's weights equal the unsharded run's after 6 steps (to fp32 round-off: Muon batches
# the Newton-Schulz of same-shaped matrices, and a rank batches only its own); its checkpoint holds
# the whole optimizer state, so a resume on 2 ranks continues bitwise and a resume on 1 rank (and a
# single process's checkpoint resumed on 2 sharded ranks) continues to round-off (the gradient is
# then a mean over one rank's batch instead of the mean of two half-batch means). With bf16 weights
# (train.param_dtype: bf16, docs/design.md 2.2) each rank keeps the fp32 masters of its share: the
# sharded run's masters equal the unsharded run's to fp32 round-off, and a 2-rank resume (the
# masters gathered into the checkpoint and handed back to their owners) continues bitwise, and
# `hypnos score` reads the run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LAUNCH="$SOURCE_DIR/scripts/launch.sh"
require_python shard_optimizer torch safetensors

COMMON=(train.steps=6 train.checkpoint_every=3 train.eval_examples=0 distributed.timeout_s=60)

# launched NPROC DIR [overrides...]: a NPROC-rank run into DIR (exit status returned).
launched() {
  local nproc=$1 dir=$2
  shift 2
  local rc=0
  HYPNOS_BINARY="$HYPNOS" bash "$LAUNCH" --nproc "$nproc" train "$TINY" --out "$dir" "${COMMON[@]}" \
    "$@" >"$dir.out" 2>"$dir.err" || rc=$?
  return "$rc"
}

# close_weights A_CKPT B_CKPT TOLERANCE: every tensor of the two model.safetensors agrees to
# max |a - b| <= TOLERANCE * max |b|, and prints the worst relative difference.
close_weights() {
  "$PYTHON" - "$1/model.safetensors" "$2/model.safetensors" "$3" <<'PY' || fail "weights differ: $1 vs $2"
import sys
from safetensors.torch import load_file
a, b, tol = load_file(sys.argv[1]), load_file(sys.argv[2]), float(sys.argv[3])
assert a.keys() == b.keys(), "different tensors"
worst = max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in a)
print(f"  worst relative difference {worst:.3g} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
}

# resume_copy FROM TO STEP: TO is FROM with the checkpoints after STEP removed (the run then
# resumes from STEP).
resume_copy() {
  cp -r "$1" "$2"
  local s
  for s in $(checkpoint_steps "$2"); do
    ((s <= $3)) || rm -rf "$(checkpoint "$2" "$s")"
  done
}

expect_status 0 launched 2 "$SCRATCH/plain"
expect_status 0 launched 2 "$SCRATCH/sharded" train.shard_optimizer=true
grep -q '"shard_optimizer":true' "$SCRATCH/sharded/events.jsonl" || fail "the run did not shard"
echo "sharded vs unsharded, 2 ranks, 6 steps:"
close_weights "$(checkpoint "$SCRATCH/sharded" 6)" "$(checkpoint "$SCRATCH/plain" 6)" 1e-5

# The checkpoint of step 3 holds the whole state: 2 sharded ranks resume from it bitwise.
resume_copy "$SCRATCH/sharded" "$SCRATCH/again" 3
expect_status 0 launched 2 "$SCRATCH/again" train.shard_optimizer=true --resume
# Steps 4-6 read the restored Muon and AdamW state: equal weights after them need all of it.
same_weights "$(checkpoint "$SCRATCH/again" 6)" "$(checkpoint "$SCRATCH/sharded" 6)"
echo "2 -> 2 sharded resume: bitwise"

# 2 -> 1: one process resumes the sharded checkpoint.
resume_copy "$SCRATCH/sharded" "$SCRATCH/to_one" 3
expect_status 0 train "$SCRATCH/to_one" "${COMMON[@]}" train.shard_optimizer=true --resume
echo "2 -> 1 resume vs the 2-rank sharded run:"
close_weights "$(checkpoint "$SCRATCH/to_one" 6)" "$(checkpoint "$SCRATCH/sharded" 6)" 1e-4

# 1 -> 2: a single process's checkpoint, resumed by 2 sharded ranks.
expect_status 0 train "$SCRATCH/single" "${COMMON[@]}" train.shard_optimizer=true
resume_copy "$SCRATCH/single" "$SCRATCH/to_two" 3
expect_status 0 launched 2 "$SCRATCH/to_two" train.shard_optimizer=true --resume
echo "1 -> 2 resume vs the single process:"
close_weights "$(checkpoint "$SCRATCH/to_two" 6)" "$(checkpoint "$SCRATCH/single" 6)" 1e-4
# close_masters A_CKPT B_CKPT TOLERANCE: the fp32 masters in the two optimizer.pt (the "masters"
# archive, by parameter index) agree like close_weights, and A's weights are bf16.
close_masters() {
  "$PYTHON" - "$1" "$2" "$3" <<'PY' || fail "masters differ: $1 vs $2"
import sys, torch
from safetensors.torch import load_file
def masters(ckpt):
    return dict(torch.jit.load(ckpt + "/optimizer.pt").masters.named_buffers())
a, b, tol = masters(sys.argv[1]), masters(sys.argv[2]), float(sys.argv[3])
assert a.keys() == b.keys() and len(a) > 0, f"masters {sorted(a)} vs {sorted(b)}"
assert all(t.dtype == torch.float32 for t in a.values()), "a master is not fp32"
assert all(t.dtype == torch.bfloat16 for t in load_file(sys.argv[1] + "/model.safetensors").values())
worst = max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in a)
print(f"  {len(a)} masters: worst relative difference {worst:.3g} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
}

# bf16 weights with fp32 masters, each rank holding those of its share.
BF16=(train.param_dtype=bf16 train.precision=bf16)
expect_status 0 launched 2 "$SCRATCH/plain_bf16" "${BF16[@]}"
expect_status 0 launched 2 "$SCRATCH/sharded_bf16" "${BF16[@]}" train.shard_optimizer=true
grep -q '"masters_bytes":[1-9]' "$SCRATCH/sharded_bf16/events.jsonl" || fail "no masters counted"
echo "bf16 weights, sharded vs unsharded, 2 ranks, 6 steps:"
close_masters "$(checkpoint "$SCRATCH/sharded_bf16" 6)" "$(checkpoint "$SCRATCH/plain_bf16" 6)" 1e-5
# A master 1e-7 away may round to the other bf16 neighbour: one bf16 step (2^-8) at most.
close_weights "$(checkpoint "$SCRATCH/sharded_bf16" 6)" "$(checkpoint "$SCRATCH/plain_bf16" 6)" 4e-3
resume_copy "$SCRATCH/sharded_bf16" "$SCRATCH/again_bf16" 3
expect_status 0 launched 2 "$SCRATCH/again_bf16" "${BF16[@]}" train.shard_optimizer=true --resume
same_weights "$(checkpoint "$SCRATCH/again_bf16" 6)" "$(checkpoint "$SCRATCH/sharded_bf16" 6)"
close_masters "$(checkpoint "$SCRATCH/again_bf16" 6)" "$(checkpoint "$SCRATCH/sharded_bf16" 6)" 0
echo "bf16 2 -> 2 sharded resume: bitwise (weights and masters)"
# A bf16 run is read like any other: score builds its model in bf16, loads, computes in fp32.
printf '0 1 1 0 1 0 2 3\n' >"$SCRATCH/tokens.txt"
"$HYPNOS" score "$SCRATCH/sharded_bf16" --tokens "$SCRATCH/tokens.txt" >"$SCRATCH/score.out" ||
  fail "score of the bf16 run failed"
grep -q "mean nll per token" "$SCRATCH/score.out" || fail "score prints no nll"
echo "shard_optimizer: ok"
