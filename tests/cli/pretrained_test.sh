#!/usr/bin/env bash
# `hypnos train CONFIG model.from=DIR` on a tiny Jet-Nemotron checkpoint written by the reference of
# the pretrained families: the model config.json describes is built, the load report printed, and
# the run trains; a config.json with a missing field stops with exit code 2 naming it, and a
# checkpoint lacking a shard stops naming the shard.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PYTHON="$SOURCE_DIR/.venv/bin/python"
if [[ ! -x $PYTHON ]] || ! "$PYTHON" -c 'import torch, safetensors' 2>/dev/null; then
  echo "pretrained: skipped (no project venv with torch and safetensors: run scripts/setup.sh)"
  exit 0
fi
REF="$SOURCE_DIR/bench/reference/pretrained_reference.py"
"$PYTHON" "$REF" --make-tiny jet_nemotron "$SCRATCH/jet" >/dev/null
"$PYTHON" "$REF" --make-tiny jet_nemotron "$SCRATCH/sharded" --shards 2 >/dev/null

expect_status 0 train "$SCRATCH/run" model.from="$SCRATCH/jet" train.steps=2 sleep.loop_layers=[1,5]
grep -q "load report for $SCRATCH/jet: ok, 98 tensors loaded from 1 file(s)" "$SCRATCH/run.out" ||
  fail "no load report: $(cat "$SCRATCH/run.out")"
grep -q "lm_head.weight" "$SCRATCH/run.out" || fail "the report does not list the tied head"
[[ $(wc -l <"$SCRATCH/run/metrics.jsonl") -ge 2 ]] || fail "the run did not train two steps"
grep -q "pattern: \"JJASJJ\"" "$SCRATCH/run/config.yaml" || fail "config.yaml lacks the pattern"
grep -q "names: hf" "$SCRATCH/run/config.yaml" || fail "config.yaml lacks names: hf"

sed -i '/"hidden_size"/d' "$SCRATCH/sharded/config.json"
expect_status 2 train "$SCRATCH/bad" model.from="$SCRATCH/sharded"
grep -q "config.json: hidden_size: missing" "$SCRATCH/bad.err" ||
  fail "the config error does not name hidden_size: $(cat "$SCRATCH/bad.err")"

"$PYTHON" "$REF" --make-tiny jet_nemotron "$SCRATCH/noshard" --shards 2 >/dev/null
rm "$SCRATCH/noshard/model-00002-of-00002.safetensors"
rc=0
train "$SCRATCH/noshard_run" model.from="$SCRATCH/noshard" || rc=$?
[[ $rc -ne 0 ]] || fail "a checkpoint without its second shard trained"
grep -q "shard model-00002-of-00002.safetensors does not exist" "$SCRATCH/noshard_run.err" ||
  fail "the error does not name the shard: $(cat "$SCRATCH/noshard_run.err")"
echo "pretrained model.from: ok"
