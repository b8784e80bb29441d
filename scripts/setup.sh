#!/usr/bin/env bash
# Sets up hypnos on a fresh Debian machine and builds it; safe to rerun (each step is skipped when done).
#   scripts/setup.sh            # apt packages, .venv with the pinned torch wheel, configure, build
# Environment: HYPNOS_TORCH_VERSION (default 2.11.0), HYPNOS_CUDA (AUTO|ON|OFF, default AUTO),
#   HYPNOS_JOBS (default 2), HYPNOS_BUILD_DIR (default build), HYPNOS_SKIP_APT=1 to skip apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
torch_version=${HYPNOS_TORCH_VERSION:-2.11.0}
build_dir=${HYPNOS_BUILD_DIR:-build}
jobs=${HYPNOS_JOBS:-2}

say() { echo "[setup] $*"; }

# 1. Debian packages (docs/design.md section 4), installed only when one is missing.
packages=(build-essential cmake ninja-build ccache git python3-venv libyaml-cpp-dev libspdlog-dev
          nlohmann-json3-dev libgtest-dev libgloo-dev clang-format)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ] && [ "${HYPNOS_SKIP_APT:-0}" != 1 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi

# 2. The project's Python environment: LibTorch comes from the torch wheel (docs/design.md section 4).
python=python3
command -v "$python" >/dev/null || { echo "[setup] python3 not found" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$torch_version' else 1)" 2>/dev/null; then
  say "installing torch==$torch_version (several GB with its CUDA libraries; once)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "torch==$torch_version"
fi
# safetensors: the pretrained-model reference (bench/reference/pretrained_reference.py) writes and
# reads its checkpoints with it (the parity tests run it).
.venv/bin/python -c "import numpy, yaml, matplotlib, safetensors" 2>/dev/null ||
  .venv/bin/pip install -q numpy pyyaml matplotlib "safetensors==0.8.0"
# transformers: its Qwen2ForCausalLM is the oracle of an all-attention Jet-Nemotron (the parity tests).
.venv/bin/python -c "import transformers, sys; sys.exit(transformers.__version__ != '5.25.0')" 2>/dev/null ||
  .venv/bin/pip install -q "transformers==5.25.0"

# pytest runs the Python tests of the delta-rule op (tests/python/test_hypnos_ops.py); a .pth file
# makes python/hypnos_ops importable from the venv (it loads the op from this checkout's build).
.venv/bin/python -c "import pytest" 2>/dev/null || .venv/bin/pip install -q "pytest==9.2.0"
site_packages=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$root/python" >"$site_packages/hypnos_ops.pth"

# tokenizers: scripts/tokenize_gsm.py tokenises text with a pretrained model's own tokenizer, and its
# tests (pytest) build small tokenizers with it offline.
.venv/bin/python -c "import tokenizers, sys; sys.exit(tokenizers.__version__ != '0.23.3')" 2>/dev/null ||
  .venv/bin/pip install -q "tokenizers==0.23.3"

# 3. Configure and build (Release, ccache, CUDA when nvcc is found).
if [ ! -f "$build_dir/build.ninja" ]; then
  say "configuring $build_dir"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYPNOS_CUDA="${HYPNOS_CUDA:-AUTO}" \
        -DHYPNOS_PYTHON="$root/.venv/bin/python"
fi
say "building with $jobs jobs"
cmake --build "$build_dir" -j "$jobs"
say "done: $build_dir/hypnos"
