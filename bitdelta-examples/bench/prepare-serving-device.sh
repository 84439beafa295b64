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
# Usage (repository root): bash bitdelta-examples/bench/prepare-serving-device.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
dest=bitdelta-examples/target/serving-device
rm -rf "$dest"
mkdir -p "$dest/jars"

jdk=""
for c in "${JAVA_HOME:-}" /usr/lib/jvm/*; do
  [[ -n $c && -x $c/bin/jlink ]] || continue
  v=$("$c/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  if [[ ${v%%.*} -ge 22 ]]; then jdk=$c; break; fi
done
[[ -n $jdk ]] || { echo "prepare-serving-device: no JDK >= 22 with jlink found (set JAVA_HOME)" >&2; exit 1; }

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
for jar in "$dest"/jars/tokenizers-*.jar; do
  [[ -f $jar ]] || { echo "prepare-serving-device: DJL's tokenizers jar is not on the server's class path" >&2; exit 1; }
  zip -q -d "$jar" 'native/lib/win-*' 'native/lib/osx-*' 'native/lib/linux-aarch64/*' > /dev/null
done

# 2. The Java runtime: jlink's own compression off, so that xz finds the redundancy.
jre_dir=$(mktemp -d)
"$jdk/bin/jlink" --add-modules java.se,jdk.unsupported,jdk.zipfs,jdk.incubator.vector,jdk.management,jdk.crypto.ec \
  --strip-debug --no-man-pages --no-header-files --compress=zip-0 --output "$jre_dir/jre" 2> /dev/null
tar -C "$jre_dir" -cf - jre | xz -T2 -6 > "$dest/jre.tar.xz"
rm -rf "$jre_dir"

{
  echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- bitdelta-core bitdelta-server bitdelta-examples || echo ' (with uncommitted changes)')"
  echo "prepared $(date -u +%Y-%m-%dT%H:%M:%SZ) with $("$jdk/bin/java" -version 2>&1 | head -1)"
  (cd "$dest" && du -ab . | sort -k2)
} > "$dest/MANIFEST.txt"
echo "prepare-serving-device: $(du -sh "$dest" | cut -f1) in $dest"
