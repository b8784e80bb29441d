# Shared by the reliability scenarios (tests/cli/*_test.sh, docs/reliability.md): sourced after
# `set -euo pipefail`; reads the ctest arguments HYPNOS_BINARY SOURCE_DIR and makes a scratch
# directory that is removed when the script exits, however it exits.
HYPNOS=${1:?usage: $0 HYPNOS_BINARY SOURCE_DIR}
SOURCE_DIR=${2:?usage: $0 HYPNOS_BINARY SOURCE_DIR}
TINY="$SOURCE_DIR/tests/cli/tiny.yaml"
source "$SOURCE_DIR/scripts/free_port.sh"
export OMP_NUM_THREADS=1
unset HYPNOS_FAULT HYPNOS_FAULT_NONFINITE_STEP RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/hypnos_cli_test.XXXXXX")
BACKGROUND_PIDS=()
cleanup() {
  local pid child
  for pid in "${BACKGROUND_PIDS[@]}"; do
    # The ranks under launch.sh first: SIGKILL to the launcher would orphan them.
    for child in $(pgrep -P "$pid" 2>/dev/null); do kill -9 "$child" 2>/dev/null || true; done
    kill -9 "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [[ -n ${KEEP_SCRATCH:-} ]] || rm -rf "$SCRATCH"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# require_python NAME MODULE...: sets PYTHON ($HYPNOS_PYTHON, else the project venv's python), or,
# when it is missing or lacks one of the modules, says that test NAME is skipped and why, and exits
# 0 (a machine without the venv skips these tests, saying so).
require_python() {
  local name=$1
  shift
  PYTHON=${HYPNOS_PYTHON:-$SOURCE_DIR/.venv/bin/python}
  local modules
  modules=$(IFS=,; echo "$*")
  if [[ ! -x $PYTHON ]] || ! "$PYTHON" -c "import $modules" 2>/dev/null; then
    echo "$name: skipped (no python with ${modules//,/, } at $PYTHON: run scripts/setup.sh)"
    exit 0
  fi
}

# train DIR [overrides...]: a tiny run into DIR; its stdout and stderr go to DIR.out / DIR.err.
# Returns the exit status of hypnos (the caller decides what it should be).
train() {
  local dir=$1
  shift
  local rc=0
  "$HYPNOS" train "$TINY" --out "$dir" "$@" >"$dir.out" 2>"$dir.err" || rc=$?
  return "$rc"
}

# eval_run NAME RUN_DIR: `hypnos eval RUN_DIR`; its stdout and stderr go to $SCRATCH/NAME.out and
# $SCRATCH/NAME.err (inside the function, so expect_status's own message still reaches the test's
# stderr). Returns the exit status of hypnos.
eval_run() {
  local rc=0
  "$HYPNOS" eval "$2" >"$SCRATCH/$1.out" 2>"$SCRATCH/$1.err" || rc=$?
  return "$rc"
}

# expect_status WANT COMMAND...: runs COMMAND and fails unless it exits with WANT.
expect_status() {
  local want=$1
  shift
  local rc=0
  "$@" || rc=$?
  [[ $rc == "$want" ]] || fail "'$*' exited $rc, expected $want"
}

# losses METRICS [FIRST [LAST]]: "step loss" of every train record with FIRST <= step <= LAST,
# the loss exactly as written (the comparisons are bitwise, so no number is parsed).
losses() {
  local first=${2:-0} last=${3:-1000000000}
  grep '"kind":"train"' "$1" |
    sed -E 's/.*"step":([0-9]+),.*"loss":([^,]*),.*/\1 \2/' |
    awk -v a="$first" -v b="$last" '$1 >= a && $1 <= b'
}

# train_steps METRICS: the step of every train record, in file order.
train_steps() { grep '"kind":"train"' "$1" | sed -E 's/.*"step":([0-9]+),.*/\1/'; }

# no_duplicate_steps METRICS: every train step appears once, in increasing order.
no_duplicate_steps() {
  train_steps "$1" | sort -n -c -u || fail "$1 has duplicate or unordered train steps"
}

checkpoint() { printf '%s/checkpoints/step_%08d' "$1" "$2"; }

# checkpoint_steps RUN_DIR: the steps of the complete checkpoints, ascending.
checkpoint_steps() {
  local d
  for d in "$1"/checkpoints/step_????????; do
    [[ -d $d ]] && echo $((10#${d##*step_}))
  done
  return 0
}

# same_weights A_DIR B_DIR: the two checkpoints' model.safetensors are byte for byte equal.
same_weights() {
  cmp -s "$1/model.safetensors" "$2/model.safetensors" ||
    fail "model.safetensors differs: $1 vs $2"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.05 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what"
    sleep 0.05
  done
}

# last_train_step METRICS: the step of the newest train record (0 when there is none).
last_train_step() {
  local s
  s=$(train_steps "$1" 2>/dev/null | tail -n 1)
  echo "${s:-0}"
}
