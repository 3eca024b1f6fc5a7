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
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: The Hugging Face cache's repository folders (``models--org--name``) whose ``blobs/`` a snapshot's links reach.
_HUB_KINDS = ("models--", "datasets--", "spaces--")


def snapshot(path, *, socket=None, client: Client | None = None, allow=("clean",), dest=None,
             max_entries: int = MAX_ENTRIES, max_bytes: int | None = None, **options) -> str:
    """Copies the folder ``path`` into a new private folder (mode 0700 while copying; files 0400 and folders 0500
    after), has airlockd probe that copy whole, and returns its path if every report's verdict is in ``allow``.
    Otherwise the copy is removed and UnsafeModelError raised (a folder not examined whole has an ``error``
    report). ``dest``: the folder the copy is made in (default the system's temporary folder).

    The folder is walked by descriptor (each folder and file opened relative to its parent's descriptor, without
    following links, and checked to be what was listed), so a folder swapped for a link while it is copied is
    refused, not followed. Symbolic links are followed only to a regular file inside the snapshot, or, for a
    ``models--…/snapshots/REV`` folder of the Hugging Face cache (``datasets--``, ``spaces--`` too; its
    ``blobs/`` folder present), inside that ``blobs/`` folder; any other link, a link to a folder, a FIFO, device
    or socket raises InputError. At most ``max_entries`` entries, ``MAX_DEPTH`` levels and ``max_bytes`` bytes
    (default: the free space where the copy goes). The caller removes the copy (``remove_snapshot``) when done."""
    allow = allowed_verdicts(allow)
    source = os.path.abspath(os.fsdecode(os.fspath(path)))
    try:
        top = os.open(os.path.realpath(source), _DIR)
    except OSError as error:
        raise InputError(f"{source} is not a folder ({os.strerror(error.errno)})") from None
    roots = [top]
    copy = None
    try:
        roots += _hub_blobs(top)
        copy = tempfile.mkdtemp(prefix="airlock-snapshot-", dir=dest)
        budget = max_bytes
        if budget is None:
            vfs = os.statvfs(copy)
            budget = vfs.f_bavail * vfs.f_frsize
        digests = _copy_tree(source, roots, copy, max_entries, budget)
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
        if copy is not None:
            remove_snapshot(copy)
        raise
    finally:
        for fd in roots:
            os.close(fd)


def remove_snapshot(copy: str) -> None:
    """Removes a copy ``snapshot`` made (its folders are read-only)."""
    for folder, dirs, _ in os.walk(copy):
        os.chmod(folder, 0o700)
        for d in dirs:
            full = os.path.join(folder, d)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(copy, ignore_errors=True)


