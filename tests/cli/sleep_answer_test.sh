#!/usr/bin/env bash
# `hypnos sleep` then `hypnos answer`, each its own process, on a tiny run trained on Rule 110 (AGAG,
# N = 2, windows of 12): the answer read from the saved memory equals the greedy answer of one
# uninterrupted `hypnos score` pass over the document, the question and the answer. A memory is
# refused by another model (other weights) and by a question that does not fit the window.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

require_python sleep_answer torch safetensors
expect_status 0 train "$SCRATCH/run" train.steps=10
expect_status 0 train "$SCRATCH/other" train.steps=10 run.seed=1

# Two Rule 110 examples: the document is their first 30 tokens (two full windows of 12 and 6
# pending), the question the next 3; 3 new tokens still fit the window (6 + 3 + 2 <= 12).
"$HYPNOS" generate rule110 --n 2 task.t=4 task.width=12 >"$SCRATCH/examples.jsonl"
"$PYTHON" - "$SCRATCH" <<'PY'
import json, sys
scratch = sys.argv[1]
rows = [json.loads(l)["tokens"] for l in open(f"{scratch}/examples.jsonl")]
assert all(len(r) >= 33 for r in rows), [len(r) for r in rows]
with open(f"{scratch}/context.txt", "w") as f:
    for r in rows: f.write(" ".join(map(str, r[:30])) + "\n")
with open(f"{scratch}/question.txt", "w") as f:
    for r in rows: f.write(" ".join(map(str, r[30:33])) + "\n")
PY

"$HYPNOS" sleep "$SCRATCH/run" --context "$SCRATCH/context.txt" --out "$SCRATCH/memory.safetensors" \
  >"$SCRATCH/sleep.out" 2>"$SCRATCH/sleep.err" || fail "sleep failed: $(cat "$SCRATCH/sleep.err")"
grep -q "slept on 2 windows of 12 tokens (N = 2) for 2 sequences; 6 tokens pending" \
  "$SCRATCH/sleep.out" || fail "unexpected sleep summary: $(cat "$SCRATCH/sleep.out")"
"$HYPNOS" answer "$SCRATCH/run" --memory "$SCRATCH/memory.safetensors" \
  --question "$SCRATCH/question.txt" --max-new 3 --out "$SCRATCH/answer_logits.safetensors" \
  >"$SCRATCH/answer.out" 2>"$SCRATCH/answer.err" ||
  fail "answer failed: $(cat "$SCRATCH/answer.err")"
[[ $(wc -l <"$SCRATCH/answer.out") == 2 ]] || fail "expected one answer line per sequence"

# The uninterrupted run: document + question + answer in one score pass; its logits at the last
# question position and at each answer position but the last must be those the answer was chosen
# from (so its greedy choice is the answer).
paste -d' ' "$SCRATCH/context.txt" "$SCRATCH/question.txt" "$SCRATCH/answer.out" >"$SCRATCH/all.txt"
"$HYPNOS" score "$SCRATCH/run" --tokens "$SCRATCH/all.txt" --out "$SCRATCH/logits.safetensors" \
  >"$SCRATCH/score.out" 2>&1 || fail "score failed: $(cat "$SCRATCH/score.out")"
"$PYTHON" - "$SCRATCH" <<'PY' || fail "the answer differs from the uninterrupted run's"
import sys
from safetensors.torch import load_file
scratch = sys.argv[1]
logits = load_file(f"{scratch}/logits.safetensors")["logits"][:, 32:35].double()
chosen_from = load_file(f"{scratch}/answer_logits.safetensors")["logits"].double()
answers = [list(map(int, l.split())) for l in open(f"{scratch}/answer.out")]
greedy = logits.argmax(-1).tolist()
error = ((chosen_from - logits).norm() / logits.norm()).item()
print("answer", answers, "score's greedy", greedy, "relative error of the logits", error)
sys.exit(0 if greedy == answers and error <= 1e-5 else 1)
PY

# Another model's weights: refused, naming the difference.
rc=0
"$HYPNOS" answer "$SCRATCH/other" --memory "$SCRATCH/memory.safetensors" \
  --question "$SCRATCH/question.txt" >/dev/null 2>"$SCRATCH/other.err" || rc=$?
