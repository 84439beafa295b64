#!/usr/bin/env bash
# The GPU decoder's checks on a GPU host (H100/H200, nvcc; no JDK, no network), from the repository root:
#   OUT=/some/folder bash bitdelta-cuda/bench/check-step-device.sh
# with bitdelta-cuda/target/step-device/ carried (bench/prepare-step-device.sh makes it on the build machine).
#  1. the sm_90a library: the carried one, else built here (16 cores, a few minutes)
#  2. SASS of the decoder-step kernels (cuobjdump): local-memory loads/stores counted
#  3. step_check: each bd_step_* kernel against a CPU reference (fast feedback), exit status per check
#  4. the Java GPU tests (JAVA_GROUPS, default "decoder backend acceptance"): the decoder device (conformance, whole
#     models, faults); the tinyllama pair where the carry holds it (STEP_CARRY=bitdelta-cuda/target/acceptance-device,
#     made by prepare-acceptance-device.sh); the module's other tests (CHECK_BACKEND=0 leaves them out)
# Every stage runs even if one before failed; the whole script keeps within BUDGET seconds (default 560, under a
# 600 s limit per remote command). What goes to $OUT: summary.txt (the table, also printed last),
# step-check.log, a java-GROUP.log per JUnit run, sass-and-resources.txt and junit-reports.tar.gz. Exit status 1 where a
# row of the summary failed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/step-device-common.sh" /tmp/step-device-out 560 /tmp/bitdelta-step-device
mkdir -p "$work/logs"
rows=()
row() { rows+=("$(printf '%-34s %-6s %s' "$1" "$2" "$3")"); }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$work/logs/nvidia-smi.txt" 2>&1
cat "$work/logs/nvidia-smi.txt"

