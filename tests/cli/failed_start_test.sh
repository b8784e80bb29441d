#!/usr/bin/env bash
# A start that fails while writing its run directory (here events.jsonl cannot be opened: a
# directory is in its way; a full disk fails the same way) leaves no config.yaml or other run file
# behind, so that starting the run again, without --resume, is not refused. (A directory the failed
# start created itself is removed with it: tests/train/run_directory_test.cpp.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

run=$SCRATCH/run
mkdir -p "$run/events.jsonl"
rc=0
train "$run" train.steps=5 || rc=$?
[[ $rc == 1 ]] || fail "the start with an unwritable events.jsonl exited $rc, expected 1"
grep -q "events.jsonl" "$run.err" || fail "the error does not name events.jsonl: $(cat "$run.err")"
for f in config.yaml command.txt git_commit.txt metrics.jsonl train.log; do
  [[ ! -e $run/$f ]] || fail "the failed start left $f behind"
done
[[ -d $run/events.jsonl ]] || fail "the failed start removed a directory it did not create"
rmdir "$run/events.jsonl"
expect_status 0 train "$run" train.steps=5
grep -q '"event":"finish","step":5' "$run/events.jsonl" || fail "the second start did not train"

echo "a failed start leaves nothing behind: ok"
