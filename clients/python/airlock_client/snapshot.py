"""A guard for a Hugging Face snapshot folder: a private, read-only copy, probed whole by airlockd, is what the
caller loads from (``from_pretrained(snapshot(path))``)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile

from .client import Client, escaped_name
from .guard import allowed_verdicts
from .errors import AirlockError, InputError, UnsafeModelError

#: Most entries (files and folders) copied.
MAX_ENTRIES = 10_000
#: Deepest folder nesting copied.
MAX_DEPTH = 32
_CHUNK = 1 << 20
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def snapshot(path, *, socket=None, client: Client | None = None, allow=("clean",), dest=None,
             max_entries: int = MAX_ENTRIES, max_bytes: int | None = None, **options) -> str:
    """Copies the folder ``path`` into a new private folder (mode 0700 while copying; files 0400 and folders 0500
    after), has airlockd probe that copy whole, and returns its path if every report's verdict is in ``allow``.
    Otherwise the copy is removed and UnsafeModelError raised (a folder not examined whole has an ``error``
    report). ``dest``: the folder the copy is made in (default the system's temporary folder).

    Symbolic links are followed only when they stay inside the snapshot, or, for a ``.../snapshots/REV`` folder of
    the Hugging Face cache, inside its ``models--…`` folder (where ``blobs/`` are); any other link, a FIFO, device
    or socket raises InputError. At most ``max_entries`` entries, ``MAX_DEPTH`` levels and ``max_bytes`` bytes
    (default: the free space where the copy goes). The caller removes the copy (``remove_snapshot``) when done."""
    allow = allowed_verdicts(allow)
    source = os.path.abspath(os.fsdecode(os.fspath(path)))
    if not os.path.isdir(source):
        raise InputError(f"{source} is not a folder")
    root = os.path.realpath(source)
    if os.path.basename(os.path.dirname(root)) == "snapshots":
        root = os.path.dirname(os.path.dirname(root))
    copy = tempfile.mkdtemp(prefix="airlock-snapshot-", dir=dest)
    try:
        budget = max_bytes
        if budget is None:
            vfs = os.statvfs(copy)
            budget = vfs.f_bavail * vfs.f_frsize
        digests = _copy_tree(source, root, copy, max_entries, budget)
        _make_read_only(copy)
        reports = (client or Client(socket)).probe_folder(copy, name=escaped_name(os.path.basename(source)),
                                                            **options)
        judged = {r.sha256 for r in reports if r.verdict in allow and r.sha256}
        bad = [r for r in reports if r.verdict not in allow]
        if bad:
            worst = bad[0]
            raise UnsafeModelError(
                f"airlockd: {worst.path} is {worst.verdict} ({', '.join(worst.rules) or 'no findings'}); "
                f"{len(bad)} of {len(reports)} reports not allowed ({', '.join(allow)})", worst, reports)
        missing = [rel for rel, digest in digests.items() if digest not in judged]
        if missing:
            raise AirlockError(f"airlockd's reports do not cover {len(missing)} copied files ({missing[0]}, ...)")
        return copy
    except BaseException:
        remove_snapshot(copy)
        raise


def remove_snapshot(copy: str) -> None:
    """Removes a copy ``snapshot`` made (its folders are read-only)."""
    for folder, dirs, _ in os.walk(copy):
        os.chmod(folder, 0o700)
        for d in dirs:
            full = os.path.join(folder, d)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(copy, ignore_errors=True)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _copy_tree(source: str, root: str, copy: str, max_entries: int, budget: int) -> dict:
    """Copies ``source`` into ``copy`` with a stack (no recursion on the input's depth); returns the SHA-256 of
    each file copied, by relative path."""
    digests = {}
    entries = 0
    stack = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        folder = os.path.join(source, rel)
        with os.scandir(folder) as listing:
            names = sorted(e.name for e in listing)
        for name in names:
            entries += 1
            if entries > max_entries:
                raise InputError(f"{source} has more than {max_entries} entries (max_entries)")
            rel_child = os.path.join(rel, name)
            full = os.path.join(folder, name)
            st = os.lstat(full)
            target = full
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(full)
                if not _inside(target, root):
                    raise InputError(f"{rel_child} is a symbolic link leaving the snapshot ({os.readlink(full)})")
                st = os.stat(target)
            if stat.S_ISDIR(st.st_mode):
                if depth + 1 > MAX_DEPTH:
                    raise InputError(f"{rel_child} is nested deeper than {MAX_DEPTH} levels")
                if stat.S_ISLNK(os.lstat(full).st_mode):
                    raise InputError(f"{rel_child} is a symbolic link to a folder (not copied)")
                os.mkdir(os.path.join(copy, rel_child), 0o700)
                stack.append((rel_child, depth + 1))
            elif stat.S_ISREG(st.st_mode):
                budget -= _copy_file(target, os.path.join(copy, rel_child), budget, rel_child, digests)
            else:
                raise InputError(f"{rel_child} is not a regular file or folder (a FIFO, device or socket)")
    return digests


def _copy_file(source: str, destination: str, budget: int, rel: str, digests: dict) -> int:
    try:
        src = os.open(source, _OPEN)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{rel} changed into a symbolic link while it was copied") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise InputError(f"{rel} is not a regular file")
        out = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
        digest = hashlib.sha256()
        size = 0
        try:
            while True:
                chunk = os.read(src, _CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > budget:
                    raise InputError(f"the snapshot is larger than the copy's bound ({rel}; max_bytes)")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        finally:
            os.close(out)
    finally:
        os.close(src)
    digests[rel] = digest.hexdigest()
    return size


def _make_read_only(copy: str) -> None:
    for folder, _, _ in os.walk(copy, topdown=False):
        os.chmod(folder, 0o500)
