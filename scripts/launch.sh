#!/usr/bin/env bash
# Starts N local ranks of a data-parallel hypnos run, torchrun style (RANK, WORLD_SIZE, LOCAL_RANK,
# MASTER_ADDR=127.0.0.1, MASTER_PORT a free port), waits for them, and when one fails kills the rest
# and exits with the failed rank's status. SIGTERM/SIGINT are forwarded to every rank (each then
# checkpoints and exits 128 + the signal, docs/reliability.md); the launcher then waits for all of
# them and exits with rank 0's status.
#   scripts/launch.sh --nproc N train CONFIG.yaml [key=value ...] [--out DIR] [--resume]
# The binary is $HYPNOS_BINARY, else build/hypnos next to this script's directory.
set -euo pipefail

usage() {
  echo "usage: $0 --nproc N <hypnos command> [args ...]   (e.g. --nproc 2 train CONFIG.yaml)" >&2
  exit 2
}

nproc=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --nproc) [[ $# -ge 2 ]] || usage; nproc=$2; shift 2 ;;
    --nproc=*) nproc=${1#--nproc=}; shift ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
if [[ ! $nproc =~ ^[1-9][0-9]*$ ]]; then
  echo "launch.sh: --nproc must be a positive integer, got '$nproc'" >&2
  usage
fi
[[ $# -ge 1 ]] || usage

binary=${HYPNOS_BINARY:-"$(cd "$(dirname "$0")/.." && pwd)/build/hypnos"}
if [[ ! -x $binary ]]; then
  echo "launch.sh: hypnos binary '$binary' not found (set HYPNOS_BINARY)" >&2
  exit 2
fi

source "$(dirname "$0")/free_port.sh"
port=${MASTER_PORT:-$(free_port)}

pids=()
kill_all() {
  local signal=$1 pid
  for pid in "${pids[@]}"; do kill "-$signal" "$pid" 2>/dev/null || true; done
}
# After a forwarded stop signal every rank checkpoints and exits non-zero on purpose: none of them
# is killed for it (rank 0 may still be writing the checkpoint).
stopping=0
trap 'stopping=1; kill_all TERM' TERM
trap 'stopping=1; kill_all INT' INT

for ((rank = 0; rank < nproc; ++rank)); do
  RANK=$rank WORLD_SIZE=$nproc LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$binary" "$@" &
  pids+=($!)
done

declare -A alive  # pid -> rank, of the ranks not yet waited for
for ((rank = 0; rank < nproc; ++rank)); do alive[${pids[$rank]}]=$rank; done
status=0
rank0_status=0
while ((${#alive[@]} > 0)); do
  rc=0
  finished=""
  wait -n -p finished "${!alive[@]}" || rc=$?
  [[ -n ${finished:-} ]] || continue  # a trapped signal interrupted the wait (and unset it)
  rank=${alive[$finished]}
  unset "alive[$finished]"
  ((rank != 0)) || rank0_status=$rc
  if ((rc != 0 && status == 0)); then
    status=$rc
    if ((stopping)); then continue; fi
    echo "launch.sh: rank $rank (pid $finished) exited $rc; stopping the other ranks" >&2
    kill_all KILL
  fi
done
if ((stopping)); then exit "$rank0_status"; fi
exit "$status"
