#!/usr/bin/env bash
# The CPU evidence (README "Reproducing the paper"): Rule 110 at t = 0, pure retrieval across eviction.
# The hybrid (AGAG) keeps evicted strings in its fast weights; the attention-only model (AAAA) cannot.
#   scripts/reproduce_rule110_t0_cpu.sh [OUT_DIR] [--hypnos BIN] [key.path=value ...]
# Trains both from configs/rule110/small.yaml into OUT_DIR/{agag,aaaa} (default runs/rule110-t0-cpu;
# rerunning skips finished runs, resumes unfinished ones), then writes OUT_DIR/rule110_t0_cpu.{png,md}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="" hypnos=""
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hypnos) hypnos=${2:?--hypnos needs the path of a built hypnos binary}; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    --*) echo "reproduce_rule110_t0_cpu: unknown option $1" >&2; exit 2 ;;
    *=*) overrides+=("$1") ;;
    *) out=$1 ;;
  esac
  shift
done
out=${out:-$root/runs/rule110-t0-cpu}
if [ -z "$hypnos" ]; then
  "$root/scripts/setup.sh"
  hypnos=${HYPNOS_BUILD_DIR:-build}/hypnos
  [ "${hypnos:0:1}" = / ] || hypnos=$root/$hypnos  # setup.sh reads it from the root
fi
python=${HYPNOS_PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3

for pattern in AGAG AAAA; do
  dir="$out/${pattern,,}"
  args=("$root/configs/rule110/small.yaml" "model.pattern=$pattern" "${overrides[@]}")
  steps=$("$hypnos" train "${args[@]}" --dry-run |
          awk '/^[a-z]/ {section = $1} section == "train:" && $1 == "steps:" {print $2}')
  if grep -q "\"event\":\"finish\",\"step\":$steps[,}]" "$dir/events.jsonl" 2>/dev/null; then
    echo "[rule110_t0_cpu] $pattern: finished ($dir), skipped"
  elif [ -f "$dir/config.yaml" ]; then
    "$hypnos" train "${args[@]}" --out "$dir" --resume
  else
    "$hypnos" train "${args[@]}" --out "$dir"
  fi
done
"$python" "$root/scripts/plot.py" "$out/agag" "$out/aaaa" --out "$out/rule110_t0_cpu.png" \
  --table "$out/rule110_t0_cpu.md" --title "Rule 110, t = 0 (retrieval across eviction), CPU"
echo "[rule110_t0_cpu] figure: $out/rule110_t0_cpu.png"
echo "[rule110_t0_cpu] table: $out/rule110_t0_cpu.md"
