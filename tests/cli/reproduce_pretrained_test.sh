#!/usr/bin/env bash
# scripts/reproduce_gsm_infinite.sh --model-dir end to end, offline: tiny Jet-Nemotron and Ouro
# checkpoints written by the reference of the pretrained families, given a tiny byte-level BPE
# tokenizer built with `tokenizers`; the paper's configs with tiny overrides (a handful of short
# problems, batches of 2, window 32). jet_nemotron_2b with N = 1, 2: the token files are made once
# with the checkpoint's tokenizer, each run trains train.epochs over them and evaluates every
# held-out problem, the table has one row per N and a column per op, the figure is a PNG; a rerun
# keeps the data and skips the runs. ouro_1p4b_sliding: stage 1 trains the inserted JetBlocks alone
# under hard eviction (every pretrained tensor leaves it bit for bit), stage 2 the whole model under
# sliding eviction for two epochs from stage 1's last checkpoint. Bad arguments stop with exit 2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

require_python reproduce_pretrained torch safetensors tokenizers matplotlib yaml
export HYPNOS_PYTHON=$PYTHON
SCRIPT="$SOURCE_DIR/scripts/reproduce_gsm_infinite.sh"
REF="$SOURCE_DIR/bench/reference/pretrained_reference.py"

# Problems of 40-60 words (op 1-2, medium), and the overrides that make every run tiny.
GEN=(task.d=2 task.op_max=2 task.length_min=40 task.length_max=60)
TINY=("${GEN[@]}" run.device=cpu train.batch_size=2 train.grad_accum=1 train.eval_every=0
  train.eval_batch_size=2 train.checkpoint_every=0 train.log_every=1 train.precision=fp32
  sleep.window=32)
"$HYPNOS" generate gsm_infinite --text --split train --n 20 "${GEN[@]}" >"$SCRATCH/text.jsonl"
"$PYTHON" "$SOURCE_DIR/tests/python/tiny_tokenizer.py" "$SCRATCH/tok" "$SCRATCH/text.jsonl"
for family in jet_nemotron ouro; do
  "$PYTHON" "$REF" --make-tiny "$family" "$SCRATCH/$family" --vocab 512 >/dev/null
  cp "$SCRATCH/tok/tokenizer.json" "$SCRATCH/$family/"
done

"$SCRIPT" --help >"$SCRATCH/help.out"
grep -q -- "--model-dir DIR" "$SCRATCH/help.out" || fail "--help does not document --model-dir"

# 1. Jet-Nemotron, N = 1, 2.
JET=("$SCRIPT" "$SCRATCH/jet_sweep" --model-dir "$SCRATCH/jet_nemotron" --config jet_nemotron_2b
  --passes 1,2 --problems 4 --eval-problems 4 --hypnos "$HYPNOS" "${TINY[@]}" sleep.loop_layers=[1,5])
"${JET[@]}" >"$SCRATCH/jet.log" 2>&1 || fail "the Jet-Nemotron sweep failed: $(tail -20 "$SCRATCH/jet.log")"
out="$SCRATCH/jet_sweep"
for split in train test; do
  grep -q '"n_records": 4' "$out/data/$split.index.jsonl" || fail "data/$split has not 4 records"
done
for n in 1 2; do
  run="$out/jet_nemotron_2b-n$n"
  grep -q '"event":"finish","step":2' "$run/events.jsonl" ||
    fail "N=$n did not finish at step 2 (one epoch of 4 problems in batches of 2)"
  grep -q "token_file: \"$out/data/train.tokens\"" "$run/config.yaml" || fail "N=$n: no token file"
  grep -q "^  n_passes: $n\$" "$run/config.yaml" || fail "N=$n: wrong sleep.n_passes"
  grep -q "load report for $SCRATCH/jet_nemotron: ok" "$SCRATCH/jet.log" || fail "no load report"
  grep '"kind":"eval"' "$run/metrics.jsonl" | tail -n 1 | grep -q '"all":{[^}]*"count":4}' ||
    fail "N=$n: the last evaluation did not score the 4 held-out problems"
done
table="$out/gsm_infinite-jet_nemotron_2b.md"
png="$out/gsm_infinite-jet_nemotron_2b.png"
grep -q '^| run | op=1 | op=2 | all | tokens |$' "$table" || fail "no per-op table: $(cat "$table")"
for n in 1 2; do
  grep -q "^| N=$n (jet_nemotron_2b-n$n) |" "$table" || fail "the table lacks N=$n: $(cat "$table")"
  grep -q "^| N=$n (jet_nemotron_2b-n$n) |" "$SCRATCH/jet.log" || fail "the table is not printed"
