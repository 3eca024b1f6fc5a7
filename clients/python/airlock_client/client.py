"""A client of airlockd's protocol, version 1 (docs/protocol.md): length-prefixed JSON over a Unix socket, the
model passed as an open descriptor (SCM_RIGHTS), never as a path."""

from __future__ import annotations

import errno as _errno
import json
import os
import random
import socket as _socket
import stat
import struct
import time
import unicodedata

from .errors import (
    AirlockError,
    AirlockTimeout,
    Busy,
    DaemonError,
    DaemonUnavailable,
    InputError,
    ProtocolError,
    UntrustedDaemon,
)

#: The socket airlockd listens on when neither the caller nor ``$AIRLOCK_SOCKET`` names one.
DEFAULT_SOCKET = "/run/airlock/airlockd.sock"
#: The largest reply read, in bytes: the daemon never sends more (docs/protocol.md, "Framing").
MAX_REPLY = 512 << 20
#: The largest request the daemon takes by default.
MAX_REQUEST = 1 << 20
#: Verdicts a report can carry.
VERDICTS = ("clean", "suspicious", "malicious", "error")
# Replies are read in pieces of at most this size, so memory grows only with bytes that really arrived.
_CHUNK = 1 << 20


class Finding:
    """One finding of a report: ``rule`` (``pickle.dangerous-import``), ``severity`` (``info`` to ``critical``),
    ``source`` (``static``, ``dynamic``, ``provenance``), ``message`` and ``evidence`` (a dict)."""

    __slots__ = ("rule", "severity", "source", "message", "evidence", "raw")

    def __init__(self, raw: dict):
        self.raw = raw
        self.rule = str(raw.get("rule", ""))
        self.severity = str(raw.get("severity", ""))
        self.source = str(raw.get("source", ""))
        self.message = str(raw.get("message", ""))
        evidence = raw.get("evidence")
        self.evidence = evidence if isinstance(evidence, dict) else {}

    def __repr__(self) -> str:
        return f"Finding({self.severity} {self.rule}: {self.message})"


class Report:
    """One report (docs/report.schema.json): ``verdict``, ``findings``, ``trace`` (the syscall events),
    ``trace_lines`` (the trace as ``airlock probe`` prints it), ``target`` and ``raw`` (the whole dict)."""

    def __init__(self, raw: dict, trace_lines=None):
        if not isinstance(raw, dict) or raw.get("verdict") not in VERDICTS:
            raise ProtocolError("airlockd sent a report without a known verdict")
        self.raw = raw
        self.verdict: str = raw["verdict"]
        findings = raw.get("findings")
        self.findings = [Finding(f) for f in findings if isinstance(f, dict)] if isinstance(findings, list) else []
        trace = raw.get("trace")
        self.trace = trace if isinstance(trace, list) else []
        self.trace_lines = [line for line in (trace_lines or []) if isinstance(line, str)]
        target = raw.get("target")
        self.target = target if isinstance(target, dict) else {}
        self.error = raw.get("error") if isinstance(raw.get("error"), dict) else None

    @property
    def path(self) -> str:
        """The name the report is about (``target.path``)."""
        return str(self.target.get("path", ""))

    @property
    def sha256(self):
        """SHA-256 of the bytes examined (lower-case hex), or None."""
        value = self.target.get("sha256")
        return value if isinstance(value, str) else None

    @property
    def rules(self) -> list:
        """The rule ids of the findings, sorted, each once."""
        return sorted({f.rule for f in self.findings})

    def __repr__(self) -> str:
        return f"Report({self.verdict} {self.path!r} {' '.join(self.rules)})"


def default_socket() -> str:
    """``$AIRLOCK_SOCKET`` when set and not empty, else ``DEFAULT_SOCKET``."""
    return os.environ.get("AIRLOCK_SOCKET") or DEFAULT_SOCKET


