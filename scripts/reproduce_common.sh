#!/usr/bin/env bash
# Shared sweep driver of scripts/reproduce_{rule110,depo,gsm_infinite}.sh (sourced, not run): one run
# directory per number of sleep passes N, resumable, then scripts/plot.py over the finished runs. Its
# pieces (reproduce_setup, reproduce_run, reproduce_plot, generator_keys) also drive the pretrained
# GSM-Infinite sweep of scripts/reproduce_gsm_infinite.sh --model-dir and
# scripts/finetune_gsm_infinite_cpu.sh.
# A run counts as finished when its events.jsonl has a "finish" event at the config's train.steps.
# A run that stops early (Ctrl-C or a scheduler's SIGTERM: it checkpoints and exits 130 or 143; or
# any error) stops the sweep with its exit code; rerunning the same command resumes it.

# reproduce_sweep TASK DEFAULT_CONFIG DEFAULT_PASSES [script arguments...]
reproduce_sweep() {
  local task=$1 config=$2 passes=$3
  shift 3
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local small=0 out="" hypnos="" python="" setup=1 metric="" buckets=""
  local -a overrides=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) reproduce_usage "$task" "$config" "$passes"; return 0 ;;
      --config) config=${2:?--config needs a name or a file}; shift ;;
      --small) small=1 ;;
      --passes) passes=${2:?--passes needs a list such as 1,2,4}; shift ;;
      --hypnos) hypnos=${2:?--hypnos needs the path of a built hypnos binary}; setup=0; shift ;;
      --metric) metric=${2:?--metric needs exact, token_acc or ce}; shift ;;
      --buckets) buckets=${2:?--buckets needs bucket name prefixes such as op=}; shift ;;
      --*) echo "reproduce_$task: unknown option $1 (see --help)" >&2; return 2 ;;
      *=*) overrides+=("$1") ;;
      *)
        if [ -n "$out" ]; then
          echo "reproduce_$task: two output folders ($out, $1); overrides are key.path=value" >&2
          return 2
        fi
        out=$1 ;;
    esac
    shift
  done
  [ "$small" = 1 ] && config=small

  # The config: a name under configs/<task>/ or a path.
  local config_file=$config
  [ -f "$config_file" ] || config_file="$root/configs/$task/$config.yaml"
  if [ ! -f "$config_file" ]; then
    echo "reproduce_$task: no config '$config' (neither a file nor configs/$task/$config.yaml)" >&2
    return 2
  fi
  config_file=$(cd "$(dirname "$config_file")" && pwd)/$(basename "$config_file")
  local config_name
  config_name=$(basename "$config_file" .yaml)
  [ -n "$out" ] || out="$root/runs/$task-sweep"

  reproduce_setup "$task" "$root" "$setup" || return
  mkdir -p "$out"
  local -a run_dirs=()
  local n run_dir
  for n in ${passes//,/ }; do
    run_dir="$out/$config_name-n$n"
    run_dirs+=("$run_dir")
    reproduce_run "$task" "N=$n" "$run_dir" "$config_file" "${overrides[@]}" "sleep.n_passes=$n" ||
      return
  done
  reproduce_plot "$task" "$root" "$out/$task-$config_name" "$task, $config_name: sleep passes N" \
    "$metric" "$buckets" "${run_dirs[@]}"
}

# reproduce_setup TASK ROOT SETUP: sets `hypnos` (scripts/setup.sh builds build/hypnos when SETUP is
# 1, else the --hypnos binary already in $hypnos) and `python` (plot.py's), and points
# HYPNOS_DATA_DIR at this source tree's data. Returns 2 when there is no hypnos binary.
reproduce_setup() {
  local task=$1 root=$2 setup=$3
  # Set-up like the README commands: scripts/setup.sh builds build/hypnos (skipped with --hypnos).
  if [ "$setup" = 1 ]; then
    "$root/scripts/setup.sh" || return
    hypnos=${HYPNOS_BUILD_DIR:-build}/hypnos
    [ "${hypnos:0:1}" = / ] || hypnos=$root/$hypnos  # setup.sh reads it from the root
  fi
  if [ ! -x "$hypnos" ]; then
    echo "reproduce_$task: $hypnos is not an executable hypnos binary" >&2
    return 2
  fi
  # plot.py needs matplotlib and PyYAML: setup.sh puts them into .venv; HYPNOS_PYTHON names another.
  python=${HYPNOS_PYTHON:-$root/.venv/bin/python}
  [ -x "$python" ] || python=python3
  # Task data (GSM-Infinite name lists) from this source tree, whatever the working directory.
  export HYPNOS_DATA_DIR=${HYPNOS_DATA_DIR:-$root/data}
}

