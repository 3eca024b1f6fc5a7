#!/usr/bin/python3
"""Writes hand-made hostile compressed streams, tar and 7z archives (a small 7z writer below, since 7zz writes only
well-formed ones), and seeds for the mutation test. Writes expectations.json like packed.py. Nothing is loaded;
the payload is os.system("touch /tmp/airlock-packed-canary"), never run here.

    /usr/bin/python3 packed_hostile.py OUTDIR
"""
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib

import lz4.frame
import zstandard

EXPECT = []
SEVENZIP = "/usr/bin/7zz"


class Touch:
    def __reduce__(self):
        return (os.system, ("touch /tmp/airlock-packed-canary",))


EVIL = pickle.dumps(Touch(), protocol=4)
DANGER = "pickle.dangerous-import"


def expect(name, verdict, rules=()):
    EXPECT.append({"path": name, "verdict": verdict, "rules": list(rules)})


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def number(n):
    """7z's NUMBER."""
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x80 | (n >> 8), n & 0xFF])
    if n < 0x200000:
        return bytes([0xC0 | (n >> 16), n & 0xFF, (n >> 8) & 0xFF])
    return b"\xff" + struct.pack("<Q", n)


def seven_zip(packed, folders_info, files_info, pack_sizes):
    """A 7z file: the signature header, the packed data, a plain header (kHeader)."""
    header = b"\x01\x04\x06" + number(0) + number(len(pack_sizes)) + b"\x09" + b"".join(map(number, pack_sizes))
    header += b"\x00" + folders_info + b"\x00" + files_info + b"\x00"
    start = struct.pack("<QQI", len(packed), len(header), zlib.crc32(header))
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(start)) + start + packed + header


def copy_folder(sizes):
    """kUnPackInfo with one Copy folder of sum(sizes) bytes, and kSubStreamsInfo splitting it into `sizes`."""
    info = b"\x07\x0b" + number(1) + b"\x00" + number(1) + b"\x01\x00" + b"\x0c" + number(sum(sizes)) + b"\x00"
    info += b"\x08\x0d" + number(len(sizes))
    if len(sizes) > 1:
        info += b"\x09" + b"".join(number(s) for s in sizes[:-1])
    return info + b"\x00"


