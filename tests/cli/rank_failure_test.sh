#!/usr/bin/env bash
# R12, the failure half: in a 2-rank Gloo run (optimizer state sharded or not), a rank killed with
# -9 or frozen (SIGSTOP) makes the other exit non-zero with an error naming the collective, not
# hang; scripts/launch.sh stops the remaining ranks when one fails and exits non-zero.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LAUNCH="$SOURCE_DIR/scripts/launch.sh"

# start_rank RANK PORT DIR [overrides...]: one rank of a 2-rank run in the background; sets
# RANK_PID.
start_rank() {
  local rank=$1 port=$2 dir=$3
  shift 3
  RANK=$rank WORLD_SIZE=2 LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$HYPNOS" train "$TINY" --out "$dir" train.steps=100000 train.checkpoint_every=0 \
    train.eval_examples=0 distributed.timeout_s=3 "$@" >"$dir.rank$rank.out" \
    2>"$dir.rank$rank.err" &
  RANK_PID=$!
  BACKGROUND_PIDS+=("$RANK_PID")
}

# failure_case NAME SIGNAL [overrides...]: rank 1 gets SIGNAL once step 3 is logged; rank 0 must
# exit 1 with a distributed error within 30 s.
failure_case() {
  local name=$1 signal=$2 dir="$SCRATCH/$1" port
  shift 2
  port=$(free_port)
  start_rank 0 "$port" "$dir" "$@"
  local rank0=$RANK_PID
  start_rank 1 "$port" "$dir" "$@"
  local rank1=$RANK_PID
  step_reached() { (($(last_train_step "$dir/metrics.jsonl") >= 3)); }
  wait_for 120 "step 3 of the 2-rank run ($name)" step_reached
  kill "-$signal" "$rank1"
  local start=$SECONDS rc=0
  local deadline=$((SECONDS + 30))
  while kill -0 "$rank0" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "$name: rank 0 still running 30 s after rank 1 got SIG$signal"
    sleep 0.1
  done
  wait "$rank0" || rc=$?
  [[ $rc == 1 ]] || fail "$name: rank 0 exited $rc, expected 1: $(tail -3 "$dir.rank0.err")"
  grep -q "^hypnos train: error: distributed: .* failed on rank 0 of 2 after" "$dir.rank0.err" ||
    fail "$name: no distributed error on rank 0's stderr: $(tail -3 "$dir.rank0.err")"
  echo "$name: rank 0 exited after $((SECONDS - start)) s:" \
    "$(grep -o 'distributed: .*' "$dir.rank0.err" | cut -c1-160)"
  kill -9 "$rank1" 2>/dev/null || true
}

failure_case killed KILL
failure_case frozen STOP
grep -q "no peer answered within the timeout" "$SCRATCH/frozen.rank0.err" ||
  fail "the frozen rank's peer did not report a timeout: $(tail -3 "$SCRATCH/frozen.rank0.err")"

# With the optimizer state sharded (train.shard_optimizer, docs/design.md 2.1) the same, and the
# run resumes from its last checkpoint on 2 ranks.
failure_case sharded KILL train.shard_optimizer=true train.checkpoint_every=2
saved=$(checkpoint_steps "$SCRATCH/sharded" | tail -n 1)
[[ -n $saved ]] || fail "the sharded run left no checkpoint"
HYPNOS_BINARY="$HYPNOS" bash "$LAUNCH" --nproc 2 train "$TINY" --out "$SCRATCH/sharded" \
  train.steps=$((saved + 2)) train.checkpoint_every=2 train.eval_examples=0 \
  train.shard_optimizer=true distributed.timeout_s=3 --resume \
  >"$SCRATCH/sharded.resume.out" 2>"$SCRATCH/sharded.resume.err" ||
  fail "the sharded run did not resume: $(tail -3 "$SCRATCH/sharded.resume.err")"
grep -q "\"event\":\"resume\",\"step\":$saved," "$SCRATCH/sharded/events.jsonl" ||
  fail "the sharded run did not resume from step $saved"
[[ $(checkpoint_steps "$SCRATCH/sharded" | tail -n 1) == $((saved + 2)) ]] ||
  fail "the resumed sharded run did not reach step $((saved + 2))"
echo "sharded: resumed from step $saved after the kill"

# launch.sh: rank 1 of a launched run is killed; launch.sh ends the other rank and fails.
HYPNOS_BINARY="$HYPNOS" bash "$LAUNCH" --nproc 2 train "$TINY" --out "$SCRATCH/launched" \
  train.steps=100000 train.checkpoint_every=0 train.eval_examples=0 distributed.timeout_s=60 \
  >"$SCRATCH/launched.out" 2>"$SCRATCH/launched.err" &
launcher=$!
BACKGROUND_PIDS+=("$launcher")
launched_step() { (($(last_train_step "$SCRATCH/launched/metrics.jsonl") >= 3)); }
wait_for 120 "step 3 of the launched run" launched_step
ranks=$(pgrep -P "$launcher")  # before any exits: afterwards they are no longer its children
[[ -n $ranks ]] || fail "no rank process under launch.sh"
BACKGROUND_PIDS+=($ranks)
rank1=$(tail -n 1 <<<"$ranks")
kill -9 "$rank1"
rc=0
wait "$launcher" || rc=$?
((rc != 0)) || fail "launch.sh exited 0 after a rank was killed"
grep -q "launch.sh: rank [01] (pid [0-9]*) exited [0-9]*; stopping the other ranks" \
  "$SCRATCH/launched.err" || fail "launch.sh did not report the failed rank"
for rank in $ranks; do
  ! kill -0 "$rank" 2>/dev/null || fail "launch.sh left rank pid $rank running"
done
echo "R12 rank failures: ok"
