"""The client against a fake daemon that misbehaves on purpose: no airlockd needed."""

import fcntl
import hashlib
import json
import pickle
import os
import resource
import socket
import struct
import tempfile
import threading
import time
import tracemalloc
import unittest

import airlock_client
from airlock_client import client as client_module


def frame(obj) -> bytes:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def read_request(conn):
    """One request and the descriptors that came with it."""
    data, fds = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk, ancillary, _, _ = socket.recv_fds(conn, 1 << 16, 4)
        if not chunk:
            break
        data += chunk
        fds += ancillary
    return (json.loads(data[4:]) if len(data) > 4 else None), fds


SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def seals(fd):
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        return None


REPORT = {"schemaVersion": 1, "target": {"path": "m", "size": 1, "sha256": None, "format": "pickle"},
          "verdict": "clean", "findings": [], "trace": [], "timings": {}, "error": None}


class FakeDaemon:
    """A Unix socket server answering each connection with `answer(request, fds, conn)` in a thread."""

    def __init__(self, answer, reads=True):
        self.reads = reads
        self.dir = tempfile.mkdtemp(prefix="airlock-fake-")
        self.path = os.path.join(self.dir, "fake.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(16)
        self.answer = answer
        self.requests = []
        self.received = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                try:
                    if not self.reads:
                        self.answer(None, conn)
                        self.reads = True
                        continue
                    request, fds = read_request(conn)
                    if request is None:  # the client left without a request
                        continue
                    self.requests.append((request, [os.fstat(fd).st_ino for fd in fds]))
                    self.received += [(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE, seals(fd)) for fd in fds]
                    for fd in fds:
                        os.close(fd)
                    self.answer(request, conn)
                except OSError:
                    pass

    def close(self):
        self.server.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class ProtocolTests(unittest.TestCase):
    def fake(self, answer, reads=True):
        daemon = FakeDaemon(answer, reads)
        self.addCleanup(daemon.close)
        return daemon

    def model(self, data=b"\x80\x04N."):
        handle = tempfile.NamedTemporaryFile(suffix=".pkl", delete=False)
        handle.write(data)
        handle.close()
        self.addCleanup(os.unlink, handle.name)
        return handle.name

    def test_sends_the_descriptor_and_never_the_path(self):
        daemon = self.fake(lambda req, conn: conn.sendall(
            frame({"airlock": 1, "id": req["id"], "ok": True, "reports": [REPORT], "traceLines": [["a line"]]})))
        path = self.model()
        report = airlock_client.Client(daemon.path).scan(path)
        self.assertEqual(report.verdict, "clean")
        self.assertEqual(report.trace_lines, ["a line"])
        request, inodes = daemon.requests[0]
        self.assertEqual(request["method"], "scan")
        self.assertEqual(inodes, [os.stat(path).st_ino])
        self.assertNotIn(os.path.dirname(path), json.dumps(request))

    def test_busy_is_retried_with_backoff_then_answered(self):
        answers = []

        def answer(req, conn):
            answers.append(time.monotonic())
            if len(answers) < 4:
                conn.sendall(frame({"airlock": 1, "id": req["id"], "ok": False,
                                    "error": {"code": "busy", "reason": "queue-full", "message": "full"}}))
            else:
                conn.sendall(frame({"airlock": 1, "id": req["id"], "ok": True, "reports": [REPORT]}))

        daemon = self.fake(answer)
        report = airlock_client.Client(daemon.path, busy_timeout=30).probe(self.model())
        self.assertEqual(report.verdict, "clean")
        self.assertEqual(len(answers), 4)
        # Each attempt sent the descriptor again.
        self.assertTrue(all(len(inodes) == 1 for _, inodes in daemon.requests))

    def test_busy_notice_with_null_id_closing_the_connection_is_retried(self):
        count = []

        def answer(req, conn):
            count.append(1)
            if len(count) == 1:
                conn.sendall(frame({"airlock": 1, "id": None, "ok": False,
                                    "error": {"code": "busy", "reason": "connections", "message": "too many"}}))
            else:
                conn.sendall(frame({"airlock": 1, "id": req["id"], "ok": True, "reports": [REPORT]}))

        daemon = self.fake(answer)
        self.assertEqual(airlock_client.Client(daemon.path).scan(self.model()).verdict, "clean")

    def test_a_notice_sent_before_the_request_was_read_is_read_and_retried(self):
        def answer(req, conn):
            if req is None:  # at accept: the connection cap, as airlockd sends it, without reading anything
                conn.sendall(frame({"airlock": 1, "id": None, "ok": False,
                                    "error": {"code": "busy", "reason": "connections", "message": "too many"}}))
            else:
                conn.sendall(frame({"airlock": 1, "id": req["id"], "ok": True, "reports": [REPORT]}))

        daemon = self.fake(answer, reads=False)
        self.assertEqual(airlock_client.Client(daemon.path).scan(self.model(b"x" * 300000)).verdict, "clean")

    def test_forbidden_at_accept_is_a_daemon_error(self):
        daemon = self.fake(lambda req, conn: conn.sendall(frame(
            {"airlock": 1, "id": None, "ok": False, "error": {"code": "forbidden", "message": "not allowed"}})),
            reads=False)
        with self.assertRaises(airlock_client.DaemonError) as caught:
            airlock_client.Client(daemon.path).scan(self.model())
        self.assertEqual(caught.exception.code, "forbidden")

    def test_busy_until_the_retry_time_runs_out_raises_busy(self):
        daemon = self.fake(lambda req, conn: conn.sendall(frame(
            {"airlock": 1, "id": req["id"], "ok": False, "error": {"code": "busy", "message": "full"}})))
        start = time.monotonic()
        with self.assertRaises(airlock_client.Busy) as caught:
            airlock_client.Client(daemon.path, busy_timeout=0.5).scan(self.model())
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(caught.exception.code, "busy")
        self.assertGreater(len(daemon.requests), 1)

    def test_other_errors_are_never_retried(self):
        daemon = self.fake(lambda req, conn: conn.sendall(frame(
            {"airlock": 1, "id": req["id"], "ok": False, "error": {"code": "file-busy", "message": "writing"}})))
        with self.assertRaises(airlock_client.DaemonError) as caught:
            airlock_client.Client(daemon.path).probe(self.model())
        self.assertEqual(caught.exception.code, "file-busy")
        self.assertNotIsInstance(caught.exception, airlock_client.Busy)
        self.assertEqual(len(daemon.requests), 1)

    def test_backoff_is_full_jitter_and_capped(self):
        for attempt in range(40):
            self.assertLessEqual(client_module.backoff(attempt), min(2.0, 0.05 * 2 ** attempt))
        self.assertGreater(len({round(client_module.backoff(10), 6) for _ in range(20)}), 1)

    def test_a_huge_announced_length_is_refused_before_any_allocation(self):
        daemon = self.fake(lambda req, conn: conn.sendall(struct.pack(">I", 0xFFFFFFFF) + b"{"))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with self.assertRaises(airlock_client.ProtocolError):
            airlock_client.Client(daemon.path).scan(self.model())
        self.assertLess(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, 64 << 10)  # KiB

    def test_a_reply_over_the_callers_bound_is_refused(self):
        daemon = self.fake(lambda req, conn: conn.sendall(frame(b"{" + b" " * 5000 + b"}")))
        with self.assertRaises(airlock_client.ProtocolError):
            airlock_client.Client(daemon.path, max_reply=4096).scan(self.model())

    def test_a_peer_that_announces_much_and_sends_little_costs_little(self):
        def answer(req, conn):
            conn.sendall(struct.pack(">I", 500 << 20) + b"{" * 1000)  # then closes

        daemon = self.fake(answer)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with self.assertRaises(airlock_client.ProtocolError):
            airlock_client.Client(daemon.path).scan(self.model())
        self.assertLess(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, 64 << 10)

    def test_a_large_reply_is_parsed_without_extra_copies(self):
        size = 48 << 20
        # A long string: its parsed object is one copy of the text, so what is measured is the copies made. The
        # reply is framed before measuring (the client's first request has id 1).
        reply = frame(b'{"airlock":1,"id":1,"ok":true,"status":{"pad":"' + b"x" * size + b'"}}')
        daemon = self.fake(lambda req, conn: conn.sendall(reply))
        tracemalloc.start()
        try:
            status = client_module.Client(daemon.path).status()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(len(status["pad"]), size)
        # The buffer and its text, then the text and the string parsed: about 2x. Before: buffer, a bytes copy of
        # it, the text decoded from that and the string (3x and more).
        self.assertLess(peak, 2.3 * size, f"peak {peak >> 20} MiB for a {size >> 20} MiB reply")

    def test_malformed_replies_are_protocol_errors(self):
        bad = [
            b"\x00\x00\x00\x00",
            frame(b"not json"),
            frame(b"[" * 100000 + b"]" * 100000),
            frame([1, 2]),
            frame({"airlock": 2, "id": 1, "ok": True, "reports": []}),
            frame({"airlock": True, "id": 1, "ok": True, "reports": []}),
            frame({"airlock": 1.0, "id": 1, "ok": True, "reports": [REPORT]}),
            frame({"airlock": 1, "id": True, "ok": True, "reports": [REPORT]}),
            frame({"airlock": 1, "id": 1.0, "ok": True, "reports": [REPORT]}),
            frame({"airlock": 1, "id": True, "ok": False, "error": {"code": "busy", "message": ""}}),
            frame({"airlock": 1, "ok": True, "reports": [REPORT]}),
            frame(b"\xff" + json.dumps({"airlock": 1, "id": 1, "ok": True, "reports": [REPORT]}).encode()),
            frame({"airlock": 1, "id": 999, "ok": True, "reports": [REPORT]}),
            frame({"airlock": 1, "id": 1, "ok": True}),
            frame({"airlock": 1, "id": 1, "ok": True, "reports": [{"verdict": "fine"}]}),
            frame({"airlock": 1, "id": 1, "ok": True, "reports": [REPORT, REPORT]}),
            frame({"airlock": 1, "id": 1, "ok": "yes"}),
            b"\x00\x00",
        ]
        for reply in bad:
            with self.subTest(reply=reply[:40]):
                daemon = self.fake(lambda req, conn, reply=reply: conn.sendall(reply))
                with self.assertRaises(airlock_client.ProtocolError):
                    airlock_client.Client(daemon.path).scan(self.model())

    def test_a_silent_daemon_times_out(self):
        daemon = self.fake(lambda req, conn: time.sleep(3))
        start = time.monotonic()
        with self.assertRaises(airlock_client.AirlockTimeout):
            airlock_client.Client(daemon.path, timeout=0.5).scan(self.model())
        self.assertLess(time.monotonic() - start, 2.5)

    def test_a_trickling_daemon_times_out_at_the_deadline(self):
        def answer(req, conn):
            conn.sendall(struct.pack(">I", 1000))
            for _ in range(30):
                conn.sendall(b" ")
                time.sleep(0.1)

        daemon = self.fake(answer)
        start = time.monotonic()
        with self.assertRaises(airlock_client.AirlockTimeout):
            airlock_client.Client(daemon.path, timeout=0.8).scan(self.model())
        self.assertLess(time.monotonic() - start, 2.5)

    def test_daemon_down_is_daemon_unavailable(self):
        with tempfile.TemporaryDirectory() as folder:
            with self.assertRaises(airlock_client.DaemonUnavailable):
                airlock_client.Client(os.path.join(folder, "none.sock")).scan(self.model())
            # A socket file nobody listens on.
            path = os.path.join(folder, "dead.sock")
            dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            dead.bind(path)
            dead.close()
            with self.assertRaises(airlock_client.DaemonUnavailable):
                airlock_client.Client(path).scan(self.model())

    def test_default_socket_follows_the_environment(self):
        saved = os.environ.get("AIRLOCK_SOCKET")
        try:
            os.environ["AIRLOCK_SOCKET"] = "/tmp/somewhere.sock"
            self.assertEqual(airlock_client.Client().socket_path, "/tmp/somewhere.sock")
            del os.environ["AIRLOCK_SOCKET"]
            self.assertEqual(airlock_client.Client().socket_path, "/run/airlock/airlockd.sock")
        finally:
            if saved is not None:
                os.environ["AIRLOCK_SOCKET"] = saved

    def test_fifo_device_and_folder_are_refused_without_asking(self):
        daemon = self.fake(lambda req, conn: None)
        client = airlock_client.Client(daemon.path, timeout=2)
        with tempfile.TemporaryDirectory() as folder:
            fifo = os.path.join(folder, "fifo")
            os.mkfifo(fifo)
            for target in (fifo, "/dev/zero", folder):
                with self.subTest(target=target):
                    with self.assertRaises(airlock_client.InputError):
                        client.probe(target)
        self.assertEqual(daemon.requests, [])

    def answering(self, **report):
        """A fake daemon answering every examination with REPORT updated by `report`."""
        return self.fake(lambda req, conn: conn.sendall(
            frame({"airlock": 1, "id": req["id"], "ok": True, "reports": [{**REPORT, **report}]})))

    def test_a_report_about_other_bytes_is_refused(self):
        daemon = self.answering(target={"path": "m", "size": 4, "sha256": "0" * 64, "format": "pickle"})
        called = []
        with self.assertRaises(airlock_client.ProtocolError):
            airlock_client.safe_load(self.model(), called.append, socket=daemon.path)
        self.assertEqual(called, [])

    def test_an_unsafe_verdict_never_calls_the_loader_and_carries_the_report(self):
        data = b"\x80\x04N."
        digest = hashlib.sha256(data).hexdigest()
        for verdict in ("malicious", "suspicious", "error"):
            with self.subTest(verdict=verdict):
                daemon = self.answering(
                    verdict=verdict, target={"path": "m", "size": 4, "sha256": digest, "format": "pickle"},
                    findings=[{"rule": "pickle.dangerous-import", "severity": "critical", "source": "static",
                               "message": "os.system", "evidence": {"global": "os.system"}}])
                called = []
                with self.assertRaises(airlock_client.UnsafeModelError) as caught:
                    airlock_client.safe_load(self.model(data), called.append, socket=daemon.path)
                self.assertEqual(called, [])
                self.assertEqual(caught.exception.report.verdict, verdict)
                self.assertEqual(caught.exception.report.findings[0].evidence, {"global": "os.system"})
        daemon = self.answering(target={"path": "m", "size": 4, "sha256": digest, "format": "pickle"})
        self.assertIsNone(airlock_client.safe_load(self.model(data), pickle.load, socket=daemon.path))
        # What the daemon got: a read-only descriptor of a copy sealed against every change.
        self.assertEqual(daemon.received[-1], (os.O_RDONLY, SEALS))

    def test_a_listener_of_another_uid_is_not_trusted(self):
        daemon = self.answering()
        with self.assertRaises(airlock_client.UntrustedDaemon):
            airlock_client.Client(daemon.path, daemon_uids=(os.geteuid() + 1,)).scan(self.model())
        self.assertEqual(daemon.requests, [])
        # By default root and this process's uid are trusted; None checks nothing.
        self.assertEqual(airlock_client.Client(daemon.path).scan(self.model()).verdict, "clean")
        self.assertEqual(airlock_client.Client(daemon.path, daemon_uids=None).scan(self.model()).verdict, "clean")

    def test_a_file_still_open_for_writing_is_checked_and_loaded_as_it_was_copied(self):
        path = self.model(pickle.dumps([1, 2]))
        digest = hashlib.sha256(pickle.dumps([1, 2])).hexdigest()
        daemon = self.answering(target={"path": "m", "size": 4, "sha256": digest, "format": "pickle"})
        with open(path, "ab") as writer:  # a download still in progress: airlockd would answer file-busy
            self.assertEqual(airlock_client.safe_load(path, pickle.load, socket=daemon.path), [1, 2])
            writer.write(b"more")

    def test_names_that_are_not_utf8_travel_in_the_escaped_form(self):
        daemon = self.answering()
        with tempfile.TemporaryDirectory() as folder:
            path = os.fsencode(folder) + b"/w\xff\\x\n\xe2\x80\xae.pkl"
            with open(path, "wb") as out:
                out.write(b"\x80\x04N.")
            client = airlock_client.Client(daemon.path)
            client.scan(path)
            client.scan(os.fsdecode(path))
            client.scan(self.model(), name=os.fsdecode(b"n\xfe"))
        names = [request["params"]["name"] for request, _ in daemon.requests]
        self.assertEqual(names, ["w\\xFF\\\\x\\x0A\\xE2\\x80\\xAE.pkl"] * 2 + ["n\\xFE"])

    def test_allow_is_a_set_of_verdicts_never_a_substring(self):
        digest = hashlib.sha256(b"\x80\x04N.").hexdigest()
        daemon = self.answering(verdict="error", target={"path": "m", "size": 4, "sha256": digest, "format": "x"})
        with self.assertRaises(ValueError):
            airlock_client.safe_load(self.model(), pickle.load, socket=daemon.path, allow="clean-or-error")
        with self.assertRaises(airlock_client.UnsafeModelError):
            airlock_client.safe_load(self.model(), pickle.load, socket=daemon.path, allow="clean")
        self.assertIsNone(airlock_client.safe_load(self.model(), pickle.load, socket=daemon.path, allow="error"))

    def test_unknown_and_mistyped_options_are_refused(self):
        client = airlock_client.Client("/nonexistent.sock")
        with self.assertRaises(TypeError):
            client.probe(self.model(), worldz=2)
        with self.assertRaises(TypeError):
            client.probe(self.model(), worlds=True)


if __name__ == "__main__":
    unittest.main()
