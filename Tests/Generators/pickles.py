#!/usr/bin/env python3
"""Writes pickle samples for Airlock's pickle scanner tests, plus manifest.json describing what each holds.

Python 3 standard library only. This script only WRITES bytes: it never unpickles anything, and it imports none of
the modules the samples name. Every payload is harmless even if someone loaded it (commands such as
`touch /tmp/airlock-pickle-test`, connections to 127.0.0.1:9).

    pickles.py OUTDIR [--canary PATH] [--port N]

--canary and --port retarget the payloads (the file they touch, the loopback port they connect to) for detonation
tests, which prove the file never appears and the port never sees a connection. Each malicious sample's manifest
entry says in `detonates` what its payload does when `pickle.load` runs it (exec, write, network), when it does.
"""
import json
import marshal
import os
import pickle
import struct
import sys

CANARY = "/tmp/airlock-pickle-test"
PORT = 9
CMD = "touch " + CANARY
CODE = "open(%r, 'w').close()" % CANARY


def retarget(canary, port):
    """Points every payload at `canary` and loopback `port` (before build_samples)."""
    global CANARY, PORT, CMD, CODE
    CANARY, PORT = canary, port
    CMD = "touch " + canary
    CODE = "open(%r, 'w').close()" % canary
RENDER_CAP = 200


# --- a tiny value model -------------------------------------------------------------------------------------------

class Global:
    def __init__(self, module, name):
        self.module, self.name = module, name

    @property
    def full(self):
        return f"{self.module}.{self.name}"


class Call:
    """callable(*args) via REDUCE. `callee` overrides the expected callee name (for resolved dynamic callables)."""
    def __init__(self, func, args=(), callee=None, render=None, expect_args=True):
        self.func, self.args, self.callee, self.render, self.expect_args = func, tuple(args), callee, render, expect_args


class Module:
    """What __import__/import_module returns, for expected renderings only."""
    def __init__(self, name):
        self.name = name


class Build:
    def __init__(self, obj, state, callee):
        self.obj, self.state, self.callee = obj, state, callee


class PersId:
    def __init__(self, pid):
        self.pid = pid


class Raw:
    """Raw opcodes pushing one value."""
    def __init__(self, data, render="<unknown>"):
        self.data, self.render = data, render


def render(v):
    """What the scanner is expected to print for a constant (Python repr, capped)."""
    if isinstance(v, Global):
        s = v.full
    elif isinstance(v, Call):
        s = v.render if v.render is not None else (callee_of(v) + "(...)" if callee_of(v) != "<unknown>" else "<unknown>")
    elif isinstance(v, Module):
        s = f"<module '{v.name}'>"
    elif isinstance(v, Raw):
        s = v.render
    elif isinstance(v, PersId):
        s = "<persistent>"
    elif isinstance(v, tuple):
        inner = ", ".join(render(x) for x in v)
        s = "(" + inner + ("," if len(v) == 1 else "") + ")"
    elif isinstance(v, list):
        s = "[" + ", ".join(render(x) for x in v) + "]"
    elif isinstance(v, dict):
        s = "{" + ", ".join(render(k) + ": " + render(x) for k, x in v.items()) + "}"
    else:
        s = repr(v)
    return s if len(s) <= RENDER_CAP else s[:RENDER_CAP] + "..."


def callee_of(call):
    if call.callee is not None:
        return call.callee
    return call.func.full if isinstance(call.func, Global) else "<unknown>"


# --- an assembler that writes any protocol -----------------------------------------------------------------------

