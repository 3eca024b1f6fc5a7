"""Loading a model only after airlockd said it is safe, from the very bytes it examined.

The file is copied once into a sealed memfd (no write, grow, shrink or further sealing: the kernel refuses them
to everyone, this process included); that memfd is what airlockd examines, and what the loader reads. Changing,
replacing or swapping the file (or a symbolic link to it) after the copy changes nothing that is loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat

from .client import VERDICTS, Client, open_target
from .errors import AirlockError, InputError, ProtocolError, UnsafeModelError

_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_CHUNK = 1 << 20


def default_max_bytes() -> int:
    """The default bound of a sealed copy: half of the machine's physical memory (a memfd lives in memory, or
    swap)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 4 << 30


class SealedCopy:
    """A read-only, sealed in-memory copy of a file: ``fd`` (read-only), ``sha256``, ``size``, ``name``.
    ``open()`` gives a new file object over it (its own offset, at 0); ``path`` is ``/proc/self/fd/N``, a path
    that reopens the same sealed copy while this object is open (for loaders that want a path). Close it (or use
    it as a context manager) to free the memory."""

    def __init__(self, fd: int, sha256: str, size: int, name: str, sealed: bool = True):
        self.fd, self.sha256, self.size, self.name, self.sealed = fd, sha256, size, name, sealed

    @property
    def path(self) -> str:
        """``/proc/self/fd/N``: opens the same sealed copy (read-only) while it is open."""
        return f"/proc/self/fd/{self.fd}"

    def open(self):
        """A new binary file object over the copy, at offset 0."""
        return os.fdopen(os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), "rb")

    def close(self):
        """Frees the copy (once every file object opened over it is closed too)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sealed_copy(source, max_bytes: int | None = None, spool=None) -> SealedCopy:
    """Copies ``source`` (a path, a file object or a descriptor of a regular file) into a sealed memfd, bounded by
    ``max_bytes`` (default: half the physical memory). A folder, FIFO, device or socket raises InputError; so does
    a file over the bound.

    ``spool``: a folder on a disk to copy into instead, for files too large for memory: an unnamed file
    (``O_TMPFILE``, mode 0400) that no path reaches, only this process's descriptors (and ``/proc/PID/fd``, open to
    processes of the same uid and root, which could as well change this process's memory). It cannot be sealed:
    ``copy.sealed`` is False. The default bound is then the free space there."""
    if spool is not None:
        vfs = os.statvfs(spool)
        limit = vfs.f_bavail * vfs.f_frsize if max_bytes is None else max_bytes
    else:
        limit = default_max_bytes() if max_bytes is None else max_bytes
    fd, owned, name = open_target(source, "model")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name} is a folder: use airlock_client.snapshot() for folders")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name} is not a regular file (a FIFO, device or socket is never loaded)")
        if st.st_size > limit:
            raise InputError(f"{name} is {st.st_size} bytes, more than the bound of {limit} (max_bytes)")
        # Our own read-only descriptor (a nonblocking or O_PATH one given to us would not read).
        reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise AirlockError("/proc is not mounted: airlock_client needs /proc/self/fd") from None
    finally:
        if owned:
            os.close(fd)
    memfd = -1
    try:
        if spool is None:
            memfd = os.memfd_create(f"airlock:{name}"[:200], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        else:
            try:
                memfd = os.open(spool, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o400)
            except OSError as error:
                raise InputError(f"cannot make an unnamed file in {os.fsdecode(spool)}: {error.strerror}") \
                    from None
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while True:
            n = os.readv(reader, [buffer])
            if n == 0:
                break
            size += n
            if size > limit:
                raise InputError(f"{name} grew past the bound of {limit} bytes while it was copied (max_bytes)")
            digest.update(view[:n])
            written = 0
            while written < n:
                written += os.write(memfd, view[written:n])
        if spool is None:
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
        # A descriptor open for writing keeps the daemon from taking its read lease (`file-busy`): keep only a
        # read-only one. The seals belong to the file, so they hold through every descriptor.
        sealed = os.open(f"/proc/self/fd/{memfd}", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        if memfd >= 0:
            os.close(memfd)
        raise
    finally:
        os.close(reader)
    os.close(memfd)
    if spool is None and fcntl.fcntl(sealed, fcntl.F_GET_SEALS) & _SEALS != _SEALS:
        os.close(sealed)
        raise AirlockError("the kernel did not keep the copy's seals")
    return SealedCopy(sealed, digest.hexdigest(), size, name, sealed=spool is None)


def check(copy: SealedCopy, *, socket=None, client: Client | None = None, allow=("clean",), method="probe",
          **options):
    """Has airlockd examine ``copy`` and returns its report; raises UnsafeModelError unless the verdict is in
    ``allow``, ProtocolError when the report is not about these bytes (another SHA-256)."""
    if method not in ("probe", "scan"):
        raise ValueError("method must be 'probe' or 'scan'")
    allow = allowed_verdicts(allow)
    client = client or Client(socket)
    options.setdefault("name", copy.name)
    report = getattr(client, method)(copy.fd, **options)
    if report.verdict not in allow:
        raise UnsafeModelError(
            f"airlockd: {copy.name} is {report.verdict} ({', '.join(report.rules) or 'no findings'}); "
            f"allowed: {', '.join(allow)}", report)
    # An answer about other bytes says nothing about these (a confused or impostor daemon).
    if report.sha256 != copy.sha256:
        raise ProtocolError(f"airlockd's report is about other bytes (sha256 {report.sha256}, not {copy.sha256})")
    return report


def allowed_verdicts(allow) -> tuple:
    """``allow`` as a tuple of verdicts, checked: a bare string is one verdict (never its substrings), and an
    unknown verdict is a ValueError."""
    verdicts = (allow,) if isinstance(allow, str) else tuple(allow)
    unknown = [v for v in verdicts if v not in VERDICTS]
    if unknown:
        raise ValueError(f"unknown verdicts in allow: {unknown!r} (verdicts: {', '.join(VERDICTS)})")
    return verdicts


def safe_load(path, loader, *, socket=None, client: Client | None = None, allow=("clean",), method="probe",
              pass_path: bool = False, max_bytes: int | None = None, spool=None, **options):
    """Asks airlockd about ``path`` and, if the verdict is in ``allow``, returns ``loader(f)`` where ``f`` is a
    binary file object over exactly the bytes examined (``pass_path=True``: ``loader(p)`` with ``p`` a
    ``/proc/self/fd/N`` path of those bytes, valid during the call). Raises UnsafeModelError (with the report)
    otherwise, and never calls the loader then. ``options`` go to the daemon (``timeout``, ``python``, ...).

    Memory: the file is held in memory (a sealed memfd) while it is checked and loaded; ``spool=FOLDER`` copies it
    to an unnamed file there instead (``sealed_copy``), for files larger than memory allows."""
    with sealed_copy(path, max_bytes=max_bytes, spool=spool) as copy:
        check(copy, socket=socket, client=client, allow=allow, method=method, **options)
        if pass_path:
            return loader(copy.path)
        with copy.open() as handle:
            return loader(handle)


_GUARD_KEYWORDS = (
    "socket", "client", "allow", "method", "max_bytes", "spool", "timeout", "python", "worlds", "world_budget",
    "probe_phase",
)


def _guard_keywords(kw: dict) -> dict:
    return {key: kw.pop(key) for key in _GUARD_KEYWORDS if key in kw}


def pickle_load(path, **kw):
    """``pickle.load`` of ``path`` after airlockd's check. Guard keywords: ``socket``, ``client``, ``allow``,
    ``method``, ``max_bytes``, ``spool``, ``timeout``, ``python``, ``worlds``, ``world_budget``, ``probe_phase``;
    the rest go to ``pickle.load``."""
    import pickle

    guard = _guard_keywords(kw)
    return safe_load(path, lambda f: pickle.load(f, **kw), **guard)


def torch_load(path, **kw):
    """``torch.load`` of ``path`` after airlockd's check, from the bytes examined. Keywords as ``pickle_load``;
    the rest (``map_location``, ``weights_only``, ...) go to ``torch.load`` unchanged: ``weights_only`` is what
    the caller says (torch's own default otherwise)."""
    import torch

    guard = _guard_keywords(kw)
    if kw.get("mmap"):
        return safe_load(path, lambda p: torch.load(p, **kw), pass_path=True, **guard)
    return safe_load(path, lambda f: torch.load(f, **kw), **guard)


def joblib_load(path, **kw):
    """``joblib.load`` of ``path`` after airlockd's check, from the bytes examined (``mmap_mode`` does not apply
    to a file object and is refused). Keywords as ``pickle_load``."""
    import joblib

    guard = _guard_keywords(kw)
    if kw.get("mmap_mode") is not None:
        raise InputError("joblib_load loads from the examined bytes in memory: mmap_mode cannot apply")
    return safe_load(path, lambda f: joblib.load(f, **kw), **guard)
