#!/usr/bin/env bash
# Prepares, on the build machine, what serving-benchmark-device.sh needs on a many-core host that has no JDK, no Maven
# and no network (the GPU host, for its CPU cores: the serving benchmark runs on the CPU backend). One folder,
# bitdelta-examples/target/serving-device/ (git-ignored), to copy there beside the working tree:
#   jre.tar.xz     a jlink'd Java runtime with every Java SE module (Helidon, Jackson and jinjava need more than
#                  java.base), xz-compressed (~24 MB)
#   jars/          bitdelta-core, bitdelta-server and bitdelta-examples as jars and the server's runtime libraries, with
#                  slf4j-simple; no ND4J and no CUDA (the benchmark uses neither); DJL's tokenizers jar cut to its
#                  linux-x86_64 native library
#   MANIFEST.txt   commit, date, sizes
# Usage (repository root): bash bitdelta-examples/bench/prepare-serving-device.sh [--beside-step]
# --beside-step leaves out the runtime and every jar that bitdelta-cuda/target/step-device/ (prepare-step-device.sh)
# already holds, so that both fit one device call's carry; serving-benchmark-device.sh then takes those from there.
set -euo pipefail
beside_step=0
[[ ${1:-} == --beside-step ]] && beside_step=1
step_carry=bitdelta-cuda/target/step-device
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/device-carry.sh"  # root, start_carry, pack_runtime
dest=bitdelta-examples/target/serving-device
start_carry prepare-serving-device "$dest"

# 1. Jars: the examples module (it holds ServingBenchmark) and the server's runtime class path. Maven writes each
# module's class path to the same file; the server's, built after core, is what stays.
JAVA_HOME=$jdk mvn -B -q -o package dependency:build-classpath -pl bitdelta-server,bitdelta-examples -am -DskipTests \
    -Dexec.skip=true -DincludeScope=runtime -Dmdep.outputFile="$root/$dest/classpath-\${project.artifactId}.txt"
for entry in $(tr ':' '\n' < "$dest/classpath-bitdelta-server.txt"); do
  case "$entry" in
    *.jar) cp "$entry" "$dest/jars/" ;;
    *) echo "prepare-serving-device: unexpected class path entry $entry" >&2; exit 1 ;;
  esac
done
cp bitdelta-server/target/bitdelta-server-*.jar "$dest/jars/"
"$jdk/bin/jar" cf "$dest/jars/bitdelta-examples.jar" -C bitdelta-examples/target/classes .
simple=$(tr ':' '\n' < "$dest/classpath-bitdelta-examples.txt" | grep '/slf4j-simple-[^/]*\.jar$' | head -1)
[[ -n $simple ]] || { echo "prepare-serving-device: slf4j-simple is not on the examples' class path" >&2; exit 1; }
cp "$simple" "$dest/jars/"
rm "$dest"/classpath-*.txt
trim_tokenizers "$dest/jars"

# 2. The Java runtime (or, beside the step carry, nothing it already has).
if [[ $beside_step == 1 ]]; then
  [[ -f $step_carry/jre.tar.xz ]] || { echo "prepare-serving-device: --beside-step needs $step_carry (run prepare-step-device.sh first)" >&2; exit 1; }
  for jar in "$dest"/jars/*.jar; do
    [[ -f $step_carry/jars/$(basename "$jar") ]] && rm "$jar"
  done
else
  pack_runtime "$jdk" "$dest/jre.tar.xz"
fi

write_manifest "$jdk" "$dest" bitdelta-core bitdelta-server bitdelta-examples
echo "prepare-serving-device: $(du -sh "$dest" | cut -f1) in $dest"
