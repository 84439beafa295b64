#!/usr/bin/env bash
# Prepares, on the build machine, what check-step-device.sh needs on a GPU host that has no JDK, no Maven and no
# network: one folder, bitdelta-cuda/target/step-device/ (git-ignored), to carry there.
#   jre.tar.xz                  a jlink'd Java runtime (tools/device-carry.sh), xz-compressed (~24 MB)
#   libbitdelta_cuda.so.xz      the sm_90a library of target/native-sm90 (built here if missing or older than a kernel)
#   *.ptxas.txt                 its register / spill reports
#   jars/                       bitdelta-core and bitdelta-cuda classes and test classes as jars, their libraries, the JUnit console
#                               launcher, slf4j and gson
#   MANIFEST.txt                commit, dates, sizes
# Usage (repository root): bash bitdelta-cuda/bench/prepare-step-device.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/device-carry.sh"  # root, start_carry, pack_runtime
dest=bitdelta-cuda/target/step-device
start_carry prepare-step-device "$dest"

# 1. The sm_90a library (the device script builds it itself when this is absent).
lib=bitdelta-cuda/target/native-sm90/libbitdelta_cuda.so
if [[ ! -f $lib ]] || [[ -n $(find bitdelta-cuda/src/main/cuda -newer "$lib" -type f -print -quit) ]]; then
  JOBS="${JOBS:-2}" bash bitdelta-cuda/bench/build.sh --sm90-only --lib-only
fi
xz -T2 -6 -c "$lib" > "$dest/libbitdelta_cuda.so.xz"
cp bitdelta-cuda/target/native-sm90/*.ptxas.txt "$dest/"

# 2. Classes (the Maven build without the native packaging step: the library travels on its own).
mvn -B -q -o test-compile dependency:build-classpath -pl bitdelta-cuda -am -Dexec.skip=true \
    -Dmdep.includeScope=test -Dmdep.outputFile="$root/$dest/classpath.txt"
"$jdk/bin/jar" cf "$dest/jars/bitdelta-core.jar" -C bitdelta-core/target/classes .
pack_cuda_jars "$root" "$dest/jars"  # the library travels on its own (above)
# Every library of the test class path (the engine's tokenizer and chat templates included), but the test engines,
# which the console launcher brings; DJL's tokenizers jar keeps its linux-x86_64 native library alone (the others
# would take 40 MB of the 64 MiB that travel).
for jar in $(tr ':' '\n' < "$dest/classpath.txt" | grep '\.jar$' | grep -vE '/(junit|jqwik|opentest4j|apiguardian)'); do
  cp "$jar" "$dest/jars/"
done
trim_tokenizers "$dest/jars"
console=$HOME/.m2/repository/org/junit/platform/junit-platform-console-standalone/1.14.0/junit-platform-console-standalone-1.14.0.jar
if [[ ! -f $console ]]; then
  mvn -B -q dependency:get -Dartifact=org.junit.platform:junit-platform-console-standalone:1.14.0
fi
cp "$console" "$dest/jars/junit-console.jar"
rm "$dest/classpath.txt"

# 3. The Java runtime.
pack_runtime "$jdk" "$dest/jre.tar.xz"

write_manifest "$jdk" "$dest" bitdelta-core bitdelta-cuda
echo "prepare-step-device: $(du -sh "$dest" | cut -f1) in $dest"
