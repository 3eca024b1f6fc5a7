#!/usr/bin/python3
"""Writes the big single files whose `airlock scan` peak memory Tests/Bench/hfcache.sh measures (BENCH_HF_MEMORY=1):
zip4g.pt (a 4 GiB PyTorch zip state_dict), legacy1g.pt (a 1 GiB legacy PyTorch file,
_use_new_zipfile_serialization=False), big1g.safetensors, raw1g.pkl (a 1 GiB raw pickle: a bytes object and a
numpy array), floats.pkl (a list of 10 million floats, a pickle the scanner walks op by op).

Usage: bigfiles_gen.py OUT [SCALE]   (SCALE multiplies the sizes, default 1.0). Needs torch and numpy (Debian's).
"""
import os
import pickle
import struct
import sys

import numpy as np
import torch

GIB = 1 << 30


def rand(nbytes, seed):
    n = max(1, nbytes // 4)
    return np.random.default_rng(seed).integers(0, 1 << 31, size=n, dtype=np.int32).view(np.float32)


def main(out, scale):
    os.makedirs(out, exist_ok=True)
    torch.save({f"w{i}": torch.from_numpy(rand(int(4 * GIB * scale) // 32, i)) for i in range(32)},
               os.path.join(out, "zip4g.pt"))
    torch.save({f"w{i}": torch.from_numpy(rand(int(GIB * scale) // 16, i)) for i in range(16)},
               os.path.join(out, "legacy1g.pt"), _use_new_zipfile_serialization=False)
    n = int(GIB * scale) // 4
    header = ('{"w":{"dtype":"F32","shape":[%d],"data_offsets":[0,%d]}}' % (n, 4 * n)).encode()
    header += b" " * (-len(header) % 8)
    with open(os.path.join(out, "big1g.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.write(rand(4 * n, 7).tobytes())
    with open(os.path.join(out, "raw1g.pkl"), "wb") as f:
        pickle.dump({"blob": rand(int(GIB * scale) // 2, 8).tobytes(), "array": rand(int(GIB * scale) // 2, 9)}, f,
                    protocol=4)
    with open(os.path.join(out, "floats.pkl"), "wb") as f:
        pickle.dump([float(i) for i in range(int(10_000_000 * scale))], f, protocol=4)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) == 3 else 1.0)
