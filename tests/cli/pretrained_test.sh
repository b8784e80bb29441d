#!/usr/bin/env bash
# `hypnos train CONFIG model.from=DIR` on a tiny Jet-Nemotron checkpoint written by the reference of
# the pretrained families: the model config.json describes is built, the load report printed, and
# the run trains (with fp32 weights, and with bf16 ones loaded into a bf16 model); a config.json
# with a missing field stops with exit code 2 naming it, and a checkpoint lacking a shard stops
# naming the shard. `hypnos score` on the single-file and the sharded checkpoint, plain and with
# sleep, gives the reference's logits (relative error <= 1e-5).
# `hypnos score` on the run directory scores its newest checkpoint with the run's sleep keys: the
# reference, given the checkpoint's weights under the source config.json, computes the same logits;
# on a run of hypnos's own model, sleep with one pass over one window scores as the plain forward.
# `hypnos export` writes a run as a Hugging Face directory that scores as the run (fp32 and bf16).
# The paper's pretrained configs are run end to end by tests/cli/reproduce_pretrained_test.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

require_python pretrained torch safetensors
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
# bf16 weights (train.param_dtype): the checkpoint loads into a model built in bf16; the loss of
# step 1 (before any update) is the fp32 run's to bf16 precision.
expect_status 0 train "$SCRATCH/run_bf16" model.from="$SCRATCH/jet" train.steps=2 \
  sleep.loop_layers=[1,5] train.param_dtype=bf16 train.precision=bf16
grep -q "load report for $SCRATCH/jet: ok, 98 tensors loaded" "$SCRATCH/run_bf16.out" ||
  fail "no load report in bf16: $(cat "$SCRATCH/run_bf16.out")"
"$PYTHON" - "$SCRATCH/run/metrics.jsonl" "$SCRATCH/run_bf16/metrics.jsonl" <<'EOF2' ||
import json, sys
first = [json.loads(open(f).readline())["loss"] for f in sys.argv[1:]]
print(f"  step-1 loss fp32 {first[0]:.5f}, bf16 weights {first[1]:.5f}")
sys.exit(0 if abs(first[1] - first[0]) <= 0.02 * abs(first[0]) else 1)
EOF2
  fail "the bf16 run's first loss is not the fp32 run's"

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

# A run directory: its newest checkpoint (step 2) and its sleep section (loop_layers [1, 5]).
"$HYPNOS" score "$SCRATCH/run" --tokens "$SCRATCH/tokens.txt" --plain \
  --out "$SCRATCH/run_plain.safetensors" >"$SCRATCH/score_run_plain.out"
grep -q "checkpoint step_00000002 (step 2)" "$SCRATCH/score_run_plain.out" ||
  fail "score does not name the run's checkpoint: $(cat "$SCRATCH/score_run_plain.out")"
"$HYPNOS" score "$SCRATCH/run" --tokens "$SCRATCH/tokens.txt" sleep.n_passes=2 sleep.window=8 \
  --out "$SCRATCH/run_n2.safetensors" >"$SCRATCH/score_run_n2.out"
grep -q "sleep N = 2, window 8" "$SCRATCH/score_run_n2.out" || fail "score ignores the overrides"
mkdir "$SCRATCH/finetuned"
cp "$SCRATCH/jet/config.json" "$SCRATCH/finetuned/"
cp "$SCRATCH/run/checkpoints/step_00000002/model.safetensors" "$SCRATCH/finetuned/"
cat >"$SCRATCH/run_runs.txt" <<EOF2
--logits $SCRATCH/finetuned $SCRATCH/tokens.txt $SCRATCH/ref_run_plain.safetensors
--logits $SCRATCH/finetuned $SCRATCH/tokens.txt $SCRATCH/ref_run_n2.safetensors --sleep 2 --window 8 --loop 1,5
EOF2
"$PYTHON" "$SOURCE_DIR/tests/python/reference_runs.py" "$REF" "$SCRATCH/run_runs.txt" >/dev/null
"$PYTHON" - "$SCRATCH" <<'EOF2' || fail "score's logits of the run differ from the reference's"
import sys
from safetensors.torch import load_file
d = sys.argv[1]
for mine, ref in (("run_plain", "ref_run_plain"), ("run_n2", "ref_run_n2")):
    a = load_file(f"{d}/{mine}.safetensors")["logits"].double()
    b = load_file(f"{d}/{ref}.safetensors")["logits"].double()
    err = ((a - b).norm() / b.norm()).item()
    print(f"score {mine}: relative error {err:.3g} against the reference")
    assert err <= 1e-5, err
