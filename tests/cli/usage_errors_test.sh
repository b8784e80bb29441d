#!/usr/bin/env bash
# The command line refuses bad input with exit 2 and writes nothing (RELIABILITY.md R1): a mistyped
# key names itself and the nearest known key; a wrong type, an out-of-range value, a duplicate YAML key
# (with file:line), an unknown command and an unknown flag are refused; --help exits 0.
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
expect 2 "unknown option '--outt'" train "$cfg" --outt "$tmp/run"
expect 2 "unknown key 'task.bogus'" generate rule110 task.bogus=1
[[ ! -e $tmp/run ]] || fail "a refused command wrote $tmp/run"
expect 0 "usage: hypnos train" train --help
echo "usage errors: ok"
