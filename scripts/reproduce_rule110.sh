#!/usr/bin/env bash
# Reproduces the paper's Rule 110 sweep over sleep passes N (1, 2, 3, 4; docs/paper.md "Results to
# reproduce"): set-up, one resumable run per N from configs/rule110/paper_t32.yaml (or --config,
# --small), then the figure and markdown table of scripts/plot.py (exact accuracy).
#   scripts/reproduce_rule110.sh --help lists the options.
set -euo pipefail
source "$(dirname "$0")/reproduce_common.sh"
reproduce_sweep rule110 paper_t32 1,2,3,4 "$@"
