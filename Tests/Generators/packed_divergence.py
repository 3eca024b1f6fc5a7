#!/usr/bin/python3
"""Writes tar archives, gzip and lzma/xz streams that CPython's readers (tarfile for torch.load's legacy tar format,
gzip and lzma for joblib and pandas) read differently from GNU tar, libarchive or zlib, each with a pickle payload
where Python reads it. Each sample is checked here with the real Python reader (the payload is found, never run),
and expectations.json records the verdict, the rules, and for tars and streams what Python reads (hex), so the
test can compare Airlock's reading byte for byte. The payload is os.system("touch /tmp/airlock-packed-canary").

    /usr/bin/python3 packed_divergence.py OUTDIR
"""
import gzip
import io
import json
import lzma
import os
import pickle
import pickletools
import struct
import sys
import tarfile
import zlib

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
EXPECT = []
DANGER = "pickle.dangerous-import"
DIVERGE = "tar.reader-divergence"


class Touch:
    def __reduce__(self):
        return (os.system, ("touch /tmp/airlock-packed-canary",))


EVIL = pickle.dumps(Touch(), protocol=2)
# A protocol-0 pickle short enough for a header's 100-byte name field.
NAME_PICKLE = "cos\nsystem\n(S'touch /tmp/airlock-packed-canary'\ntR."


def p(name):
    return os.path.join(OUT, name)


def dangerous(data):
    """Whether `data` is a pickle that imports os.system / posix.system (read with pickletools, never loaded)."""
    try:
        ops = list(pickletools.genops(data))
    except Exception:
        return False
    strings = [str(arg) for _, arg, _ in ops if arg is not None]
    return any("system" in s for s in strings)


def python_tar(path):
    """What torch.load's tarfile reading gives: for each name, the bytes extractfile returns (the last member of
    that name, links followed)."""
    out = {}
    with tarfile.open(path, "r:", format=tarfile.PAX_FORMAT) as t:
        for m in t.getmembers():
            if m.name in out:
                continue
            f = t.extractfile(t.getmember(m.name)) if (m.isreg() or m.islnk() or m.issym() or m.type not in tarfile.SUPPORTED_TYPES) else None
            if f is not None:
                out[m.name] = f.read().hex()
    return out


def tar_case(name, data, rules=(DANGER,), payload_member="storages"):
    with open(p(name), "wb") as f:
        f.write(data)
    read = python_tar(p(name))
    assert payload_member in read and dangerous(bytes.fromhex(read[payload_member])), (name, read.keys())
    EXPECT.append({"path": name, "verdict": "malicious", "rules": list(rules), "kind": "tar", "python": read})


def stream_case(name, data, reader, kind, rules=(DANGER,)):
    with open(p(name), "wb") as f:
        f.write(data)
    content = reader(data)
    assert dangerous(content), name
    EXPECT.append({"path": name, "verdict": "malicious", "rules": list(rules), "kind": kind, "python": content.hex()})


def header(name, size, typ=b"0", **fields):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = typ
    for k, v in fields.items():
        setattr(ti, k, v)
    return bytearray(ti.tobuf(format=tarfile.USTAR_FORMAT))


def pad(b):
    return bytes(b) + b"\0" * (-len(b) % 512)


def rechecksum(h, text=None):
    """Writes the header's checksum again, as `text % sum` (Python's int(s, 8) reads many spellings)."""
    h[148:156] = b" " * 8
    s = sum(h)
    h[148:156] = (text or b"%06o\0 ") % s if text != b"base256" else b"\x80" + s.to_bytes(7, "big")
    return h


def pax_record(key, value):
    rec = f" {key}={value}\n".encode()
    n = len(rec) + 1
    while len(str(n)) + len(rec) != n:
        n = len(str(n)) + len(rec)
    return str(n).encode() + rec


