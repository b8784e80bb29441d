#!/usr/bin/env bash
# hypnos_bench on the CPU, in a few seconds: `ops --quick --packed` prints its tables (both
# delta-rule backends with positive times, and packed vs padded vs per-sequence calls),
# `train --device cpu` measures each N in a child process (the program run again with --child) and
# prints one row per N, and a mistyped benchmark is a usage error (exit 2) naming the benchmarks
# there are.
set -euo pipefail
bench=$(realpath "${1:?usage: $0 HYPNOS_BENCH_BINARY}")
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$bench" ops --quick --packed --reps 1 > "$tmp/ops.out" || fail "ops exited $?: $(cat "$tmp/ops.out")"
# A row: B T H K V backend | fwd-ms fwd-CPU-ms | f+b-ms f+b-CPU-ms
for backend in chunked reference; do
  awk -v b="$backend" '$1 == 64 && $2 == 24 && $6 == b && $8 > 0 && $9 >= 0 && $11 > 0 &&
    $12 >= 0 { found = 1 } END { exit !found }' "$tmp/ops.out" ||
    fail "ops: no timed row of the $backend backend at 64x24: $(cat "$tmp/ops.out")"
done
# --packed: a row per way, way tokens | fwd-ms fwd-CPU-ms | f+b-ms f+b-CPU-ms.
for way in packed padded per-sequence; do
  awk -v w="$way" '$1 == w && $2 > 0 && $4 > 0 && $7 > 0 { found = 1 } END { exit !found }' \
    "$tmp/ops.out" || fail "ops --packed: no timed row for $way: $(cat "$tmp/ops.out")"
done

"$bench" train --device cpu --batch 2 --passes 1,2 --repeats 1 --no-update > "$tmp/train.out" ||
  fail "train exited $?: $(cat "$tmp/train.out")"
# A row: mode N step-ms tokens/s peak-MiB ratio; the first N's ratio is 1 by definition.
for n in 1 2; do
  awk -v n="$n" '$1 == "eager" && $2 == n && $3 > 0 && $4 > 0 && $5 > 0 && $6 > 0 { found = 1 }
    END { exit !found }' "$tmp/train.out" || fail "train: no row for N = $n: $(cat "$tmp/train.out")"
done
grep -q "forward + backward only" "$tmp/train.out" || fail "train: the header does not say --no-update"

status=0
"$bench" kernal > "$tmp/out" 2> "$tmp/err" || status=$?
[[ $status == 2 ]] || fail "hypnos_bench kernal: exit $status, expected 2"
grep -qF "unknown benchmark 'kernal' (expected kernels, layers, train, pretrained or ops)" \
  "$tmp/err" || fail "hypnos_bench kernal: $(cat "$tmp/err")"
echo "hypnos_bench smoke: ok"