def files(names):
    body = b"\x00" + b"".join(n.encode("utf-16-le") + b"\0\0" for n in names)
    return b"\x05" + number(len(names)) + b"\x11" + number(len(body)) + body + b"\x00"


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731

    # A payload, then 8 MiB of zeros: past a 4 MiB budget, the payload is still found.
    write(p("bomb_after_payload.gz"), gzip.compress(EVIL + b"\0" * (8 << 20), compresslevel=9))
    expect("bomb_after_payload.gz", "malicious", [DANGER, "compressed.bomb"])

    # gzip with FEXTRA, FNAME and FCOMMENT set (flags 0x1C), and an FHCRC-less header.
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = body.compress(EVIL) + body.flush()
    header = b"\x1f\x8b\x08\x1c" + b"\0\0\0\0\x00\x03" + struct.pack("<H", 6) + b"AB\x02\x00zz" + b"x.pkl\0" + b"c\0"
    write(p("fields.gz"), header + deflated + struct.pack("<II", zlib.crc32(EVIL), len(EVIL)))
    expect("fields.gz", "malicious", [DANGER])
    # The payload split across two gzip members with zero padding between them: Python's gzip skips the zeros.
    write(p("padded_members.gz"), gzip.compress(EVIL[:9]) + b"\0" * 1000 + gzip.compress(EVIL[9:]))
    expect("padded_members.gz", "malicious", [DANGER])
    # An xz stream, then an lzma one: Python's LZMAFile (FORMAT_AUTO) reads both, so joblib.load runs the payload.
    write(p("xz_then_lzma.xz"), lzma.compress(EVIL[:9]) + lzma.compress(EVIL[9:], format=lzma.FORMAT_ALONE))
    expect("xz_then_lzma.xz", "malicious", [DANGER])
    # A zlib header over random bytes: no stream, not held against the file.
    write(p("random.dat"), b"\x78\x9c" + os.urandom(4000))
    expect("random.dat", "clean", [])
    # 120 000 empty bzip2 streams, then the payload: decoding stops at 100 000 streams, never clean.
    write(p("many_streams.bz2"), bz2.compress(b"") * 120_000 + bz2.compress(EVIL))
    expect("many_streams.bz2", "suspicious", ["compressed.unreadable"])
    # zstd with a skippable frame first; lz4 in two frames.
    skippable = struct.pack("<II", 0x184D2A50, 4) + b"skip"
    write(p("skippable.zst"), skippable + zstandard.ZstdCompressor().compress(EVIL))
    expect("skippable.zst", "malicious", [DANGER])
    write(p("frames.lz4"), lz4.frame.compress(EVIL[:9]) + lz4.frame.compress(EVIL[9:]))
    expect("frames.lz4", "malicious", [DANGER])
    # joblib <= 0.8.4's ZF with one more space; lzma alone with properties other than joblib's.
    write(p("old_space.pkl"), b"ZF" + hex(len(EVIL)).encode().ljust(19) + b" " + zlib.compress(EVIL))
    expect("old_space.pkl", "malicious", [DANGER])
    filters = [{"id": lzma.FILTER_LZMA1, "lc": 1, "lp": 0, "pb": 2, "dict_size": 1 << 16}]
    write(p("props.lzma"), lzma.compress(EVIL, format=lzma.FORMAT_ALONE, filters=filters))
    expect("props.lzma", "malicious", [DANGER])
    # A zstd frame asking for a 2 GiB window: refused, as python-zstandard (and so pandas) refuses it, and said.
    params = zstandard.ZstdCompressionParameters(window_log=31, write_content_size=False)
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    write(p("window.zst"), stream.compress(EVIL) + stream.flush())
    expect("window.zst", "suspicious", [])

    # tar: a member cut short (still analysed), a traversing name, a bad checksum after a good member.
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w") as tf:
        info = tarfile.TarInfo("model.pkl")
        info.size = len(EVIL) + 4096
        tf.addfile(info, io.BytesIO(EVIL + b"\0" * 4096))
    write(p("cut.tar"), t.getvalue()[: 512 + len(EVIL) + 10])
    expect("cut.tar", "malicious", [DANGER, "tar.truncated"])
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w") as tf:
        info = tarfile.TarInfo("../../outside.pkl")
        info.size = len(EVIL)
        tf.addfile(info, io.BytesIO(EVIL))
        info = tarfile.TarInfo("second.pkl")
        info.size = len(EVIL)
        tf.addfile(info, io.BytesIO(EVIL))
    raw = bytearray(t.getvalue())
    second = 512 + (len(EVIL) + 511) // 512 * 512
    raw[second + 148] ^= 0x01
    write(p("traversal.tar"), bytes(raw))
    expect("traversal.tar", "malicious", [DANGER, "tar.path-traversal", "tar.bad-header"])

    # ZIP members in bzip2 (12) and LZMA (14): PyTorch refuses them, Python's zipfile (pandas' zip) reads them.
    for method, label in [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")]:
        with zipfile.ZipFile(p(f"member_{label}.zip"), "w", compression=method) as z:
            z.writestr("model.pkl", EVIL + b"\0" * 3000)
        expect(f"member_{label}.zip", "malicious", [DANGER, "zip.unsupported-method"])

    # A tar whose first name is a protocol 0 pickle: pickle.load reads the header as one.
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("cos\nsystem\n(S'touch /tmp/airlock-packed-canary'\ntR.")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    write(p("polyglot.tar"), t.getvalue())
    expect("polyglot.tar", "malicious", [DANGER])

    # 7z, hand-made: two files in one Copy folder; then lies about it.
    payload = b"hello" + EVIL
    write(p("copy.7z"), seven_zip(payload, copy_folder([5, len(EVIL)]), files(["a.txt", "m.pkl"]), [len(payload)]))
    expect("copy.7z", "malicious", [DANGER])
    write(p("far_header.7z"), b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 4 + struct.pack("<QQI", 1 << 40, 64, 0))
    expect("far_header.7z", "suspicious", ["7z.malformed"])
    huge = b"\x07\x0b" + b"\xff" + struct.pack("<Q", 1 << 60) + b"\x00"
    write(p("huge_count.7z"), seven_zip(payload, huge, files(["a"]), [len(payload)]))
    expect("huge_count.7z", "suspicious", ["7z.malformed"])
    lie = copy_folder([5, len(EVIL)]).replace(b"\x09" + number(5), b"\x09" + number(10_000))
    write(p("substream_lie.7z"), seven_zip(payload, lie, files(["a.txt", "m.pkl"]), [len(payload)]))
    expect("substream_lie.7z", "suspicious", ["7z.malformed"])
    more_files = seven_zip(payload, copy_folder([5, len(EVIL)]), files(["a", "b", "c"]), [len(payload)])
    write(p("more_files.7z"), more_files)
    expect("more_files.7z", "malicious", [DANGER, "7z.malformed"])  # the files read before the lie count
    unknown = copy_folder([len(payload)]).replace(b"\x01\x00\x0c", b"\x01\x7f\x0c")
    write(p("unknown_coder.7z"), seven_zip(payload, unknown, files(["m.pkl"]), [len(payload)]))
    expect("unknown_coder.7z", "suspicious", ["7z.unsupported-method"])

    # 30 000 one-byte Copy folders with a file each: read in linear time, members examined up to the limit.
    n = 30_000
    folder = b"\x01\x01\x00"
    many = b"\x07\x0b" + number(n) + b"\x00" + folder * n + b"\x0c" + number(1) * n + b"\x00"
    many += b"\x08\x0d" + number(1) * n + b"\x00"
    write(p("many_folders.7z"), seven_zip(b"x" * n, many, files([f"f{i}" for i in range(n)]), [1] * n))
    expect("many_folders.7z", "suspicious", ["7z.too-many-members"])

    # With the real tool: PPMd and ARM64 (unsupported coders), a bomb, and seeds for the mutation test.
    src = p("src")
    os.makedirs(src, exist_ok=True)
    write(os.path.join(src, "model.pkl"), EVIL)
    write(os.path.join(src, "notes.txt"), b"notes " * 200)
    sevenzip(p("ppmd.7z"), src, ["-m0=ppmd"])
    expect("ppmd.7z", "suspicious", ["7z.unsupported-method"])
    sevenzip(p("seed.7z"), src, [])
    sevenzip(p("seed_solid.7z"), src, ["-ms=on", "-m0=bcj", "-m1=lzma"])
    zeros = os.path.join(out, "zsrc")
    os.makedirs(zeros, exist_ok=True)
    write(os.path.join(zeros, "zeros.bin"), b"\0" * (8 << 20))
    sevenzip(p("bomb.7z"), zeros, [])
    os.remove(os.path.join(zeros, "zeros.bin"))
    os.rmdir(zeros)
    for name in os.listdir(src):
        os.remove(os.path.join(src, name))
    os.rmdir(src)
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("dir/" + "n" * 150 + ".pkl")
        info.size = len(EVIL)
        tf.addfile(info, io.BytesIO(EVIL))
    write(p("seed.tar"), t.getvalue())
    write(p("seed.tar.gz"), gzip.compress(t.getvalue()))
    write(p("seed.xz"), lzma.compress(EVIL))
    write(p("seed.zst"), zstandard.ZstdCompressor().compress(EVIL))
    write(p("seed.lz4"), lz4.frame.compress(EVIL))

    with open(os.path.join(out, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


def sevenzip(path, src, options):
    files_ = sorted(os.listdir(src))
    subprocess.run([SEVENZIP, "a", "-bd", "-bso0", "-bsp0", *options, path, *files_], cwd=src, check=True)


if __name__ == "__main__":
    main(sys.argv[1])
