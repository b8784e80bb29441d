#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then a Rule 110 training run with sleep on the default config
# (configs/rule110/default.yaml: the paper's 4-layer hybrid, N = 2 sleep passes per evicted window).
#   scripts/train_rule110.sh [key.path=value ...] [--out DIR]
# Extra arguments go to `hypnos train`, e.g. sleep.n_passes=4 or run.device=cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${HYPNOS_BUILD_DIR:-build}/hypnos" train configs/rule110/default.yaml "$@"
