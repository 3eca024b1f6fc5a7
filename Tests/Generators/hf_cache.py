#!/usr/bin/env python3
"""Builds a Hugging Face cache (`hub/`) exactly as huggingface_hub's file_download lays one out, for Airlock's cache
tests, plus expectations.json beside HUB: for each path under the hub (as `airlock scan HUB` names it), the verdict
(null: the path must not be reported, a blob reported under its snapshots' names) and the rule ids that must (and must
not) be among its findings, and the blob, revision and `verified` the report must carry.

    hf_cache.py HUB [--canary PATH] [--port N]

The layout (huggingface_hub 0.36 `hf_hub_download` / `_create_symlink`):
  HUB/version.txt, HUB/.locks/models--ORG--NAME/ETAG.lock
  HUB/models--ORG--NAME/blobs/ETAG           ETAG: SHA-256 of the content for LFS files, git blob SHA-1 otherwise
  HUB/models--ORG--NAME/refs/main            the commit hash, no newline
  HUB/models--ORG--NAME/snapshots/COMMIT/F   symlink os.path.relpath(blob, dirname(F)): ../../blobs/ETAG, one more
                                             ../ per sub-folder of F
  HUB/models--ORG--NAME/.no_exist/COMMIT/F   empty: F is known to be missing
  HUB/models--ORG--NAME/blobs/ETAG.incomplete  a download in progress

Weights are real: torch.save of a state dict (the malicious one holds an object whose __reduce__ is os.system with a
harmless `touch` of --canary; torch.save pickles it, nothing runs it), safetensors written to the format's layout;
the remote-code repository is remote_code.py's `import` payload (a connection to --port, a touch of --canary).
Nothing is ever unpickled here.
"""
import hashlib
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

EXPECT = {}
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".incomplete-src")


def expect(path, verdict, rules=(), absent=("folder.symlink",), blob=None, verified=None, revision=None):
    EXPECT[path] = {"verdict": verdict, "rules": list(rules), "absent": list(absent), "blob": blob,
                    "verified": verified, "revision": revision}


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def etag(name, data):
    """The Hub's ETag for a file: LFS files (weights) by SHA-256, the others by their git blob SHA-1."""
    return hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else git_sha1(data)