class Writer:
    def __init__(self, proto, memoize_globals=True):
        self.proto = proto
        self.out = bytearray()
        self.memo = {}
        self.memoize_globals = memoize_globals
        self.imports = []      # (full, offset in body)
        self.calls = []        # dicts

    def w(self, b):
        self.out += b

    def put(self):
        idx = len(self.memo)
        if self.proto >= 4:
            self.w(pickle.MEMOIZE)
        elif self.proto >= 1:
            self.w(pickle.BINPUT + bytes([idx]) if idx < 256 else pickle.LONG_BINPUT + struct.pack("<I", idx))
        else:
            self.w(b"p%d\n" % idx)
        return idx

    def get(self, idx):
        if self.proto >= 1:
            self.w(pickle.BINGET + bytes([idx]) if idx < 256 else pickle.LONG_BINGET + struct.pack("<I", idx))
        else:
            self.w(b"g%d\n" % idx)

    def str_(self, s):
        b = s.encode("utf-8")
        if self.proto >= 4 and len(b) < 256:
            self.w(pickle.SHORT_BINUNICODE + bytes([len(b)]) + b)
        elif self.proto >= 1:
            self.w(pickle.BINUNICODE + struct.pack("<I", len(b)) + b)
        else:
            esc = s.replace("\\", "\\u005c").replace("\n", "\\u000a").encode("raw-unicode-escape")
            self.w(pickle.UNICODE + esc + b"\n")

    def save(self, v):
        p = self.proto
        if v is None:
            self.w(pickle.NONE)
        elif v is True or v is False:
            if p >= 2:
                self.w(pickle.NEWTRUE if v else pickle.NEWFALSE)
            else:
                self.w(b"I01\n" if v else b"I00\n")
        elif isinstance(v, int):
            if p >= 1 and 0 <= v < 256:
                self.w(pickle.BININT1 + bytes([v]))
            elif p >= 1 and 0 <= v < 65536:
                self.w(pickle.BININT2 + struct.pack("<H", v))
            elif p >= 1 and -2**31 <= v < 2**31:
                self.w(pickle.BININT + struct.pack("<i", v))
            elif p >= 2:
                n = (v.bit_length() + 8) // 8
                self.w(pickle.LONG1 + bytes([n]) + v.to_bytes(n, "little", signed=True))
            else:
                self.w(b"I%d\n" % v)
        elif isinstance(v, float):
            if p >= 1:
                self.w(pickle.BINFLOAT + struct.pack(">d", v))
            else:
                self.w(b"F" + repr(v).encode() + b"\n")
        elif isinstance(v, str):
            self.str_(v)
        elif isinstance(v, bytes):
            if p >= 3:
                if len(v) < 256:
                    self.w(pickle.SHORT_BINBYTES + bytes([len(v)]) + v)
                else:
                    self.w(pickle.BINBYTES + struct.pack("<I", len(v)) + v)
            else:
                # What protocols 0-2 do: _codecs.encode(latin1 text, 'latin1').
                self.save(Call(Global("_codecs", "encode"), (v.decode("latin1"), "latin1"), expect_args=False))
        elif isinstance(v, tuple):
            if p >= 2 and len(v) <= 3:
                for x in v:
                    self.save(x)
                self.w([pickle.EMPTY_TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3][len(v)])
            else:
                self.w(pickle.MARK)
                for x in v:
                    self.save(x)
                self.w(pickle.TUPLE)
        elif isinstance(v, list):
            if p >= 1:
                self.w(pickle.EMPTY_LIST)
                if v:
                    self.w(pickle.MARK)
                    for x in v:
                        self.save(x)
                    self.w(pickle.APPENDS)
            else:
                self.w(pickle.MARK + pickle.LIST)
                for x in v:
                    self.save(x)
                    self.w(pickle.APPEND)
        elif isinstance(v, dict):
            if p >= 1:
                self.w(pickle.EMPTY_DICT)
                if v:
                    self.w(pickle.MARK)
                    for k, x in v.items():
                        self.save(k)
                        self.save(x)
                    self.w(pickle.SETITEMS)
            else:
                self.w(pickle.MARK + pickle.DICT)
                for k, x in v.items():
                    self.save(k)
                    self.save(x)
                    self.w(pickle.SETITEM)
        elif isinstance(v, Global):
            key = ("g", v.full)
            if self.memoize_globals and key in self.memo:
                self.get(self.memo[key])
                return
            if p >= 4:
                self.str_(v.module)
                self.str_(v.name)
                self.imports.append((v.full, len(self.out)))
                self.w(pickle.STACK_GLOBAL)
            else:
                self.imports.append((v.full, len(self.out)))
                self.w(pickle.GLOBAL + v.module.encode() + b"\n" + v.name.encode() + b"\n")
            if self.memoize_globals:
                self.memo[key] = self.put()
        elif isinstance(v, Call):
            self.save(v.func)
            self.save(v.args)
            self.calls.append({"callee": callee_of(v), "args": [render(a) for a in v.args] if v.expect_args else None})
            self.w(pickle.REDUCE)
        elif isinstance(v, Build):
            self.save(v.obj)
            self.save(v.state)
            self.calls.append({"callee": v.callee, "args": [render(v.state)]})
            self.w(pickle.BUILD)
        elif isinstance(v, PersId):
            self.save(v.pid)
            self.w(pickle.BINPERSID)
        elif isinstance(v, Raw):
            self.w(v.data)
        else:
            raise TypeError(type(v))

    def finish(self):
        """PROTO, one FRAME for protocol >= 4, the body, STOP. Returns (bytes, header length)."""
        body = bytes(self.out) + pickle.STOP
        head = b""
        if self.proto >= 2:
            head += pickle.PROTO + bytes([self.proto])
        if self.proto >= 4:
            head += pickle.FRAME + struct.pack("<Q", len(body))
        return head + body, len(head)