[[ $rc == 1 ]] || fail "another model's answer exited $rc, expected 1"
grep -q "the model's weights differ" "$SCRATCH/other.err" ||
  fail "the refusal does not name the weights: $(cat "$SCRATCH/other.err")"
# A question that cannot fit the window: a usage error naming the sizes.
expect_status 2 "$HYPNOS" answer "$SCRATCH/run" --memory "$SCRATCH/memory.safetensors" \
  --question "$SCRATCH/question.txt" --max-new 5
# Not a memory file.
rc=0
"$HYPNOS" answer "$SCRATCH/run" --memory "$SCRATCH/logits.safetensors" \
  --question "$SCRATCH/question.txt" >/dev/null 2>"$SCRATCH/notmem.err" || rc=$?
[[ $rc == 1 ]] && grep -q "is not a hypnos memory file" "$SCRATCH/notmem.err" ||
  fail "a logits file was taken for a memory (exit $rc): $(cat "$SCRATCH/notmem.err")"
# A Hugging Face checkpoint with its tokenizer: answer prints text, the tokenizers library's decoding
# of the ids the same checkpoint answers without its tokenizer; so does a run started from it.
"$PYTHON" "$SOURCE_DIR/bench/reference/pretrained_reference.py" --make-tiny jet_nemotron \
  "$SCRATCH/jet" --vocab 300 >/dev/null
cp -r "$SCRATCH/jet" "$SCRATCH/jet_ids"
"$PYTHON" "$SOURCE_DIR/tests/python/tiny_tokenizer.py" "$SCRATCH/jet" --vocab-size 300 >/dev/null
printf '%s\n' "5 17 200 3 99 42 7 7 130 64 1 250 18 77 3 0 9 31 45 120 6 222" >"$SCRATCH/jet_context.txt"
printf '%s\n' "8 8 100" >"$SCRATCH/jet_question.txt"
for dir in jet jet_ids; do
  "$HYPNOS" sleep "$SCRATCH/$dir" --context "$SCRATCH/jet_context.txt" \
    --out "$SCRATCH/$dir.memory" sleep.window=16 sleep.loop_layers=[1,5] >/dev/null ||
    fail "sleep on $dir failed"
  "$HYPNOS" answer "$SCRATCH/$dir" --memory "$SCRATCH/$dir.memory" \
    --question "$SCRATCH/jet_question.txt" --max-new 4 >"$SCRATCH/$dir.answer" 2>/dev/null ||
    fail "answer on $dir failed"
done
"$PYTHON" - "$SCRATCH" <<'PY' || fail "the text answer is not the decoding of the ids"
import sys
from tokenizers import Tokenizer
scratch = sys.argv[1]
ids = list(map(int, open(f"{scratch}/jet_ids.answer").read().split()))
text = open(f"{scratch}/jet.answer").read()[:-1]  # the line's own newline
expected = Tokenizer.from_file(f"{scratch}/jet/tokenizer.json").decode(ids)
print("ids", ids, "text", repr(text), "tokenizers", repr(expected))
sys.exit(0 if len(ids) == 4 and text == expected else 1)
PY
# A run started from that checkpoint (model.from, no steps) answers in text too, through the
# tokenizer of its model.from: the same text as the checkpoint itself.
"$HYPNOS" train "$TINY" --out "$SCRATCH/jet_run" model.from="$SCRATCH/jet" train.steps=0 \
  train.eval_examples=0 sleep.window=16 sleep.loop_layers=[1,5] >/dev/null 2>&1 ||
  fail "a run from the checkpoint did not start"
"$HYPNOS" sleep "$SCRATCH/jet_run" --context "$SCRATCH/jet_context.txt" \
  --out "$SCRATCH/jet_run.memory" >/dev/null 2>&1 || fail "sleep on the run failed"
"$HYPNOS" answer "$SCRATCH/jet_run" --memory "$SCRATCH/jet_run.memory" \
  --question "$SCRATCH/jet_question.txt" --max-new 4 >"$SCRATCH/jet_run.answer" 2>/dev/null ||
  fail "answer on the run failed"
cmp -s "$SCRATCH/jet_run.answer" "$SCRATCH/jet.answer" ||
  fail "the run does not answer in its model.from's text: $(cat "$SCRATCH/jet_run.answer")"
echo "sleep_answer: ok"
