#!/usr/bin/env bash
# The paper's GSM-Infinite fine-tuning of a pretrained model, end to end at CPU scale
# (docs/gsm_infinite_finetune_cpu.md): no checkpoint to download, so a small Ouro-layout model is
# pretrained here first.
#   scripts/finetune_gsm_infinite_cpu.sh [OUT_DIR] [--passes LIST] [--problems N] [--eval-problems M]
#       [--pretrain-steps S] [--finetune-steps S] [--hypnos BIN] [key.path=value ...]
# OUT_DIR (default runs/gsm-infinite-finetune-cpu) gets, each step skipped when already made:
#  1. data/: N training and M held-out problems (configs/gsm_infinite/ouro_small.yaml's generator
#     keys) written as text by `hypnos generate gsm_infinite --text`, a byte-level BPE tokenizer
#     trained on the training text (tests/python/tiny_tokenizer.py), both token files (tokenize_gsm.py);
#  2. ouro-random/: a random Ouro-layout checkpoint with that tokenizer (pretrained_reference.py);
#  3. pretrain/: ouro_small_pretrain.yaml (every problem in view), exported to ouro-pretrained/;
#  4. ouro_small-n<N>/: sleep fine-tuning of ouro-pretrained/ under hard eviction (ouro_small.yaml),
#     one run per N (default 1,2,4), each evaluated before its first step and after its last; and
#     ouro_small-no_jet/, the control: the same without the inserted JetBlocks (no fast weights);
#  5. gsm_infinite-{pretrain,ouro_small}.{png,md}: accuracy per op of the pretraining (all in view),
#     and of each fine-tuning run at its start and its end.
# key=value overrides apply to both trainings (e.g. train.batch_size=8); task.* also to the data,
# run.seed also to the problems and the random checkpoint.
# A rerun into OUT_DIR must give the same problems, steps and overrides (OUT_DIR/settings.txt);
# only --passes and --finetune-steps may change.
set -euo pipefail
source "$(dirname "$0")/reproduce_common.sh"
root=$(cd "$(dirname "$0")/.." && pwd)

out="" hypnos="" setup=1 passes=1,2,4 problems=20000 eval_problems=400 pretrain_steps="" finetune_steps=""
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --passes) passes=${2:?--passes needs a list such as 1,2,4}; shift ;;
    --problems) problems=${2:?--problems needs a number}; shift ;;
    --eval-problems) eval_problems=${2:?--eval-problems needs a number}; shift ;;
    --pretrain-steps) pretrain_steps=${2:?--pretrain-steps needs a number}; shift ;;
    --finetune-steps) finetune_steps=${2:?--finetune-steps needs a number}; shift ;;
    --hypnos) hypnos=${2:?--hypnos needs the path of a built hypnos binary}; setup=0; shift ;;
    --*) echo "finetune_gsm_infinite_cpu: unknown option $1 (see --help)" >&2; exit 2 ;;
    *=*) overrides+=("$1") ;;
    *)
      if [ -n "$out" ]; then
        echo "finetune_gsm_infinite_cpu: two output folders ($out, $1); overrides are key.path=value" >&2
        exit 2
      fi
      out=$1 ;;
  esac
  shift
done
for n in "$problems" "$eval_problems" $pretrain_steps $finetune_steps; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
    echo "finetune_gsm_infinite_cpu: --problems, --eval-problems and the step counts need positive" \
         "integers, got '$n'" >&2
    exit 2
  fi
done
if ! [[ $passes =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
  echo "finetune_gsm_infinite_cpu: --passes needs a list such as 1,2,4, got '$passes'" >&2
  exit 2
fi
reproduce_setup gsm_infinite "$root" "$setup" || exit
out=${out:-$root/runs/gsm-infinite-finetune-cpu}
mkdir -p "$out/data"
out=$(cd "$out" && pwd)
data=$out/data
pretrain_config=$root/configs/gsm_infinite/ouro_small_pretrain.yaml
finetune_config=$root/configs/gsm_infinite/ouro_small.yaml
log() { echo "[finetune_gsm_infinite_cpu] $*"; }

# 1. The problems as text (the fine-tuning config's generator keys and the task.* overrides), the
# tokenizer, the token files. A file is written beside its name and renamed when complete.
gen_keys=()
while IFS= read -r key; do
  case "$key" in
    task.name=*|task.token_file=*|task.eval_token_file=*|task.tokenizer=*|task.data_file=*) ;;
    task.vocab_extend=*) ;;
    *) gen_keys+=("$key") ;;
  esac
