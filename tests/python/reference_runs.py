#!/usr/bin/env python3
"""Runs a reference script's command line several times in one process (torch imports once).
    python reference_runs.py SCRIPT ARGS_FILE
ARGS_FILE holds one command line per line (whitespace-separated arguments); each is run exactly as
`python SCRIPT ARGS...` would run it (runpy, __name__ == "__main__"). Stops at the first failure."""
import runpy
import sys

script, args_file = sys.argv[1], sys.argv[2]
with open(args_file) as f:
    runs = [line.split() for line in f if line.strip()]
for args in runs:
    sys.argv = [script] + args
    runpy.run_path(script, run_name="__main__")
