#!/usr/bin/python3
"""Writes compressed and packed models with the real libraries, benign and malicious, for the static scan:
joblib.dump(compress=…) in each compression joblib has, pandas.to_pickle(compression=…) in each pandas has, joblib's
old ZF files, nested and concatenated streams, trailing data, truncated and corrupt streams, and small bombs; tar and
7z archives (7z with the real `7zz`). Writes expectations.json: per file, the verdict, rules that must be there, the
format and the compression of the report.

    /usr/bin/python3 packed.py OUTDIR [--canary PATH --port N]

Nothing is loaded here. Payloads are harmless: os.system("touch CANARY") in a canary the test owns.
"""
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import zlib

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

EXPECT = []
SEVENZIP = "/usr/bin/7zz"


def expect(name, verdict, rules=(), fmt=None, compression=None, same_as=None):
    """`same_as`: an uncompressed file whose findings this one must have, besides the compression's own."""
    EXPECT.append({"path": name, "verdict": verdict, "rules": list(rules), "format": fmt,
                   "compression": compression, "sameAs": same_as})


class Touch:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def model():
    rng = np.random.default_rng(7)
    X = rng.random((40, 4))
    return LogisticRegression().fit(X, (X[:, 0] > 0.5).astype(int))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main(out, canary):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731
    benign = model()
    # The payload first: the static pickle reader stops at joblib's inline array bytes (docs/formats.md), which is
    # the same for the uncompressed file.
    evil = {"hook": Touch(canary), "model": benign}
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    danger = "pickle.dangerous-import"

    # The same objects uncompressed: a compressed file must have the findings its content has.
    joblib.dump(benign, p("baseline_joblib.joblib"))
    expect("baseline_joblib.joblib", "suspicious", [], "joblib")
    frame.to_pickle(p("baseline_frame.pkl"))
    expect("baseline_frame.pkl", "suspicious", [], "pickle")

    # joblib, every compression it writes (the extension is joblib's own, so a loader by name agrees).
    for method, ext in [("zlib", "z"), ("gzip", "gz"), ("bz2", "bz2"), ("lzma", "lzma"), ("xz", "xz"),
                        ("lz4", "lz4")]:
        kind = {"bz2": "bzip2"}.get(method, method)
        joblib.dump(benign, p(f"benign_joblib.{ext}"), compress=(method, 3))
        expect(f"benign_joblib.{ext}", "suspicious", ["compressed.stream"], "joblib", kind, "baseline_joblib.joblib")
        joblib.dump(evil, p(f"evil_joblib.{ext}"), compress=(method, 3))
        expect(f"evil_joblib.{ext}", "malicious", [danger, "compressed.stream"], "joblib", kind)

    # pandas, every compression it writes (inferred from the extension).
    for method, ext, kind, fmt in [("gzip", "gz", "gzip", "pickle"), ("bz2", "bz2", "bzip2", "pickle"),
                                   ("xz", "xz", "xz", "pickle"), ("zstd", "zst", "zstd", "pickle"),
                                   ("zip", "zip", None, "zip"), ("tar", "tar", None, "tar")]:
        frame.to_pickle(p(f"benign_frame.pkl.{ext}"), compression=method)
        expect(f"benign_frame.pkl.{ext}", "suspicious", [], fmt, kind, "baseline_frame.pkl")
        pd.to_pickle(Touch(canary), p(f"evil_frame.pkl.{ext}"), compression=method)
        expect(f"evil_frame.pkl.{ext}", "malicious", [danger], fmt, kind)
    # .tar.gz: the tar inside the gzip.
    pd.to_pickle(Touch(canary), p("evil_frame.pkl.tar.gz"))  # pandas infers tar + gzip from the name
    expect("evil_frame.pkl.tar.gz", "malicious", [danger], "tar", "gzip")

    evil_pickle = pickle.dumps(Touch(canary), protocol=4)
    benign_pickle = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)

    # joblib < 0.10: ZF, the length in hex padded to 19 characters, zlib.
    write(p("evil_old.pkl"), b"ZF" + hex(len(evil_pickle)).encode().ljust(19) + zlib.compress(evil_pickle))
    expect("evil_old.pkl", "malicious", [danger], "pickle", "joblib-zf")

    # Nested: gzip of xz of a pickle; multi-member gzip with the payload in the second member.
    write(p("evil_nested.pkl.gz"), gzip.compress(lzma.compress(evil_pickle)))
    expect("evil_nested.pkl.gz", "malicious", [danger], "pickle", "gzip+xz")
    write(p("evil_members.gz"), gzip.compress(benign_pickle[:-1]) + gzip.compress(evil_pickle[2:]))
    expect("evil_members.gz", "malicious", [danger], None, "gzip")
    write(p("evil_streams.bz2"), bz2.compress(evil_pickle[:10]) + bz2.compress(evil_pickle[10:]))
    expect("evil_streams.bz2", "malicious", [danger], "pickle", "bzip2")
    # lzma "alone" with an unknown size (what lzma.compress(format=FORMAT_ALONE) writes).
    write(p("evil_alone.lzma"), lzma.compress(evil_pickle, format=lzma.FORMAT_ALONE))
    expect("evil_alone.lzma", "malicious", [danger], "pickle", "lzma")

    # Damage: a payload followed by garbage, a stream cut short, trailing bytes after the stream.
    padded = pickle.dumps([Touch(canary), os.urandom(200_000)], protocol=4)
    gz = gzip.compress(padded)
    write(p("evil_truncated.gz"), gz[: len(gz) // 2])
    expect("evil_truncated.gz", "malicious", [danger, "compressed.truncated"], "pickle", "gzip")
    write(p("evil_no_trailer.gz"), gz[:-8])
    expect("evil_no_trailer.gz", "malicious", [danger, "compressed.truncated"], "pickle", "gzip")
    xz = lzma.compress(evil_pickle)
    write(p("evil_corrupt.xz"), xz[:-20] + b"\xff" * 20)
    expect("evil_corrupt.xz", "malicious", [danger], "pickle", "xz")
    write(p("benign_trailing.gz"), gzip.compress(benign_pickle) + b"hidden: not read by any loader")
    expect("benign_trailing.gz", "suspicious", ["compressed.trailing-data"], "pickle", "gzip")
    write(p("broken.gz"), b"\x1f\x8b\x08\x00" + b"\xff" * 60)
    expect("broken.gz", "suspicious", ["compressed.unreadable"], "unknown")

    # An object-dtype .npy in gzip: numpy unpickles its data.
    buf = io.BytesIO()
    np.save(buf, np.array([Touch(canary)], dtype=object), allow_pickle=True)
    write(p("evil_array.npy.gz"), gzip.compress(buf.getvalue()))
    expect("evil_array.npy.gz", "malicious", [danger], "numpy", "gzip")

    # A bomb: 64 MiB of zeros per gzip member, 8 members (512 MiB, past the 256 MiB budget).
    member = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    write(p("bomb.gz"), member * 8)
    expect("bomb.gz", "suspicious", ["compressed.bomb"], None, "gzip")
    # Compression around compression around …: stops at the nesting limit.
    deep = evil_pickle
    for _ in range(6):
        deep = gzip.compress(deep)
    write(p("deep.gz"), deep)
    expect("deep.gz", "suspicious", ["compressed.nested-too-deep"], None, None)

    # tar: pax, GNU long names, ustar; a member that is itself gzip.
    for fmt_name, fmt in [("ustar", tarfile.USTAR_FORMAT), ("gnu", tarfile.GNU_FORMAT), ("pax", tarfile.PAX_FORMAT)]:
        name = f"evil_{fmt_name}.tar"
        with tarfile.open(p(name), "w", format=fmt) as t:
            add(t, "README.txt", b"hello\n")
            add(t, "deep/" + "d" * 120 + "/model.pkl", evil_pickle)
        expect(name, "malicious", [danger], "tar")
    with tarfile.open(p("benign.tar"), "w") as t:
        add(t, "model.pkl", benign_pickle)
        add(t, "empty", b"")
    expect("benign.tar", "clean", [], "tar")
    with tarfile.open(p("evil_inner_gz.tar"), "w") as t:
        add(t, "model.pkl.gz", gzip.compress(evil_pickle))
    expect("evil_inner_gz.tar", "malicious", [danger], "tar")
    with tarfile.open(p("evil.tar.xz"), "w:xz") as t:
        add(t, "model.pkl", evil_pickle)
    expect("evil.tar.xz", "malicious", [danger], "tar", "xz")

    # 7z with the real tool: LZMA2 (default), LZMA, copy, solid with several files, BCJ, encrypted headers.
    src = p("7z-src")
    os.makedirs(src, exist_ok=True)
    write(os.path.join(src, "model.pkl"), evil_pickle)
    write(os.path.join(src, "a.txt"), b"a" * 5000)
    write(os.path.join(src, "b.bin"), bytes(range(256)) * 40)
    write(os.path.join(src, "empty.txt"), b"")
    write(os.path.join(src, "benign.pkl"), benign_pickle)
    variants = [("lzma2", ["-m0=lzma2"]), ("lzma", ["-m0=lzma"]), ("copy", ["-m0=copy"]),
                ("solid", ["-ms=on"]), ("bcj", ["-m0=bcj", "-m1=lzma2"]), ("delta", ["-m0=delta:4", "-m1=lzma"]),
                ("deflate", ["-m0=deflate"]), ("bzip2", ["-m0=bzip2"]), ("nonsolid", ["-ms=off"])]
    for label, opts in variants:
        name = f"evil_{label}.7z"
        sevenzip(p(name), src, opts)
        expect(name, "malicious", [danger], "7z")
    sevenzip(p("evil_encrypted_headers.7z"), src, ["-mhe=on", "-psecret"])
    expect("evil_encrypted_headers.7z", "suspicious", ["7z.encrypted"], "7z")
    sevenzip(p("evil_encrypted.7z"), src, ["-psecret"])
    expect("evil_encrypted.7z", "suspicious", ["7z.encrypted"], "7z")
    os.remove(os.path.join(src, "model.pkl"))
    sevenzip(p("benign.7z"), src, [])
    expect("benign.7z", "clean", [], "7z")
    with open(p("evil_lzma2.7z"), "rb") as f:
        whole = f.read()
    write(p("truncated.7z"), whole[: len(whole) // 2])
    expect("truncated.7z", "suspicious", ["7z.malformed"], "7z")
    shutil.rmtree(src)

    with open(os.path.join(out, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


def add(t, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    t.addfile(info, io.BytesIO(data))


def sevenzip(path, src, options):
    if os.path.exists(path):
        os.remove(path)
    files = sorted(os.listdir(src))
    subprocess.run([SEVENZIP, "a", "-bd", "-bso0", "-bsp0", *options, path, *files], cwd=src, check=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    canary = args[args.index("--canary") + 1] if "--canary" in args else "/tmp/airlock-packed-canary"
    main(args[0], canary)