def assemble(value, proto, memoize_globals=True):
    w = Writer(proto, memoize_globals)
    w.save(value)
    data, head = w.finish()
    return data, {
        "imports": [full for full, _ in w.imports],
        "importOffsets": [off + head for _, off in w.imports],
        "calls": w.calls,
        "protocol": proto if proto >= 2 else None,
    }


# --- samples ---------------------------------------------------------------------------------------------------------

SAMPLES = []


def sample(name, data, **expect):
    SAMPLES.append((name, bytes(data), expect))


def emit(name, value, proto=2, **extra):
    data, exp = assemble(value, proto)
    exp.update(extra)
    sample(name, data, **exp)
    return data


def system(mod="os"):
    return Call(Global(mod, "system"), (CMD,))


def imp(mod):
    return Call(Global("builtins", "__import__"), (mod,), render=None)


def build_samples():
    for proto in range(6):
        emit(f"os_system_p{proto}", system(), proto)
    emit("posix_system", system("posix"))
    emit("nt_system", system("nt"))
    emit("subprocess_popen", Call(Global("subprocess", "Popen"), (["touch", "/tmp/airlock-pickle-test"],)), 3)
    emit("subprocess_check_output", Call(Global("subprocess", "check_output"), (["id"],)), 4)
    emit("builtins_exec", Call(Global("builtins", "exec"), (CODE,)), 2)
    emit("builtins_eval", Call(Global("builtins", "eval"), (CODE,)), 4)
    emit("builtins_getattr", Call(
        Call(Global("builtins", "getattr"), (Call(Global("builtins", "__import__"), ("os",), render="<module 'os'>"), "system"),
             render="os.system"),
        (CMD,), callee="os.system"), 2)
    emit("importlib_inspect", Call(
        Call(Global("inspect", "getattr_static"),
             (Call(Global("importlib", "import_module"), ("os",), render="<module 'os'>"), "system"), render="os.system"),
        (CMD,), callee="os.system"), 4)

    # The callable fetched from the memo: GLOBAL, BINPUT 0, POP ... BINGET 0, args, REDUCE.
    raw = (pickle.PROTO + b"\x02" + b"cos\nsystem\n" + pickle.BINPUT + b"\x00" + pickle.POP
           + pickle.EMPTY_DICT + pickle.POP
           + pickle.BINGET + b"\x00" + pickle.BINUNICODE + struct.pack("<I", len(CMD)) + CMD.encode()
           + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
    sample("memo_binget", raw, imports=["os.system"], importOffsets=[2], protocol=2,
           calls=[{"callee": "os.system", "args": [repr(CMD)]}])

    def sbu(s):
        b = s.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(b)]) + b

    # STACK_GLOBAL with memoized strings.
    body = (sbu("os") + pickle.MEMOIZE + pickle.POP + sbu("system") + pickle.MEMOIZE + pickle.POP
            + pickle.BINGET + b"\x00" + pickle.BINGET + b"\x01")
    sg_off = 2 + 9 + len(body)
    body += pickle.STACK_GLOBAL + sbu(CMD) + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP
    sample("stack_global_memo", pickle.PROTO + b"\x04" + pickle.FRAME + struct.pack("<Q", len(body)) + body,
           imports=["os.system"], importOffsets=[sg_off], protocol=4,
           calls=[{"callee": "os.system", "args": [repr(CMD)]}])

    # STACK_GLOBAL with strings computed elsewhere: _operator.add('o', 's'), _operator.add('sys', 'tem').
    w = Writer(4)
    w.save(Call(Global("_operator", "add"), ("o", "s")))
    w.save(Call(Global("_operator", "add"), ("sys", "tem")))
    sg = len(w.out)
    w.w(pickle.STACK_GLOBAL)
    w.save((CMD,))
    w.w(pickle.REDUCE)
    data, head = w.finish()
    sample("stack_global_computed", data, imports=["_operator.add", "os.system"],
           importOffsets=[w.imports[0][1] + head, sg + head], protocol=4,
           calls=w.calls + [{"callee": "os.system", "args": [repr(CMD)]}])

    # Protocol-4 dotted names.
    emit("dotted_names", [
        Call(Global("os", "path.join"), ("a", "b")),
        Call(Global("builtins", "getattr.__self__.exec"), (CODE,)),
    ], 4)
    emit("runpy_run_code", Call(Global("runpy", "_run_code"), (CODE, {})), 4)
    emit("timeit_timeit", Call(Global("timeit", "timeit"), (CODE, "pass", Global("time", "perf_counter"), 1)), 4)
    emit("cprofile_run", Call(Global("cProfile", "run"), (CODE,)), 2)
    emit("profile_run", Call(Global("profile", "Profile.run"), (Call(Global("profile", "Profile"), ()), CODE)), 4)
    emit("pdb_run", Call(Global("pdb", "run"), (CODE,)), 2)
    emit("bdb_run", Call(Global("bdb", "Bdb.run"), (Call(Global("bdb", "Bdb"), ()), CODE)), 4)
    emit("operator_gadgets", [
        Call(Call(Global("operator", "attrgetter"), ("system",)),
             (Call(Global("builtins", "__import__"), ("os",), render="<module 'os'>"),)),
        Call(Call(Global("operator", "methodcaller"), ("system", CMD)),
             (Call(Global("builtins", "__import__"), ("os",), render="<module 'os'>"),)),
        Call(Call(Global("operator", "itemgetter"), ("k",)), ({"k": CMD},)),
    ], 4)
    code = marshal.dumps(compile(CODE, "<airlock>", "exec"))   # bytes of a code object; never executed here
    emit("marshal_function", Call(
        Call(Global("types", "FunctionType"),
             (Call(Global("marshal", "loads"), (code,), expect_args=False), Call(Global("builtins", "globals"), ()))),
        ()), 3)
    inner, _ = assemble(system(), 2)
    data = emit("nested_pickle", Call(Global("pickle", "loads"), (inner,), expect_args=False), 3,
                nested=[{"imports": ["os.system"], "calls": [{"callee": "os.system", "args": [repr(CMD)]}]}])
    SAMPLES[-1][2]["nestedOffsets"] = [data.index(inner)]
    emit("ctypes_cdll", Call(Global("ctypes", "CDLL"), ("libc.so.6",)), 4)
    emit("socket_connect", Call(Global("socket", "create_connection"), (("127.0.0.1", PORT),)), 2)
    emit("smtplib_smtp", Call(Global("smtplib", "SMTP"), ("127.0.0.1", PORT)), 3)
    emit("urlopen", Call(Global("urllib.request", "urlopen"), ("http://127.0.0.1:%d/" % PORT,)), 4)
    emit("pip_main", Global("pip", "main"), 2, calls=[])
    emit("logging_dictconfig", Call(Global("logging.config", "dictConfig"), ({
        "version": 1,
        "handlers": {"h": {"()": "os.system", "command": CMD}},
        "root": {"handlers": ["h"]},
    },)), 4)
    emit("code_console", Call(Global("code", "InteractiveConsole.push"),
                              (Call(Global("code", "InteractiveConsole"), ()), CODE)), 4)

    # EXT codes: nothing registered in copyreg by default.
    raw = (pickle.PROTO + b"\x02" + pickle.EXT1 + b"\x42" + sbu(CMD) + pickle.TUPLE1 + pickle.REDUCE + pickle.POP
           + pickle.EXT2 + struct.pack("<H", 0x1234) + pickle.POP
           + pickle.EXT4 + struct.pack("<I", 0x12345678) + pickle.STOP)
    sample("ext_codes", raw, imports=[], protocol=2, calls=[{"callee": "<unknown>", "args": [repr(CMD)]}],
           observations={"pickle.ext-code": 3}, extCodes=["66", "4660", "305419896"])

    # INST (protocol 0) and OBJ (protocol 1).
    raw = b"(S'" + CMD.encode() + b"'\nios\nsystem\n."
    sample("inst_p0", raw, imports=["os.system"], importOffsets=[len(raw) - 12], protocol=None,
           calls=[{"callee": "os.system", "args": [repr(CMD)]}])
    raw = b"(cos\nsystem\nX" + struct.pack("<I", len(CMD)) + CMD.encode() + b"o."
    sample("obj_p1", raw, imports=["os.system"], importOffsets=[1], protocol=None,
           calls=[{"callee": "os.system", "args": [repr(CMD)]}])
    # A protocol-0 string with escapes that spell the module name.
    raw = b"cposix\nsystem\n(S'" + CMD.replace("airlock", "\\x61irlock", 1).encode() + b"'\ntR."
    sample("string_escapes_p0", raw, imports=["posix.system"], protocol=None,
           calls=[{"callee": "posix.system", "args": [repr(CMD.replace("airlock", "airlock"))]}])

    # A payload followed by garbage: everything up to REDUCE stays.
    payload, exp = assemble(system(), 2)
    raw = payload[:-1] + b"\xff\xfegarbage"
    sample("payload_then_garbage", raw, imports=exp["imports"], importOffsets=exp["importOffsets"], protocol=2,
           calls=exp["calls"], observations={"pickle.invalid-opcode": 1}, invalidOpcodeOffset=len(payload) - 1)

    # Several pickles in one stream; the payload is in the second.
    a, _ = assemble({"a": 1}, 2)
    b, exp = assemble(system(), 2)
    c, _ = assemble([1, 2, 3], 2)
    sample("multi_stream", a + b + c, imports=exp["imports"], importOffsets=[o + len(a) for o in exp["importOffsets"]],
           protocol=2, calls=exp["calls"], streams=3, endOffset=len(a + b + c))

    # Legacy PyTorch layout: five pickles back to back, then raw storage bytes.
    parts = [assemble(0x1950A86A20F9469CFC6C, 2)[0], assemble(1001, 2)[0],
             assemble({"protocol_version": 1001, "little_endian": True}, 2)[0]]
    storage = ("0", Global("torch", "FloatStorage"), "0", "cpu", 6)
    storage_tuple = ("storage",) + storage[1:]
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"),
                  (PersId(storage_tuple), 0, (2, 3), (3, 1), False, Call(Global("collections", "OrderedDict"), ())),
                  expect_args=False)
    parts.append(assemble(Call(Global("collections", "OrderedDict"), ([("weight", tensor)],), expect_args=False), 2)[0])
    parts.append(assemble(["0"], 2)[0])
    head = b"".join(parts)
    storage_bytes = struct.pack("<Q", 6) + struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    sample("legacy_torch", head + storage_bytes, imports=["torch.FloatStorage", "torch._utils._rebuild_tensor_v2",
                                                          "collections.OrderedDict"],
           unordered=True, protocol=2, streams=5, endOffset=len(head),
           observations={"pickle.trailing-data": 1}, trailingOffset=len(head))

    # Benign: an OrderedDict of tensor-like rebuild calls (protocol 2, as torch writes them).
    emit("benign_state_dict", Build(
        Call(Global("collections", "OrderedDict"), ()),
        {"layer.weight": Call(Global("torch._utils", "_rebuild_tensor_v2"),
                              (PersId(("storage", Global("torch", "FloatStorage"), "0", "cpu", 6)), 0, (2, 3), (3, 1),
                               False, Call(Global("collections", "OrderedDict"), ())))},
        callee="collections.OrderedDict"), 2, benign=True)
    # Benign: numpy-style reconstruction referenced by name only.
    emit("benign_numpy", Build(
        Call(Global("numpy.core.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b")),
        (1, (3,), Call(Global("numpy", "dtype"), ("f8", False, True)), False, b"\x00" * 24),
        callee="numpy.core.multiarray._reconstruct"), 2, benign=True)
    emit("benign_plain", {"name": "model", "sizes": [1, 2, 3], "lr": 0.001, "flag": None}, 4, benign=True)


