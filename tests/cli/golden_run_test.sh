#!/usr/bin/env bash
# Golden run: a fixed tiny training run (tests/cli/golden.yaml: CPU, fp32, seed 0, the AGJG hybrid
# with N = 2 sleep passes, 12 steps) must reproduce the per-step losses stored below. Any change that shifts the
# computation (an initialisation, the window loop, the loss, the optimizer, the data) fails here,
# even when it keeps every other test green.
#
# The tolerance (relative 1e-4) survives other thread counts and BLAS builds, not a change of
# semantics. To change the numbers on purpose (a deliberate change of the computation), run
#   HYPNOS_GOLDEN_PRINT=1 bash tests/cli/golden_run_test.sh build/hypnos .
# paste the printed lines over GOLDEN below, and say in the commit message why they moved.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GOLDEN="
1 1.4072881937026978
2 1.4363389015197754
3 1.2148187160491943
4 1.3003262281417847
5 1.228326678276062
6 1.3246797323226929
7 1.1766740083694458
8 1.028942584991455
9 1.0400593280792236
10 1.099239468574524
11 1.0965354442596436
12 1.1251842975616455
"

golden_train() {
  "$HYPNOS" train "$SOURCE_DIR/tests/cli/golden.yaml" --out "$SCRATCH/run" >"$SCRATCH/run.out" \
    2>"$SCRATCH/run.err"
}
expect_status 0 golden_train
got=$(losses "$SCRATCH/run/metrics.jsonl")
if [[ -n ${HYPNOS_GOLDEN_PRINT:-} ]]; then
  echo "$got"
  exit 0
fi
paste <(echo "$GOLDEN" | sed '/^$/d') <(echo "$got") | awk '
  NF != 4 || $1 != $3 { print "FAIL: step mismatch: " $0; bad = 1; next }
  {
    diff = $2 - $4; if (diff < 0) diff = -diff
    scale = $2 < 0 ? -$2 : $2
    if (diff > 1e-4 * scale) { printf "FAIL: step %d loss %s, golden %s\n", $1, $4, $2; bad = 1 }
  }
  END { exit bad }' || fail "the golden run's losses moved (see above)"
[[ $(echo "$got" | wc -l) == 12 ]] || fail "expected 12 train records, got: $got"
echo "golden run: 12 losses within 1e-4 of the stored values"
