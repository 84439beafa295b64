#!/usr/bin/env bash
# On the build machine: what bench/check-device.sh needs to run the Java tests on a GPU host without Java, in
# .device-jre/ at the repository root (git ignores it; name it in the device call's carry). xz-compressed where it
# counts, to stay well under the 64 MiB that a device call carries; check-device.sh unpacks it there:
#   .device-jre/jre.tar.xz          a Java runtime: jlink of the JDK >= 22 (the modules the tests need)
#   .device-jre/classpath/          bitdelta-cuda's classes (with the release library that Maven built and packaged,
#                                   as native/linux-x86_64/libbitdelta_cuda.so.xz), its test classes, bitdelta-core's
#                                   classes, and the dependency jars
#   .device-jre/classpath.txt       the class path, one entry a line, relative to .device-jre/
# Usage: bash bitdelta-cuda/bench/prepare-device-java.sh   (runs Maven offline: mvn -o ... test-compile)
# Environment: JDK (a JDK >= 22; default: JAVA_HOME if it is one, else the newest under /usr/lib/jvm).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="$root/.device-jre"
cd "$root"

java_feature() { "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/ *java.specification.version = //p'; }
jdk="${JDK:-}"
if [ -z "$jdk" ] && [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/jlink" ] && [ "$(java_feature "$JAVA_HOME")" -ge 22 ]; then
  jdk="$JAVA_HOME"
fi
if [ -z "$jdk" ]; then
  for candidate in $(ls -d /usr/lib/jvm/*/ 2>/dev/null | sort -V -r); do
    if [ -x "$candidate/bin/jlink" ] && [ "$(java_feature "$candidate")" -ge 22 ]; then jdk="${candidate%/}"; break; fi
  done
fi
[ -n "$jdk" ] || { echo "no JDK >= 22 with jlink found (set JDK=...)" >&2; exit 1; }
echo "JDK: $jdk ($(java_feature "$jdk"))"

# The classes, the test classes and the release library (package-native.sh, in generate-resources), and the test
# class path as Maven resolves it (bitdelta-core as its target/classes, since it is built in the same reactor).
classpath_file="$(mktemp)"
mvn -B -q -o -pl bitdelta-cuda -am test-compile dependency:build-classpath \
  -Dmdep.includeScope=test -Dmdep.outputFile="$classpath_file"
library="$root/bitdelta-cuda/target/classes/native/linux-x86_64/libbitdelta_cuda.so"
[ -f "$library" ] || { echo "Maven packaged no native library ($library): is nvcc installed?" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest/classpath"
entries=()
cp -r "$root/bitdelta-cuda/target/classes" "$dest/classpath/bitdelta-cuda-classes"
xz -9 "$dest/classpath/bitdelta-cuda-classes/native/linux-x86_64/libbitdelta_cuda.so"
cp -r "$root/bitdelta-cuda/target/test-classes" "$dest/classpath/bitdelta-cuda-test-classes"
entries+=(classpath/bitdelta-cuda-test-classes classpath/bitdelta-cuda-classes)
tr ':' '\n' < "$classpath_file" | while read -r entry; do [ -n "$entry" ] && echo "$entry"; done > "$classpath_file.lines"
while read -r entry; do
  case "$entry" in
    "$root/bitdelta-core/target/classes")
      cp -r "$entry" "$dest/classpath/bitdelta-core-classes"; entries+=(classpath/bitdelta-core-classes) ;;
    */ai/djl/huggingface/*)
      ;;  # the tokenizers (18 MB of native code for every platform): text input only, never reached by these tests
    *.jar)
      cp "$entry" "$dest/classpath/"; entries+=("classpath/$(basename "$entry")") ;;
    *)
      echo "unexpected class path entry $entry" >&2; exit 1 ;;
  esac
done < "$classpath_file.lines"
rm -f "$classpath_file" "$classpath_file.lines"
printf '%s\n' "${entries[@]}" > "$dest/classpath.txt"

# The modules the classes of bitdelta-core, bitdelta-cuda, its tests and JUnit use (jdeps; gson's java.sql support
# is optional and DJL is never reached).
jre="$(mktemp -d)/jre"
"$jdk/bin/jlink" --add-modules java.base,java.logging,jdk.incubator.vector,jdk.unsupported \
  --strip-debug --no-man-pages --no-header-files --compress=zip-9 --output "$jre"
tar -C "$(dirname "$jre")" -cJf "$dest/jre.tar.xz" jre
rm -rf "$(dirname "$jre")"

echo "prepared $dest ($(du -sh "$dest" | cut -f1)): $(wc -l < "$dest/classpath.txt") class path entries;" \
     "release library sha256 $(sha256sum "$library" | cut -c1-16) ($(du -h "$library" | cut -f1))"
echo "device call: carry [\".device-jre\"], command \"bash bitdelta-cuda/bench/check-device.sh\""
