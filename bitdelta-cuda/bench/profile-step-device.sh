#!/usr/bin/env bash
# Where the decoder step's time goes, kernel by kernel, on a GPU host (H100/H200 with Nsight Compute; no JDK, no
# network), from the repository root:
#   OUT=/some/folder [DETAILS=REGEX] bash bitdelta-cuda/bench/profile-step-device.sh [LAYERS]
# with bitdelta-cuda/target/step-device/ carried (bench/prepare-step-device.sh makes it). Runs
# `StepBenchmark --profile` (7B-shape layers, default 2: every layer runs the same kernels) under ncu with
# --profile-from-start off: one 16-tenant decode step, one base-alone decode step and one 256-token prefill step, each
# kernel alone (ncu serializes them and flushes the caches before each), with its time and DRAM bytes. What comes back
# in $OUT: profile-summary.txt (per step: each kernel's time, bytes and GB/s, totals by kernel name; also printed),
# ncu.csv (the raw rows) and profile-java.log. DETAILS=REGEX adds a second pass over the kernels whose names match it,
# with Nsight Compute's sections on throughput, occupancy, scheduler, instruction mix and warp stall reasons:
# profile-details.txt, profile-details-java.log, profile-sass.csv.xz (each SASS instruction's executions and stall
# samples) and profile-sass-summary.txt (sass-summary.py of it: per kernel, instructions executed, stalls by reason, the
# instructions with the most samples). Exit status: ncu's (non-zero where it or the JVM failed).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/step-device-common.sh" /tmp/step-profile-out 300 /tmp/bitdelta-step-profile
layers="${1:-2}"
ncu_bin="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)"
[[ -n $ncu_bin ]] || { echo "profile-step-device: no ncu on this host" | tee "$out/profile-summary.txt"; exit 1; }
lib="$work/lib/libbitdelta_cuda.so"
step_library "$lib" "$work/build.log" || { tail -30 "$work/build.log"; echo "no library" > "$out/profile-summary.txt"; exit 1; }
unpack_jre "$lib"
profiled=("${java[@]}" -Xmx16g -cp "$cp_" org.bitdelta.cuda.StepBenchmark --profile --warmup=3 --steps=3)
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__occupancy_limit_registers
timeout "$(left)" "$ncu_bin" --profile-from-start off --target-processes all --clock-control none --graph-profiling node \
  --metrics "$metrics" --csv --page raw --log-file "$out/ncu.csv" "${profiled[@]}" --layers="$layers" > "$out/profile-java.log" 2>&1
status=$?
echo "ncu exit $status" >> "$out/profile-java.log"
if [[ -n ${DETAILS:-} ]]; then
  timeout "$(left)" "$ncu_bin" --profile-from-start off --target-processes all --clock-control none --graph-profiling node \
    --kernel-name "regex:$DETAILS" --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section LaunchStats --section ComputeWorkloadAnalysis --section InstructionStats \
    --section SourceCounters --export "$work/details" --log-file "$out/profile-details.txt" "${profiled[@]}" --layers=1 \
    > "$out/profile-details-java.log" 2>&1
  code=$?
  (( code != 0 )) && status=$code
  echo "ncu details exit $code" >> "$out/profile-java.log"
  # Per SASS instruction of each profiled kernel: executions and warp stall samples by reason (the source page).
  if [[ -f $work/details.ncu-rep ]]; then
    "$ncu_bin" --import "$work/details.ncu-rep" --page source --print-source sass --csv > "$work/profile-sass.csv" 2>&1
    xz -T0 -c "$work/profile-sass.csv" > "$out/profile-sass.csv.xz"
    python3 "$(dirname "${BASH_SOURCE[0]}")/sass-summary.py" "$work/profile-sass.csv" > "$out/profile-sass-summary.txt" 2>&1
  fi
fi
python3 - "$out/ncu.csv" "$layers" > "$out/profile-summary.txt" 2>&1 <<'EOF'
import csv, sys, collections
rows = [line for line in open(sys.argv[1], errors="replace") if line.startswith('"')]
table = list(csv.reader(rows))
if len(table) < 3:
    print("no kernels profiled; ncu.csv has the log"); sys.exit(0)
header, units, data = table[0], table[1], table[2:]
col = {name: i for i, name in enumerate(header)}
def value(row, name):
    try: return float(row[col[name]].replace(",", ""))
    except (KeyError, ValueError): return float("nan")
def short(name):
    name = name.split("(")[0]
    return name.replace("bd::step::", "").replace("bd::", "").replace("__nv_bfloat16", "bf16").replace("__half", "f16")
unit = units[col["gpu__time_duration.sum"]]
scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[unit]
phases, current = [], None
for row in data:
    name = short(row[col["Kernel Name"]])
    if "embed" in name or current is None:
        current = []; phases.append(current)
    current.append((name, value(row, "gpu__time_duration.sum") * scale, value(row, "dram__bytes_read.sum"),
                    value(row, "dram__bytes_write.sum"), row[col["launch__grid_size"]], row[col["launch__block_size"]],
                    row[col["launch__registers_per_thread"]], value(row, "sm__throughput.avg.pct_of_peak_sustained_elapsed")))
byte_unit = units[col["dram__bytes_read.sum"]]
byte_scale = {"byte": 1, "B": 1, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9}[byte_unit]
titles = ["16-tenant decode step", "base-alone decode step", "256-token prefill step (tenant 1)"]
print(f"layers: {sys.argv[2]}; times are each kernel alone (ncu, caches flushed), not the step's graph")
for index, phase in enumerate(phases):
    title = titles[index] if index < len(titles) else f"phase {index}"
    total = sum(k[1] for k in phase)
    print(f"\n== {title}: {len(phase)} kernels, {total:.1f} us in all")
    print(f"{'kernel':60s} {'us':>9s} {'MB read':>9s} {'MB writ':>8s} {'GB/s':>7s} {'SM%':>5s}  grid x block, regs")
    for name, us, read, written, grid, block, regs, sm in phase:
        read *= byte_scale; written *= byte_scale
        print(f"{name[:60]:60s} {us:9.1f} {read/1e6:9.2f} {written/1e6:8.2f} {(read+written)/us/1e3 if us else 0:7.0f} {sm:5.1f}  {grid} x {block}, {regs}")
    sums = collections.OrderedDict()
    for name, us, read, written, *_ in phase:
        entry = sums.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1; entry[1] += us; entry[2] += (read + written) * byte_scale
    print(f"-- by kernel name")
    for name, (count, us, moved) in sorted(sums.items(), key=lambda item: -item[1][1]):
        print(f"{name[:60]:60s} {count:3d}x {us:9.1f} us {100*us/total:5.1f}% {moved/us/1e3 if us else 0:7.0f} GB/s")
EOF
cat "$out/profile-summary.txt"
tail -5 "$out/profile-java.log"
exit $status  # ncu's (with the JVM's) exit status
