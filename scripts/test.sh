#!/usr/bin/env bash
# The test command (README.md, .ci/run): set up if needed, build, run every test with output on failure.
# Exits non-zero on any failure. Tests that need a GPU report themselves as skipped (never silently).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build_dir=${HYPNOS_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "${HYPNOS_JOBS:-2}" "$@"
