#!/usr/bin/env bash
# The 7B-shape decoder-step benchmark on a GPU host (H100/H200, nvcc and cuBLAS; no JDK, no network), from the
# repository root:
#   OUT=/some/folder bash bitdelta-cuda/bench/step-benchmark-device.sh [--quick] [--pytorch | --pytorch-only] [JAVA ARGS...]
# with bitdelta-cuda/target/step-device/ carried (bench/prepare-step-device.sh makes it on the build machine).
#  1. the sm_90a library: the carried one, else built here (16 cores, a few minutes)
#  2. bench/cublas_prefill.cu built against the host's cuBLAS and run: the prefill baseline (GEMMs of the base alone)
#  3. org.bitdelta.cuda.StepBenchmark on the carried Java runtime (synthetic Llama-2-7B-shape weights made in memory),
#     given the cuBLAS time and the driver; its table is printed last
#  4. with --pytorch (after the above) or --pytorch-only (alone): bench/pytorch_baseline.py (transformers'
#     LlamaForCausalLM F16, batch 1 and 16, eager and compiled), if torch and transformers are installed here
# --quick runs StepBenchmark with 4 layers and fewer steps (a smoke run); --step-only skips the cuBLAS baseline and
# StepBenchmark's batched prefill and table (builds compared in one call). Other arguments go to StepBenchmark.
# The whole script keeps within BUDGET seconds (default 570, under a 600 s limit per remote command). What comes back
# in $OUT: summary.txt (the tables), step-benchmark.log, cublas-prefill.log and pytorch-baseline.log. Exit status 1
# where a stage failed or had no time left.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/step-device-common.sh" /tmp/step-benchmark-out 570 /tmp/bitdelta-step-benchmark

java_args=(); pytorch=0; java=1; cublas=1
for a in "$@"; do
  case "$a" in
    --step-only) java_args+=("$a"); cublas=0 ;;  # StepBenchmark's (a), (b), (c), (f): no batched prefill to set cuBLAS against
    --quick) java_args+=(--layers=4 --warmup=3 --steps=10) ;;
    --pytorch) pytorch=1 ;;
    --pytorch-only) pytorch=1; java=0 ;;
    *) java_args+=("$a") ;;
  esac
done

gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "device: ${gpu:-no nvidia-smi}"
: > "$out/summary.txt"
status=0
echo "== step-benchmark-device on ${gpu:-unknown}; $(head -1 "$carry/MANIFEST.txt" 2>/dev/null || echo 'no MANIFEST')" >> "$out/summary.txt"

if [[ $java == 1 ]]; then
  # ---- 1. library
  lib="$work/lib/libbitdelta_cuda.so"
  if ! step_library "$lib" "$work/build.log"; then
    [[ $lib_from == built ]] && tail -30 "$work/build.log"
    echo "no library ($lib_from)" >> "$out/summary.txt"
    exit 1
  fi

  # ---- 2. cuBLAS prefill baseline
  cublas_ms=""
  if [[ $cublas == 1 ]] && nvcc -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 bitdelta-cuda/bench/cublas_prefill.cu -lcublas -o "$work/cublas_prefill" \
       > "$out/cublas-prefill.log" 2>&1; then
    timeout 120 "$work/cublas_prefill" 4096 5 >> "$out/cublas-prefill.log" 2>&1
    cublas_ms="$(sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' "$out/cublas-prefill.log" | tail -1)"
  fi
  echo "cuBLAS prefill baseline (16 x 256 tokens, GEMMs of the base alone): ${cublas_ms:-not measured} ms" | tee -a "$out/summary.txt"

  # ---- 3. StepBenchmark
  if [[ -f $carry/jre.tar.xz ]]; then
    unpack_jre "$lib"
    extra=()
    [[ -n $cublas_ms ]] && extra+=(--cublas-prefill-ms="$cublas_ms")
    limit=$(left)
    [[ $pytorch == 1 ]] && limit=$((limit - 240))
    timeout "$limit" "${java[@]}" -Xmx16g -cp "$cp_" org.bitdelta.cuda.StepBenchmark \
      --driver="${driver:-unknown}" "${extra[@]}" "${java_args[@]}" > "$out/step-benchmark.log" 2>&1
    code=$?
    (( code != 0 )) && status=1
    echo "StepBenchmark exit $code$([[ $code -eq 124 ]] && echo ' (out of time)')" >> "$out/summary.txt"
    sed -n '/^== StepBenchmark/,$p' "$out/step-benchmark.log" >> "$out/summary.txt"
    [[ $code -ne 0 ]] && tail -40 "$out/step-benchmark.log" >> "$out/summary.txt"
  else
    echo "no carried Java runtime ($carry/jre.tar.xz): StepBenchmark not run" >> "$out/summary.txt"
    status=1
  fi
fi

# ---- 4. PyTorch baseline
if [[ $pytorch == 1 ]]; then
  limit=$(left)
  if (( limit > 60 )); then
    timeout "$limit" python3 bitdelta-cuda/bench/pytorch_baseline.py > "$out/pytorch-baseline.log" 2>&1
    code=$?
    (( code != 0 )) && status=1
    echo "pytorch_baseline exit $code" >> "$out/summary.txt"
    sed -n '/^== pytorch_baseline/,$p' "$out/pytorch-baseline.log" >> "$out/summary.txt"
    grep -q "^== pytorch_baseline" "$out/pytorch-baseline.log" || tail -20 "$out/pytorch-baseline.log" >> "$out/summary.txt"
  else
    echo "pytorch_baseline: no time left in the ${budget} s budget" >> "$out/summary.txt"
    status=1
  fi
fi

echo
cat "$out/summary.txt"
exit $status  # 1 where a stage failed or did not run
