#!/usr/bin/env python3
"""Writes chat templates where loaders find them, plus expectations.json (path, verdict `airlock scan` must give,
rules that must be among its findings), for Airlock's template tests:

- GGUF files (a small model: architecture, token list with BOS/EOS, `tokenizer.chat_template`, one F32 tensor),
  named `gguf/<name>.gguf`;
- Hugging Face forms: `hf/<name>/tokenizer_config.json` (the template as a string), `hf-list/<name>/...` (a list of
  named templates), `hf-json/<name>/chat_template.json`, `hf-jinja/<name>/chat_template.jinja`.

Benign templates are faithful copies of public chat templates (chat_templates.py); hostile ones escape Jinja's
namespace with harmless payloads (`touch CANARY`, a connection to 127.0.0.1:PORT).

    templates.py OUTDIR [--canary PATH] [--port N] [--only NAME,NAME]
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_templates  # noqa: E402

EXPECT = []


def s(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def kv_string(key, value):
    return s(key) + struct.pack("<I", 8) + s(value)


def gguf(template, key="tokenizer.chat_template", extra=()):
    """A GGUF v3 file: metadata (with the template) and one 4-float F32 tensor."""
    kvs = [kv_string("general.architecture", "llama"), kv_string("general.name", "airlock-template-test")]
    tokens = ["<s>", "</s>", "a", "b"]
    kvs.append(s("tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<I", 8) + struct.pack("<Q", 4)
               + b"".join(s(t) for t in tokens))
    kvs.append(s("tokenizer.ggml.bos_token_id") + struct.pack("<I", 4) + struct.pack("<I", 0))
    kvs.append(s("tokenizer.ggml.eos_token_id") + struct.pack("<I", 4) + struct.pack("<I", 1))
    kvs.append(kv_string(key, template))
    kvs += [kv_string(k, v) for k, v in extra]
    tensor = s("w") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    head = b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 1) + struct.pack("<Q", len(kvs)) + b"".join(kvs) + tensor
    head += bytes((32 - len(head) % 32) % 32)
    return head + struct.pack("<4f", 0.25, -0.5, 1.0, 2.0)


def write(out, path, data, verdict, rule=None):
    full = os.path.join(out, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    EXPECT.append({"path": path, "verdict": verdict, "rules": [rule] if rule else []})


def forms(out, name, template, verdict, rule=None):
    write(out, f"gguf/{name}.gguf", gguf(template), verdict, rule)
    config = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": template, "model_max_length": 4096}
    write(out, f"hf/{name}/tokenizer_config.json", json.dumps(config, indent=2), verdict, rule)
    listed = dict(config, chat_template=[{"name": "default", "template": chat_templates.CHATML},
                                         {"name": "tool_use", "template": template}])
    write(out, f"hf-list/{name}/tokenizer_config.json", json.dumps(listed), verdict, rule)
    write(out, f"hf-json/{name}/chat_template.json", json.dumps({"chat_template": template}), verdict, rule)
    write(out, f"hf-jinja/{name}/chat_template.jinja", template, verdict, rule)


def main():
    args = sys.argv[1:]
    out = args[0]
    canary, port, only = "/tmp/airlock-template-test", 9, None
    for i, a in enumerate(args):
        if a == "--canary":
            canary = args[i + 1]
        elif a == "--port":
            port = int(args[i + 1])
        elif a == "--only":
            only = set(args[i + 1].split(","))
    os.makedirs(out, exist_ok=True)

    def fill(t):
        return t.replace("CANARY", canary).replace("PORT", str(port))

    for name, template in chat_templates.BENIGN.items():
        if only is None or name in only:
            forms(out, f"benign_{name}", template, "clean")
    for name, (template, verdict, rule) in chat_templates.HOSTILE.items():
        if only is None or name in only:
            forms(out, f"hostile_{name}", fill(template), verdict, rule)
    # A named variant beside a benign default (GGUF's tokenizer.chat_template.<name>).
    if only is None:
        write(out, "gguf/hostile_named_variant.gguf",
              gguf(chat_templates.CHATML, extra=[("tokenizer.chat_template.tool_use",
                                                 "{{ cycler.__init__.__globals__ }}")]),
              "malicious", "template.sandbox-escape")
    # Detonation payloads: what llama-cpp-python's formatter runs when it renders them.
    probe_touch = ("{{ cycler.__init__.__globals__.os.popen('touch " + canary + "').read() }}"
                   "{% for m in messages %}{{ m.content }}{% endfor %}")
    probe_connect = ("{% set s = cycler.__init__.__globals__.__builtins__.__import__('socket').socket() %}"
                     "{{ s.connect(('127.0.0.1', " + str(port) + ")) }}{{ messages[0].content }}")
    if only is None or "probe" in only:
        write(out, "probe/touch.gguf", gguf(probe_touch), "malicious", "template.sandbox-escape")
        write(out, "probe/connect.gguf", gguf(probe_connect), "malicious", "template.sandbox-escape")
        write(out, "probe/benign.gguf", gguf(chat_templates.LLAMA31), "clean")
    with open(os.path.join(out, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


if __name__ == "__main__":
    main()
