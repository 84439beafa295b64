#!/usr/bin/env bash
# ServingBenchmark (the HTTP server against the engine in-process, on the CPU backend) on a many-core host without a
# JDK or network, such as the GPU host (its GPU is not used), from the repository root:
#   OUT=/some/folder bash bitdelta-examples/bench/serving-benchmark-device.sh [STREAMS [TOKENS [ROUNDS]]]
# with bitdelta-examples/target/serving-device/ copied beside the working tree (prepare-serving-device.sh makes it; made
# with --beside-step, the runtime and the jars it leaves out come from bitdelta-cuda/target/step-device/).
# Writes $OUT/serving-benchmark.log (the host, then the benchmark's output, its tables last) and prints it.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
source tools/device-unpack.sh  # unpack_runtime
carry=bitdelta-examples/target/serving-device
out="${OUT:-/tmp/serving-benchmark-out}"
work=/tmp/bitdelta-serving-device
mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work"
step_carry=bitdelta-cuda/target/step-device
class_path=$(ls "$root/$carry"/jars/*.jar | tr '\n' ':')
runtime=$carry/jre.tar.xz
if [[ ! -f $runtime && -f $step_carry/jre.tar.xz ]]; then  # made with --beside-step
  runtime=$step_carry/jre.tar.xz
  # the serving folder has its own bitdelta-core jar (under another name), first on the class path
  class_path+=$(ls "$root/$step_carry"/jars/*.jar | grep -v -E '/(junit-console|bitdelta-(core|cuda)[^/]*)\.jar$' | tr '\n' ':')
fi
[[ -f $runtime ]] || { echo "serving-benchmark-device: no Java runtime in $carry or $step_carry (run prepare-serving-device.sh)" >&2; exit 1; }
unpack_runtime "$root/$runtime" "$work"
log="$out/serving-benchmark.log"
{
  echo "host: $(nproc) CPUs,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(head -1 "$carry/MANIFEST.txt")"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$log"
# DJL's tokenizer: the CPU build inside its jar (RUST_FLAVOR), unpacked under the work folder.
RUST_FLAVOR=cpu DJL_CACHE_DIR="$work/djl" timeout 540 "$work/jre/bin/java" --add-modules jdk.incubator.vector \
  --enable-native-access=ALL-UNNAMED -Djava.io.tmpdir="$work" -cp "$class_path" \
  org.bitdelta.examples.bench.ServingBenchmark bitdelta-core/src/test/resources/models "${1:-64}" "${2:-128}" "${3:-5}" \
  >> "$log" 2>&1
status=$?
echo "ServingBenchmark exit $status" >> "$log"
grep -v -E '^(WARNING|[A-Z][a-z]{2} [0-9]{2}, [0-9]{4}|INFO:)' "$log"
exit $status
