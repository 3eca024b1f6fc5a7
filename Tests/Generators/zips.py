#!/usr/bin/env python3
"""Writes ZIP samples for the Zip tests into the directory given as the first argument (stdlib only).

benign_deflate.zip   zipfile defaults, deflated members and a directory
benign_stored.zip    stored members
pytorch.zip          the layout torch.save writes: archive/data.pkl, archive/data/0, archive/version, ... (stored)
descriptor.zip       written to an unseekable stream: data descriptors (flag bit 3), sizes zero in local headers
zip64_forced.zip     a member written with force_zip64=True (zip64 extra fields in the local header)
bomb.zip             one deflated member that inflates to 1 GiB of zeros from about 1 MiB (declared 1 GiB)
"""
import io
import os
import struct
import sys
import zipfile
import zlib

PICKLE = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s."


class Unseekable(io.RawIOBase):
    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def main(out):
    os.makedirs(out, exist_ok=True)
    with zipfile.ZipFile(os.path.join(out, "benign_deflate.zip"), "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dir/", b"")
        zf.writestr("dir/a.txt", b"hello world\n" * 100)
        zf.writestr("b.bin", bytes(range(256)) * 8)
        zf.writestr("empty", b"")
    with zipfile.ZipFile(os.path.join(out, "benign_stored.zip"), "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("one", b"1")
        zf.writestr("two/three", b"three" * 10)
    with zipfile.ZipFile(os.path.join(out, "pytorch.zip"), "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", PICKLE)
        zf.writestr("archive/byteorder", b"little")
        zf.writestr("archive/data/0", struct.pack("<4f", 1, 2, 3, 4))
        zf.writestr("archive/version", b"3\n")
        zf.writestr("archive/.data/serialization_id", b"1234567890")
    stream = Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("streamed/a", b"abc" * 1000)
        with zf.open("streamed/b", "w") as f:
            f.write(b"xyz" * 500)
    with open(os.path.join(out, "descriptor.zip"), "wb") as f:
        f.write(bytes(stream.buf))
    with zipfile.ZipFile(os.path.join(out, "zip64_forced.zip"), "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("big/data.pkl", "w", force_zip64=True) as f:
            f.write(PICKLE * 100)
        zf.writestr("small", b"s")
    write_bomb(os.path.join(out, "bomb.zip"))


def write_bomb(path):
    # A full-flushed block of 1 MiB of zeros is self-contained: repeating it 1024 times and closing with an empty
    # final stored block is a valid raw deflate stream of 1 GiB of zeros.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    data = chunk * 1024 + b"\x03\x00"
    size = 1 << 30
    name = b"archive/data.pkl"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(data), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    with open(path, "wb") as f:
        f.write(local + data + central + end)


if __name__ == "__main__":
    main(sys.argv[1])
