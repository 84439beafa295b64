#!/usr/bin/env bash
# Timings and profiles on a GPU host with nvcc and cuBLAS (checks: bench/check-device.sh):
#   bash bitdelta-cuda/bench/run-device.sh [bd_harness arguments]     e.g. --no-checks --back-to-back
# Builds the experiment library and bd_harness for sm_90a there, dumps the SASS of the main kernels, runs
# bd_harness with the given arguments; PROFILE=1 adds an ncu pass over `bd_harness --profile`.
# Output in $OUT (default /tmp/bitdelta-run): harness.log, sass-*.txt, ncu.txt.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${OUT:-/tmp/bitdelta-run}"
mkdir -p "$dest"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv
bash "$here/build.sh" --harness-only --sm90-only > "$dest/build.log" 2>&1 || { tail -30 "$dest/build.log"; exit 1; }
lib="$here/../target/native-sm90/experiments"
# SASS of the kernels that run most: decode version 1 (up to 8 rows), version 3 (9-16 rows), its lean form (more
# rows, and its persistent form) and pre-pass, prefill (mma.sync and wgmma) and compression. A name that matches
# nothing (a kernel renamed or its arguments changed) is reported, not skipped.
for f in '_ZN2bd13decode_kernelI6__halfS1_Li1ELb1EEEvPKT_S4_PKiiPKPKjPKPKfiiPT0_ll' \
         '_ZN2bd14decode3_kernelI6__halfS1_Li2ELi1ELb1EEEvPKT_S4_PKiiPKPKjPKPKfiiS8_SC_PKxPT0_ll' \
         '_ZN2bd19decode3_lean_kernelI6__halfS1_Li4ELb0EEEvPKT_S4_PKiiPKPKjPKPKfiiS8_SC_PKxPT0_ll' \
         '_ZN2bd19decode3_lean_kernelI6__halfS1_Li1ELb1EEEvPKT_S4_PKiiPKPKjPKPKfiiS8_SC_PKxPT0_ll' \
         '_ZN2bd14xplanes_kernelI6__halfLb1EEEvPKT_lPjPfPx' \
         '_ZN2bd14prefill_kernelI6__halfS1_Lb0ELb1EEEvPKT_S4_PKiS6_iPKPKjPKPKfiiiPT0_ll' \
         '_ZN2bd20compress_rows_kernelI13__nv_bfloat16Lb1EEEvPKT_S4_llPhPfS6_PdPNS_14CompressHeaderEPjS7_' \
         '_ZN2bd23prefill_wgmma_ws_kernelI6__halfS1_Lb0EEEvPKT_S4_PKiS6_iPKPKjPKPKfiiiPT0_ll' \
         '_ZN2bd23prefill_wgmma_ws_kernelI6__halffLb1EEEvPKT_S4_PKiS6_iPKPKjPKPKfiiiPT0_ll'; do
  sass="$dest/sass-$(echo "$f" | cut -c1-40 | tr -c 'A-Za-z0-9_\n' _).txt"
  cuobjdump -sass -arch sm_90a -fun "$f" "$lib/libbitdelta_cuda.so" > "$sass" 2>&1
  grep -q "Function : $f" "$sass" || echo "run-device.sh: no SASS for $f in the library (renamed kernel?)" | tee -a "$sass"
done
"$lib/bd_harness" "$@" 2>&1 | tee "$dest/harness.log"
if [ "${PROFILE:-0}" = 1 ]; then
  ncu --clock-control none -k regex:'decode_kernel|decode3|prefill|xplanes|compress' \
      --section SpeedOfLight --section LaunchStats --section Occupancy --section SchedulerStats \
      --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
      "$lib/bd_harness" --profile > "$dest/ncu.txt" 2>&1
  grep -E "decode|prefill|compress|Duration|Throughput|Issue Slots|Issued Warp|No Eligible|Active Warps|Eligible Warps|Stall|Achieved Occupancy|Registers|L2 Hit|Mem Busy|Max Bandwidth" "$dest/ncu.txt" | head -250
fi