# reproduce_run TASK LABEL RUN_DIR CONFIG [key=value ...]: one resumable run of $hypnos: skipped when
# its events.jsonl has a "finish" event at the resolved train.steps, resumed when RUN_DIR holds a
# config.yaml, else trained from the start. Returns hypnos's exit code (after saying why it stopped).
reproduce_run() {
  local task=$1 label=$2 run_dir=$3
  shift 3
  local steps finished
  # The resolved config names the steps a finished run must have reached (a bad override stops here).
  steps=$("$hypnos" train "$@" --dry-run |
          awk '/^[a-z]/ {section = $1} section == "train:" && $1 == "steps:" {print $2}') || return
  finished=$({ grep -o '"event":"finish","step":[0-9]*' "$run_dir/events.jsonl" 2>/dev/null || true; } |
             tail -n 1 | sed 's/.*://')
  local -a resume=()
  if [ -n "$finished" ] && [ "$finished" = "$steps" ]; then
    echo "[reproduce_$task] $label: finished ($run_dir), skipped"
    return 0
  elif [ -f "$run_dir/config.yaml" ]; then
    echo "[reproduce_$task] $label: resuming $run_dir"
    resume=(--resume)
  else
    echo "[reproduce_$task] $label: training into $run_dir"
  fi
  local rc=0
  "$hypnos" train "$@" --out "$run_dir" "${resume[@]}" || rc=$?
  if [ "$rc" != 0 ]; then
    if [ "$rc" = 130 ] || [ "$rc" = 143 ]; then
      echo "[reproduce_$task] $label: stopped by a signal after a checkpoint (exit $rc);" \
           "rerun the same command to resume" >&2
    else
      echo "[reproduce_$task] $label: hypnos train exited $rc; the sweep stops here" >&2
    fi
  fi
  return "$rc"
}

# reproduce_plot TASK ROOT STEM TITLE METRIC BUCKETS RUN_DIR...: STEM.png and STEM.md (the final
# evaluation per bucket, one row per run) from scripts/plot.py with $python.
reproduce_plot() {
  local task=$1 root=$2 stem=$3 title=$4 metric=$5 buckets=$6
  shift 6
  local fig="$stem.png" table="$stem.md"
  local -a plot_args=("$@" --out "$fig" --table "$table" --title "$title")
  [ -n "$metric" ] && plot_args+=(--metric "$metric")
  [ -n "$buckets" ] && plot_args+=(--buckets "$buckets")
  "$python" "$root/scripts/plot.py" "${plot_args[@]}" || return
  echo "[reproduce_$task] runs: $*"
  echo "[reproduce_$task] figure: $fig"
  echo "[reproduce_$task] table: $table"
}

# generator_keys CONFIG_FILE [key=value ...]: the task keys of CONFIG_FILE's task section, then the
# task.* overrides, one task.KEY=VALUE a line (the caller drops those that say where problems come
# from: token and data files). They describe how `hypnos generate` makes the problems.
generator_keys() {
  local config_file=$1
  shift
  awk '/^[^ #]/ {section = $1}
       section == "task:" && /^  [a-z_]+:/ {
         key = $1; sub(":", "", key); value = $0; sub(/^  [a-z_]+:[ ]*/, "", value)
         sub(/[ ]+#.*/, "", value)
         print "task." key "=" value
       }' "$config_file"
  local o
  for o in "$@"; do
    [[ $o == task.* ]] && echo "$o"
  done
}

reproduce_usage() {
  cat <<EOF
usage: scripts/reproduce_$1.sh [OUT_DIR] [--config NAME|FILE] [--small] [--passes LIST]
                              [--metric M] [--buckets P] [--hypnos BIN] [key.path=value ...]
Trains one run per number of sleep passes N (default $3) into OUT_DIR/<config>-n<N>
(OUT_DIR default runs/$1-sweep), then writes OUT_DIR/$1-<config>.png and .md with scripts/plot.py.
Rerunning skips finished runs and resumes unfinished ones from their newest checkpoint.
  --config   configs/$1/NAME.yaml or a file (default $2)
  --small    the CPU config configs/$1/small.yaml (minutes on a 2-core CPU)
  --passes   comma-separated N values (default $3)
  --metric   plotted metric: exact | token_acc | ce (default exact)
  --buckets  comma-separated bucket prefixes to plot (e.g. op=; default all)
  --hypnos   use this built binary and skip scripts/setup.sh
  key=value  overrides for every run (sleep.n_passes is set per run)
EOF
}
