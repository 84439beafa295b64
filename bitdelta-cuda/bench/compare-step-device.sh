#!/usr/bin/env bash
# An earlier commit's decoder step and the present one, timed one after the other in one call on a GPU host, from
# the repository root:
#   OUT=/some/folder bash bitdelta-cuda/bench/compare-step-device.sh [StepBenchmark arguments, e.g. --layers=8]
# with bitdelta-cuda/target/step-device/ (prepare-step-device.sh) and bitdelta-cuda/target/step-baseline/
# (prepare-baseline-device.sh REV) carried. The baseline runs in a copy of step-device with REV's library and
# bitdelta-cuda jars laid over it; then the present carry; each through step-benchmark-device.sh with half of BUDGET
# (default 560 s). What comes back in $OUT: baseline/ and present/ (each step-benchmark-device.sh's output) and
# compare.txt (both tables). Exit status 1 where either run failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${OUT:-/tmp/step-compare-out}"
budget="${BUDGET:-560}"
present=bitdelta-cuda/target/step-device
baseline=bitdelta-cuda/target/step-baseline
[[ -f $baseline/REVISION && -f $present/jre.tar.xz ]] || { echo "compare-step-device: carry $present and $baseline" >&2; exit 1; }
overlay=bitdelta-cuda/target/step-baseline-carry  # a copy of step-device with the baseline's library and jars
rm -rf "$overlay" && cp -r "$present" "$overlay" && cp "$baseline/libbitdelta_cuda.so.xz" "$overlay/" \
  && cp "$baseline"/jars/*.jar "$overlay/jars/" || { echo "compare-step-device: could not lay $baseline over $present" >&2; exit 1; }
mkdir -p "$out"
status=0
STEP_CARRY=$overlay BUDGET=$((budget / 2)) OUT="$out/baseline" bash bitdelta-cuda/bench/step-benchmark-device.sh "$@" > "$out/baseline.log" 2>&1 || status=1
BUDGET=$((budget / 2)) OUT="$out/present" bash bitdelta-cuda/bench/step-benchmark-device.sh "$@" > "$out/present.log" 2>&1 || status=1
{
  echo "== baseline: $(cat "$baseline/REVISION")"
  grep -E '^\|' "$out/baseline/summary.txt" 2>/dev/null || echo "(no table: baseline.log)"
  echo "== present: $(head -1 "$present/MANIFEST.txt")"
  grep -E '^\|' "$out/present/summary.txt" 2>/dev/null || echo "(no table: present.log)"
} > "$out/compare.txt"
cat "$out/compare.txt"
exit $status