class Repo:
    def __init__(self, hub, repo_id, kind="model"):
        self.hub = hub
        self.folder_name = kind + "s--" + repo_id.replace("/", "--")
        self.storage = os.path.join(hub, self.folder_name)
        os.makedirs(os.path.join(self.storage, "blobs"), exist_ok=True)
        os.makedirs(os.path.join(self.storage, "refs"), exist_ok=True)
        os.makedirs(os.path.join(self.storage, "snapshots"), exist_ok=True)
        self.locks = os.path.join(hub, ".locks", self.folder_name)
        os.makedirs(self.locks, exist_ok=True)

    def blob(self, name, data):
        tag = etag(name, data)
        path = os.path.join(self.storage, "blobs", tag)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            open(os.path.join(self.locks, tag + ".lock"), "w").close()
        # Reported under the snapshots' names only (a stray blob's expectation replaces this one).
        expect(self.shown("blobs", tag), None, absent=())
        return tag

    def download(self, commit, filename, data, ref=None):
        """hf_hub_download: the blob, then the snapshot's pointer as a relative symlink to it."""
        tag = self.blob(filename, data)
        pointer = os.path.join(self.storage, "snapshots", commit, filename)
        os.makedirs(os.path.dirname(pointer), exist_ok=True)
        blob_path = os.path.join(self.storage, "blobs", tag)
        os.symlink(os.path.relpath(os.path.abspath(blob_path), os.path.dirname(os.path.abspath(pointer))), pointer)
        if ref is not None:
            with open(os.path.join(self.storage, "refs", ref), "w") as f:
                f.write(commit)
        return tag

    def link(self, commit, filename, target):
        pointer = os.path.join(self.storage, "snapshots", commit, filename)
        os.makedirs(os.path.dirname(pointer), exist_ok=True)
        os.symlink(target, pointer)

    def no_exist(self, commit, filename):
        path = os.path.join(self.storage, ".no_exist", commit, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()

    def shown(self, *parts):
        return "/".join((self.folder_name,) + parts)


def safetensors(tensors):
    """safetensors' layout: 8-byte little-endian header size, the JSON header, the data."""
    header, data = {}, b""
    for name, values in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


def torch_bytes(obj):
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class Payload:
    """Pickled by torch.save as a call of os.system; nothing here ever unpickles it."""
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


CONFIG = json.dumps({"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 4}, indent=2).encode()
TOKENIZER = json.dumps({"version": "1.0", "model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1}}}).encode()
TOKENIZER_CONFIG = json.dumps({"model_max_length": 512, "tokenizer_class": "BertTokenizer"}).encode()
R1 = "1f0c2a3b4d5e6f708192a3b4c5d6e7f801234567"
R2 = "9a8b7c6d5e4f30211203f4e5d6c7b8a990817263"


def main(hub, canary, port):
    os.makedirs(hub, exist_ok=True)
    with open(os.path.join(hub, "version.txt"), "w") as f:
        f.write("1")

    # A clean model, two revisions sharing their tokenizer, one file in a sub-folder, a file known missing, a
    # download in progress.
    clean = Repo(hub, "acme/clean-bert")
    weights1 = safetensors({"embeddings.weight": [0.5, 1.5, 2.5, 3.5]})
    weights2 = safetensors({"embeddings.weight": [4.5, 5.5, 6.5, 7.5]})
    for commit, weights, ref in ((R1, weights1, "main"), (R2, weights2, None)):
        tag = clean.download(commit, "model.safetensors", weights, ref=ref)
        expect(clean.shown("snapshots", commit, "model.safetensors"), "clean", blob=tag, verified=True, revision=commit)
        for name, data in (("config.json", CONFIG), ("tokenizer.json", TOKENIZER),
                           ("tokenizer_config.json", TOKENIZER_CONFIG)):
            tag = clean.download(commit, name, data)
            expect(clean.shown("snapshots", commit, name), "clean", blob=tag, verified=True, revision=commit)
    tag = clean.download(R1, "onnx/config.json", CONFIG)
    expect(clean.shown("snapshots", R1, "onnx/config.json"), "clean", blob=tag, verified=True, revision=R1)
    clean.no_exist(R1, "pytorch_model.bin")
    expect(clean.shown(".no_exist", R1, "pytorch_model.bin"), None, absent=())
    os.makedirs(os.path.join(clean.storage, "refs", "pr"))
    with open(os.path.join(clean.storage, "refs", "pr", "1"), "w") as f:
        f.write(R2)
    expect(clean.shown("refs", "main"), "clean")
    expect(clean.shown("refs", "pr", "1"), "clean")
    partial = hashlib.sha256(b"the rest of it").hexdigest() + ".incomplete"
    with open(os.path.join(clean.storage, "blobs", partial), "wb") as f:
        f.write(weights1[:20])
    expect(clean.shown("blobs", partial), "clean", ["hfcache.incomplete-blob", "hfcache.unreferenced-blob"],
           blob=partial)
    # A stray blob no snapshot names (a revision deleted by hand, say): examined under its blob name.
    stray = clean.blob("old.safetensors", safetensors({"old": [1.0]}))
    expect(clean.shown("blobs", stray), "clean", ["hfcache.unreferenced-blob"], blob=stray, verified=True)

    # A model whose PyTorch weights run a command when torch.load unpickles them.
    evil = Repo(hub, "acme/evil-bert")
    tag = evil.download(R1, "config.json", CONFIG, ref="main")
    expect(evil.shown("snapshots", R1, "config.json"), "clean", blob=tag, verified=True, revision=R1)
    state = {"embeddings.weight": torch.ones(2, 2), "extra": Payload("touch " + canary)}
    tag = evil.download(R1, "pytorch_model.bin", torch_bytes(state))
    expect(evil.shown("snapshots", R1, "pytorch_model.bin"), "malicious", ["pickle.dangerous-import"], blob=tag,
           verified=True, revision=R1)

    # Links and blobs huggingface_hub never writes.
    attacks = Repo(hub, "acme/attacks")
    # Something that is not an empty marker in .no_exist/ is a file like any other.
    os.makedirs(os.path.join(attacks.storage, ".no_exist", R1))
    with open(os.path.join(attacks.storage, ".no_exist", R1, "model.bin"), "wb") as f:
        f.write(torch_bytes({"extra": Payload("touch " + canary)}))
    expect(attacks.shown(".no_exist", R1, "model.bin"), "malicious", ["pickle.dangerous-import"])
    good = attacks.download(R1, "config.json", CONFIG, ref="main")
    expect(attacks.shown("snapshots", R1, "config.json"), "clean", blob=good, verified=True, revision=R1)
    tampered = attacks.download(R1, "model.safetensors", weights1)
    with open(os.path.join(attacks.storage, "blobs", tampered), "r+b") as f:
        f.seek(len(weights1) - 4)
        f.write(struct.pack("<f", 99.0))
    expect(attacks.shown("snapshots", R1, "model.safetensors"), "suspicious", ["hfcache.blob-mismatch"],
           blob=tampered, verified=False, revision=R1)
    sha1_tampered = attacks.download(R1, "tokenizer.json", TOKENIZER)
    with open(os.path.join(attacks.storage, "blobs", sha1_tampered), "ab") as f:
        f.write(b" ")
    expect(attacks.shown("snapshots", R1, "tokenizer.json"), "suspicious", ["hfcache.blob-mismatch"],
           blob=sha1_tampered, verified=False, revision=R1)
    escapes = {
        "etc_passwd.json": "../../../../etc/passwd",
        "absolute.json": "/etc/hostname",
        "other_repo.safetensors": "../../../%s/blobs/%s" % (clean.folder_name, etag("model.safetensors", weights1)),
        "deep/escape.json": "../../../../../" + clean.folder_name + "/blobs/" + git_sha1(CONFIG),
    }
    for name, target in escapes.items():
        attacks.link(R1, name, target)
        expect(attacks.shown("snapshots", R1, name), "suspicious", ["hfcache.link-escapes"])
    # A blob that is a link itself, a blob that is a folder, a detour, a link into refs/, a sibling.
    link_blob = hashlib.sha256(b"link").hexdigest()
    os.symlink("/etc/passwd", os.path.join(attacks.storage, "blobs", link_blob))
    folder_blob = git_sha1(b"folder")
    os.makedirs(os.path.join(attacks.storage, "blobs", folder_blob))
    inside = {
        "link_to_link.json": "../../blobs/" + link_blob,
        "link_to_folder.json": "../../blobs/" + folder_blob,
        "detour.json": "../../blobs/../blobs/" + good,
        "to_refs.txt": "../../refs/main",
        "sibling.json": "config.json",
        "wrong_depth.json": "../blobs/" + good,
    }
    for name, target in inside.items():
        attacks.link(R1, name, target)
        expect(attacks.shown("snapshots", R1, name), "suspicious", ["hfcache.link-not-blob"])
    attacks.link(R1, "dangling.safetensors", "../../blobs/" + hashlib.sha256(b"gone").hexdigest())
    expect(attacks.shown("snapshots", R1, "dangling.safetensors"), "suspicious", ["hfcache.link-dangling"])
    with open(os.path.join(attacks.storage, "blobs", "not-a-hash"), "wb") as f:
        f.write(CONFIG)
    attacks.link(R1, "unnamed.json", "../../blobs/not-a-hash")
    expect(attacks.shown("snapshots", R1, "unnamed.json"), "suspicious", ["hfcache.blob-name"], blob="not-a-hash",
           revision=R1)
    big = "ab" * 20
    with open(os.path.join(attacks.storage, "blobs", big), "wb") as f:
        f.truncate(11 << 20)
    attacks.link(R1, "big.json", "../../blobs/" + big)
    expect(attacks.shown("snapshots", R1, "big.json"), "suspicious", ["hfcache.blob-unverified"], blob=big,
           revision=R1)
    # The blobs link to themselves are blob-folder entries, examined as blobs nobody names.
    expect(attacks.shown("blobs", link_blob), "suspicious", ["folder.symlink"], absent=())
    expect(attacks.shown("blobs", "not-a-hash"), None, absent=())
    expect(attacks.shown("blobs", big), None, absent=())
    expect(attacks.shown("blobs", good), None, absent=())

    # Remote code (trust_remote_code): a module that runs a command when transformers imports it, every file of the
    # repository (remote_code.py writes it) a snapshot link to its blob.
    import tempfile
    import remote_code
    with tempfile.TemporaryDirectory() as scratch:
        remote_code.model_repo(scratch, "repo", canary, port, where="import")
        remote = Repo(hub, "acme/remote-code")
        folder = os.path.join(scratch, "repo")
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                tag = remote.download(R1, name, f.read(), ref="main")
            expect(remote.shown("snapshots", R1, name),
                   "suspicious" if name.endswith(".py") or name == "config.json" else "clean",
                   ["hf.python-module"] if name.endswith(".py") else [], blob=tag, verified=True, revision=R1)

    # A repository whose blobs folder is a link to another repository's.
    relinked = Repo(hub, "acme/relinked")
    os.rmdir(os.path.join(relinked.storage, "blobs"))
    os.symlink("../" + clean.folder_name + "/blobs", os.path.join(relinked.storage, "blobs"))
    relinked.link(R1, "model.safetensors", "../../blobs/" + etag("model.safetensors", weights1))
    expect(relinked.shown("snapshots", R1, "model.safetensors"), "suspicious", ["hfcache.link-escapes"])
    expect(relinked.shown("blobs"), "suspicious", ["folder.symlink"], absent=())

    with open(os.path.join(os.path.dirname(os.path.abspath(hub)), "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    canary = "/tmp/airlock-hf-cache-canary"
    if "--canary" in args:
        i = args.index("--canary")
        canary = args[i + 1]
        del args[i:i + 2]
    port = 9
    if "--port" in args:
        i = args.index("--port")
        port = int(args[i + 1])
        del args[i:i + 2]
    main(args[0], canary, port)
