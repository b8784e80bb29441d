#!/usr/bin/env bash
# Run directories from the command line: `hypnos train` into an existing run without --resume
# exits 2 and changes nothing; a resume that changes a non-resumable key (model.d_model) exits 2
# naming the key with both values and changes nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

snapshot() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

expect_status 0 train "$SCRATCH/run" train.steps=10
before=$(snapshot "$SCRATCH/run")

expect_status 2 train "$SCRATCH/run" train.steps=10
grep -q "already holds a run: pass --resume" "$SCRATCH/run.err" || fail "no 'already holds a run'"
[[ $(snapshot "$SCRATCH/run") == "$before" ]] || fail "the refused run changed the directory"

expect_status 2 train "$SCRATCH/run" train.steps=20 model.d_model=64 --resume
grep -q "in keys that cannot change on resume: model.d_model: 32 -> 64 (" "$SCRATCH/run.err" ||
  fail "the refusal does not name model.d_model: $(cat "$SCRATCH/run.err")"
[[ $(snapshot "$SCRATCH/run") == "$before" ]] || fail "the refused resume changed the directory"
echo "run directory refusals: ok"
