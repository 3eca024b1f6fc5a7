"""airlock_client: ask airlockd whether a model is safe, then load exactly the bytes it examined.

    import airlock_client
    model = airlock_client.torch_load("model.pt", weights_only=True)   # raises UnsafeModelError unless clean

See clients/python/README.md for the API, the guarantees and the limits.
"""

from .client import DEFAULT_SOCKET, MAX_REPLY, Client, Finding, Report, default_socket
from .errors import (
    AirlockError,
    AirlockTimeout,
    Busy,
    DaemonError,
    DaemonUnavailable,
    InputError,
    ProtocolError,
    UnsafeModelError,
    UntrustedDaemon,
)
from .guard import SealedCopy, check, joblib_load, pickle_load, safe_load, sealed_copy, torch_load
from .snapshot import remove_snapshot, snapshot

__version__ = "0.1.0"

__all__ = [
    "AirlockError", "AirlockTimeout", "Busy", "Client", "DEFAULT_SOCKET", "DaemonError", "DaemonUnavailable",
    "Finding", "InputError", "MAX_REPLY", "ProtocolError", "Report", "SealedCopy", "UnsafeModelError", "check",
    "default_socket", "joblib_load", "pickle_load", "remove_snapshot", "safe_load", "sealed_copy", "snapshot",
    "torch_load", "UntrustedDaemon",
]
