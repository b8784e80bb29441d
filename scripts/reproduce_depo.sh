#!/usr/bin/env bash
# Reproduces the paper's Depo sweep over sleep passes N (1, 2, 4; docs/paper.md "Results to reproduce"):
# set-up, one resumable run per N from configs/depo/paper.yaml (or --config, --small), then the
# figure and markdown table of scripts/plot.py (answer loss per k, the paper's metric; --metric
# exact for accuracy).  scripts/reproduce_depo.sh --help lists the options.
set -euo pipefail
source "$(dirname "$0")/reproduce_common.sh"
reproduce_sweep depo paper 1,2,4 --metric ce "$@"
