#!/usr/bin/env bash
# The command line refuses bad input with exit 2 and writes nothing (docs/reliability.md R1, R23): a
# mistyped key names itself and the nearest known key; a wrong type, an out-of-range value, a
# duplicate YAML key (with file:line), an unknown command (`bench` pointing to hypnos_bench) and an
# unknown flag are refused, and so are a bad RANK or WORLD_SIZE in the environment (naming the
# variable); --help exits 0.
set -euo pipefail
# Absolute paths: the cases run from a temporary directory.
hypnos=$(realpath "$1") src=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect() {  # expected status, stderr pattern, args...
  local want=$1 pattern=$2
  shift 2
  local status=0
  (cd "$tmp" && "$hypnos" "$@" > "$tmp/out" 2> "$tmp/err") || status=$?
  [[ $status == "$want" ]] || fail "hypnos $*: exit $status, expected $want: $(cat "$tmp/err")"
  grep -qF -- "$pattern" "$tmp/err" "$tmp/out" || fail "hypnos $*: no '$pattern' in: $(cat "$tmp/err")"
}

cfg=$src/configs/rule110/default.yaml
expect 2 "unknown key 'sleep.n_pases' (command line); did you mean sleep.n_passes?" \
  train "$cfg" sleep.n_pases=2 --out "$tmp/run"
expect 2 "sleep.n_passes: expected an integer, got 'two'" train "$cfg" sleep.n_passes=two --out "$tmp/run"
expect 2 "sleep.n_passes: 0 is out of range [1, 64]" train "$cfg" sleep.n_passes=0 --out "$tmp/run"
printf 'sleep:\n  n_passes: 2\n  n_passes: 3\n' > "$tmp/dup.yaml"
expect 2 "$tmp/dup.yaml:3: duplicate key 'sleep.n_passes'" train "$tmp/dup.yaml" --out "$tmp/run"
printf 'sleep:\n  n_pases: 2\n' > "$tmp/typo.yaml"
expect 2 "unknown key 'sleep.n_pases' ($tmp/typo.yaml:2); did you mean sleep.n_passes?" \
  train "$tmp/typo.yaml" --out "$tmp/run"
expect 2 "unknown command 'trian'" trian "$cfg"
expect 2 "the benchmarks are their own program, hypnos_bench" bench train --device cpu
expect 2 "unknown option '--outt'" train "$cfg" --outt "$tmp/run"
expect 2 "unknown key 'task.bogus'" generate rule110 task.bogus=1
for env in "RANK=x WORLD_SIZE=2" "RANK=0 WORLD_SIZE=0" "RANK=3 WORLD_SIZE=2"; do
  status=0
  (cd "$tmp" && env $env "$hypnos" train "$cfg" --out "$tmp/run" > "$tmp/out" 2> "$tmp/err") ||
    status=$?
  [[ $status == 2 ]] || fail "$env hypnos train: exit $status, expected 2: $(cat "$tmp/err")"
  name=${env%%=*}
  [[ $env == "RANK=0 WORLD_SIZE=0" ]] && name=WORLD_SIZE
  grep -qF "$name='" "$tmp/err" || fail "$env: the error does not name $name: $(cat "$tmp/err")"
done
[[ ! -e $tmp/run ]] || fail "a refused command wrote $tmp/run"
expect 0 "usage: hypnos train" train --help
echo "usage errors: ok"
