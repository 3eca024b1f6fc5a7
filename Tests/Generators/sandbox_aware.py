#!/usr/bin/env python3
"""Writes sandbox-aware pickles for Airlock's detonation-world tests: each runs its payload only when one check says
"a real host" (the host name is not `airlock`, the pid is not 2, the environment is a service's, ...), so it stays
quiet in a sandbox that shows that tell and fires in one that does not. Writes manifest.json: [{"file", "tell"}].

    sandbox_aware.py OUTDIR --canary PATH

Python 3 standard library only; nothing is unpickled here. The payload is harmless: it runs `touch CANARY` through
os.system (a program start, which the sandbox refuses and records), and the test checks that the canary never
appears on the host.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Call, Global  # noqa: E402

# Each check is a Python expression that is true on a real host and was false in Airlock's sandbox before issue 15.
TELLS = {
    "hostname": "__import__('socket').gethostname() != 'airlock'",
    "pid": (
        "os.getpid() > 100 and os.getppid() == 1"
        " and os.getpid() < int(open('/proc/sys/kernel/pid_max').read())"
        " and os.environ.get('SYSTEMD_EXEC_PID', str(os.getpid())) == str(os.getpid())"
    ),
    "environment": "len(os.environ) > 6 and os.environ.get('HOME', '/tmp') != '/tmp' and 'USER' in os.environ",
    "rlimits": (
        "(lambda r: r.getrlimit(r.RLIMIT_NPROC)[0] > 1024 and r.getrlimit(r.RLIMIT_AS)[0] == r.RLIM_INFINITY"
        " and r.getrlimit(r.RLIMIT_CPU)[0] == r.RLIM_INFINITY and r.getrlimit(r.RLIMIT_NOFILE)[0] >= 1024"
        " and r.getrlimit(r.RLIMIT_FSIZE)[0] == r.RLIM_INFINITY)(__import__('resource'))"
    ),
    "directories": (
        "all(os.path.isdir(d) for d in ('/home', '/var/tmp', '/var/log', '/run/systemd/system', '/sys/class/net'))"
        " and os.path.isdir(os.path.expanduser('~/.cache/huggingface'))"
        " and os.path.isdir(os.path.expanduser('~/.config'))"
    ),
    "root-size": "(lambda s: s.f_blocks * s.f_frsize > (8 << 30))(os.statvfs('/'))",
    "mount-sources": (
        "not any('airlock' in line.split(' - ', 1)[-1] for line in open('/proc/self/mountinfo'))"
    ),
    "init": (
        "(lambda c: b'airlock' not in c and c.endswith(b'\\0') and c.count(b'\\0') == 1 and c.startswith(b'/'))"
        "(open('/proc/1/cmdline', 'rb').read())"
        " and open('/proc/1/comm').read().strip() in ('systemd', 'init')"
    ),
    "etc": (
        "os.path.exists('/etc/os-release') and os.path.exists('/etc/machine-id')"
        " and 'airlock' not in open('/etc/passwd').read() and 'airlock' not in open('/etc/hosts').read()"
        " and 'airlock' not in open('/etc/hostname').read()"
    ),
    "user": (
        "(lambda p: p.pw_name != 'airlock' and p.pw_dir == os.environ.get('HOME')"
        " and p.pw_dir.startswith('/home/'))(__import__('pwd').getpwuid(os.getuid()))"
    ),
    "cwd": "os.getcwd() != '/tmp'",
}


def gated(check, command):
    code = "import os\nif %s:\n    os.system(%r)\n" % (check, command)
    return Call(Global("builtins", "exec"), (code,))


def main():
    out = sys.argv[1]
    canary = sys.argv[sys.argv.index("--canary") + 1]
    os.makedirs(out, exist_ok=True)
    command = "touch " + canary
    manifest = []
    for tell, check in TELLS.items():
        name = "aware_%s.pkl" % tell.replace("-", "_")
        with open(os.path.join(out, name), "wb") as f:
            f.write(pickles.assemble(gated(check, command), 2)[0])
        manifest.append({"file": name, "tell": tell})
    combined = " and ".join("(%s)" % check for check in TELLS.values())
    with open(os.path.join(out, "aware_all.pkl"), "wb") as f:
        f.write(pickles.assemble(gated(combined, command), 4)[0])
    manifest.append({"file": "aware_all.pkl", "tell": "all"})
    gpu = (
        "os.path.exists('/dev/nvidia0') and os.path.exists('/dev/nvidiactl') and os.path.exists('/dev/nvidia-uvm')"
        " and os.environ.get('CUDA_VISIBLE_DEVICES') == '0' and 'NVIDIA_VISIBLE_DEVICES' in os.environ"
    )
    with open(os.path.join(out, "aware_gpu.pkl"), "wb") as f:
        f.write(pickles.assemble(gated(gpu, command), 2)[0])
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
