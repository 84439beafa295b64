# Sourced by the bench scripts that prepare a folder to copy to a host with no JDK, no Maven and no network
# (bitdelta-cuda/bench/prepare-step-device.sh, bitdelta-examples/bench/prepare-serving-device.sh). Sets root and
# goes there.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source tools/find-jdk.sh

# start_carry SCRIPT FOLDER: FOLDER emptied, with FOLDER/jars, and jdk set to a JDK >= 22 with jlink; else exits,
# naming SCRIPT.
start_carry() {
  rm -rf "$2"
  mkdir -p "$2/jars"
  jdk=$(find_jdk) && [[ -x $jdk/bin/jlink ]] || { echo "$1: no JDK >= 22 with jlink found (set JAVA_HOME)" >&2; exit 1; }
}

# trim_tokenizers FOLDER: DJL's tokenizers jar in FOLDER keeps its linux-x86_64 native library alone (the other
# platforms' weigh 40 MB); fails where FOLDER has no such jar.
trim_tokenizers() {
  local jar found=0
  for jar in "$1"/tokenizers-*.jar; do
    [[ -f $jar ]] || continue
    zip -q -d "$jar" 'native/lib/win-*' 'native/lib/osx-*' 'native/lib/linux-aarch64/*' > /dev/null
    found=1
  done
  [[ $found == 1 ]] || { echo "DJL's tokenizers jar is not among the jars in $1" >&2; return 1; }
}

# pack_cuda_jars TREE JARS: bitdelta-cuda's classes (without a native library a full Maven build left in them) and
# test classes of the checkout TREE as JARS/bitdelta-cuda.jar and JARS/bitdelta-cuda-tests.jar; jdk must be set.
pack_cuda_jars() {
  "$jdk/bin/jar" cf "$2/bitdelta-cuda.jar" -C "$1/bitdelta-cuda/target/classes" . || return 1
  zip -q -d "$2/bitdelta-cuda.jar" 'native/*' > /dev/null || [[ $? == 12 ]] || return 1  # 12: nothing to delete
  "$jdk/bin/jar" cf "$2/bitdelta-cuda-tests.jar" -C "$1/bitdelta-cuda/target/test-classes" .
}

# pack_runtime JDK TARGET: a jlink'd Java runtime of JDK with every Java SE module (the server's libraries and the
# test launcher need more than java.base) as the folder jre/ in the tar.xz TARGET (about 24 MB). jlink's own
# compression is off, so that xz finds the redundancy.
pack_runtime() {
  local folder
  folder=$(mktemp -d)
  "$1/bin/jlink" --add-modules java.se,jdk.unsupported,jdk.zipfs,jdk.incubator.vector,jdk.management,jdk.crypto.ec \
    --strip-debug --no-man-pages --no-header-files --compress=zip-0 --output "$folder/jre" \
    && tar -C "$folder" -cf - jre | xz -T2 -6 > "$2"
  local status=$?
  rm -rf "$folder"
  return $status
}

# write_manifest JDK FOLDER PATH...: FOLDER/MANIFEST.txt with the commit (and whether the PATHs have uncommitted
# changes), the date, the JDK and the size of every file in FOLDER.
write_manifest() {
  local jdk=$1 folder=$2
  shift 2
  {
    echo "commit $(git rev-parse HEAD)$([[ -z $(git status --porcelain -- "$@") ]] || echo ' (with uncommitted changes)')"
    echo "prepared $(date -u +%Y-%m-%dT%H:%M:%SZ) with $("$jdk/bin/java" -version 2>&1 | head -1)"
    (cd "$folder" && du -ab . | sort -k2)
  } > "$folder/MANIFEST.txt"
}
