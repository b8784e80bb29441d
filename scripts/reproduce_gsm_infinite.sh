#!/usr/bin/env bash
# Reproduces the paper's GSM-Infinite sweeps over sleep passes N (docs/paper.md "Results to
# reproduce"); scripts/reproduce_gsm_infinite.sh --help lists the options.
#  - From scratch (no --model-dir): set-up, one resumable run per N (1, 2, 4, 6) from
#    configs/gsm_infinite/hard_eviction.yaml (or --config sliding, --small), then the figure and
#    markdown table of scripts/plot.py (accuracy per op, as the paper reports it).
#  - Fine-tuning a pretrained checkpoint (--model-dir DIR --config jet_nemotron_2b | ouro_1p4b |
#    ouro_1p4b_sliding): the training and held-out problems written as text by `hypnos generate
#    gsm_infinite --text` (with the config's task keys) and tokenised by scripts/tokenize_gsm.py with
#    DIR's own tokenizer, once; then one resumable run per N with model.from=DIR (two for a config
#    with a <name>_stage2.yaml beside it: stage 1, then stage 2 from stage 1's weights); then the
#    figure and the table of accuracy per op per N, printed too.
set -euo pipefail
source "$(dirname "$0")/reproduce_common.sh"

pretrained_usage() {
  cat <<EOF

Fine-tuning a pretrained checkpoint (the paper's GSM-Infinite rows):
usage: scripts/reproduce_gsm_infinite.sh --model-dir DIR [--config NAME|FILE] [OUT_DIR]
         [--passes LIST] [--problems N] [--eval-problems M] [--hypnos BIN] [key.path=value ...]
  --model-dir      the checkpoint: config.json, model.safetensors (or shards), and its tokenizer
                   (tokenizer.json, or vocab.json + merges.txt)
  --config         configs/gsm_infinite/NAME.yaml or a file: jet_nemotron_2b (default),
                   ouro_1p4b, ouro_1p4b_sliding (two stages: NAME_stage2.yaml beside it)
  --passes         N values (default 1,2,4,6; 1,2,4 for ouro*: the paper's)
  --problems       training problems (default 128000; the configs train train.epochs over them)
  --eval-problems  held-out problems, all evaluated (default 1600, the paper's)
OUT_DIR (default runs/gsm_infinite-<config>) gets data/ (train.tokens and test.tokens with their
indexes, made once per generator keys and tokenizer; "hypnos generate gsm_infinite --text
task.token_file=F task.tokenizer=DIR" shows their problems), one run directory per N
(<config>-n<N>; stage 1 of a two-stage config in <config>-n<N>-stage1), and gsm_infinite-<config>.png
and .md: the final evaluation's exact-match accuracy per op (the answer tokens, read in one wake
pass), one row per N.
Overrides apply to every run; task.* generator keys (d, op_max, length_min, ...) also to the data.
Rerunning skips finished runs and made data, and resumes unfinished runs.
EOF
}

# make_token_file NAME SPLIT N: data/NAME.tokens, N problems of SPLIT written as text (data/NAME.jsonl,
# removed once tokenised: about 4 GB for 128,000 problems) and tokenised with DIR's tokenizer, unless
# the stamp data/NAME.made says that the same command and tokenizer made them.
make_token_file() {
  local name=$1 split=$2 n=$3
  local jsonl="$data/$name.jsonl" tokens="$data/$name.tokens" stamp="$data/$name.made"
  local -a generate=(generate gsm_infinite --text --split "$split" --n "$n" --seed "$seed"
                     "${gen_keys[@]}")
  local want
  want="hypnos ${generate[*]}; tokenizer $tokenizer_sha"
  if [ -f "$tokens" ] && [ -f "$data/$name.index.jsonl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "[reproduce_gsm_infinite] data: $tokens made, kept"
    return 0
  fi
  echo "[reproduce_gsm_infinite] data: $n $split problems -> $tokens"
  rm -f "$stamp"
  "$hypnos" "${generate[@]}" >"$jsonl.tmp" || return
  mv "$jsonl.tmp" "$jsonl"
  "$python" "$root/scripts/tokenize_gsm.py" --tokenizer "$model_dir" --out "$tokens" "$jsonl" || return
  rm -f "$jsonl"
  echo "$want" >"$stamp"
}

reproduce_pretrained() {
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local config=jet_nemotron_2b passes="" problems=128000 eval_problems=1600 out="" setup=1
  model_dir="" hypnos="" python=""
  local -a overrides=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --model-dir) model_dir=${2:?--model-dir needs a checkpoint directory}; shift ;;
      --config) config=${2:?--config needs a name or a file}; shift ;;
      --passes) passes=${2:?--passes needs a list such as 1,2,4}; shift ;;
      --problems) problems=${2:?--problems needs a number}; shift ;;
      --eval-problems) eval_problems=${2:?--eval-problems needs a number}; shift ;;
      --hypnos) hypnos=${2:?--hypnos needs the path of a built hypnos binary}; setup=0; shift ;;
      --small|--metric|--buckets)
        echo "reproduce_gsm_infinite: $1 is for the from-scratch sweep, not with --model-dir" >&2
        return 2 ;;
      --*) echo "reproduce_gsm_infinite: unknown option $1 (see --help)" >&2; return 2 ;;
      *=*) overrides+=("$1") ;;
      *)
        if [ -n "$out" ]; then
          echo "reproduce_gsm_infinite: two output folders ($out, $1); overrides are key.path=value" >&2
          return 2
        fi
        out=$1 ;;
    esac
    shift
  done
  local n_ok
  for n_ok in "$problems" "$eval_problems"; do
    if ! [[ $n_ok =~ ^[1-9][0-9]*$ ]]; then
      echo "reproduce_gsm_infinite: --problems and --eval-problems need positive integers, got '$n_ok'" >&2
      return 2
    fi
  done
  if [ ! -f "$model_dir/config.json" ]; then
    echo "reproduce_gsm_infinite: --model-dir '$model_dir' has no config.json (a Hugging Face checkpoint directory)" >&2
    return 2
  fi
  model_dir=$(cd "$model_dir" && pwd)
  local -a tokenizer_files=("$model_dir/tokenizer.json")
  [ -f "$model_dir/tokenizer.json" ] || tokenizer_files=("$model_dir/vocab.json" "$model_dir/merges.txt")
  local f
  for f in "${tokenizer_files[@]}"; do
    if [ ! -f "$f" ]; then
      echo "reproduce_gsm_infinite: no tokenizer in '$model_dir' (tokenizer.json, or vocab.json and merges.txt)" >&2
      return 2
    fi
  done
  tokenizer_sha=$(cat "${tokenizer_files[@]}" | sha256sum | cut -d' ' -f1)

  local config_file=$config
  [ -f "$config_file" ] || config_file="$root/configs/gsm_infinite/$config.yaml"
  if [ ! -f "$config_file" ]; then
    echo "reproduce_gsm_infinite: no config '$config' (neither a file nor configs/gsm_infinite/$config.yaml)" >&2
    return 2
  fi
  config_file=$(cd "$(dirname "$config_file")" && pwd)/$(basename "$config_file")
  local config_name stage2
  config_name=$(basename "$config_file" .yaml)
  stage2="${config_file%.yaml}_stage2.yaml"
  [ -f "$stage2" ] || stage2=""
  if [ -z "$passes" ]; then
    case "$config_name" in
      ouro*) passes=1,2,4 ;;
      *) passes=1,2,4,6 ;;
    esac
  fi
  [ -n "$out" ] || out="$root/runs/gsm_infinite-$config_name"

  reproduce_setup gsm_infinite "$root" "$setup" || return
  mkdir -p "$out/data"
  out=$(cd "$out" && pwd)
  data="$out/data"

  # The problems: the config's generator keys and seed, training and held-out splits.
  gen_keys=()
  local key
  while IFS= read -r key; do
    case "$key" in
      task.name=*|task.token_file=*|task.eval_token_file=*|task.tokenizer=*|task.data_file=*) ;;
      task.vocab_extend=*) ;;
      *) gen_keys+=("$key") ;;
    esac
  done < <(generator_keys "$config_file" "${overrides[@]}")
  seed=$(awk '/^[^ #]/ {section = $1} section == "run:" && $1 == "seed:" {print $2}' "$config_file")
  for f in "${overrides[@]}"; do
    [[ $f == run.seed=* ]] && seed=${f#run.seed=}
  done
  seed=${seed:-0}
  make_token_file train train "$problems" || return
  make_token_file test test "$eval_problems" || return
  # The experiment needs every problem longer than a window: else its start is not evicted (nor
  # slid out) before the answer is read.
  local window shortest
  window=$(awk '/^[^ #]/ {section = $1} section == "sleep:" && $1 == "window:" {print $2}' "$config_file")
  for f in "${overrides[@]}"; do
    [[ $f == sleep.window=* ]] && window=${f#sleep.window=}
  done
  shortest=$(sed -n '1s/.*"min_length": \([0-9]*\).*/\1/p' "$data/train.index.jsonl" "$data/test.index.jsonl" |
             sort -n | head -n 1)
  if [ -n "$window" ] && [ -n "$shortest" ] && [ "$shortest" -le "$window" ]; then
    echo "[reproduce_gsm_infinite] warning: the shortest problem has $shortest tokens, not more than" \
         "the window (sleep.window = $window): its start stays in view when its answer is read" \
         "(raise task.length_min)" >&2
  fi

  # One run per N (two with a stage-2 config), then the table of the final evaluation.
  local -a common=("model.from=$model_dir" "task.token_file=$data/train.tokens"
                   "task.eval_token_file=$data/test.tokens" "train.eval_examples=$eval_problems"
                   "${overrides[@]}")
  local -a run_dirs=()
  local n
  for n in ${passes//,/ }; do
    if [ -n "$stage2" ]; then
      reproduce_run gsm_infinite "N=$n stage 1" "$out/$config_name-n$n-stage1" "$config_file" \
        "${common[@]}" "sleep.n_passes=$n" || return
      reproduce_run gsm_infinite "N=$n stage 2" "$out/$config_name-n$n" "$stage2" "${common[@]}" \
        "sleep.n_passes=$n" "train.init_from=$out/$config_name-n$n-stage1" || return
    else
      reproduce_run gsm_infinite "N=$n" "$out/$config_name-n$n" "$config_file" "${common[@]}" \
        "sleep.n_passes=$n" || return
    fi
    run_dirs+=("$out/$config_name-n$n")
  done
  reproduce_plot gsm_infinite "$root" "$out/gsm_infinite-$config_name" \
    "GSM-Infinite, $config_name: sleep passes N" exact op= "${run_dirs[@]}" || return
  cat "$out/gsm_infinite-$config_name.md"
}

for arg in "$@"; do
  case "$arg" in
    -h|--help)
      reproduce_usage gsm_infinite hard_eviction 1,2,4,6
      pretrained_usage
      exit 0 ;;
  esac
done
for arg in "$@"; do
  if [ "$arg" = --model-dir ]; then
    reproduce_pretrained "$@"
    exit
  fi
done
reproduce_sweep gsm_infinite hard_eviction 1,2,4,6 --buckets op= "$@"
