"""The client against a real airlockd at $AIRLOCK_SOCKET (Tests/AirlockDaemonTests/PythonClientTests.swift starts
one and runs these). Without $AIRLOCK_SOCKET these tests are skipped, and the Swift test fails on any skip."""

import json
import os
import pickle
import socket
import stat
import struct
import tempfile
import threading
import time
import unittest

import airlock_client

SOCKET = os.environ.get("AIRLOCK_SOCKET")
# An airlockd with "maxConnections": 1, for the busy test.
BUSY_SOCKET = os.environ.get("AIRLOCK_BUSY_SOCKET")


class Payload:
    """A harmless payload: touches the file it names when unpickled."""

    def __init__(self, bait):
        self.bait = bait

    def __reduce__(self):
        return (os.system, (f"touch {self.bait}",))


def write_safetensors(path, tensors):
    """A safetensors file by hand (the format: an 8-byte little-endian header length, a JSON header, the data)."""
    header, data = {}, b""
    for name, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + data)


def read_path(path):
    """`read_safetensors` of a path."""
    with open(path, "rb") as handle:
        return read_safetensors(handle)


def read_safetensors(handle):
    """The tensors of a safetensors file object, as lists of floats (a loader for the tests)."""
    (length,) = struct.unpack("<Q", handle.read(8))
    header = json.loads(handle.read(length))
    data = handle.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = list(struct.unpack(f"<{(end - start) // 4}f", data[start:end]))
    return out


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


class RacingClient(airlock_client.Client):
    """A client that runs `race` right after airlockd answered a probe: an attacker winning every race."""

    def __init__(self, race):
        super().__init__()
        self.race = race
        self.raced = 0

    def probe(self, target, **options):
        report = super().probe(target, **options)
        self.race()
        self.raced += 1
        return report


