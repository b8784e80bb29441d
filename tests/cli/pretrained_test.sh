#!/usr/bin/env bash
# `hypnos train CONFIG model.from=DIR` on a tiny Jet-Nemotron checkpoint written by the reference of
# the pretrained families: the model config.json describes is built, the load report printed, and
# the run trains; a config.json with a missing field stops with exit code 2 naming it, and a
# checkpoint lacking a shard stops naming the shard. `hypnos score` on the single-file and the
# sharded checkpoint, plain and with sleep, gives the reference's logits (relative error <= 1e-5).
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
printf '%s\n' "5 17 200 3 99 42 7 7 130 64 1 250 18 77 3 0 9 31 45 120 6 222" \
  "8 8 8 100 12 19 240 33 2 71 5 5 150 44 90 13 17 63 201 4 0 255" >"$SCRATCH/tokens.txt"
cat >"$SCRATCH/runs.txt" <<EOF2
--logits $SCRATCH/jet $SCRATCH/tokens.txt $SCRATCH/ref_plain.safetensors
--logits $SCRATCH/jet $SCRATCH/tokens.txt $SCRATCH/ref_n3.safetensors --sleep 3 --window 8 --loop 1,5
EOF2
"$PYTHON" "$SOURCE_DIR/tests/python/reference_runs.py" "$REF" "$SCRATCH/runs.txt" >/dev/null
"$HYPNOS" score "$SCRATCH/jet" --tokens "$SCRATCH/tokens.txt" --plain \
  --out "$SCRATCH/plain.safetensors" >"$SCRATCH/score_plain.out"
"$HYPNOS" score "$SCRATCH/jet" --tokens "$SCRATCH/tokens.txt" sleep.n_passes=3 \
  sleep.window=8 sleep.loop_layers=[1,5] --out "$SCRATCH/n3.safetensors" >"$SCRATCH/score_n3.out"
grep -q "mean nll per token" "$SCRATCH/score_n3.out" || fail "score prints no nll"
grep -q "window 2 (positions 16-20)" "$SCRATCH/score_n3.out" || fail "score prints no window means"
"$PYTHON" - "$SCRATCH" <<'EOF2' || fail "score's logits differ from the reference's"
import sys
from safetensors.torch import load_file
d = sys.argv[1]
for mine, ref in (("plain", "ref_plain"), ("n3", "ref_n3")):
    a = load_file(f"{d}/{mine}.safetensors")["logits"].double()
    b = load_file(f"{d}/{ref}.safetensors")["logits"].double()
    err = ((a - b).norm() / b.norm()).item()
    print(f"score {mine}: relative error {err:.3g} against the reference")
    assert err <= 1e-5, err
EOF2
rc=0
"$HYPNOS" score "$SCRATCH/jet" --tokens "$SCRATCH/tokens.txt" sleep.n_pases=2 >/dev/null 2>"$SCRATCH/typo.err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "did you mean sleep.n_passes" "$SCRATCH/typo.err" ||
  fail "a mistyped sleep key is not refused: $(cat "$SCRATCH/typo.err")"
echo "pretrained model.from and score: ok"
