#!/usr/bin/env bash
# Every GPU check of bitdelta-cuda in one command, on a GPU host with nvcc and cuBLAS (Java and network not needed):
#   bash bitdelta-cuda/bench/check-device.sh [--timings] [--seed=N]
#   1. build     the experiment library and bd_harness for sm_90a (bench/build.sh --harness-only --sm90-only)
#   2. harness   bd_harness --no-bench against the experiment library: decode (the automatic choice, every variant,
#                no workspace), prefill (wgmma and mma.sync kernels), compression, repack/unpack, argument checks
#   3. release   the same checks against the release library that Maven packaged (from .device-jre/; the forms it
#                was built without are reported as skipped), and bd_harness --launch-overhead (the C launch cost)
#   4. java      where .device-jre/ was carried (bench/prepare-device-java.sh): the module's Java tests
#                (GpuTestLauncher), which load that same packaged library from the class path, then
#                CudaOverheadBenchmark beside the C launch cost
#   5. timings   with --timings only: bd_harness --no-checks (timings of every variant and the cuBLAS baselines)
# --seed=N replays the random inputs of the harness (--seed=N) and of the Java tests (-Dbitdelta.test.seed=N).
# Full logs go to $OUT (default /tmp/bitdelta-check); the console shows failures and a summary table, last.
# Exit status: 0 when every step that ran passed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${OUT:-/tmp/bitdelta-check}"
mkdir -p "$out"
timings=0; seed=""
for a in "$@"; do
  case "$a" in
    --timings) timings=1 ;;
    --seed=*) seed="${a#--seed=}" ;;
    *) echo "unknown argument $a (usage: check-device.sh [--timings] [--seed=N])" >&2; exit 2 ;;
  esac
done
harness_seed=(); java_seed=()
[ -n "$seed" ] && harness_seed=(--seed="$seed") && java_seed=(-Dbitdelta.test.seed="$seed")

rows=()     # summary table rows
status=0
row() { rows+=("| $1 | $2 | $3 | $4 |"); }
# checks LOG: "N passed, F failed, S skipped" from a harness log (its last "== checks:" line).
checks() {
  local line
  line="$(grep "^== checks:" "$1" | tail -1)"
  [ -n "$line" ] || { echo "no result (crashed?)"; return; }
  echo "$line" | sed -E 's/== checks: ([0-9]+) failed of ([0-9]+) \(([0-9]+) skipped.*/\2 \1 \3/' |
    awk '{printf "%d passed, %d failed, %d skipped", $1 - $2, $2, $3}'
}
sha() { sha256sum "$1" | cut -c1-16; }

device="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "device: ${device:-no nvidia-smi}"

# 1. build
start=$SECONDS
if bash "$here/build.sh" --harness-only --sm90-only > "$out/build.log" 2>&1; then
  row "build: experiment library + bd_harness, sm_90a" "ok" "$((SECONDS - start))" "build.log"
else
  tail -30 "$out/build.log"
  row "build: experiment library + bd_harness, sm_90a" "FAILED" "$((SECONDS - start))" "build.log"
  printf '%s\n' "" "== summary" "| step | result | s | log |" "| --- | --- | --- | --- |" "${rows[@]}" | tee "$out/summary.txt"
  exit 1
fi
experiments="$root/bitdelta-cuda/target/native-sm90/experiments"
harness="$experiments/bd_harness"

# 2. harness checks against the experiment library
start=$SECONDS
"$harness" --no-bench "${harness_seed[@]}" > "$out/harness-experiments.log" 2>&1 || status=1
grep -E "^FAIL|^seed|error" "$out/harness-experiments.log" | head -40
row "harness checks, experiment library" "$(checks "$out/harness-experiments.log")" "$((SECONDS - start))" "harness-experiments.log"

# .device-jre/ (bench/prepare-device-java.sh) carries the runtime and the packaged library xz-compressed: unpack them
# and check that the library is, byte for byte, the one Maven packaged (the sha256 it wrote beside it).
unxz_to() {  # unxz_to FILE.xz DEST (xz where installed, else Python's lzma)
  if command -v xz > /dev/null; then xz -dc "$1" > "$2"
  else python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$1" "$2"; fi
}
jredir="$root/.device-jre"
native="$jredir/classpath/bitdelta-cuda-classes/native/linux-x86_64"
release="$native/libbitdelta_cuda.so"
if [ -f "$release.xz" ] && [ ! -f "$release" ]; then
  unxz_to "$release.xz" "$release" && rm -f "$release.xz"