@unittest.skipUnless(SOCKET, "AIRLOCK_SOCKET names no running airlockd")
class DaemonTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="airlock-client-test-")
        os.chmod(self.dir, 0o755)
        self.bait = os.path.join(self.dir, "payload-ran")

    def tearDown(self):
        for folder, dirs, files in os.walk(self.dir, topdown=False):
            for name in files:
                os.unlink(os.path.join(folder, name))
            for name in dirs:
                full = os.path.join(folder, name)
                os.unlink(full) if os.path.islink(full) else os.rmdir(full)
        os.rmdir(self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def evil(self, name="evil.pkl"):
        with open(self.path(name), "wb") as out:
            pickle.dump(Payload(self.bait), out)
        return self.path(name)

    def test_the_installed_package_is_the_one_tested(self):
        print(f"airlock_client from {airlock_client.__file__}")
        self.assertEqual(airlock_client.__version__, "0.1.0")

    def test_status(self):
        status = airlock_client.Client().status()
        self.assertIn("version", status)
        self.assertIsInstance(status.get("runtimes"), list)

    def test_clean_safetensors_loads_from_the_examined_bytes(self):
        write_safetensors(self.path("model.safetensors"), {"w": [1.0, 2.0, 3.0]})
        tensors = airlock_client.safe_load(self.path("model.safetensors"), read_safetensors)
        self.assertEqual(tensors, {"w": [1.0, 2.0, 3.0]})
        # The same with a loader that wants a path.
        tensors = airlock_client.safe_load(
            self.path("model.safetensors"), read_path, pass_path=True)
        self.assertEqual(tensors, {"w": [1.0, 2.0, 3.0]})

    def test_clean_state_dict_loads_with_torch(self):
        import torch

        torch.save({"weight": torch.arange(4.0)}, self.path("model.pt"))
        # One world (the default is 3, each a detonation importing torch): the load is the point here.
        state = airlock_client.torch_load(self.path("model.pt"), weights_only=True, worlds=1)
        self.assertEqual(state["weight"].tolist(), [0.0, 1.0, 2.0, 3.0])

    def test_clean_joblib_loads(self):
        import joblib

        joblib.dump({"coef": [1, 2, 3]}, self.path("model.joblib"))
        self.assertEqual(airlock_client.joblib_load(self.path("model.joblib")), {"coef": [1, 2, 3]})

    def test_malicious_pickle_raises_and_the_payload_never_runs(self):
        for guard in (airlock_client.pickle_load, airlock_client.torch_load, airlock_client.joblib_load):
            with self.subTest(guard=guard.__name__):
                with self.assertRaises(airlock_client.UnsafeModelError) as caught:
                    guard(self.evil())
                report = caught.exception.report
                self.assertEqual(report.verdict, "malicious")
                self.assertIn("pickle.dangerous-import", report.rules)
                self.assertFalse(os.path.exists(self.bait), "the payload ran in the test's process")

    def test_a_loader_is_never_called_for_a_refused_model(self):
        called = []
        with self.assertRaises(airlock_client.UnsafeModelError):
            airlock_client.safe_load(self.evil(), lambda f: called.append(f), method="scan")
        self.assertEqual(called, [])

    def test_the_file_swapped_after_the_check_is_not_what_loads(self):
        clean = self.path("model.pkl")
        with open(clean, "wb") as out:
            pickle.dump({"weights": [1, 2]}, out)
        evil = self.evil("other.pkl")
        # An attacker who wins the race: the path names the malicious file as soon as airlockd has answered.
        client = RacingClient(lambda: os.rename(evil, clean))
        self.assertEqual(airlock_client.safe_load(clean, pickle.load, client=client), {"weights": [1, 2]})
        self.assertEqual(client.raced, 1)
        self.assertFalse(os.path.exists(self.bait))

    def test_the_file_rewritten_in_place_after_the_check_is_not_what_loads(self):
        clean = self.path("model.pkl")
        with open(clean, "wb") as out:
            pickle.dump({"weights": [1, 2]}, out)
        payload = pickle.dumps(Payload(self.bait))

        def rewrite():
            with open(clean, "r+b") as out:  # the same inode the client opened
                out.write(payload)
                out.truncate()

        client = RacingClient(rewrite)
        self.assertEqual(airlock_client.safe_load(clean, pickle.load, client=client), {"weights": [1, 2]})
        self.assertEqual(client.raced, 1)
        self.assertFalse(os.path.exists(self.bait))

    def test_a_symlink_swapped_after_the_check_is_not_followed_again(self):
        import torch

        clean = self.path("clean.pt")
        torch.save([1], clean)
        link = self.path("model.pt")
        os.symlink(clean, link)
        evil = self.evil()

        def relink():
            os.unlink(link)
            os.symlink(evil, link)

        client = RacingClient(relink)
        self.assertEqual(airlock_client.torch_load(link, client=client, weights_only=False, worlds=1), [1])
        self.assertEqual(client.raced, 1)
        self.assertFalse(os.path.exists(self.bait))

    def test_the_examined_copy_cannot_be_changed_by_anyone(self):
        with open(self.path("m.pkl"), "wb") as out:
            pickle.dump([1], out)
        with airlock_client.sealed_copy(self.path("m.pkl")) as copy:
            with self.assertRaises(OSError):
                fd = os.open(copy.path, os.O_RDWR)
                try:
                    os.write(fd, b"\x80")
                finally:
                    os.close(fd)
            with self.assertRaises(OSError):
                os.truncate(copy.path, 0)
            report = airlock_client.check(copy)
            self.assertEqual(report.sha256, copy.sha256)

    def test_a_copy_spooled_to_disk_is_unnamed_read_only_and_what_loads(self):
        spool = self.path("spool")
        os.mkdir(spool)
        clean = self.path("model.pkl")
        with open(clean, "wb") as out:
            pickle.dump({"big": True}, out)
        payload = pickle.dumps(Payload(self.bait))

        def rewrite():
            with open(clean, "r+b") as out:
                out.write(payload)

        loaded = airlock_client.safe_load(clean, pickle.load, client=RacingClient(rewrite), spool=spool)
        self.assertEqual(loaded, {"big": True})
        self.assertEqual(os.listdir(spool), [])
        with airlock_client.sealed_copy(self.evil(), spool=spool) as copy:
            self.assertFalse(copy.sealed)
            self.assertEqual(os.listdir(spool), [])
            with self.assertRaises(airlock_client.UnsafeModelError):
                airlock_client.check(copy)
        self.assertFalse(os.path.exists(self.bait))

    def test_fifo_device_and_folder_are_refused(self):
        fifo = self.path("model.fifo")
        os.mkfifo(fifo)
        for target in (fifo, "/dev/zero", self.dir):
            with self.subTest(target=target):
                with self.assertRaises(airlock_client.InputError):
                    airlock_client.safe_load(target, pickle.load)

    def test_a_folder_probe_gives_one_report_per_file(self):
        os.mkdir(self.path("repo"))
        write_safetensors(self.path("repo/a.safetensors"), {"w": [1.0]})
        with open(self.path("repo/b.pkl"), "wb") as out:
            pickle.dump(Payload(self.bait), out)
        reports = airlock_client.Client().scan_folder(self.path("repo"))
        verdicts = {os.path.basename(r.path): r.verdict for r in reports}
        self.assertEqual(verdicts, {"a.safetensors": "clean", "b.pkl": "malicious"})

    def test_a_name_that_is_not_utf8_is_examined_and_reported_escaped(self):
        path = os.fsencode(self.dir) + b"/w\xff\n.pkl"
        with open(path, "wb") as out:
            pickle.dump([1], out)
        report = airlock_client.Client().scan(path)
        self.assertEqual(report.path, "w\\xFF\\x0A.pkl")
        self.assertEqual(airlock_client.pickle_load(path, method="scan"), [1])

    def test_unknown_runtime_is_a_daemon_error(self):
        write_safetensors(self.path("m.safetensors"), {"w": [1.0]})
        with self.assertRaises(airlock_client.DaemonError) as caught:
            airlock_client.Client().probe(self.path("m.safetensors"), python="/usr/bin/python3")
        self.assertEqual(caught.exception.code, "unknown-runtime")

    def hub_snapshot(self, evil=False, escape=None):
        """A Hugging Face cache entry: models--org--name/{blobs/SHA, snapshots/REV/FILE -> ../../blobs/SHA}."""
        repo = self.path("models--org--name")
        os.makedirs(f"{repo}/blobs")
        os.makedirs(f"{repo}/snapshots/abc123/sub")
        files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": None}
        if evil:
            files["pytorch_model.bin"] = pickle.dumps(Payload(self.bait))
        for i, (name, data) in enumerate(files.items()):
            blob = f"{repo}/blobs/blob{i}"
            if data is None:
                write_safetensors(blob, {"w": [0.5]})
            else:
                with open(blob, "wb") as out:
                    out.write(data)
            os.symlink(f"../../blobs/blob{i}", f"{repo}/snapshots/abc123/{name}")
        os.symlink("../../../blobs/blob0", f"{repo}/snapshots/abc123/sub/config.json")
        if escape:
            os.symlink(escape, f"{repo}/snapshots/abc123/tokenizer.json")
        return f"{repo}/snapshots/abc123"

    def test_snapshot_of_a_clean_hub_folder_is_a_private_read_only_copy(self):
        source = self.hub_snapshot()
        copy = airlock_client.snapshot(source)
        try:
            self.assertFalse(copy.startswith(self.dir))
            self.assertEqual(sorted(os.listdir(copy)), ["config.json", "model.safetensors", "sub"])
            for name in ("config.json", "model.safetensors", "sub/config.json"):
                full = os.path.join(copy, name)
                self.assertFalse(os.path.islink(full))
                self.assertEqual(stat.S_IMODE(os.stat(full).st_mode), 0o400)
                self.assertEqual(read_bytes(full), read_bytes(os.path.join(source, name)))
            self.assertEqual(stat.S_IMODE(os.stat(copy).st_mode), 0o500)
        finally:
            airlock_client.remove_snapshot(copy)
        self.assertFalse(os.path.exists(copy))

    def test_snapshot_with_a_malicious_file_raises_and_leaves_no_copy(self):
        source = self.hub_snapshot(evil=True)
        dest = self.path("copies")
        os.mkdir(dest)
        with self.assertRaises(airlock_client.UnsafeModelError) as caught:
            airlock_client.snapshot(source, dest=dest)
        self.assertTrue(any(r.verdict == "malicious" for r in caught.exception.reports))
        self.assertEqual(os.listdir(dest), [])
        self.assertFalse(os.path.exists(self.bait))

    def test_snapshot_refuses_links_out_of_the_repository_and_special_files(self):
        with self.assertRaises(airlock_client.InputError):
            airlock_client.snapshot(self.hub_snapshot(escape="/etc/passwd"))
        folder = self.path("plain")
        os.mkdir(folder)
        os.mkfifo(os.path.join(folder, "model.bin"))
        with self.assertRaises(airlock_client.InputError):
            airlock_client.snapshot(folder)



@unittest.skipUnless(BUSY_SOCKET, "AIRLOCK_BUSY_SOCKET names no airlockd with one connection")
class BusyDaemonTests(unittest.TestCase):
    def test_busy_is_retried_until_the_daemon_has_room(self):
        with tempfile.TemporaryDirectory() as folder:
            model = os.path.join(folder, "model.safetensors")
            write_safetensors(model, {"w": [1.0]})
            # The daemon's one connection, holding a message begun (so it is not idle and is never evicted).
            holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            holder.connect(BUSY_SOCKET)
            holder.sendall(b"\x00\x00")
            time.sleep(0.3)
            with self.assertRaises(airlock_client.Busy) as caught:
                airlock_client.Client(BUSY_SOCKET, busy_timeout=0).scan(model)
            self.assertIn(caught.exception.reply.get("reason"), ("connections", "peer-connections"))
            timer = threading.Timer(1.5, holder.close)
            timer.start()
            try:
                start = time.monotonic()
                client = airlock_client.Client(BUSY_SOCKET, busy_timeout=20)
                tensors = airlock_client.safe_load(model, read_safetensors, client=client, method="scan")
            finally:
                timer.cancel()
                holder.close()
            self.assertEqual(tensors, {"w": [1.0]})
            self.assertGreaterEqual(time.monotonic() - start, 1.0)
            self.assertGreaterEqual(airlock_client.Client(BUSY_SOCKET).status()["refused"].get("busy", 0), 2)

if __name__ == "__main__":
    unittest.main()
