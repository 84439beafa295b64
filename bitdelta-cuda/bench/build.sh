#!/usr/bin/env bash
# Builds libbitdelta_cuda.so (static cudart) and the check/benchmark harness bd_harness.
#   bitdelta-cuda/bench/build.sh [--lib-only | --harness-only] [--sm90-only]
#   (no option)     both of the below
#   --lib-only      the release library, target/native/libbitdelta_cuda.so (src/build/package-native.sh puts it into
#                   the jar): only the kernels the automatic choice can run; sm_80 SASS (runs on every cc 8.x GPU),
#                   sm_90a SASS (cc 9.0; the wgmma prefill) and compute_90 PTX (JIT for newer GPUs)
#   --harness-only  the experiment library (-DBD_EXPERIMENTS=1: also the forms that only bd_debug_set_decode_variant
#                   or BD_PREFILL_KERNEL=mma_sync select, and line info for profilers) and bd_harness linked to it,
#                   in target/native/experiments/ (a library of the same name, never packaged)
#   --sm90-only     sm_90a SASS alone, into target/native-sm90/ instead of target/native/ (quick iterations; never
#                   packaged)
# Next to each library: kernels.txt (its kernels per target, bench/list-kernels.py), resource-usage.txt
# (registers, spills and shared memory of the sm_90a code) and one <source>.o.ptxas.txt per source (ptxas -v).
# The .cu files compile concurrently, as many nvcc at a time as there are CPUs, the heavy ones (a dtype's decode or
# prefill kernels) first; each nvcc compiles its targets one after another where there are fewer CPUs than files
# (two CPUs are kept busiest that way), in parallel threads elsewhere.
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), CUDA_HOME (cuBLAS for the harness).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$(cd "$here/.." && pwd)"
src="$module/src/main/cuda"

NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
CUDA_HOME="${CUDA_HOME:-$(cd "$(dirname "$(readlink -f "$NVCC")")/.." && pwd)}"
build_lib=1; build_harness=1; sm90_only=0
for a in "$@"; do
  case "$a" in
    --lib-only) build_harness=0 ;;
    --harness-only) build_lib=0 ;;
    --sm90-only) sm90_only=1 ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done

if [ "$sm90_only" = 1 ]; then
  # Its own folder, so that a quick sm_90a-only library is never mistaken for the release library.
  out="$module/target/native-sm90"
  GENCODE=(-gencode arch=compute_90a,code=sm_90a)
  TARGETS="sm_90a"
else
  out="$module/target/native"
  GENCODE=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
           -gencode arch=compute_90,code=compute_90)
  TARGETS="sm_80,sm_90a,compute_90"
fi
# BD_HAVE_SM90A tells the host code that the library holds sm_90a code (the wgmma prefill kernel).
COMMON=(-std=c++17 -O3 -Xcompiler -fPIC -Xcompiler -Wall -Xptxas -warn-spills -I"$src" -DBD_HAVE_SM90A=1)
cpus="$(nproc 2>/dev/null || echo 2)"
mapfile -t sources < <(ls "$src"/*_f16.cu "$src"/*_bf16.cu | sort)
for cu in "$src"/*.cu; do case "$cu" in *_f16.cu|*_bf16.cu) ;; *) sources+=("$cu") ;; esac; done
threads=1
[ "$cpus" -gt "${#sources[@]}" ] && threads=0

# build_library FOLDER EXTRA_NVCC_FLAGS...: every .cu of src/main/cuda at once, then the shared library.
build_library() {
  local dir="$1" start=$SECONDS
  shift
  mkdir -p "$dir"
  local objs=() failed=0
  rm -f "$dir"/*.o "$dir"/*.status
  for cu in "${sources[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$cpus" ]; do wait -n || true; done
    local o="$dir/$(basename "${cu%.cu}").o"
    objs+=("$o")
    { "$NVCC" "${COMMON[@]}" "${GENCODE[@]}" --threads "$threads" "$@" -Xptxas -v -c "$cu" -o "$o" 2> "$o.ptxas.txt"
      echo $? > "$o.status"; } &
  done
  wait
  for o in "${objs[@]}"; do
    if [ "$(cat "$o.status" 2>/dev/null)" != 0 ]; then
      failed=1
      echo "== nvcc failed on $(basename "${o%.o}").cu:" >&2
      grep -v -E "^ptxas info|bytes stack frame|^    Compile time|^$" "$o.ptxas.txt" >&2 || true
    fi
  done
  rm -f "$dir"/*.status
  [ "$failed" = 0 ] || exit 1
  "$NVCC" "${GENCODE[@]}" -shared -cudart static -o "$dir/libbitdelta_cuda.so" "${objs[@]}"
  echo "$TARGETS" > "$dir/targets.txt"
  grep -h -A3 "for 'sm_90a'" "$dir"/*.ptxas.txt | grep -E "Compiling|Used|spill" > "$dir/resource-usage.txt" || true
  if command -v python3 > /dev/null && command -v zstd > /dev/null; then
    python3 "$here/list-kernels.py" "$dir/libbitdelta_cuda.so" --names > "$dir/kernels.txt"
    echo "built $dir/libbitdelta_cuda.so ($(du -h "$dir/libbitdelta_cuda.so" | cut -f1), $((SECONDS - start)) s):" \
         "$(grep -v '^ ' "$dir/kernels.txt" | tr '\n' ' ')"
  else
    echo "built $dir/libbitdelta_cuda.so ($(du -h "$dir/libbitdelta_cuda.so" | cut -f1), $((SECONDS - start)) s)"
  fi
}

echo "nvcc: $("$NVCC" --version | tail -1); targets $TARGETS"
[ "$build_lib" = 1 ] && build_library "$out"
[ "$build_harness" = 1 ] || exit 0

exp="$out/experiments"
build_library "$exp" -DBD_EXPERIMENTS=1 -lineinfo
if [ -f "$CUDA_HOME/include/cublas_v2.h" ] || [ -f "$CUDA_HOME/targets/x86_64-linux/include/cublas_v2.h" ]; then
  "$NVCC" -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 -I"$src" -Xcompiler -fopenmp \
    "$here/harness.cu" -o "$exp/bd_harness" -L"$exp" -lbitdelta_cuda -lcublas -lgomp \
    -Xlinker -rpath -Xlinker '$ORIGIN'
  echo "built $exp/bd_harness"
else
  echo "cuBLAS headers not found under $CUDA_HOME: harness not built (compile-only machine?)"
  # Syntax check of the harness against minimal cuBLAS declarations, so that compile errors show up here too.
  "$NVCC" -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 -I"$src" -DBD_HARNESS_NO_CUBLAS_HEADER \
    -Xcompiler -fopenmp -c "$here/harness.cu" -o "$exp/harness.o" && echo "harness compiles (not linked)"
fi
