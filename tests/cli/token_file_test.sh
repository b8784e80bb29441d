#!/usr/bin/env bash
# GSM-Infinite as text through a model's own tokenizer, end to end (docs/tasks.md 3.5): a tiny
# byte-level BPE tokenizer built offline with `tokenizers`, problems generated as text
# (`hypnos generate gsm_infinite --text`), tokenised by scripts/tokenize_gsm.py, two training steps
# of a tiny model on the token file and `hypnos eval` of the run; the records decoded in C++ equal
# `tokenizers`' decode; the same text file trains a word-level model through task.data_file; a
# token file checked against another tokenizer is refused naming both files.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

require_python token_file tokenizers

"$HYPNOS" generate gsm_infinite --text --n 6 task.length=zero task.op_max=2 >"$SCRATCH/gsm.jsonl"
[[ $(wc -l <"$SCRATCH/gsm.jsonl") -eq 6 ]] || fail "generate --text did not write 6 lines"
"$PYTHON" "$SOURCE_DIR/tests/python/tiny_tokenizer.py" "$SCRATCH/tok" "$SCRATCH/gsm.jsonl"
"$PYTHON" "$SOURCE_DIR/scripts/tokenize_gsm.py" --tokenizer "$SCRATCH/tok" \
  --out "$SCRATCH/gsm.tokens" --pad-token '<|pad|>' "$SCRATCH/gsm.jsonl" >"$SCRATCH/tokenize.out"
grep -q "6 records" "$SCRATCH/tokenize.out" || fail "tokenize: $(cat "$SCRATCH/tokenize.out")"

cat >"$SCRATCH/token.yaml" <<EOF2
run:
  seed: 0
  device: cpu
task:
  name: gsm_infinite
  token_file: $SCRATCH/gsm.tokens
  tokenizer: $SCRATCH/tok
model:
  d_model: 32
  n_heads: 2
  pattern: AGAG
sleep:
  n_passes: 1
  window: 128
train:
  steps: 2
  batch_size: 3
  eval_every: 0
  eval_examples: 6
  eval_batch_size: 3
  log_every: 1
  checkpoint_every: 0
  precision: fp32
schedule:
  kind: constant
EOF2
rc=0
"$HYPNOS" train "$SCRATCH/token.yaml" --out "$SCRATCH/run" \
  >"$SCRATCH/run.out" 2>"$SCRATCH/run.err" || rc=$?
[[ $rc -eq 0 ]] || fail "training on the token file exited $rc: $(tail -5 "$SCRATCH/run.err")"
[[ $(train_steps "$SCRATCH/run/metrics.jsonl" | wc -l) -eq 2 ]] || fail "not two train steps"
expect_status 0 eval_run eval "$SCRATCH/run"
grep -q '^op=1 ' "$SCRATCH/eval.out" || fail "eval has no op=1 bucket: $(cat "$SCRATCH/eval.out")"
grep -q '^all .* 6$' "$SCRATCH/eval.out" ||
  fail "eval did not score 6 problems: $(cat "$SCRATCH/eval.out")"

# Display: the records decoded in C++ equal tokenizers' decode of the same ids.
"$HYPNOS" generate gsm_infinite --text --n 6 task.token_file="$SCRATCH/gsm.tokens" \
  task.tokenizer="$SCRATCH/tok" >"$SCRATCH/decoded.jsonl"
"$PYTHON" - "$SCRATCH" <<'EOF2' || fail "C++ decode differs from tokenizers' decode"
import array, json, sys
from tokenizers import Tokenizer
d = sys.argv[1]
tok = Tokenizer.from_file(d + "/tok/tokenizer.json")
index = [json.loads(l) for l in open(d + "/gsm.index.jsonl")][1:]
ids = array.array("I"); ids.frombytes(open(d + "/gsm.tokens", "rb").read())
source = [json.loads(l) for l in open(d + "/gsm.jsonl")]
for rec, shown, src in zip(index, [json.loads(l) for l in open(d + "/decoded.jsonl")], source):
    a, s = rec["offset"], rec["offset"] + rec["answer_start"]
    assert shown["text"] == tok.decode(ids[a:s].tolist()) == src["prompt"], (shown, src)
    answer = ids[s:s + rec["answer_length"]].tolist()
    assert shown["completion"] == tok.decode(answer) == src["completion"]
EOF2

# The same problems, word-level, through task.data_file.
rc=0
"$HYPNOS" train "$SCRATCH/token.yaml" --out "$SCRATCH/words" task.token_file= task.tokenizer= \
  task.data_file="$SCRATCH/gsm.jsonl" task.length=zero task.max_len=1400 \
  >"$SCRATCH/words.out" 2>"$SCRATCH/words.err" || rc=$?
[[ $rc -eq 0 ]] || fail "training on task.data_file exited $rc: $(tail -5 "$SCRATCH/words.err")"
[[ $(train_steps "$SCRATCH/words/metrics.jsonl" | wc -l) -eq 2 ]] || fail "data_file: not two steps"

# Another tokenizer: refused before training, naming the index and the tokenizer file.
cp -r "$SCRATCH/tok" "$SCRATCH/tok2"
echo " " >>"$SCRATCH/tok2/tokenizer.json"
rc=0
"$HYPNOS" train "$SCRATCH/token.yaml" --out "$SCRATCH/bad" task.tokenizer="$SCRATCH/tok2" \
  >"$SCRATCH/bad.out" 2>"$SCRATCH/bad.err" || rc=$?
[[ $rc -ne 0 ]] || fail "a token file trained with another tokenizer"
grep -q "gsm.index.jsonl: tokenizer_sha256 .* differs from $SCRATCH/tok2/tokenizer.json" \
  "$SCRATCH/bad.err" || fail "the error does not name both files: $(cat "$SCRATCH/bad.err")"

# A truncated token file: refused naming it.
head -c 40 "$SCRATCH/gsm.tokens" >"$SCRATCH/short.tokens"
cp "$SCRATCH/gsm.index.jsonl" "$SCRATCH/short.index.jsonl"
rc=0
"$HYPNOS" train "$SCRATCH/token.yaml" --out "$SCRATCH/short" \
  task.token_file="$SCRATCH/short.tokens" >"$SCRATCH/short.out" 2>"$SCRATCH/short.err" || rc=$?
[[ $rc -ne 0 ]] || fail "a truncated token file trained"
grep -q "short.tokens: 40 bytes, expected n_tokens x 4" "$SCRATCH/short.err" ||
  fail "the error does not name the truncated file: $(cat "$SCRATCH/short.err")"
echo "token_file: ok"
