#!/usr/bin/env python3
"""extract_manifest.py BINARY OUT.json — the manifest a compiled moec binary carries.

The ABI's `moec_manifest` (runtime/include/moec/abi.h) is a NUL-terminated JSON string in the
binary's data; this reads it through the ELF symbol table (so BINARY must not be stripped yet)
and writes it to OUT.json. prepare.sh saves it beside each quantized benchmark binary, whose
packed weights file is written on the GPU machine by pack_weights with this manifest (it holds
the fingerprint that binds the file to the binary). Standard library only.
"""
import struct
import sys


def manifest_of(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"error: {path}: not a little-endian 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]
        for off in range(sh[4], sh[4] + sh[5], sh[9]):
            name, _, _, shndx, value, size = struct.unpack_from("<IBBHQQ", data, off)
            end = data.index(b"\0", strtab[4] + name)
            if data[strtab[4] + name:end] != b"moec_manifest":
                continue
            sec = sections[shndx]
            start = sec[4] + value - sec[3]  # file offset = sh_offset + (value - sh_addr)
            text = data[start:start + size].split(b"\0", 1)[0]
            if not text.startswith(b"{"):
                sys.exit(f"error: {path}: moec_manifest does not hold JSON")
            return text
    sys.exit(f"error: {path}: no moec_manifest symbol (a stripped binary?)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    open(sys.argv[2], "wb").write(manifest_of(sys.argv[1]))
