#!/usr/bin/env bash
# On the GPU host: build the harness against the carried library (bitdelta-cuda/target/native) and run it.
#   bitdelta-cuda/bench/run-device.sh [harness args]      (writes $OUT/harness.log when OUT is set)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../target/native"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
"$here/build.sh" --harness-only || exit 1
log="${OUT:-/tmp}/harness.log"
"$out/bd_harness" "$@" 2>&1 | tee "$log"
