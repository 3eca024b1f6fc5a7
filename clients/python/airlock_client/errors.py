"""The exceptions of airlock_client: every one is an AirlockError."""

from __future__ import annotations


class AirlockError(Exception):
    """Anything that kept airlock_client from giving an answer (or, for UnsafeModelError, the answer "no")."""

    #: A short machine-readable code ("unavailable", "protocol", "busy", a daemon error code, ...).
    code = "airlock"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class DaemonUnavailable(AirlockError):
    """airlockd's socket cannot be reached: no such file, nobody listening, no permission."""

    code = "unavailable"

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class UntrustedDaemon(AirlockError):
    """The process listening on the socket is not one the client trusts (its uid, from ``SO_PEERCRED``, is not
    among ``Client(daemon_uids=...)``): nothing is sent to it."""

    code = "untrusted"


class ProtocolError(AirlockError):
    """The peer on the socket did not speak airlockd's protocol: a bad length, bad JSON, another version, a reply
    that ended early or that is not what the request asked for. The connection is not used again."""

    code = "protocol"


class AirlockTimeout(AirlockError, TimeoutError):
    """No complete reply within the call's timeout."""

    code = "timeout"


class DaemonError(AirlockError):
    """airlockd answered with an error (docs/protocol.md, "Errors"): `code` is its code (`bad-request`,
    `file-busy`, `forbidden`, `unknown-runtime`, ...), `reply` the whole error object."""

    def __init__(self, code: str, message: str, reply: dict | None = None):
        super().__init__(f"airlockd: {code}: {message}", code)
        self.daemon_message = message
        self.reply = reply or {}


class Busy(DaemonError):
    """airlockd stayed `busy` (nothing was started) until the retry time ran out."""


class InputError(AirlockError, ValueError):
    """What was given cannot be examined this way: a FIFO, a device, a socket, a folder where a file is needed,
    a file over the size bound."""

    code = "input"


class UnsafeModelError(AirlockError):
    """airlockd's verdict is not one of those allowed. `report` is the report that decided (the first not
    allowed), `reports` all of them (several for a folder)."""

    code = "unsafe"

    def __init__(self, message: str, report, reports=None):
        super().__init__(message)
        self.report = report
        self.reports = list(reports) if reports is not None else [report]
