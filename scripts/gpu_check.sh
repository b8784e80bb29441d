#!/usr/bin/env bash
# One prepared run on a GPU machine: build with the CUDA kernels, run the GPU tests,
# the kernel and training benchmarks (with the reference baseline in the same run) and a short GPU
# training run. Logs go to $OUT (default ./gpu-out). Each stage has its own time limit so that a slow one
# cannot eat the others; a stage that fails is reported and the script goes on.
# A machine whose image lacks the Debian build dependencies (yaml-cpp, spdlog, gtest, gloo headers) needs
# them in .gpu-kit/ (ignored by git): a prepare.sh that exports their prefix, and their .deb files.
#   scripts/gpu_check.sh [stage ...]
# stages: build | prebuilt, tests tests_fp32 sanitize slices128 kernels_bench fla_compare kernels_ab
#         kernels_alt kernels_slices kernels_output kernels_profile ncu ncu_stalls ncu_layers layers_bench
#         layers_ab train_bench train_bench_unfused reference train nccl sweep
# `prebuilt` uses binaries built on the CPU machine (same torch 2.11.0+cu130 wheel, kernels for sm_80
# and sm_90) carried in .gpu-bin/ (hypnos, hypnos_bench, hypnos_tests), against the GPU machine's own
# LibTorch, and falls back to `build` when they cannot load there: it saves the two-minute CUDA build
# per call. The benchmarks are the `hypnos_bench` program (bench/main.cpp).
set -uo pipefail
cd "$(dirname "$0")/.."
# Every log goes to $out/all, which is packed into logs.tgz at the end (one file to bring back), and
# the main logs are also copied beside it.
top=${OUT:-gpu-out}
out=$top/all
mkdir -p "$out"
finish() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
  tar czf "$top/logs.tgz" --exclude=checkpoints -C "$out" .
  cat "$out/gpu.txt" >> "$out/stages.log"
  cat "$out/layers_bench.log" >> "$out/stages.log" 2> /dev/null
  for f in stages.log tests.log tests_fp32.log train_bench.log train_bench_unfused.log \
    reference.log kernels_bench.log fla_compare.log kernels_ab.log kernels_alt.log kernels_profile.log layers_ab.log; do
    if [[ -f $out/$f ]]; then cp "$out/$f" "$top/"; fi
  done
  rm -rf "$out"
}
trap finish EXIT
stages=${*:-build tests kernels_bench train_bench reference tests_fp32 train}
source .gpu-kit/prepare.sh > "$out/prepare.log" 2>&1 || { cat "$out/prepare.log"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
bin=build-gpu/hypnos
bench=build-gpu/hypnos_bench

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
    prebuilt)
      mkdir -p build-gpu/tests
      # hypnos is needed; hypnos_bench (bench stages), hypnos_tests (test stages), hypnos_bench_base
      # (the _ab stages) and hypnos_bench_alt* (kernels_alt: any number of variants) when carried,
      # each as is or gzipped (NAME.gz, to keep what is copied to the GPU machine small).
      alts=$(cd .gpu-bin && ls hypnos_bench_alt* 2> /dev/null | sed 's/\.gz$//' | sort -u)
      for f in hypnos hypnos_bench tests/hypnos_tests hypnos_bench_base libhypnos_ops_python.so \
        $alts; do
        name=$(basename "$f")
        if [[ -f .gpu-bin/$name.gz ]]; then gunzip -c ".gpu-bin/$name.gz" > "build-gpu/$f"; fi
        if [[ -f .gpu-bin/$name ]]; then cp ".gpu-bin/$name" "build-gpu/$f"; fi
        if [[ -f build-gpu/$f ]]; then chmod +x "build-gpu/$f"; fi
      done
      torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
      export LD_LIBRARY_PATH="$torch_lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      if ldd build-gpu/hypnos | grep -q "not found" ||
        ! build-gpu/hypnos --help > "$out/prebuilt.log" 2>&1; then
        ldd build-gpu/hypnos >> "$out/prebuilt.log" 2>&1
        echo "prebuilt binaries do not load here: building" | tee -a "$out/stages.log"
        trap - EXIT
        exec bash "$0" build ${stages/prebuilt/}
      fi
      echo "stage prebuilt: binaries from .gpu-bin load" | tee -a "$out/stages.log" ;;
    build)
      stage configure 120 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYPNOS_CUDA=ON \
        -DHYPNOS_HEADER_CHECK=OFF -DHYPNOS_PYTHON="$(command -v python3)" &&
        stage build 300 ninja -C build-gpu -j "$(nproc)" hypnos_cli hypnos_bench hypnos_tests \
          hypnos_ops_python || exit 1 ;;
    tests)
      stage tests 150 build-gpu/tests/hypnos_tests --gtest_filter='*Cuda*:GdnMmaLayout*' ;;
    tests_fp32)  # the CUDA-core kernels, kept as the fallback of the tensor-core path (the tests
      # stage runs these too: the sweep has every bf16 case on both kernel families)
      stage tests_fp32 90 build-gpu/tests/hypnos_tests \
        --gtest_filter='Shapes/*_fp32kernels*:*TensorCoreScansMatchFp32Kernels*' ;;
    train_bench)
      stage train_bench 120 "$bench" train --device cuda --batch 512 --passes 1,2,4 --repeats 10 \
        --profile ;;
    train_bench_unfused)  # the same step with the layer ops as ATen compositions: the A/B baseline
      stage train_bench_unfused 120 "$bench" train --device cuda --batch 512 \
        --passes 1,2,4 --repeats 10 --modes graph model.fused_ops=false ;;
    reference)
      stage reference 90 python3 bench/reference/train_bench.py --device cuda --batch 512 \
        --passes 1,2,4 --repeats 10 --profile ;;
    kernels_bench)
      stage kernels_bench 120 "$bench" kernels --fp32-too ;;
    kernels_ab)  # the kernel bench of a second build carried as .gpu-bin/hypnos_bench_base (e.g. the
      # parent commit): an A/B of a kernel change on the same card in the same call
      stage kernels_ab 120 build-gpu/hypnos_bench_base kernels --no-baseline ;;
    slices128)  # racecheck / memcheck of the whole-head scans on a two-chunk D = 128 shape (the
      # tests stage runs every width: GatedDeltaRuleCuda.EveryScanSliceWidthMatches)
      stage racecheck_slice128 90 compute-sanitizer --tool racecheck \
        --error-exitcode 1 build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T65_D128_bf16*_slice128'
      stage memcheck_slice128 60 compute-sanitizer --tool memcheck \
        --error-exitcode 1 build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T65_D128_bf16*_slice128' ;;
    kernels_slices)  # the scans' CTA widths forced (model.gdn_scan_slice), against the
      # automatic choice of kernels_bench
      for width in 32 64 128; do
        stage "kernels_slice$width" 120 "$bench" kernels --no-baseline --profile \
          "model.gdn_scan_slice=$width"
      done ;;
    kernels_output)  # where the tensor-core forward computes o (model.gdn_forward_output): in the
      # scan or in the separate output kernel, at the long single sequence, a full batch and the
      # Jet-Nemotron window
      for shape in 1,16384,16,128 8,4096,16,128 8,2000,12,96,256; do
        for where in scan separate; do
          stage "kernels_output_${where}_${shape//,/x}" 90 "$bench" kernels --no-baseline \
            --shape "$shape" "model.gdn_forward_output=$where"
        done
      done ;;
    kernels_alt)  # the kernel bench of further builds (.gpu-bin/hypnos_bench_alt*: variants of the
      # change)
      for alt in build-gpu/hypnos_bench_alt*; do
        stage "kernels_$(basename "$alt" | sed 's/^hypnos_bench_//')" 120 "$alt" kernels \
          --no-baseline --profile
      done ;;
    layers_ab)  # the layers bench of the second build (.gpu-bin/hypnos_bench_base), same call
      stage layers_ab 60 build-gpu/hypnos_bench_base layers ;;
    ncu)  # hardware counters (Nsight Compute) of the delta-rule kernels, one launch each, at
      # NCU_SHAPE (B,T,H,D; default 8,1024,16,128)
      for k in gdn_chunk_prep_tc_kernel gdn_chunk_fwd_scan_tc_kernel gdn_chunk_bwd_scan_tc_kernel \
        gdn_chunk_bwd_tc_kernel; do
        stage "ncu_$k" 60 ncu --kernel-name "regex:$k" --launch-count 1 --section SpeedOfLight \
          --section Occupancy --section LaunchStats --section WarpStateStats \
          --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
          "$bench" kernels --shape "${NCU_SHAPE:-8,1024,16,128}" --no-baseline --reps 1
      done ;;
    ncu_stalls)  # why the delta-rule kernels' warps wait (stall reasons per issued instruction),
      # one launch each at NCU_SHAPE
      stalls=barrier,long_scoreboard,short_scoreboard,mio_throttle,math_pipe_throttle,wait,
      stalls+=not_selected,lg_throttle,dispatch_stall,no_instruction,membar,sleeping,tex_throttle
      metrics=$(echo "$stalls" | tr ',' '\n' |
        sed 's/.*/smsp__average_warps_issue_stalled_&_per_issue_active.ratio/' | paste -sd,)
      for k in gdn_chunk_prep_tc_kernel gdn_chunk_fwd_scan_tc_kernel gdn_chunk_bwd_scan_tc_kernel \
        gdn_chunk_bwd_tc_kernel; do
        stage "ncu_stalls_$k" 60 ncu --kernel-name "regex:$k" --launch-count 1 --metrics "$metrics" \
          "$bench" kernels --shape "${NCU_SHAPE:-8,1024,16,128}" --no-baseline --reps 1
      done ;;
    ncu_layers)  # the same counters for the fused layer kernels (conv + SiLU) at one window's shapes
      for k in conv_silu_fwd_kernel conv_silu_bwd_pre_kernel conv_silu_bwd_input_kernel; do
        stage "ncu_$k" 60 ncu --kernel-name "regex:$k" --launch-count 1 --section SpeedOfLight \
          --section Occupancy --section LaunchStats --section WarpStateStats \
          --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
          --section InstructionStats "$bench" layers --reps 1
      done ;;
    kernels_profile)  # time per kernel (Kineto) of one forward and one forward+backward per shape
      stage kernels_profile 90 "$bench" kernels --no-baseline --reps 10 --profile ;;
    layers_bench)  # each fused layer kernel beside the ATen composition it replaces
      stage layers_bench 60 "$bench" layers ;;
    train)
      stage train 90 "$bin" train configs/rule110/default.yaml --out "$out/rule110_gpu" \
        train.steps=100 train.eval_every=50 train.checkpoint_every=50 ;;
    nccl)  # a one-rank launch joins a ProcessGroupNCCL: broadcast, bucketed allreduce, barrier
      HYPNOS_BINARY=$bin stage nccl 90 scripts/launch.sh --nproc 1 train configs/rule110/small.yaml \
        --out "$out/rule110_nccl" run.device=cuda train.steps=20 train.eval_every=10 \
        train.checkpoint_every=10 && grep -h -i "nccl\|distributed\|step" "$out/rule110_nccl/train.log" |
        tail -n 5 ;;
    sanitize)  # memcheck and racecheck over the short-sequence shapes (partial chunks), and
      # racecheck over two chunks (the scans refill their tiles) at the 32- and 64-column widths
      stage memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T24_*:Shapes/*T37_D128_bf16*'
      stage racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T24_D64_bf16_h0*:Shapes/*T65_D64_bf16_h0*'
      stage racecheck_slice64 90 compute-sanitizer --tool racecheck \
        --error-exitcode 1 build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T65_D128_bf16_h0*_slice64'
      # every head-dim pair other than K = V in {64, 128}, two chunks with a tail
      stage memcheck_head_dims 240 compute-sanitizer --tool memcheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T65_K*'
      stage racecheck_head_dims 300 compute-sanitizer --tool racecheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='Shapes/*T65_K*_bf16*'
      # packed sequences (cu_seqlens): CTAs past a short sequence's chunks, sequences of 1 token
      stage memcheck_packed 90 compute-sanitizer --tool memcheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='GatedDeltaRuleCuda.AutoRunsPackedSequencesOnTheKernels'
      stage racecheck_packed 150 compute-sanitizer --tool racecheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='GatedDeltaRuleCuda.AutoRunsPackedSequencesOnTheKernels'
      stage memcheck_fused 150 compute-sanitizer --tool memcheck --error-exitcode 1 \
        build-gpu/tests/hypnos_tests --gtest_filter='GdnFusedCuda.*:RopeCuda.*:SwiGluCuda.*' ;;
    fla_compare)  # hypnos's op against fla's in one process, every row of the kernels issue
      # (bench/fla_compare.py). fla's wheels (fla-core, flash-linear-attention: pure Python on the
      # torch wheel's Triton) and einops, which fla imports, come carried in .gpu-wheels/
      # (`pip download --no-deps -d .gpu-wheels fla-core flash-linear-attention einops`, on the CPU
      # machine); on Hopper fla's gated backward needs its
      # TRITON_ABOVE_3_7_1 flag set (fla issue 640), which the table's header then states.
      python3 -m pip install --no-deps --no-index .gpu-wheels/*.whl > "$out/fla_install.log" 2>&1 ||
        echo "fla wheels did not install (see fla_install.log)" | tee -a "$out/stages.log"
      hopper=$(python3 -c 'import torch; print(torch.cuda.get_device_capability()[0] == 9)')
      export HYPNOS_OPS_LIBRARY=build-gpu/libhypnos_ops_python.so PYTHONPATH=python
      stage fla_compare 420 python3 bench/fla_compare.py \
        $([[ $hopper == True ]] && echo --fla-hopper-flag) ;;
    sweep)  # the Rule 110 sweep of the default config (t = 12, 600 steps of 512) at N = 1, 2, 4
      stage sweep 300 scripts/reproduce_rule110.sh --config default --passes 1,2,4 --hypnos "$bin" \
        "$out/rule110_sweep" ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