# ---- 1. library
lib="$work/lib/libbitdelta_cuda.so"
start=$SECONDS
if step_library "$lib" "$work/logs/build.log"; then
  cat "$lib_ptxas"/*.ptxas.txt > "$work/logs/ptxas.txt" 2>/dev/null
  if [[ $lib_from == carried ]]; then detail="carried ($(du -h "$lib" | cut -f1))"; else detail="built here in $((SECONDS - start)) s"; fi
  row "library" "ok" "$detail"
else
  rm -f "$lib"
  if [[ $lib_from == carried ]]; then detail="the carried library did not unpack"; else detail="build failed: sass-and-resources.txt has the log"; fi
  row "library" "FAIL" "$detail"
fi

# ---- 2. SASS: local memory (LDL/STL) in the step kernels
if [[ -f $lib ]] && command -v cuobjdump > /dev/null; then
  cuobjdump -sass -arch sm_90a "$lib" > "$work/all.sass" 2>&1
  awk '/Function : _ZN2bd4step/{keep=1} /Function : /&&!/_ZN2bd4step/{keep=0} keep' "$work/all.sass" > "$work/logs/sass-step.txt"
  kernels=$(grep -c "Function : " "$work/logs/sass-step.txt")
  local_ops=$(grep -cE "\b(LDL|STL)\b" "$work/logs/sass-step.txt")
  [[ $kernels -gt 0 && $local_ops -eq 0 ]] && status=ok || status=FAIL
  row "SASS of step kernels" "$status" "$kernels kernels, $local_ops local-memory instructions"
else
  row "SASS of step kernels" "skip" "no library or no cuobjdump"
fi

# ---- 3. step_check
if [[ -f $lib ]]; then
  if nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -I bitdelta-cuda/src/main/cuda bitdelta-cuda/bench/step_check.cu \
       -L "$work/lib" -lbitdelta_cuda -Xlinker -rpath -Xlinker "$work/lib" -o "$work/step_check" > "$work/logs/step-check-build.log" 2>&1; then
    timeout 120 "$work/step_check" > "$out/step-check.log" 2>&1
    code=$?
    line=$(grep "step_check summary" "$out/step-check.log" | sed 's/== step_check summary: //')
    [[ $code -eq 0 ]] && row "step_check (C++ vs CPU)" "ok" "$line" || row "step_check (C++ vs CPU)" "FAIL" "exit $code: ${line:-see step-check.log}"
  else
    cp "$work/logs/step-check-build.log" "$out/step-check.log"
    row "step_check (C++ vs CPU)" "FAIL" "did not compile: step-check.log"
  fi
fi

# ---- 4. Java tests
if [[ -f $carry/jre.tar.xz && -f $lib ]]; then
  unpack_jre "$lib"
  java+=(-Xmx48g)
  junit() {  # junit NAME SHARE SELECTORS...: one JVM with at most SHARE seconds (and what is left), tree log, XML reports
    local name=$1 share=$2; shift 2
    local limit
    limit=$(left)
    (( limit > share )) && limit=$share
    if (( limit < 20 )); then row "Java $name" "skip" "no time left in the ${budget} s budget"; return; fi
    timeout "$limit" "${java[@]}" -jar "$root/$carry/jars/junit-console.jar" execute --disable-banner --disable-ansi-colors \
      --details=tree --details-theme=ascii -cp "$cp_" --reports-dir "$work/junit/$name" "$@" > "$out/java-$name.log" 2>&1
    local code=$?
    count() { grep -oE "[0-9]+ tests $1" "$out/java-$name.log" | grep -oE "^[0-9]+" || echo "?"; }
    local found ok failed aborted
    found=$(count found); ok=$(count successful); failed=$(count failed); aborted=$(count aborted)
    # Aborted tests are skipped ones (an assumption failed: no GPU): never counted as passing. 124: out of time.
    if [[ $code -eq 0 && $failed == 0 && $aborted == 0 && $ok != "?" && $ok -gt 0 ]]; then status=ok; else status=FAIL; fi
    row "Java $name" "$status" "$ok/$found passed, $failed failed, $aborted aborted (exit $code$([[ $code -eq 124 ]] && echo ', timed out')): java-$name.log"
  }
  groups=" ${JAVA_GROUPS:-decoder backend acceptance} "
  if [[ $groups == *" decoder "* ]]; then
    junit decoder-conformance 180 --select-class org.bitdelta.cuda.CudaDecoderDeviceConformanceTest
    junit decoder-models 200 --select-class org.bitdelta.cuda.CudaDecoderModelTest
    junit decoder-faults 80 --select-class org.bitdelta.cuda.CudaDecoderFaultTest
  fi
  # The tinyllama pair, where the carry has it (prepare-acceptance-device.sh: it does not fit beside the step carry).
  if [[ $groups == *" acceptance "* ]]; then
    if [[ -f $carry/acceptance-data.tar.xz ]]; then
      mkdir -p "$work/data"
      unpack_xz "$carry/acceptance-data.tar.xz" "$work/acceptance-data.tar" && tar -C "$work/data" -xf "$work/acceptance-data.tar"
      java+=(-Dbitdelta.acceptance.data="$work/data")
      junit decoder-acceptance 200 --select-class org.bitdelta.cuda.CudaDecoderAcceptanceTest
    else
      row "Java decoder-acceptance" "skip" "no acceptance-data.tar.xz in $carry (prepare-acceptance-device.sh)"
    fi
  fi
  # The product backend's own tests (CHECK_BACKEND=0 leaves them out when device time is short).
  if [[ $groups == *" backend "* && ${CHECK_BACKEND:-1} == 1 ]]; then
    junit backend 150 --select-class org.bitdelta.cuda.CudaBackendCorrectnessTest --select-class org.bitdelta.cuda.CudaBackendErrorsTest \
      --select-class org.bitdelta.cuda.CudaBackendProviderTest --select-class org.bitdelta.cuda.CudaHostSideTest \
      --select-class org.bitdelta.cuda.CudaCompressTest --select-class org.bitdelta.cuda.CudaLibraryHostTest
  fi
  tar -C "$work" -czf "$out/junit-reports.tar.gz" junit 2>/dev/null
else
  row "Java tests" "skip" "no carried runtime ($carry/jre.tar.xz) or no library"
fi

{
  for f in nvidia-smi.txt build.log step-check-build.log ptxas.txt sass-step.txt; do
    [[ -f $work/logs/$f ]] && { echo "==== $f"; cat "$work/logs/$f"; }
  done
} > "$out/sass-and-resources.txt"
{
  echo "== check-step-device summary ($(sed -n 2p "$work/logs/nvidia-smi.txt"); $(head -1 "$carry/MANIFEST.txt" 2>/dev/null); ${SECONDS} s)"
  printf '%s\n' "${rows[@]}"
  echo "== notes from the Java tests (seeds, perplexities, memory)"
  grep -hE "seed|perplexity|GPU memory|refused|hog" "$out"/java-decoder-*.log 2>/dev/null | head -90
} > "$out/summary.txt"
echo
sed -n '/== notes/,$p' "$out/summary.txt"
echo
sed -n '1,/== notes/p' "$out/summary.txt" | head -n -1
# A failed stage fails the script (the rows above say which).
printf '%s\n' "${rows[@]}" | grep -q ' FAIL ' && exit 1
exit 0