# What each malicious sample's payload does when pickle.load runs it inside Airlock's sandbox (the denied call
# becomes a dynamic finding). Samples not named here do nothing at load: a global never called (pip_main), an
# object only constructed (ctypes_cdll), a module that does not exist on Linux (nt_system), an extension code
# nothing registered (ext_codes), a payload in a second pickle that pickle.load never reads (multi_stream), a
# debugger that waits for its prompt (pdb_run).
DETONATES = {
    **{f"os_system_p{p}": "exec" for p in range(6)},
    "posix_system": "exec", "subprocess_popen": "exec", "subprocess_check_output": "exec",
    "builtins_exec": "write", "builtins_eval": "write", "builtins_getattr": "exec", "importlib_inspect": "exec",
    "memo_binget": "exec", "stack_global_memo": "exec", "stack_global_computed": "exec", "dotted_names": "write",
    "runpy_run_code": "write", "timeit_timeit": "write", "cprofile_run": "write", "profile_run": "write",
    "bdb_run": "write", "operator_gadgets": "exec", "marshal_function": "write", "nested_pickle": "exec",
    "socket_connect": "network", "smtplib_smtp": "network", "urlopen": "network", "logging_dictconfig": "exec",
    "code_console": "write", "inst_p0": "exec", "obj_p1": "exec", "string_escapes_p0": "exec",
    "payload_then_garbage": "exec",
}


def main():
    args = sys.argv[1:]
    canary, port = None, None
    while len(args) >= 2 and args[-2] in ("--canary", "--port"):
        if args[-2] == "--canary":
            canary = args[-1]
        else:
            port = int(args[-1])
        args = args[:-2]
    if len(args) != 1:
        sys.exit("usage: pickles.py OUTDIR [--canary PATH] [--port N]")
    out = args[0]
    os.makedirs(out, exist_ok=True)
    retarget(canary or CANARY, port or PORT)
    build_samples()
    manifest = []
    for name, data, expect in SAMPLES:
        fname = name + ".pkl"
        with open(os.path.join(out, fname), "wb") as f:
            f.write(data)
        entry = {"name": name, "file": fname, "size": len(data)}
        entry.update(expect)
        if name in DETONATES:
            entry["detonates"] = DETONATES[name]
        manifest.append(entry)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