def with_size_field(name, size_text, data):
    """A member whose size field is written as `size_text` (12 bytes), checksum recomputed."""
    h = header(name, len(data))
    h[124:136] = size_text.ljust(12, b"\0")[:12]
    return bytes(rechecksum(h)) + pad(data)


END = b"\0" * 1024

# 1. The checksum written with a sign, and in base-256: Python's nti reads both.
h = rechecksum(header("storages", len(EVIL)), b"+%06o\0")
tar_case("tar_plus_checksum.pth.tar", bytes(h) + pad(EVIL) + END, (DANGER, DIVERGE))
h = rechecksum(header("storages", len(EVIL)), b"base256")
tar_case("tar_base256_checksum.pth.tar", bytes(h) + pad(EVIL) + END, (DANGER, DIVERGE))

# 2. A global pax header's size applies to every later member: 'storages' (0 bytes declared) reads the next header
# block, whose name field is a protocol-0 pickle.
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"size": "600"}) as t:
    for n in ["storages", NAME_PICKLE, "tensors", "pickle"]:
        ti = tarfile.TarInfo(n)
        ti.size = 0
        t.addfile(ti, io.BytesIO(b""))
    ti = tarfile.TarInfo("pad")
    ti.size = 2048
    t.addfile(ti, io.BytesIO(b"\0" * 2048))
tar_case("tar_global_pax_size.pt", buf.getvalue(), (DANGER, DIVERGE))

# 3. A Solaris 'X' extended header, read like pax 'x'.
recs = pax_record("size", 600)
data = bytes(header("PaxHeader", len(recs), b"X")) + pad(recs) + bytes(header("storages", 0))
data += bytes(header(NAME_PICKLE, 0)) + bytes(header("pad", 2048)) + b"\0" * 2048 + END
tar_case("tar_solaris_x.pth.tar", data, (DANGER, DIVERGE))

# 4. pax sizes as Python's int() reads them: a sign, '_', spaces, Unicode digits. The ustar size says 0: the payload
# is the member's data only to a reader that applies the pax size.
for i, text in enumerate(["+%d", " %d ", "%s", "\uff10%s"]):
    n = len(EVIL)
    value = text % n if "_" not in text and i != 2 else None
    if i == 2:
        value = "_".join(str(n))  # '1_2_3': int() accepts single underscores between digits
    if i == 3:
        value = "".join(chr(0xFF10 + int(c)) for c in str(n))  # fullwidth digits
    recs = pax_record("size", value)
    data = bytes(header("PaxHeader", len(recs), b"x")) + pad(recs) + bytes(header("storages", 0)) + pad(EVIL) + END
    tar_case(f"tar_pax_size_{i}.pt", data)

# 5. Numeric fields Python reads and GNU tar does not: a tab, a sign, '0o', '_'.
for i, text in enumerate([b"\t%o\t", b"+%o", b"0o%o", b"0_%o"]):
    tar_case(f"tar_size_text_{i}.pt", with_size_field("storages", text % len(EVIL), EVIL) + END, (DANGER, DIVERGE))

# 6. A base-256 size (GNU), which Python reads too.
tar_case("tar_base256_size.pt", with_size_field("storages", b"\x80" + len(EVIL).to_bytes(11, "big"), EVIL) + END)

# 7. A size field that starts with NUL: Python reads 0 (nts cuts there), so the next block is a header to it — the
# 'storages' member holding the payload — while GNU tar reads it as the first member's data.
hidden = bytes(header("storages", len(EVIL))) + pad(EVIL)
tar_case("tar_nul_size.pt", with_size_field("tensors", b"\0" + b"%010o" % len(hidden), hidden) + END, (DANGER, DIVERGE))

# 8. A directory that declares data: Python does not skip it, and reads the next block as a header.
d = header("d", 1024, b"5")
tar_case("tar_dir_with_data.pt", bytes(d) + bytes(header("storages", len(EVIL))) + pad(EVIL) + END, (DANGER, DIVERGE))

