# step-device-common.sh -- sourced by check-step-device.sh and step-benchmark-device.sh on a GPU host, with the
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

unpack_xz() {  # unpack_xz SOURCE TARGET: xz, else Python's lzma
  xz -dc "$1" > "$2" 2>/dev/null || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2"
}

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

# unpack_jre: the carried Java runtime into $work/jre; sets cp_, the class path of the carried jars (JUnit's console
# launcher left out).
unpack_jre() {
  (cd "$work" && { tar -xJf "$root/$carry/jre.tar.xz" 2>/dev/null || python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('.')" "$root/$carry/jre.tar.xz"; })
  chmod +x "$work"/jre/bin/* "$work"/jre/lib/jspawnhelper 2>/dev/null
  cp_=$(ls "$root/$carry"/jars/*.jar | grep -v junit-console | tr '\n' ':')
}
