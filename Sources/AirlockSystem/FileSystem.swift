internal import CSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The file-system calls glibc does not wrap, or not with the flags Airlock relies on: shared by the daemon, the intake
/// and provenance. Each returns whether it worked and leaves `errno` set when it did not (read it with
/// `Errno.current` before any other call).
package enum FileSystem {
    /// Opens `path` only if it lies inside `directory` without crossing a symbolic link, a magic link or a mount
    /// (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`; `O_NOFOLLOW`
    /// and `O_CLOEXEC` added). Nil on failure.
    package static func openBeneath(_ directory: Int32, _ path: UnsafePointer<CChar>, _ flags: Int32) -> FileDescriptor?
    {
        let fd = airlock_open_beneath(directory, path, flags)
        return fd >= 0 ? FileDescriptor(fd) : nil
    }

    /// Renames without replacing (`renameat2` with `RENAME_NOREPLACE`): an existing `newPath` fails with EEXIST.
    package static func renameNoReplace(
        _ oldDirectory: Int32, _ oldPath: UnsafePointer<CChar>, _ newDirectory: Int32, _ newPath: UnsafePointer<CChar>
    ) -> Bool {
        airlock_rename_noreplace(oldDirectory, oldPath, newDirectory, newPath) == 0
    }

    /// Takes an exclusive `flock` without waiting: false with EWOULDBLOCK when another open file description holds it.
    package static func tryLock(_ fd: Int32) -> Bool { airlock_try_lock(fd) == 0 }

    /// Takes a read lease (`F_SETLEASE`): false with EAGAIN when the file is open for writing anywhere. While it is
    /// held, an opener for writing (or a truncate) waits for `releaseLease`, up to `/proc/sys/fs/lease-break-time`.
    package static func takeReadLease(_ fd: Int32) -> Bool { airlock_set_read_lease(fd) == 0 }

    /// Releases a lease taken with `takeReadLease`.
    package static func releaseLease(_ fd: Int32) { _ = airlock_release_lease(fd) }
}

extension FileSystem {
    /// At most `limit` bytes from the start of the file open as `fd` (fewer when it is shorter), read with `pread` so
    /// the descriptor's offset is left alone; nil (with `errno`) when reading fails.
    package static func readPrefix(_ fd: Int32, upTo limit: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: max(limit, 0))
        var got = 0
        while got < out.count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, $0.count - got, off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            got += n
        }
        out.removeSubrange(got...)
        return out
    }

    /// The identity of the file open as `fd` (`statx` with the mount id, and `fstatfs`), or nil (with `errno`).
    package static func identity(_ fd: Int32) -> FileIdentity? {
        var raw = airlock_file_identity()
        guard airlock_file_identity(fd, &raw) == 0 else { return nil }
        return FileIdentity(
            device: raw.device, inode: raw.inode, size: raw.size, modifiedNs: raw.mtime_ns, changedNs: raw.ctime_ns,
            mountID: raw.mount_id, mountUnique: raw.mount_unique == 1, fileSystem: raw.fs_type, mode: raw.mode,
            owner: raw.uid, links: raw.nlink)
    }
}
