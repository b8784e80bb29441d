#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then a Rule 110 training run with sleep on the default config
# (configs/rule110/default.yaml: the paper's 4-layer hybrid, N = 2 sleep passes per evicted window).
#   scripts/train_rule110.sh [--small] [key.path=value ...] [--out DIR]
# --small trains configs/rule110/small.yaml instead (sized for a 2-core CPU: minutes, not hours).
# Extra arguments go to `hypnos train`, e.g. sleep.n_passes=4 or run.device=cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
config=configs/rule110/default.yaml
if [[ ${1:-} == --small ]]; then
  config=configs/rule110/small.yaml
  shift
fi
# The default config is sized for a GPU. Without one (or with run.device=cpu), say so before the
# first step, which alone takes about a minute on a 2-core CPU.
if [[ $config == configs/rule110/default.yaml ]]; then
  on_cpu=0
  for arg in "$@"; do [[ $arg == run.device=cpu ]] && on_cpu=1; done
  if [[ $on_cpu == 0 ]] &&
    ! .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
      2>/dev/null; then
    on_cpu=1
  fi
  if [[ $on_cpu == 1 ]]; then
    cat >&2 <<'EOF'
[train_rule110] No GPU: configs/rule110/default.yaml is sized for one (56 s of training on an H100).
[train_rule110] On a 2-core CPU a step takes about a minute, so its 600 steps take about 10 hours; the
[train_rule110] trainer prints a line per step while steps are slow, with the time left.
[train_rule110] For a CPU run in minutes: scripts/train_rule110.sh --small
EOF
  fi
fi
exec "${HYPNOS_BUILD_DIR:-build}/hypnos" train "$config" "$@"