class Client:
    """A client of airlockd. Each call opens its own connection (one request in flight per connection, as the
    protocol wants), so one Client may be shared between threads.

    ``socket``: the daemon's socket path (default ``$AIRLOCK_SOCKET`` or ``/run/airlock/airlockd.sock``).
    ``timeout``: seconds to wait for a reply; None waits as ``airlock`` does (the detonation deadline or world
    budget plus 600 s, and 600 s for folders). ``busy_timeout``: seconds to retry ``busy`` answers, with jittered
    exponential back-off, from the first attempt (default: the request's ``timeout`` or 60; 0 never retries).
    ``max_reply``: the largest reply accepted (default and most 512 MiB). ``daemon_uids``: the uids the process
    listening on the socket may have (its ``SO_PEERCRED``), default root's and this process's own: anyone else
    could have put a socket there and answer "clean" (``UntrustedDaemon``); None does not check.
    """

    def __init__(self, socket=None, *, timeout=None, busy_timeout=None, max_reply: int = MAX_REPLY,
                 connect_timeout: float = 10.0, daemon_uids=(0, "self")):
        self.socket_path = os.fspath(socket) if socket is not None else default_socket()
        self.timeout = timeout
        self.busy_timeout = busy_timeout
        if not 4 <= max_reply <= MAX_REPLY:
            raise ValueError(f"max_reply must be from 4 to {MAX_REPLY}")
        self.max_reply = max_reply
        self.connect_timeout = connect_timeout
        self.daemon_uids = None if daemon_uids is None else frozenset(
            os.geteuid() if uid == "self" else int(uid) for uid in daemon_uids)
        self._next_id = 0

    # Public calls

    def probe(self, target, **options) -> Report:
        """Static analysis and a sandboxed detonation of one file (a path, an open file object or a descriptor).
        Options (docs/protocol.md): ``name``, ``timeout``, ``probe_phase``, ``worlds``, ``world_budget``,
        ``python`` (a runtime name). A folder raises InputError: use ``probe_folder``."""
        return self._single("probe", target, options)

    def scan(self, target, **options) -> Report:
        """Static analysis only of one file; as ``probe``."""
        return self._single("scan", target, options)

    def probe_folder(self, target, **options) -> list:
        """Probes a folder (or a file): one Report per file, walked by the daemon, symbolic links reported and not
        followed. Options as ``probe`` plus ``max_entries`` and ``folder_budget``; a folder not examined whole ends
        with a report of verdict ``error`` whose finding is ``folder.not-examined``."""
        return self._examine("probe", target, options)

    def scan_folder(self, target, **options) -> list:
        """Scans a folder (or a file): one Report per file; as ``probe_folder``."""
        return self._examine("scan", target, options)

    def status(self) -> dict:
        """The daemon's counters and runtimes (docs/protocol.md, ``status``)."""
        reply = self._call({"method": "status"}, None, self._reply_timeout("status", {}), retry_for=0)
        status = reply.get("status")
        if not isinstance(status, dict):
            raise ProtocolError("airlockd's status reply has no status object")
        return status

    # Requests

    def _single(self, method, target, options):
        reports = self._examine(method, target, options, single=True)
        if len(reports) != 1:
            raise ProtocolError(f"airlockd sent {len(reports)} reports for one file")
        return reports[0]

    def _examine(self, method, target, options, single=False):
        params = _params(method, options)
        fd, owned, name = open_target(target)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                if single:
                    raise InputError(f"{name or 'the target'} is a folder: use {method}_folder()")
            elif not stat.S_ISREG(st.st_mode):
                raise InputError(f"{name or 'the target'} is not a regular file or a folder (a FIFO, device or "
                                 "socket cannot be examined)")
            if "name" not in params and name:
                params["name"] = name
            wait = self._reply_timeout(method, params, folder=stat.S_ISDIR(st.st_mode))
            retry_for = self.busy_timeout if self.busy_timeout is not None else params.get("timeout", 60.0)
            reply = self._call({"method": method, "params": params}, fd, wait, retry_for=retry_for)
        finally:
            if owned:
                os.close(fd)
        reports = reply.get("reports")
        if not isinstance(reports, list):
            raise ProtocolError("airlockd's reply has no reports")
        lines = reply.get("traceLines")
        lines = lines if isinstance(lines, list) else []
        return [Report(r, lines[i] if i < len(lines) and isinstance(lines[i], list) else None)
                for i, r in enumerate(reports)]

    def _reply_timeout(self, method, params, folder=False):
        if self.timeout is not None:
            return float(self.timeout)
        if method not in ("probe", "scan"):
            return 30.0
        deadline = float(params.get("timeout", 60.0))
        budget = float(params.get("worldBudget", 2 * deadline))
        return max(deadline, budget, 600.0 if folder else 0.0) + 600.0

    def _call(self, request: dict, fd, wait: float, retry_for: float) -> dict:
        """Sends ``request`` (with ``fd``) on a new connection and returns the ``ok`` reply; retries ``busy``
        answers (and a full listen backlog) for ``retry_for`` seconds with full-jitter back-off."""
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return self._call_once(request, fd, wait)
            except (Busy, _Backlog) as error:
                left = retry_for - (time.monotonic() - start)
                if left <= 0:
                    if isinstance(error, _Backlog):
                        raise DaemonUnavailable(str(error), _errno.EAGAIN) from None
                    raise
                time.sleep(min(backoff(attempt), left))
                attempt += 1

    def _call_once(self, request: dict, fd, wait: float) -> dict:
        self._next_id += 1
        request_id = self._next_id
        message = {"airlock": 1, "id": request_id, **request}
        body = json.dumps(message, separators=(",", ":")).encode()
        if len(body) > MAX_REQUEST:
            raise InputError(f"the request is {len(body)} bytes, more than the protocol's {MAX_REQUEST}")
        frame = struct.pack(">I", len(body)) + body
        with self._connect() as sock:
            deadline = time.monotonic() + wait
            sock.settimeout(max(0.001, min(wait, self.connect_timeout)))
            try:
                sent = _socket.send_fds(sock, [frame], [fd]) if fd is not None else 0
                if sent < len(frame):
                    sock.sendall(frame[sent:])
            except _socket.timeout:
                raise AirlockTimeout("airlockd did not take the request in time") from None
            except OSError as error:
                # The daemon may have answered and closed first (a `busy` or `forbidden` notice): read that.
                try:
                    reply = read_message(sock, min(deadline, time.monotonic() + 1.0), self.max_reply)
                except AirlockError:
                    raise ProtocolError(f"airlockd closed the connection before taking the request ({error})") \
                        from None
            else:
                reply = read_message(sock, deadline, self.max_reply)
        return check_reply(reply, request_id)

    def _connect(self):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.socket_path)
        except BlockingIOError as error:
            sock.close()
            raise _Backlog(f"airlockd's socket {self.socket_path} does not accept more connections now") from error
        except _socket.timeout:
            sock.close()
            raise DaemonUnavailable(f"airlockd at {self.socket_path} did not accept within "
                                    f"{self.connect_timeout} s") from None
        except OSError as error:
            sock.close()
            if error.errno == _errno.EAGAIN:
                raise _Backlog(f"airlockd's socket {self.socket_path} does not accept more connections now") \
                    from error
            raise DaemonUnavailable(f"cannot connect to airlockd at {self.socket_path}: {error.strerror}",
                                    error.errno) from None
        if self.daemon_uids is not None:
            _, uid, _ = struct.unpack("3i", sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))
            if uid not in self.daemon_uids:
                sock.close()
                raise UntrustedDaemon(f"the process listening on {self.socket_path} runs as uid {uid}, not one of "
                                      f"{sorted(self.daemon_uids)} (daemon_uids): its answers are not trusted")
        return sock


