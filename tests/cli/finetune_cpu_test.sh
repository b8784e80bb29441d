#!/usr/bin/env bash
# scripts/finetune_gsm_infinite_cpu.sh end to end with tiny counts (48 problems, 4 pretraining steps,
# 2 fine-tuning steps, N = 1, 2): the data and the tokenizer are made once; the pretraining sees every
# problem in one window and its export is the fine-tuning's model.from; each fine-tuning run
# evaluates before its first step, and that evaluation is exactly the pretrained model's under the
# same eviction (`hypnos eval` of the pretraining run with the fine-tuning's window), the same for
# every N and for the control without JetBlocks: the inserted JetBlocks start as no-ops, and the
# export round trip changes nothing. The tables hold the step-0 and final rows; a rerun trains
# nothing, one with other problems is refused; bad arguments stop with exit 2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

require_python finetune_cpu torch safetensors tokenizers matplotlib yaml
export HYPNOS_PYTHON=$PYTHON
SCRIPT="$SOURCE_DIR/scripts/finetune_gsm_infinite_cpu.sh"
out="$SCRATCH/ft"
ARGS=("$out" --problems 48 --eval-problems 8 --pretrain-steps 4 --finetune-steps 2 --passes 1,2
  --hypnos "$HYPNOS" train.batch_size=4 train.eval_batch_size=8 train.eval_every=0
  train.checkpoint_every=0 train.log_every=1 schedule.warmup_steps=1)
"$SCRIPT" "${ARGS[@]}" >"$SCRATCH/ft.log" 2>&1 || fail "the script failed: $(tail -20 "$SCRATCH/ft.log")"

grep -q '"n_records": 48' "$out/data/train.index.jsonl" || fail "data/train has not 48 records"
grep -q '"n_records": 8' "$out/data/test.index.jsonl" || fail "data/test has not 8 records"
cmp -s "$out/data/tokenizer/tokenizer.json" "$out/ouro-pretrained/tokenizer.json" ||
  fail "the export does not carry the data's tokenizer"
grep -q '"event":"finish","step":4' "$out/pretrain/events.jsonl" || fail "the pretraining did not finish"
grep -q "^  from: \"\\?$out/ouro-random\"\\?$" "$out/pretrain/config.yaml" &&
  grep -q '^  window: 512$' "$out/pretrain/config.yaml" ||
  fail "the pretraining is not the random checkpoint with every problem in view"
for n in 1 2; do
  run="$out/ouro_small-n$n"
  grep -q '"event":"finish","step":2' "$run/events.jsonl" || fail "N=$n did not finish at step 2"
  grep -q "^  n_passes: $n\$" "$run/config.yaml" && grep -q '^  window: 24$' "$run/config.yaml" &&
    grep -q "^  from: \"\\?$out/ouro-pretrained\"\\?$" "$run/config.yaml" ||
    fail "N=$n is not the export under hard eviction with N = $n"
done
grep -q '"event":"finish","step":2' "$out/ouro_small-no_jet/events.jsonl" &&
  grep -q '^  inserted_jet_after: \[\]$' "$out/ouro_small-no_jet/config.yaml" ||
  fail "the control is not the export without JetBlocks, trained 2 steps"

# The step-0 evaluations: equal across N, and equal to the pretrained model's under window 24.
"$HYPNOS" eval "$out/pretrain" sleep.window=24 >"$SCRATCH/pretrained_w24.out" 2>/dev/null ||
  fail "hypnos eval of the pretraining failed"
"$PYTHON" - "$SCRATCH/pretrained_w24.out" "$out/ouro_small-n1" "$out/ouro_small-n2" \
  "$out/ouro_small-no_jet" <<'EOF' ||
import json, sys
expected = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for run in sys.argv[2:]:
    evals = [r for r in map(json.loads, open(run + "/metrics.jsonl")) if r.get("kind") == "eval"]
    assert [e["step"] for e in evals] == [0, 2], f"{run}: evaluations at {[e['step'] for e in evals]}"
    start = evals[0]["buckets"]
    for name, want in [("all", expected["overall"])] + list(expected["buckets"].items()):
        got = start[name]
        assert got["exact"] == want["exact_accuracy"], f"{run} {name}: {got} vs {want}"
        assert abs(got["ce"] - want["mean_ce"]) <= 1e-5 * abs(want["mean_ce"]), f"{run} {name}: {got} vs {want}"
print("step 0 of each N = the pretrained model under window 24:", expected["overall"])
EOF
  fail "the fine-tuning's starting evaluation is not the pretrained model's"

table="$out/gsm_infinite-ouro_small.md"
for row in "N=1 +JetBlocks (ouro_small-n1)" "N=2 +JetBlocks (ouro_small-n2)" \
  "N=1 no JetBlocks (ouro_small-no_jet)"; do
  grep -qF "| $row, step 0 | " "$table" && grep -qF "| $row | " "$table" ||
    fail "the table lacks the rows of $row: $(cat "$table")"
done
grep -q '^| run | op=1 | op=2 | all | tokens |$' "$out/gsm_infinite-pretrain.md" ||
  fail "no per-op table of the pretraining: $(cat "$out/gsm_infinite-pretrain.md")"
for png in "$out/gsm_infinite-ouro_small.png" "$out/gsm_infinite-pretrain.png"; do
  [[ $(head -c 8 "$png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "$png is no PNG"
done

"$SCRIPT" "${ARGS[@]}" >"$SCRATCH/ft2.log" 2>&1 || fail "the rerun failed: $(tail -20 "$SCRATCH/ft2.log")"
[[ $(grep -c 'finished .*skipped' "$SCRATCH/ft2.log") -eq 4 ]] || fail "the rerun trained again"
! grep -q 'problems ->\|tokenizer trained\|random Ouro' "$SCRATCH/ft2.log" || fail "the rerun made data again"

rc=0
"$SCRIPT" "${ARGS[@]}" --problems 40 >/dev/null 2>"$SCRATCH/other.err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "was made with other settings" "$SCRATCH/other.err" ||
  fail "a rerun with other problems was not refused: $rc $(cat "$SCRATCH/other.err")"
for bad in "--passes 0" "--passes 1,,2" "--problems many" "--finetune-steps 0" "--bogus"; do
  rc=0
  # shellcheck disable=SC2086
  "$SCRIPT" "$SCRATCH/bad" $bad --hypnos "$HYPNOS" >/dev/null 2>"$SCRATCH/bad.err" || rc=$?
  [[ $rc -eq 2 ]] || fail "'$bad' is not refused with exit 2: $rc $(cat "$SCRATCH/bad.err")"
done
[[ ! -e $SCRATCH/bad ]] || fail "a refused call left $SCRATCH/bad behind"
echo "finetune_gsm_infinite_cpu: ok"
