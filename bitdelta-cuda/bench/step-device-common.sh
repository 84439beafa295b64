# step-device-common.sh -- sourced by check-step-device.sh, step-benchmark-device.sh and profile-step-device.sh on a GPU host, with the
# folder that bench/prepare-step-device.sh makes (bitdelta-cuda/target/step-device/) carried:
#   source step-device-common.sh DEFAULT_OUT DEFAULT_BUDGET WORK
# goes to the repository root and sets root, carry ($STEP_CARRY, else bitdelta-cuda/target/step-device), out ($OUT,
# else DEFAULT_OUT; created), budget ($BUDGET, else
# DEFAULT_BUDGET seconds) and work (WORK, emptied, with WORK/lib), and defines the helpers below.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
carry="${STEP_CARRY:-bitdelta-cuda/target/step-device}"
out="${OUT:-$1}"
budget="${BUDGET:-$2}"
work="$3"
mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work/lib"

# Seconds left of the budget.
left() { echo $((budget - SECONDS)); }

source tools/device-unpack.sh  # unpack_xz, unpack_runtime

# step_library LIB LOG: the carried sm_90a library unpacked to LIB, else one built here (16 cores, a few minutes; the
# build's output in LOG). Sets lib_from ("carried" or "built") and lib_ptxas (the folder of its *.ptxas.txt);
# false where there is no library.
step_library() {
  if [[ -f $carry/libbitdelta_cuda.so.xz ]]; then
    lib_from=carried lib_ptxas=$carry
    unpack_xz "$carry/libbitdelta_cuda.so.xz" "$1"
  else
    lib_from=built lib_ptxas=bitdelta-cuda/target/native-sm90
    JOBS=16 bash bitdelta-cuda/bench/build.sh --sm90-only --lib-only > "$2" 2>&1 && cp "$lib_ptxas/libbitdelta_cuda.so" "$1"
  fi
}

# unpack_jre LIB: the carried Java runtime into $work/jre; sets cp_, the class path of the carried jars (JUnit's
# console launcher left out), and java, the command that starts it with the library LIB (callers add the heap).
unpack_jre() {
  unpack_runtime "$root/$carry/jre.tar.xz" "$work"
  cp_=$(ls "$root/$carry"/jars/*.jar | grep -v junit-console | tr '\n' ':')
  java=("$work/jre/bin/java" --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector -DRUST_FLAVOR=cpu
        -Dbitdelta.cuda.library="$1" -Djava.io.tmpdir="$work")
}
