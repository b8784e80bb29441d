#!/usr/bin/env bash
# Reproduces the paper's GSM-Infinite sweep over sleep passes N (1, 2, 4, 6; docs/paper.md "Results to
# reproduce"): set-up, one resumable run per N from configs/gsm_infinite/hard_eviction.yaml (or
# --config sliding, --small), then the figure and markdown table of scripts/plot.py (accuracy per
# op, as the paper reports it).  scripts/reproduce_gsm_infinite.sh --help lists the options.
set -euo pipefail
source "$(dirname "$0")/reproduce_common.sh"
reproduce_sweep gsm_infinite hard_eviction 1,2,4,6 --buckets op= "$@"
