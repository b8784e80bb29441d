#!/usr/bin/env bash
# The reproduction scripts end to end on tiny real runs: every script parses (bash -n); a two-run sweep
# (N = 1, 2, a few steps of the Rule 110 CPU config) trains with the built binary, scripts/plot.py turns
# it into a PNG and a table; rerunning skips finished runs; raising train.steps resumes them; a run
# stopped by SIGTERM (exit 143) stops the sweep before the next N, and rerunning resumes it.
#   bash tests/cli/reproduce_scripts_test.sh HYPNOS_BINARY SOURCE_DIR
set -euo pipefail
hypnos=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# plot.py's Python: HYPNOS_PYTHON, else the one this build took LibTorch from (setup.sh gives it
# matplotlib), else the source tree's .venv, else python3.
if [ -z "${HYPNOS_PYTHON:-}" ]; then
  cache=$(dirname "$hypnos")/CMakeCache.txt
  HYPNOS_PYTHON=$(sed -n 's/^HYPNOS_PYTHON:[A-Z]*=//p' "$cache" 2>/dev/null || true)
  [ -x "$HYPNOS_PYTHON" ] || HYPNOS_PYTHON=$src/.venv/bin/python
  [ -x "$HYPNOS_PYTHON" ] || HYPNOS_PYTHON=python3
fi
export HYPNOS_PYTHON
"$HYPNOS_PYTHON" -c 'import matplotlib, yaml' ||
  fail "$HYPNOS_PYTHON lacks matplotlib or PyYAML (scripts/setup.sh installs them into .venv)"