done < <(generator_keys "$finetune_config" "${overrides[@]}")
# run.seed (the configs': 0) also draws the problems and the random checkpoint.
seed=0
for o in "${overrides[@]}"; do
  [[ $o == run.seed=* ]] && seed=${o#run.seed=}
done
# What the data and the pretrained model are made from: a rerun into the same folder must ask for the
# same, or it would mix them with what is there (--passes and --finetune-steps may change).
settings="problems $problems; eval problems $eval_problems; seed $seed; generator ${gen_keys[*]};"
settings+=" pretrain steps ${pretrain_steps:-config}; overrides ${overrides[*]}"
if [ -f "$out/settings.txt" ] && [ "$(cat "$out/settings.txt")" != "$settings" ]; then
  echo "finetune_gsm_infinite_cpu: $out was made with other settings:" >&2
  echo "  there: $(cat "$out/settings.txt")" >&2
  echo "  asked: $settings" >&2
  echo "  (use another OUT_DIR, or the same arguments to continue)" >&2
  exit 2
fi
echo "$settings" >"$out/settings.txt"
for split in train test; do
  n=$problems
  [ "$split" = test ] && n=$eval_problems
  if [ ! -f "$data/$split.jsonl" ]; then
    log "data: $n $split problems -> $data/$split.jsonl"
    "$hypnos" generate gsm_infinite --text --split "$split" --n "$n" --seed "$seed" "${gen_keys[@]}" \
      >"$data/$split.jsonl.tmp"
    mv "$data/$split.jsonl.tmp" "$data/$split.jsonl"
  fi
done
if [ ! -f "$data/tokenizer/tokenizer.json" ]; then
  log "data: a byte-level BPE tokenizer trained on the training problems -> $data/tokenizer"
  rm -rf "$data/tokenizer.tmp"
  "$python" "$root/tests/python/tiny_tokenizer.py" "$data/tokenizer.tmp" "$data/train.jsonl" \
    --vocab-size 1024
  mv "$data/tokenizer.tmp" "$data/tokenizer"
fi
for split in train test; do
  if [ ! -f "$data/$split.index.jsonl" ]; then
    "$python" "$root/scripts/tokenize_gsm.py" --tokenizer "$data/tokenizer" \
      --out "$data/$split.tokens" "$data/$split.jsonl"
  fi
done
data_keys=("task.token_file=$data/train.tokens" "task.eval_token_file=$data/test.tokens"
           "train.eval_examples=$eval_problems")

# 2. The random checkpoint the pretraining starts from (the vocabulary covers the tokenizer's).
if [ ! -f "$out/ouro-random/model.safetensors" ]; then
  log "a random Ouro-layout checkpoint -> $out/ouro-random"
  rm -rf "$out/ouro-random.tmp"
  "$python" "$root/bench/reference/pretrained_reference.py" --make-tiny ouro "$out/ouro-random.tmp" \
    --vocab 1024 --seed "$seed" >/dev/null
  cp "$data/tokenizer/tokenizer.json" "$out/ouro-random.tmp/"
  mv "$out/ouro-random.tmp" "$out/ouro-random"
fi

# 3. Pretraining with every problem in view, then its export: the "pretrained checkpoint".
steps=()
[ -n "$pretrain_steps" ] && steps=("train.steps=$pretrain_steps")
reproduce_run gsm_infinite "pretraining" "$out/pretrain" "$pretrain_config" \
  "model.from=$out/ouro-random" "${data_keys[@]}" "${overrides[@]}" "${steps[@]}"
if [ ! -f "$out/ouro-pretrained/config.json" ]; then
  "$hypnos" export "$out/pretrain" --out "$out/ouro-pretrained" --dtype fp32
fi

# 4. Sleep fine-tuning per N.
steps=()
[ -n "$finetune_steps" ] && steps=("train.steps=$finetune_steps")
run_dirs=()
for n in ${passes//,/ }; do
  reproduce_run gsm_infinite "N=$n" "$out/ouro_small-n$n" "$finetune_config" \
    "model.from=$out/ouro-pretrained" "${data_keys[@]}" "${overrides[@]}" "${steps[@]}" \
    "sleep.n_passes=$n"
  run_dirs+=("$out/ouro_small-n$n")
done
# The control: the same fine-tuning without the inserted JetBlocks, so nothing carries evicted text
# (no fast weights to sleep into); what it gains is not memory.
reproduce_run gsm_infinite "control (no JetBlocks)" "$out/ouro_small-no_jet" "$finetune_config" \
  "model.from=$out/ouro-pretrained" "${data_keys[@]}" "${overrides[@]}" "${steps[@]}" \
  "model.inserted_jet_after=[]" "sleep.n_passes=1"
run_dirs+=("$out/ouro_small-no_jet")

# 5. Tables and figures: the pretraining (everything in view) and the fine-tuning (per N, from the
# evaluation before the first step).
reproduce_plot gsm_infinite "$root" "$out/gsm_infinite-pretrain" \
  "GSM-Infinite at CPU scale: pretraining, every problem in view" exact op= "$out/pretrain"
reproduce_plot gsm_infinite "$root" "$out/gsm_infinite-ouro_small" \
  "GSM-Infinite at CPU scale: sleep fine-tuning, hard eviction, window 24" exact op= "${run_dirs[@]}"
cat "$out/gsm_infinite-pretrain.md" "$out/gsm_infinite-ouro_small.md"