def _fd_path(fd: int) -> str:
    """Where the file open as ``fd`` is now (/proc/self/fd); InputError without /proc."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        raise InputError("/proc/self/fd cannot be read: symbolic links in the snapshot cannot be checked") from None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _hub_blobs(top: int) -> list:
    """For a Hugging Face cache snapshot (``{models,datasets,spaces}--NAME/snapshots/REV``, ``blobs/`` beside
    ``snapshots/``): its ``blobs/`` folder, open; else nothing. Found by descriptor ("..", then "blobs" not
    followed if a link)."""
    opened = []
    try:
        parent = os.open("..", _DIR, dir_fd=top)
        opened.append(parent)
        repo = os.open("..", _DIR, dir_fd=parent)
        opened.append(repo)
        if (os.path.basename(_fd_path(parent)) != "snapshots"
                or not os.path.basename(_fd_path(repo)).startswith(_HUB_KINDS)):
            return []
        return [os.open("blobs", _DIR, dir_fd=repo)]
    except OSError:
        return []
    finally:
        for fd in opened:
            os.close(fd)


def _listing(fd: int, rel: str, seen: int, max_entries: int) -> list:
    """The sorted names in the folder open as ``fd``; InputError past ``max_entries`` in all (``seen`` so far)."""
    names = []
    with os.scandir(fd) as listing:
        for entry in listing:
            names.append(entry.name)
            if seen + len(names) > max_entries:
                raise InputError(f"the snapshot has more than {max_entries} entries (max_entries; in {rel or '.'})")
    names.sort()
    return names


def _open_child(parent: int, name: str, rel: str, st, flags: int) -> int:
    """``name`` in the folder open as ``parent``, opened without following a link, and checked to be the entry
    ``st`` listed (device and inode): one swapped in between raises InputError."""
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.ENOENT):
            raise InputError(f"{rel} changed while the snapshot was copied") from None
        raise
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise InputError(f"{rel} changed while the snapshot was copied")
    return fd


def _open_link(parent: int, name: str, rel: str, roots: list) -> int:
    """The regular file the link ``name`` (in the folder open as ``parent``) leads to, open for reading, if it is
    inside one of ``roots`` (open folders) where it was opened; else InputError. The link is resolved once by the
    kernel into an ``O_PATH`` descriptor (which opens no device and blocks on no FIFO), whose place is read from
    /proc/self/fd and checked; only then is that same file opened for reading, through the descriptor."""
    try:
        where = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=parent)
    except OSError as error:
        raise InputError(f"{rel} is a symbolic link that cannot be followed ({os.strerror(error.errno)})") from None
    try:
        st = os.fstat(where)
        target = _fd_path(where)
        if not any(_inside(target, _fd_path(root)) for root in roots):
            raise InputError(f"{rel} is a symbolic link leaving the snapshot ({escaped_name(target)})")
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{rel} is a symbolic link to a folder (not copied)")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{rel} is not a regular file or folder (a FIFO, device or socket)")
        fd = os.open(f"/proc/self/fd/{where}", _OPEN & ~os.O_NOFOLLOW)
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            raise InputError(f"{rel} changed while the snapshot was copied")
        return fd
    finally:
        os.close(where)


def _copy_tree(source: str, roots: list, copy: str, max_entries: int, budget: int) -> dict:
    """Copies the folder open as ``roots[0]`` into ``copy``, depth first with a stack of open folders (no recursion
    on the input's depth; at most MAX_DEPTH + 1 descriptors); returns the SHA-256 of each file copied, by relative
    path."""
    digests = {}
    top = os.dup(roots[0])
    seen = 0
    names = _listing(top, "", seen, max_entries)
    seen += len(names)
    stack = [(top, "", iter(names))]
    try:
        while stack:
            fd, rel, pending = stack[-1]
            name = next(pending, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            rel_child = os.path.join(rel, name)
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if len(stack) > MAX_DEPTH:
                    raise InputError(f"{rel_child} is nested deeper than {MAX_DEPTH} levels")
                child = _open_child(fd, name, rel_child, st, _DIR)
                try:
                    os.mkdir(os.path.join(copy, rel_child), 0o700)
                    names = _listing(child, rel_child, seen, max_entries)
                except BaseException:
                    os.close(child)
                    raise
                seen += len(names)
                stack.append((child, rel_child, iter(names)))
                continue
            if stat.S_ISLNK(st.st_mode):
                src = _open_link(fd, name, rel_child, roots)
            elif stat.S_ISREG(st.st_mode):
                src = _open_child(fd, name, rel_child, st, _OPEN)
            else:
                raise InputError(f"{rel_child} is not a regular file or folder (a FIFO, device or socket)")
            try:
                budget -= _copy_file(src, os.path.join(copy, rel_child), budget, rel_child, digests)
            finally:
                os.close(src)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return digests


def _copy_file(src: int, destination: str, budget: int, rel: str, digests: dict) -> int:
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
    digests[rel] = digest.hexdigest()
    return size


def _make_read_only(copy: str) -> None:
    for folder, _, _ in os.walk(copy, topdown=False):
        os.chmod(folder, 0o500)