# 9. A hard link: 'storages' reads the data of an earlier member.
data = bytes(header("blob", len(EVIL))) + pad(EVIL) + bytes(header("storages", 0, b"1", linkname="blob")) + END
tar_case("tar_hardlink.pt", data)

# 10. A GNU long name and a pax path on one member: Python gives the name of the first extension header read.
ln = pad(b"storages\0")
data = bytes(header("././@LongLink", 9, b"L")) + ln
recs = pax_record("path", "other")
data += bytes(header("PaxHeader", len(recs), b"x")) + pad(recs) + bytes(header("x", len(EVIL))) + pad(EVIL) + END
tar_case("tar_longname_then_pax.pt", data)

# 11. Forty pax headers in a row before 'storages' (Python recurses on each; it reads them all).
recs = pax_record("path", "storages")
data = b"".join(bytes(header("PaxHeader", len(recs), b"x")) + pad(recs) for _ in range(40))
tar_case("tar_pax_chain.pt", data + bytes(header("x", len(EVIL))) + pad(EVIL) + END)

# gzip headers Python reads and zlib refuses: a reserved flag bit, a wrong header CRC, every optional field; and a
# second member with a reserved bit.
g = bytearray(gzip.compress(EVIL))
a = bytearray(g)
a[3] |= 0x20
stream_case("gzip_reserved_flag.pkl.gz", bytes(a), gzip.decompress, "gzip")
b = bytearray(g[:10] + b"\x00\x00" + g[10:])
b[3] |= 0x02
stream_case("gzip_bad_fhcrc.joblib", bytes(b), gzip.decompress, "gzip")
c = bytearray(g[:10] + struct.pack("<H", 3) + b"xyz" + b"name\0" + b"comment\0" + b"\xde\xad" + g[10:])
c[3] |= 0x04 | 0x08 | 0x10 | 0x02 | 0xE0
stream_case("gzip_all_fields.pkl.gz", bytes(c), gzip.decompress, "gzip")
stream_case("gzip_second_member.pkl.gz", gzip.compress(b"") + b"\0\0\0" + bytes(a), gzip.decompress, "gzip")

# lzma "alone" and xz with a 1 GiB dictionary: Python's lzma has no memory limit and reads them.
c = lzma.LZMACompressor(format=lzma.FORMAT_ALONE, filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20}])
alone = bytearray(c.compress(EVIL) + c.flush())
alone[1:5] = struct.pack("<I", 1 << 30)
stream_case("lzma_bigdict.joblib", bytes(alone), lzma.decompress, "lzma")
xz = bytearray(lzma.compress(EVIL, format=lzma.FORMAT_XZ, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]))
size = (xz[12] + 1) * 4
assert xz[13] == 0 and xz[14] == 0x21 and xz[15] == 1, xz[12:24].hex()
xz[16] = 36  # LZMA2 dictionary 2 << 29 = 1 GiB
xz[12 + size - 4 : 12 + size] = struct.pack("<I", zlib.crc32(bytes(xz[12 : 12 + size - 4])))
stream_case("xz_bigdict.pkl.xz", bytes(xz), lzma.decompress, "xz")

# A weak lzma header that does not decode: medium when the name says model, low (clean) otherwise.
junk = b"\x5d\x00\x00\x10\x00" + b"\xff" * 8 + b"\x01" + b"\xff" * 99
with open(p("broken.pkl.lzma"), "wb") as f:
    f.write(junk)
EXPECT.append({"path": "broken.pkl.lzma", "verdict": "suspicious", "rules": ["compressed.unreadable"], "kind": "none"})
with open(p("broken.dat"), "wb") as f:
    f.write(junk)
EXPECT.append({"path": "broken.dat", "verdict": "clean", "rules": [], "kind": "none"})

with open(p("expectations.json"), "w") as f:
    json.dump(EXPECT, f, indent=1)
