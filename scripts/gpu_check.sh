#!/usr/bin/env bash
# One prepared run on the GPU machine (the `device` tool): build with the CUDA kernels, run the GPU tests,
# the kernel and training benchmarks (with the reference baseline in the same run) and a short GPU
# training run. Logs go to $OUT (default ./gpu-out). Each stage has its own time limit so that a slow one
# cannot eat the others; a stage that fails is reported and the script goes on.
#   cp -r ../shared/device .gpu-kit   # once per checkout (ignored by git); carry .gpu-kit
#   scripts/gpu_check.sh [stage ...]
# stages: build tests tests_fp32 kernels_bench train_bench reference train
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
stages=${*:-build tests kernels_bench train_bench reference tests_fp32 train}
source .gpu-kit/prepare.sh > "$out/prepare.log" 2>&1 || { cat "$out/prepare.log"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
bin=build-gpu/hypnos

stage() {  # name, limit in seconds, command...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "stage $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$out/stages.log"
  tail -n 3 "$out/$name.log"
  return $rc
}

for s in $stages; do
  case $s in
    build)
      stage configure 120 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYPNOS_CUDA=ON \
        -DHYPNOS_HEADER_CHECK=OFF -DHYPNOS_PYTHON="$(command -v python3)" &&
        stage build 300 ninja -C build-gpu -j "$(nproc)" hypnos_cli hypnos_tests || exit 1 ;;
    tests)
      stage tests 90 build-gpu/tests/hypnos_tests --gtest_filter='*Cuda*:GdnMmaLayout*' ;;
    tests_fp32)  # the CUDA-core kernels, kept as the fallback of the tensor-core path
      HYPNOS_GDN_KERNEL=fp32 stage tests_fp32 90 build-gpu/tests/hypnos_tests --gtest_filter='*Cuda*' ;;
    train_bench)
      stage train_bench 90 "$bin" bench train --device cuda --batch 512 --passes 1,2,4 --repeats 10 ;;
    reference)
      stage reference 90 python3 bench/reference/train_bench.py --device cuda --batch 512 \
        --passes 1,2,4 --repeats 10 ;;
    kernels_bench)
      stage kernels_bench 120 "$bin" bench kernels --fp32-too ;;
    train)
      stage train 90 "$bin" train configs/rule110/default.yaml --out "$out/rule110_gpu" \
        train.steps=100 train.eval_every=50 train.checkpoint_every=50 ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
git rev-parse HEAD > "$out/commit.txt" 2>/dev/null || true
