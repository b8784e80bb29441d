#!/usr/bin/env bash
# A resume compares its config with the config of the checkpoint it resumes from, not only with the
# run's config.yaml: editing sleep.n_passes in the run's config.yaml and resuming from it exits 2
# naming the key with both values, and so does changing model.d_model (every other changed key is
# named too); nothing in the directory changes, so the trained checkpoints are never replaced.
# Resumable keys (train.steps) still change, and are recorded in events.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

snapshot() { (cd "$1" && find . -type f ! -name run.lock -print0 | sort -z | xargs -0 sha256sum); }

run=$SCRATCH/run
expect_status 0 train "$run" train.steps=20

# The run's own config.yaml, edited: n_passes 2 -> 3.
sed -i 's/^  n_passes: 2$/  n_passes: 3/' "$run/config.yaml"
grep -q '^  n_passes: 3$' "$run/config.yaml" || fail "could not edit config.yaml"
before=$(snapshot "$run")
rc=0
"$HYPNOS" train "$run/config.yaml" --out "$run" --resume >"$SCRATCH/edited.out" \
  2>"$SCRATCH/edited.err" || rc=$?
[[ $rc == 2 ]] || fail "resuming with an edited sleep.n_passes exited $rc, expected 2"
grep -q "cannot resume $run: the config differs from the config of checkpoint step_00000020 in keys that cannot change on resume: sleep.n_passes: 2 -> 3 (" \
  "$SCRATCH/edited.err" || fail "the refusal does not name sleep.n_passes: $(cat "$SCRATCH/edited.err")"
[[ $(snapshot "$run") == "$before" ]] || fail "the refused resume changed the directory"
sed -i 's/^  n_passes: 3$/  n_passes: 2/' "$run/config.yaml"

# A wider model (whose checkpoints would all fail their shape check): refused, both keys named.
before=$(snapshot "$run")
expect_status 2 train "$run" train.steps=30 model.d_model=64 sleep.n_passes=3 --resume
grep -q "model.d_model: 32 -> 64, sleep.n_passes: 2 -> 3 (" "$run.err" ||
  fail "the refusal does not name both keys: $(cat "$run.err")"
[[ $(snapshot "$run") == "$before" ]] || fail "the refused resume changed the directory"

# A resumable change goes through and is recorded.
expect_status 0 train "$run" train.steps=30 --resume
grep -q '"event":"resume","step":20,' "$run/events.jsonl" || fail "no resume from step 20"
grep -q '"event":"config_changed","change":"train.steps: 20 -> 30"' "$run/events.jsonl" ||
  fail "the change of train.steps is not in events.jsonl"
echo "resume checks the checkpoint's config: ok"