fi
if [ -f "$jredir/jre.tar.xz" ] && [ ! -x "$jredir/jre/bin/java" ]; then
  unxz_to "$jredir/jre.tar.xz" "$jredir/jre.tar" && tar -C "$jredir" -xf "$jredir/jre.tar" && rm -f "$jredir/jre.tar"
fi
if [ -f "$release" ]; then
  packaged="$(sed -n 's/^library.sha256=//p' "$native/bitdelta-cuda.properties")"
  if [ "$(sha256sum "$release" | cut -d' ' -f1)" != "$packaged" ]; then
    echo "the carried library's sha256 differs from the one Maven packaged ($packaged)"
    status=1
  fi
fi

# 3. the same checks against Maven's release library; the C launch cost
c_launch=""
if [ -f "$release" ]; then
  start=$SECONDS
  staged=/tmp/bitdelta-release-harness
  rm -rf "$staged" && mkdir -p "$staged"
  cp "$harness" "$staged/" && cp "$release" "$staged/libbitdelta_cuda.so"  # bd_harness finds it through $ORIGIN
  {
    "$staged/bd_harness" --no-bench "${harness_seed[@]}"
    echo "== bd_harness --launch-overhead"
    "$staged/bd_harness" --launch-overhead
  } > "$out/harness-release.log" 2>&1 || status=1
  grep -E "^FAIL|^seed|error" "$out/harness-release.log" | head -40
  grep -q "^library: release build" "$out/harness-release.log" || { echo "the packaged library is not the release build"; status=1; }
  row "harness checks, release library (Maven's, sha256 $(sha "$release"))" "$(checks "$out/harness-release.log")" \
      "$((SECONDS - start))" "harness-release.log"
  c_launch="$(sed -n 's/.*enqueue from C: \([0-9.]*\) us median.*/\1/p' "$out/harness-release.log")"
  row "bd_decode tiny launch, enqueue from C" "${c_launch:-?} us" "" "harness-release.log"
else
  echo "no .device-jre/ carried (bench/prepare-device-java.sh): release library checks and Java tests skipped"
  row "harness checks, release library" "not run: .device-jre/ not carried" "" ""
fi

# 4. Java tests against the same packaged library
java="$jredir/jre/bin/java"
if [ -x "$java" ] && [ -f "$release" ]; then
  start=$SECONDS
  cp_="$(sed "s|^|$jredir/|" "$jredir/classpath.txt" | paste -sd:)"
  cache=/tmp/bitdelta-java-cache
  rm -rf "$cache"
  jvm=("$java" -Xmx32g --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
       --sun-misc-unsafe-memory-access=allow -cp "$cp_")
  # XDG_CACHE_HOME: where NativeLibraryLocator extracts the packaged library (checked below).
  XDG_CACHE_HOME="$cache" "${jvm[@]}" "${java_seed[@]}" org.bitdelta.cuda.GpuTestLauncher > "$out/java-tests.log" 2>&1 || status=1
  grep -E "^FAIL" "$out/java-tests.log" | head -20
  extracted="$(find "$cache" -name libbitdelta_cuda.so 2>/dev/null | head -1)"
  loaded="not extracted"
  if [ -n "$extracted" ]; then
    if cmp -s "$extracted" "$release"; then loaded="the packaged release library"; else loaded="A DIFFERENT LIBRARY"; status=1; fi
  fi
  row "Java tests (loaded $loaded)" "$(tail -1 "$out/java-tests.log")" "$((SECONDS - start))" "java-tests.log"
  XDG_CACHE_HOME="$cache" "${jvm[@]}" org.bitdelta.cuda.CudaOverheadBenchmark ${c_launch:+--c-launch-us=$c_launch} \
    > "$out/java-overhead.log" 2>&1 || status=1
  ffm="$(sed -n 's/.*enqueue through FFM: \([0-9.]*\) us median.*/\1/p' "$out/java-overhead.log")"
  row "bd_decode tiny launch, enqueue through FFM" "${ffm:-?} us (C: ${c_launch:-?} us)" "" "java-overhead.log"
elif [ -f "$release" ]; then
  row "Java tests" "not run: no .device-jre/jre" "" ""
fi

# 5. timings
if [ "$timings" = 1 ]; then
  start=$SECONDS
  "$harness" --no-checks "${harness_seed[@]}" > "$out/timings.log" 2>&1 || status=1
  sed -n '/^== table/,$p' "$out/timings.log"
  row "timings (experiment library)" "table above" "$((SECONDS - start))" "timings.log"
fi

{
  echo ""
  echo "== summary (${device:-unknown device}; logs in $out)"
  echo "| step | result | s | log |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} | tee "$out/summary.txt"
exit $status
