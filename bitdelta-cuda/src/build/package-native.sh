#!/usr/bin/env bash
# Maven runs this (generate-resources) to put the release libbitdelta_cuda.so (bench/build.sh --lib-only) into the
# jar under native/linux-x86_64/, with bitdelta-cuda.properties naming the CUDA version, the GPU targets and the
# library's sha256. Where nvcc is missing, the module is built without its native library and the CUDA backend
# reports itself unavailable (it never fails the build).
# Usage: package-native.sh OUTPUT_CLASSES_DIR
set -euo pipefail
module="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
classes="${1:?usage: package-native.sh OUTPUT_CLASSES_DIR}"
target="$classes/native/linux-x86_64"
nvcc="${NVCC:-$(command -v nvcc || true)}"
[[ -n $nvcc ]] || { [[ -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc; }
if [[ -z $nvcc ]]; then
  echo "bitdelta-cuda: nvcc not found (PATH, /usr/local/cuda/bin): building without the native CUDA library"
  exit 0
fi
if [[ $(uname -s)-$(uname -m) != Linux-x86_64 ]]; then
  echo "bitdelta-cuda: the native library is built for linux-x86_64 only; skipping on $(uname -s)-$(uname -m)"
  exit 0
fi
library="$module/target/native/libbitdelta_cuda.so"
# Rebuild only when a kernel source or the build script is newer than the library (a full build takes minutes).
if [[ ! -f $library ]] || [[ ! -f $module/target/native/targets.txt ]] \
   || [[ -n $(find "$module/src/main/cuda" "$module/bench/build.sh" -newer "$library" -type f -print -quit) ]]; then
  NVCC="$nvcc" bash "$module/bench/build.sh" --lib-only
fi
mkdir -p "$target"
cp "$library" "$target/libbitdelta_cuda.so"
cuda_version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
{
  echo "# written by bitdelta-cuda/src/build/package-native.sh"
  echo "cuda.version=$cuda_version"
  echo "sm.list=$(cat "$module/target/native/targets.txt")"
  echo "cudart=static"
  echo "library.sha256=$(sha256sum "$library" | cut -d' ' -f1)"
} > "$target/bitdelta-cuda.properties"
echo "bitdelta-cuda: packaged $(du -h "$library" | cut -f1) libbitdelta_cuda.so (CUDA $cuda_version) into $target"
