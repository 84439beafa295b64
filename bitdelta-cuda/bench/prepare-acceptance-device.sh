#!/usr/bin/env bash
# Prepares, on the build machine, the carry for the GPU decoder's acceptance test on a GPU host (no JDK, no network):
# CudaDecoderAcceptanceTest on the tinyllama pair of the data folder. The 26 MB pair does not fit beside the whole
# step carry (64 MiB travel), so this folder, bitdelta-cuda/target/acceptance-device/ (git-ignored), holds only what
# the test needs:
#   jre.tar.xz, libbitdelta_cuda.so.xz   from bitdelta-cuda/target/step-device/ (prepare-step-device.sh, run first)
#   jars/                                bitdelta-core, bitdelta-cuda and their test classes, gson, slf4j and the JUnit
#                                        console launcher (the decoder path needs neither DJL nor jinjava)
#   acceptance-data.tar.xz               models/tinyllama-shakespeare-{base,finetuned} of the data folder (~18 MB)
#   MANIFEST.txt
# Usage (repository root): bash bitdelta-cuda/bench/prepare-acceptance-device.sh [DATA_DIR (default ../shared/data)]
# Then on the GPU host: OUT=... JAVA_GROUPS=acceptance STEP_CARRY=bitdelta-cuda/target/acceptance-device \
#   bash bitdelta-cuda/bench/check-step-device.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/device-carry.sh"  # root, start_carry, write_manifest
data="${1:-../shared/data}"
step=bitdelta-cuda/target/step-device
dest=bitdelta-cuda/target/acceptance-device
[[ -f $step/jre.tar.xz && -f $step/libbitdelta_cuda.so.xz ]] \
  || { echo "prepare-acceptance-device: $step is incomplete (run bitdelta-cuda/bench/prepare-step-device.sh first)" >&2; exit 1; }
for model in tinyllama-shakespeare-base tinyllama-shakespeare-finetuned; do
  [[ -f $data/models/$model/config.json ]] || { echo "prepare-acceptance-device: $data/models/$model is missing" >&2; exit 1; }
done
start_carry prepare-acceptance-device "$dest"
cp "$step/jre.tar.xz" "$step/libbitdelta_cuda.so.xz" "$dest/"
for pattern in 'bitdelta-*.jar' 'gson-*.jar' 'slf4j-*.jar' 'junit-console.jar'; do
  cp $step/jars/$pattern "$dest/jars/"
done
tar -C "$data" -cf - models/tinyllama-shakespeare-base models/tinyllama-shakespeare-finetuned | xz -T2 -6 > "$dest/acceptance-data.tar.xz"
write_manifest "$jdk" "$dest" bitdelta-core bitdelta-cuda
echo "prepare-acceptance-device: $(du -sh "$dest" | cut -f1) in $dest"