class _Backlog(AirlockError):
    """The socket's listen backlog is full (EAGAIN at connect): retried like ``busy``."""


def backoff(attempt: int, first: float = 0.05, most: float = 2.0) -> float:
    """The wait before retry number ``attempt`` (0 first): uniform in 0 to min(most, first * 2**attempt), as
    ``airlock`` waits (Sources/AirlockDaemon/BusyRetry.swift)."""
    return random.uniform(0.0, min(most, first * (2 ** min(attempt, 30))))


def read_exactly(sock, count: int, deadline: float) -> bytes:
    """Reads exactly ``count`` bytes before ``deadline`` (monotonic). Memory grows only with bytes received."""
    return bytes(_read_into(sock, count, deadline))


def _read_into(sock, count: int, deadline: float) -> bytearray:
    """``read_exactly`` into a bytearray, received in place (``recv_into``): no chunk copied after it arrived. The
    buffer grows by doubling as bytes arrive (never to what a peer only announced); large buffers grow in place
    (``mremap``)."""
    data = bytearray(min(count, _CHUNK))
    done = 0
    while done < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AirlockTimeout("airlockd's reply did not arrive in time")
        if done == len(data):
            data.extend(bytes(min(len(data), count - len(data))))
        sock.settimeout(left)
        try:
            with memoryview(data) as view:
                n = sock.recv_into(view[done:])
        except _socket.timeout:
            raise AirlockTimeout("airlockd's reply did not arrive in time") from None
        except OSError as error:
            raise ProtocolError(f"the connection to airlockd failed while reading ({error})") from None
        if not n:
            raise ProtocolError(f"airlockd closed the connection after {done} of {count} bytes")
        done += n
    return data