# two training steps moved the weights: what was scored is the run's model, not the pretrained one
tuned = load_file(f"{d}/run_plain.safetensors")["logits"]
assert (tuned - load_file(f"{d}/plain.safetensors")["logits"]).abs().max() > 0
EOF2

# `hypnos export`: the run's newest checkpoint as a Hugging Face directory (fp32, two shards) is
# the source's config.json, the weights and the source's other files, and scores as the run did;
# a bf16 run exported in bf16 (the default) scores as the run, bit for bit.
echo '{"max_new_tokens": 4}' >"$SCRATCH/jet/generation_config.json"
"$HYPNOS" export "$SCRATCH/run" --out "$SCRATCH/exported" --dtype fp32 --shards 2 \
  >"$SCRATCH/export.out"
cmp -s "$SCRATCH/jet/config.json" "$SCRATCH/exported/config.json" ||
  fail "the export's config.json is not the source's"
cmp -s "$SCRATCH/jet/generation_config.json" "$SCRATCH/exported/generation_config.json" ||
  fail "the export lacks the source's other files: $(ls "$SCRATCH/exported")"
[[ -f $SCRATCH/exported/model-00002-of-00002.safetensors &&
  -f $SCRATCH/exported/model.safetensors.index.json ]] || fail "no two shards: $(ls "$SCRATCH/exported")"
"$HYPNOS" score "$SCRATCH/exported" --tokens "$SCRATCH/tokens.txt" --plain \
  --out "$SCRATCH/exported_plain.safetensors" >/dev/null
expect_status 0 "$HYPNOS" export "$SCRATCH/run_bf16" --out "$SCRATCH/exported_bf16"
for d in run_bf16 exported_bf16; do
  "$HYPNOS" score "$SCRATCH/$d" --tokens "$SCRATCH/tokens.txt" --plain \
    --out "$SCRATCH/${d}_plain.safetensors" >/dev/null
done
"$PYTHON" - "$SCRATCH" <<'EOF2' || fail "an export does not score as its run"
import sys
from safetensors.torch import load_file
d = sys.argv[1]
for run, exported in (("run_plain", "exported_plain"), ("run_bf16_plain", "exported_bf16_plain")):
    a, b = (load_file(f"{d}/{x}.safetensors")["logits"] for x in (run, exported))
    assert a.equal(b), (run, (a - b).abs().max().item())
print("export: the fp32 and the bf16 exports score as their runs, bit for bit")
EOF2
expect_status 2 "$HYPNOS" export "$SCRATCH/run" --out "$SCRATCH/exported" 2>"$SCRATCH/exists.err"
grep -q "exists already" "$SCRATCH/exists.err" || fail "an existing --out is not refused"

# A run of hypnos's own model (AGAG, rule110): one sleep pass over one window is the plain forward.
train "$SCRATCH/own" train.steps=2
printf '%s\n' "0 1 1 0 1 0 0 1 1 1 0 1" "1 1 0 0 1 0 1 1 0 0 0 1" >"$SCRATCH/own_tokens.txt"
"$HYPNOS" score "$SCRATCH/own" --tokens "$SCRATCH/own_tokens.txt" --plain >"$SCRATCH/own_plain.out"
"$HYPNOS" score "$SCRATCH/own" --tokens "$SCRATCH/own_tokens.txt" sleep.n_passes=1 \
  sleep.window=12 >"$SCRATCH/own_n1.out"
grep -q "model AGAG" "$SCRATCH/own_plain.out" || fail "no AGAG run scored: $(cat "$SCRATCH/own_plain.out")"
plain_nll=$(sed -n 's/.*mean nll per token //p' "$SCRATCH/own_plain.out")
n1_nll=$(sed -n 's/.*mean nll per token //p' "$SCRATCH/own_n1.out")
[[ -n $plain_nll && $plain_nll == "$n1_nll" ]] ||
  fail "plain nll '$plain_nll' differs from one sleep pass's '$n1_nll'"
rc=0
"$HYPNOS" export "$SCRATCH/own" --out "$SCRATCH/own_exported" 2>"$SCRATCH/own_export.err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "trained from scratch" "$SCRATCH/own_export.err" &&
  [[ ! -e $SCRATCH/own_exported ]] ||
  fail "a from-scratch run's export is not refused: $(cat "$SCRATCH/own_export.err")"
rc=0
"$HYPNOS" score "$SCRATCH" --tokens "$SCRATCH/own_tokens.txt" >/dev/null 2>"$SCRATCH/nodir.err" || rc=$?
[[ $rc -ne 0 ]] && grep -q "is neither a run directory" "$SCRATCH/nodir.err" ||
  fail "a directory that is neither is not refused: $(cat "$SCRATCH/nodir.err")"
echo "pretrained model.from and score: ok"
