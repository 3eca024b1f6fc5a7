#!/usr/bin/python3
"""Writes a Hugging Face hub cache for Tests/Bench/hfcache.sh: 20 model repositories in the layout
huggingface_hub writes (hub/models--ORG--NAME/{blobs,refs/main,snapshots/REV}), every snapshot file a relative
symbolic link ../../blobs/<hash>: big files are named by their SHA-256 (LFS), small text files by their git blob SHA-1.

Usage: hfcache_gen.py OUT [SCALE]   SCALE (default 1.0) multiplies the big checkpoints' sizes:
  a 1.5 GB and a 1.0 GB PyTorch zip state_dict (torch.save), a 1.0 GB safetensors, 17 small repositories.
Needs torch and numpy (Debian's). Nothing here is loaded back; the tensors hold random bytes.
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch

GB = 1 << 30


def tensor(nbytes, seed):
    rng = np.random.default_rng(seed)
    n = max(1, nbytes // 4)
    return torch.from_numpy(rng.integers(0, 1 << 31, size=n, dtype=np.int32).view(np.float32))


def state_dict(total, layers, seed):
    return {f"layer{i}.weight": tensor(total // layers, seed * 1000 + i) for i in range(layers)}


def safetensors_bytes_to(path, total, layers, seed):
    header, offset, arrays = {}, 0, []
    for i in range(layers):
        n = total // layers // 4
        header[f"layer{i}.weight"] = {"dtype": "F32", "shape": [n], "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
        arrays.append(n)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for i, n in enumerate(arrays):
            f.write(np.random.default_rng(seed + i).integers(0, 1 << 31, size=n, dtype=np.int32).tobytes())


def file_hash(path, git):
    h = hashlib.sha1() if git else hashlib.sha256()
    if git:
        h.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def add(repo, name, write, lfs):
    blobs = os.path.join(repo, "blobs")
    tmp = os.path.join(blobs, "incoming")
    write(tmp)
    blob = file_hash(tmp, git=not lfs)
    os.replace(tmp, os.path.join(blobs, blob))
    rev = open(os.path.join(repo, "refs", "main")).read().strip()
    link = os.path.join(repo, "snapshots", rev, name)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    depth = name.count("/")
    os.symlink("../" * (2 + depth) + "blobs/" + blob, link)


def repo(out, org, name, seed):
    path = os.path.join(out, "hub", f"models--{org}--{name}")
    for d in ("blobs", "refs", "snapshots"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    rev = hashlib.sha1(f"{org}/{name}".encode()).hexdigest()
    with open(os.path.join(path, "refs", "main"), "w") as f:
        f.write(rev)
    os.makedirs(os.path.join(path, "snapshots", rev), exist_ok=True)
    config = {"model_type": "bert", "hidden_size": 64, "seed": seed}
    add(path, "config.json", lambda p: open(p, "w").write(json.dumps(config)), lfs=False)
    add(path, "README.md", lambda p: open(p, "w").write(f"# {org}/{name}\n"), lfs=False)
    return path


def main(out, scale):
    big = [
        ("bench", "big-zip-a", "pytorch_model.bin", int(1.5 * GB * scale), "zip"),
        ("bench", "big-zip-b", "pytorch_model.bin", int(1.0 * GB * scale), "zip"),
        ("bench", "big-safetensors", "model.safetensors", int(1.0 * GB * scale), "st"),
    ]
    for i, (org, name, file, size, kind) in enumerate(big):
        path = repo(out, org, name, i)
        if kind == "zip":
            add(path, file, lambda p, s=size, i=i: torch.save(state_dict(s, 24, i), p), lfs=True)
        else:
            add(path, file, lambda p, s=size, i=i: safetensors_bytes_to(p, s, 24, i), lfs=True)
    for i in range(17):
        path = repo(out, "small", f"model-{i:02d}", 100 + i)
        size = (2 + 3 * i) << 20
        if i % 2 == 0:
            add(path, "model.safetensors", lambda p, s=size, i=i: safetensors_bytes_to(p, s, 4, 100 + i), lfs=True)
        if i % 3 != 2:
            add(path, "pytorch_model.bin", lambda p, s=size, i=i: torch.save(state_dict(s, 4, 100 + i), p), lfs=True)
        else:
            add(path, "tokenizer.json", lambda p, i=i: open(p, "w").write(json.dumps({"v": list(range(5000 + i))})),
                lfs=False)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) == 3 else 1.0)