def read_message(sock, deadline: float, max_reply: int = MAX_REPLY) -> dict:
    """Reads one message (4-byte big-endian length, then that many bytes of a JSON object), bounded by
    ``max_reply`` bytes. The bytes are received into one buffer, decoded once into text (the buffer then freed) and
    parsed once: the peak is the text plus the objects parsed from it, no further copy."""
    (length,) = struct.unpack(">I", read_exactly(sock, 4, deadline))
    if length == 0 or length > max_reply:
        raise ProtocolError(f"airlockd announced a reply of {length} bytes (1 to {max_reply} accepted)")
    body = _read_into(sock, length, deadline)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("airlockd's reply is not UTF-8") from None
    del body
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"airlockd's reply is not JSON ({type(error).__name__})") from None
    del text
    if not isinstance(message, dict):
        raise ProtocolError("airlockd's reply is not a JSON object")
    return message


def check_reply(reply: dict, request_id) -> dict:
    """The reply if it is ``ok`` and answers ``request_id``; a DaemonError (Busy for ``busy``) for an error
    reply; a ProtocolError for anything else."""
    # Exactly int: JSON's true and 1.0 are equal to 1 in Python, and are not the protocol's numbers.
    if type(reply.get("airlock")) is not int or reply["airlock"] != 1:
        raise ProtocolError("airlockd's reply is not protocol version 1")
    reply_id = reply.get("id")
    if reply_id is not None and (type(reply_id) is not int or reply_id != request_id):
        raise ProtocolError("airlockd's reply answers another request")
    if reply.get("ok") is True:
        if reply_id is None:
            raise ProtocolError("airlockd's reply answers another request")
        return reply
    error = reply.get("error")
    if reply.get("ok") is not False or not isinstance(error, dict) or not isinstance(error.get("code"), str):
        raise ProtocolError("airlockd's reply is neither ok nor an error")
    code, message = error["code"][:64], str(error.get("message", ""))[:4096]
    if code == "busy":
        raise Busy(code, message, error)
    raise DaemonError(code, message, error)


_OPTION_NAMES = {
    "name": ("name", str),
    "timeout": ("timeout", (int, float)),
    "probe_phase": ("probePhase", bool),
    "worlds": ("worlds", int),
    "world_budget": ("worldBudget", (int, float)),
    "python": ("python", str),
    "max_entries": ("maxEntries", int),
    "folder_budget": ("folderBudget", (int, float)),
}


def _params(method: str, options: dict) -> dict:
    params = {}
    for key, value in options.items():
        if key not in _OPTION_NAMES:
            raise TypeError(f"unknown option {key!r}: {', '.join(sorted(_OPTION_NAMES))}")
        if value is None:
            continue
        wire, kind = _OPTION_NAMES[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"option {key!r} has the wrong type")
        if key == "name":
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a name decoded with surrogateescape: JSON cannot carry it as it is
                value = escaped_name(value)
        params[wire] = value
    return params


def escaped_name(name) -> str:
    """A file name (str or bytes) in airlock's escaped form (docs/formats.md, "Names are bytes"): a backslash as
    ``\\\\``, each byte that is not UTF-8 or belongs to a control or formatting character as ``\\xHH``. JSON cannot
    carry the bytes of a name that is not UTF-8; this form carries them losslessly."""
    text = os.fsencode(name).decode("utf-8", "surrogateescape")
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02X}")
        elif char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            out.append("".join(f"\\x{byte:02X}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def open_target(target, default_name=None):
    """(descriptor, whether we opened it, name) for a path, a file object or a descriptor. A path is first opened
    ``O_PATH`` (which has no effect on a FIFO or a device: a tape is not rewound, a FIFO does not wait for a
    writer) and reopened for reading only when it is a regular file or a folder; symbolic links are followed, and
    what is examined is the file this one open reached, whatever the path names later."""
    if isinstance(target, int) and not isinstance(target, bool):
        return target, False, default_name
    if hasattr(target, "fileno") and not isinstance(target, (str, bytes, os.PathLike)):
        name = getattr(target, "name", None)
        shown = os.path.basename(name) if isinstance(name, (str, bytes)) else ""
        return target.fileno(), False, escaped_name(shown) if shown else default_name
    path = os.fspath(target)
    shown = os.fsdecode(path)
    try:
        handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as error:
        raise InputError(f"cannot open {shown}: {error.strerror}") from None
    try:
        mode = os.fstat(handle).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"{shown} is not a regular file or a folder (a FIFO, device or socket is never "
                             "opened)")
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC | (os.O_DIRECTORY if stat.S_ISDIR(mode) else 0)
        try:
            fd = os.open(f"/proc/self/fd/{handle}", flags)
        except OSError as error:
            raise InputError(f"cannot open {shown} for reading: {error.strerror}") from None
    finally:
        os.close(handle)
    base = os.path.basename(os.path.normpath(shown))
    return fd, True, escaped_name(base) if base else default_name