done
[[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "$png is no PNG"

"${JET[@]}" >"$SCRATCH/jet2.log" 2>&1 || fail "the rerun failed: $(tail -20 "$SCRATCH/jet2.log")"
[[ $(grep -c 'made, kept' "$SCRATCH/jet2.log") -eq 2 ]] || fail "the rerun made the data again"
[[ $(grep -c 'finished .*skipped' "$SCRATCH/jet2.log") -eq 2 ]] || fail "the rerun trained again"

# 2. Ouro, sliding: two stages per N, in the same folder (the same tokenizer: the data is kept).
"$SCRIPT" "$out" --model-dir "$SCRATCH/ouro" --config ouro_1p4b_sliding \
  --passes 2 --problems 4 --eval-problems 4 --hypnos "$HYPNOS" "${TINY[@]}" \
  model.inserted_jet_after=[0,2] model.ssm_heads=2 model.head_dim_k=16 model.head_dim_v=16 \
  >"$SCRATCH/ouro.log" 2>&1 || fail "the sliding sweep failed: $(tail -20 "$SCRATCH/ouro.log")"
[[ $(grep -c 'made, kept' "$SCRATCH/ouro.log") -eq 2 ]] || fail "the data was made again"
stage1="$out/ouro_1p4b_sliding-n2-stage1"
stage2="$out/ouro_1p4b_sliding-n2"
grep -q '"event":"finish","step":2' "$stage1/events.jsonl" || fail "stage 1 did not train one epoch"
grep -q '"event":"finish","step":4' "$stage2/events.jsonl" || fail "stage 2 did not train two epochs"
grep -q '^  eviction: hard$' "$stage1/config.yaml" && grep -q '^  trainable: inserted$' \
  "$stage1/config.yaml" || fail "stage 1 is not the Jet layers alone under hard eviction"
grep -q '^  eviction: sliding$' "$stage2/config.yaml" && grep -q '^  trainable: all$' \
  "$stage2/config.yaml" || fail "stage 2 is not the whole model under sliding eviction"
grep -q "\"event\":\"start\".*\"init_from\":\"$stage1/checkpoints/step_00000002\"" \
  "$stage2/events.jsonl" || fail "stage 2 did not start from stage 1's last checkpoint"
grep -q "^| N=2 (ouro_1p4b_sliding-n2) |" "$out/gsm_infinite-ouro_1p4b_sliding.md" ||
  fail "no table row for stage 2"
"$PYTHON" - "$SCRATCH/ouro/model.safetensors" "$stage1/checkpoints/step_00000002/model.safetensors" \
  <<'EOF2' || fail "stage 1 changed a pretrained tensor or left the JetBlocks as they were"
import sys
import numpy as np
from safetensors.numpy import load_file
ouro, stage1 = load_file(sys.argv[1]), load_file(sys.argv[2])
inserted = [k for k in stage1 if k.startswith("model.jet_layers.")]
assert inserted and set(stage1) == set(ouro) | set(inserted), sorted(set(stage1) ^ set(ouro))
for k in ouro:
    assert np.array_equal(stage1[k], ouro[k]), f"{k} changed in stage 1"
moved = [k for k in inserted if k.endswith("o_proj.weight") and np.abs(stage1[k]).max() > 0]
assert len(moved) == 2, f"the inserted blocks' o_proj did not move from zero: {moved}"
print(f"stage 1: {len(ouro)} pretrained tensors unchanged, {len(inserted)} inserted ones trained")
EOF2

# 3. Bad arguments: exit 2 before anything runs.
rc=0
"$SCRIPT" "$SCRATCH/none" --model-dir "$SCRATCH" --hypnos "$HYPNOS" >/dev/null 2>"$SCRATCH/nodir.err" ||
  rc=$?
[[ $rc -eq 2 ]] && grep -q "has no config.json" "$SCRATCH/nodir.err" ||
  fail "a --model-dir without config.json is not refused: $rc $(cat "$SCRATCH/nodir.err")"
rc=0
"$SCRIPT" "$SCRATCH/none" --model-dir "$SCRATCH/ouro" --small --hypnos "$HYPNOS" >/dev/null \
  2>"$SCRATCH/small.err" || rc=$?
[[ $rc -eq 2 ]] || fail "--small with --model-dir is not refused"
# A model whose vocabulary is below the tokenizer's is refused naming both sizes (config.json is
# all a dry run reads).
mkdir "$SCRATCH/small_vocab"
sed 's/"vocab_size": 512/"vocab_size": 256/' "$SCRATCH/jet_nemotron/config.json" \
  >"$SCRATCH/small_vocab/config.json"
cp "$SCRATCH/tok/tokenizer.json" "$SCRATCH/small_vocab/"
rc=0
"$HYPNOS" train "$SOURCE_DIR/configs/gsm_infinite/jet_nemotron_2b.yaml" --dry-run \
  model.from="$SCRATCH/small_vocab" task.token_file="$out/data/train.tokens" \
  task.eval_token_file="$out/data/test.tokens" train.eval_examples=4 sleep.loop_layers=[1,5] \
  >/dev/null 2>"$SCRATCH/vocab.err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "its vocabulary (256) is smaller than the task's (400)" "$SCRATCH/vocab.err" ||
  fail "a vocabulary below the tokenizer's is not refused: $rc $(cat "$SCRATCH/vocab.err")"
echo "reproduce_gsm_infinite --model-dir: ok"
