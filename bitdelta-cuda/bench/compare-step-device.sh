#!/usr/bin/env bash
# Earlier builds' decoder steps and the present one, timed one after the other in one call on a GPU host, from the
# repository root:
#   OUT=/some/folder bash bitdelta-cuda/bench/compare-step-device.sh [StepBenchmark arguments, e.g. --step-only]
# with bitdelta-cuda/target/step-device/ (prepare-step-device.sh) and one or more bitdelta-cuda/target/step-baseline*/
# folders (prepare-baseline-device.sh REV [FOLDER]) carried. Each baseline, in name order, runs in a copy of step-device
# with its library and bitdelta-cuda jars laid over it; then the present carry; each through step-benchmark-device.sh
# with an equal share of BUDGET (default 560 s). What comes back in $OUT: one folder per baseline (its name) and
# present/ (each step-benchmark-device.sh's output) and compare.txt (every table). Exit status 1 where a run failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out="${OUT:-/tmp/step-compare-out}"
budget="${BUDGET:-560}"
present=bitdelta-cuda/target/step-device
baselines=()
for folder in bitdelta-cuda/target/step-baseline bitdelta-cuda/target/step-baseline-*; do  # step-baseline first
  [[ -f $folder/REVISION && $folder != */step-baseline-carry ]] && baselines+=("$folder")
done
[[ ${#baselines[@]} -gt 0 && -f $present/jre.tar.xz ]] || { echo "compare-step-device: carry $present and a step-baseline folder" >&2; exit 1; }
share=$((budget / (${#baselines[@]} + 1)))
overlay=bitdelta-cuda/target/step-baseline-carry  # a copy of step-device with a baseline's library and jars
mkdir -p "$out"
status=0
: > "$out/compare.txt"
for baseline in "${baselines[@]}"; do
  name=$(basename "$baseline")
  rm -rf "$overlay" && cp -r "$present" "$overlay" && cp "$baseline/libbitdelta_cuda.so.xz" "$overlay/" \
    && cp "$baseline"/jars/*.jar "$overlay/jars/" || { echo "compare-step-device: could not lay $baseline over $present" >&2; exit 1; }
  STEP_CARRY=$overlay BUDGET=$share OUT="$out/$name" bash bitdelta-cuda/bench/step-benchmark-device.sh "$@" > "$out/$name.log" 2>&1 || status=1
  {
    echo "== $name: $(cat "$baseline/REVISION")"
    grep -E '^\|' "$out/$name/summary.txt" 2>/dev/null || echo "(no table: $name.log)"
  } >> "$out/compare.txt"
done
BUDGET=$share OUT="$out/present" bash bitdelta-cuda/bench/step-benchmark-device.sh "$@" > "$out/present.log" 2>&1 || status=1
{
  echo "== present: $(head -1 "$present/MANIFEST.txt")"
  grep -E '^\|' "$out/present/summary.txt" 2>/dev/null || echo "(no table: present.log)"
} >> "$out/compare.txt"
cat "$out/compare.txt"
exit $status
