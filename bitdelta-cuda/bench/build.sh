#!/usr/bin/env bash
# Builds libbitdelta_cuda.so (all kernels, static cudart) and, where cuBLAS is found, the benchmark harness.
# Usage: bitdelta-cuda/bench/build.sh [--lib-only] [--harness-only] [--sm90-only]
#   --sm90-only: SASS for sm_90a alone (quick iterations); the default builds sm_80, 86, 89, 90a + compute_90 PTX.
#   outputs: bitdelta-cuda/target/native/{libbitdelta_cuda.so, bd_harness, *.sass.txt, resource-usage.txt}
#            (bitdelta-cuda/target/native-sm90/ with --sm90-only)
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), CUDA_HOME (for cuBLAS), JOBS.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$(cd "$here/.." && pwd)"
src="$module/src/main/cuda"
out="$module/target/native"
mkdir -p "$out"

NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
CUDA_HOME="${CUDA_HOME:-$(cd "$(dirname "$(readlink -f "$NVCC")")/.." && pwd)}"
lib_only=0; sm90_only=0; harness_only=0
for a in "$@"; do
  case "$a" in
    --lib-only) lib_only=1 ;;
    --harness-only) harness_only=1 ;;
    --sm90-only) sm90_only=1 ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done

if [ "$sm90_only" = 1 ]; then
  # Development builds go to their own folder, so that a quick sm_90-only library is never mistaken for the
  # release library (Maven's package-native.sh packages target/native/libbitdelta_cuda.so).
  out="$module/target/native-sm90"
  mkdir -p "$out"
  GENCODE=(-gencode arch=compute_90a,code=sm_90a)
else
  GENCODE=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86
           -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90a,code=sm_90a
           -gencode arch=compute_90,code=compute_90)
fi
# Hopper's SASS is built for sm_90a (wgmma: the delta-only prefill); BD_HAVE_SM90A tells the host code so.
COMMON=(-std=c++17 -O3 -Xcompiler -fPIC -Xcompiler -Wall --threads "${JOBS:-0}" -Xptxas -warn-spills
        -I"$src" -lineinfo -DBD_HAVE_SM90A=1)

echo "nvcc: $("$NVCC" --version | tail -1)"
if [ "$harness_only" = 0 ]; then
objs=()
for cu in "$src"/*.cu; do
  o="$out/$(basename "${cu%.cu}").o"
  "$NVCC" "${COMMON[@]}" "${GENCODE[@]}" -Xptxas -v -c "$cu" -o "$o" 2> "$o.ptxas.txt" || { cat "$o.ptxas.txt"; exit 1; }
  objs+=("$o")
done
"$NVCC" "${GENCODE[@]}" -shared -cudart static -o "$out/libbitdelta_cuda.so" "${objs[@]}"
# Resource report (registers, spills, shared memory) of the Hopper (sm_90a) code.
grep -h -A3 "for 'sm_90a\\?'" "$out"/*.ptxas.txt | grep -E "Compiling|Used|spill" > "$out/resource-usage.txt" || true
cuobjdump -sass -arch sm_90a "$out/libbitdelta_cuda.so" > "$out/libbitdelta_cuda.sm90.sass.txt" 2>/dev/null || true
echo "built $out/libbitdelta_cuda.so"
fi

[ "$lib_only" = 1 ] && exit 0
if [ -f "$CUDA_HOME/include/cublas_v2.h" ] || [ -f "$CUDA_HOME/targets/x86_64-linux/include/cublas_v2.h" ]; then
  "$NVCC" -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 -I"$src" -Xcompiler -fopenmp \
    "$here/harness.cu" -o "$out/bd_harness" -L"$out" -lbitdelta_cuda -lcublas -lgomp \
    -Xlinker -rpath -Xlinker '$ORIGIN'
  echo "built $out/bd_harness"
else
  echo "cuBLAS headers not found under $CUDA_HOME: harness not built (compile-only machine?)"
  # Syntax check of the harness against the minimal declarations, so compile errors show up here too.
  "$NVCC" -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 -I"$src" -DBD_HARNESS_NO_CUBLAS_HEADER \
    -Xcompiler -fopenmp -c "$here/harness.cu" -o "$out/harness.o" && echo "harness compiles (not linked)"
fi
