#!/usr/bin/env python3
"""Lists the kernels of each GPU target in a CUDA library, without cuobjdump (the build machine has none).

    list-kernels.py LIBRARY [--names]

Reads the library's .nv_fatbin section, walks its fat binaries and prints, per target, the number of kernels and
(with --names) their demangled names. Format of the fat binary (as nvcc 12/13 write it): a header {u32 magic
0xBA55ED50, u16 version, u16 header size, u64 body size}, then entries {u16 kind (1 PTX, 2 ELF), u16, u32 header size,
u64 padded payload size, ..., u32 sm at byte 28, ..., u64 flags at byte 40 (0x8000: zstd-compressed, 0x100000: an
"a" target such as sm_90a), ..., u64 uncompressed size at byte 56}; each entry's payload follows its header. A SASS
entry is a cubin (ELF) whose kernels are its ".text.<mangled name>" sections; a PTX entry's kernels are its .entry
directives. Compressed payloads are inflated with the zstd command.
"""
import struct
import subprocess
import sys

FATBIN_MAGIC = 0xBA55ED50
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSED, ARCH_SPECIFIC = 0x8000, 0x100000


def inflate(payload, size):
    """The zstd frame at the start of payload (the padding after it makes zstd complain; the size is checked)."""
    out = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True).stdout
    if len(out) != size:
        raise ValueError(f"zstd gave {len(out)} bytes, the fat binary announces {size}")
    return out


def sections(elf):
    """(name, offset, size) of every section of a 64-bit little-endian ELF image."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ValueError("not a 64-bit ELF image")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab_off, strtab_size = headers[shstrndx][4], headers[shstrndx][5]
    strtab = elf[strtab_off:strtab_off + strtab_size]
    result = []
    for h in headers:
        name = strtab[h[0]:strtab.index(b"\0", h[0])].decode()
        result.append((name, h[4], h[5]))
    return result


def demangle(names):
    if not names:
        return []
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path, show_names = sys.argv[1], "--names" in sys.argv[2:]
    data = open(path, "rb").read()
    fatbin = next(((off, size) for name, off, size in sections(data) if name == ".nv_fatbin"), None)
    if fatbin is None:
        sys.exit(f"{path}: no .nv_fatbin section")
    pos, end = fatbin[0], fatbin[0] + fatbin[1]
    kernels = {}  # target -> kernel names
    while pos + 16 <= end:
        magic, _version, header_size, body_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # blobs are 8-byte aligned; skip padding
            continue
        entry, body_end = pos + header_size, pos + header_size + body_size
        while entry + 48 <= body_end:
            kind, _v, entry_header, payload_size = struct.unpack_from("<HHIQ", data, entry)
            sm, = struct.unpack_from("<I", data, entry + 28)
            flags, = struct.unpack_from("<Q", data, entry + 40)
            uncompressed, = struct.unpack_from("<Q", data, entry + 56)
            payload = data[entry + entry_header:entry + entry_header + payload_size]
            if flags & COMPRESSED and payload[:4] == ZSTD_MAGIC:
                payload = inflate(payload, uncompressed)
            suffix = "a" if flags & ARCH_SPECIFIC else ""
            if kind == 2 and payload[:4] == b"\x7fELF":
                target = f"sm_{sm}{suffix}"
                names = [n[len(".text."):] for n, _o, _s in sections(payload) if n.startswith(".text.")]
                kernels.setdefault(target, []).extend(names)
            elif kind == 1:
                text = payload.decode("latin-1")
                names = [line.split()[-1].rstrip("(") for line in text.splitlines() if line.lstrip().startswith(".visible .entry")]
                kernels.setdefault(f"compute_{sm}{suffix} (PTX)", []).extend(names)
            entry += entry_header + payload_size
        pos = body_end
    for target in sorted(kernels):
        names = sorted(set(kernels[target]))
        print(f"{target}: {len(names)} kernels")
        if show_names:
            for name in sorted(demangle(names)):
                print(f"  {name}")


if __name__ == "__main__":
    main()
