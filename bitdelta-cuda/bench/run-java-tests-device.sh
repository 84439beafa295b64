#!/usr/bin/env bash
# Runs the bitdelta-cuda GPU tests on the device machine (copied there by the run tool); logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")"
(tar -xJf jre.tar.xz && xz -dk libbitdelta_cuda.so.xz) 2>/dev/null || python3 -c "
import lzma, tarfile, shutil
tarfile.open('jre.tar.xz').extractall('.')
shutil.copyfileobj(lzma.open('libbitdelta_cuda.so.xz'), open('libbitdelta_cuda.so', 'wb'))"
chmod +x jre/bin/* jre/lib/jspawnhelper 2>/dev/null
mkdir -p packaged/native/linux-x86_64 && cp libbitdelta_cuda.so packaged/native/linux-x86_64/
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.txt"
nvidia-smi | head -5 >> "$OUT/nvidia-smi.txt"
cp_="classes:test-classes:core.jar:gson.jar"
java=(jre/bin/java -Xmx64g --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector)
echo "== all GPU tests, -Dbitdelta.cuda.library"
"${java[@]}" -Dbitdelta.cuda.library="$PWD/libbitdelta_cuda.so" -jar junit-console.jar execute --disable-banner \
  --details=tree -cp "$cp_" --select-package org.bitdelta.cuda 2>&1 | tee "$OUT/cuda-java-tests.log"
echo "== library extracted from the class path into the cache folder (no -Dbitdelta.cuda.library)"
home=/tmp/cuda-java-home  # user.home: the JDK takes it from the password database, not $HOME
for pass in 1 2; do
  "${java[@]}" -Duser.home="$home" -jar junit-console.jar execute --disable-banner --details=summary -cp "$cp_:packaged" \
    --select-class org.bitdelta.cuda.CudaBackendProviderTest --select-class org.bitdelta.cuda.CudaOverheadTest 2>&1 \
    | tee "$OUT/cuda-java-extract-$pass.log" | grep -E "tests (successful|failed|skipped)|FFM|ns per|us "
  find "$home/.cache/bitdelta" -type f -printf "%p %s bytes %TT\n" | tee -a "$OUT/cuda-java-extract-$pass.log"
done