# 1. Every script parses.
for script in "$src"/scripts/*.sh; do
  bash -n "$script" || fail "bash -n $script"
done

# 2. A sweep of two tiny runs, then the figure and the table.
export OMP_NUM_THREADS=1
tiny=(train.steps=2 train.batch_size=8 train.eval_every=1 train.eval_examples=16
      train.eval_batch_size=16 train.checkpoint_every=1 train.log_every=1)
out=$tmp/sweep
bash "$src/scripts/reproduce_rule110.sh" "$out" --small --passes 1,2 --hypnos "$hypnos" "${tiny[@]}" \
  > "$tmp/first.log" 2>&1 || { cat "$tmp/first.log"; fail "first sweep"; }
for n in 1 2; do
  grep -q '"event":"finish","step":2' "$out/small-n$n/events.jsonl" || fail "run N=$n did not finish"
  grep -q '"kind":"eval"' "$out/small-n$n/metrics.jsonl" || fail "run N=$n has no eval record"
  grep -q "^  n_passes: $n\$" "$out/small-n$n/config.yaml" || fail "run N=$n has the wrong sleep.n_passes"
done
png=$out/rule110-small.png
table=$out/rule110-small.md
[ -s "$png" ] || fail "no figure $png"
[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png is not a PNG"
[ -s "$table" ] || fail "no table $table"
grep -q '^| N=1 (small-n1) |' "$table" || { cat "$table"; fail "table lacks the N=1 row"; }
grep -q '^| N=2 (small-n2) |' "$table" || { cat "$table"; fail "table lacks the N=2 row"; }
grep -q "figure: $png" "$tmp/first.log" || fail "the script does not say where the figure went"

# 3. Rerunning skips finished runs (no new training records).
before=$(wc -l < "$out/small-n1/metrics.jsonl")
bash "$src/scripts/reproduce_rule110.sh" "$out" --small --passes 1,2 --hypnos "$hypnos" "${tiny[@]}" \
  > "$tmp/second.log" 2>&1 || { cat "$tmp/second.log"; fail "second sweep"; }
[ "$(grep -c 'finished .*skipped' "$tmp/second.log")" = 2 ] || { cat "$tmp/second.log"; fail "no skip"; }
[ "$(wc -l < "$out/small-n1/metrics.jsonl")" = "$before" ] || fail "a finished run was trained again"

# 4. More steps: both runs resume from their checkpoint at step 2 and finish at step 3.
bash "$src/scripts/reproduce_rule110.sh" "$out" --small --passes 1,2 --hypnos "$hypnos" "${tiny[@]}" \
  train.steps=3 > "$tmp/third.log" 2>&1 || { cat "$tmp/third.log"; fail "resumed sweep"; }
[ "$(grep -c 'resuming' "$tmp/third.log")" = 2 ] || { cat "$tmp/third.log"; fail "no resume"; }
for n in 1 2; do
  grep -q '"event":"resume","step":2' "$out/small-n$n/events.jsonl" || fail "N=$n did not resume at 2"
  grep -q '"event":"finish","step":3' "$out/small-n$n/events.jsonl" || fail "N=$n did not reach 3"
done

# 5. A bad override stops the sweep before anything is trained, with the config error's exit code.
set +e
bash "$src/scripts/reproduce_rule110.sh" "$tmp/bad" --small --hypnos "$hypnos" sleep.n_pases=2 \
  > "$tmp/bad.log" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || { cat "$tmp/bad.log"; fail "a mistyped key gave exit code $rc, expected 2"; }
[ ! -e "$tmp/bad/small-n1/config.yaml" ] || fail "a mistyped key still created a run"
# 6. SIGTERM to the running hypnos: it checkpoints and exits 143, the sweep stops with 143 and
#    does not go on to N=2; the same command (with the steps it can reach) then resumes N=1.
stop=$tmp/stop
bash "$src/scripts/reproduce_rule110.sh" "$stop" --small --passes 1,2 --hypnos "$hypnos" \
  "${tiny[@]}" train.steps=100000 train.eval_every=0 > "$tmp/stop.log" 2>&1 &
sweep=$!
deadline=$((SECONDS + 120))
until grep -q '"step":3,' "$stop/small-n1/metrics.jsonl" 2>/dev/null; do
  ((SECONDS < deadline)) || { kill -9 "$sweep"; fail "N=1 never reached step 3"; }
  sleep 0.1
done
child=$(pgrep -P "$sweep")
[ -n "$child" ] || fail "no hypnos process under the sweep"
kill -TERM $child
# A sweep that went on to N=2 (train.steps=100000) would run for hours: give it 60 s.
deadline=$((SECONDS + 60))
while kill -0 "$sweep" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
if kill -0 "$sweep" 2>/dev/null; then
  for pid in $(pgrep -P "$sweep"); do kill -9 "$pid"; done
  kill -9 "$sweep"
  fail "the sweep did not stop after its run was stopped (it went on to N=2?)"
fi
rc=0
wait "$sweep" || rc=$?
[ "$rc" = 143 ] || { cat "$tmp/stop.log"; fail "the stopped sweep exited $rc, expected 143"; }
[ ! -e "$stop/small-n2" ] || fail "the sweep went on to N=2 after the stop"
grep -q 'N=1: stopped by a signal after a checkpoint (exit 143)' "$tmp/stop.log" ||
  { cat "$tmp/stop.log"; fail "the sweep does not say why it stopped"; }
stopped=$(grep -o '"event":"signal","step":[0-9]*' "$stop/small-n1/events.jsonl" | sed 's/.*://')
[ -n "$stopped" ] || fail "no signal event in N=1's events.jsonl"
bash "$src/scripts/reproduce_rule110.sh" "$stop" --small --passes 1,2 --hypnos "$hypnos" \
  "${tiny[@]}" train.steps=$((stopped + 2)) train.eval_every=0 > "$tmp/stop2.log" 2>&1 ||
  { cat "$tmp/stop2.log"; fail "the rerun after the stop failed"; }
grep -q "\"event\":\"resume\",\"step\":$stopped," "$stop/small-n1/events.jsonl" ||
  fail "the rerun did not resume N=1 from step $stopped"
grep -q "\"event\":\"finish\",\"step\":$((stopped + 2))" "$stop/small-n2/events.jsonl" ||
  fail "the rerun did not train N=2"
echo "reproduce scripts: ok"
