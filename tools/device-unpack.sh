# Sourced by the scripts that run on a host with no JDK (bitdelta-cuda/bench/step-device-common.sh,
# bitdelta-examples/bench/serving-benchmark-device.sh): unpacking what the prepare scripts packed, with xz and tar
# where the host has them, else Python's lzma and tarfile.

unpack_xz() {  # unpack_xz SOURCE TARGET
  xz -dc "$1" > "$2" 2>/dev/null || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2"
}

unpack_runtime() {  # unpack_runtime TAR_XZ FOLDER: the jlink'd runtime of TAR_XZ (absolute) as FOLDER/jre, executable
  (cd "$2" && { tar -xJf "$1" 2>/dev/null || python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('.')" "$1"; })
  chmod +x "$2"/jre/bin/* "$2"/jre/lib/jspawnhelper
}
