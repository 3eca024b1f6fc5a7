internal import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// Writes files so that readers see the old content or the new, never a part: a temporary file beside the target
/// (`.tmp-NAME-PID`), fsync, rename, fsync of the folder. Used for manifests (`airlock manifest -o`) and for the
/// reports the intake releases.
public enum AtomicFile {
    /// Writes `bytes` to `name` in the folder open as `dirfd`; `display` names the file in messages (`name` if nil).
    public static func write(_ bytes: [UInt8], to name: String, in dirfd: Int32, display: String? = nil)
        throws(ProvenanceError)
    {
        let shown = display ?? name
        let tmp = ".tmp-\(name)-\(getpid())"
        let fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw ProvenanceError(.io, "cannot create \(shown): \(Errno.current.text)") }
        var failure: Int32 = 0
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                break
            }
            done += n
        }
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        if Glibc.close(fd) != 0 && failure == 0 { failure = errno }  // a late write error (NFS) shows here
        if failure == 0 && renameat(dirfd, tmp, dirfd, name) != 0 { failure = errno }
        if failure == 0 && fsync(dirfd) != 0 { failure = errno }
        if failure != 0 {
            _ = unlinkat(dirfd, tmp, 0)
            throw ProvenanceError(.io, "cannot write \(shown): \(Errno(failure).text)")
        }
    }

    /// Writes `bytes` to `path`.
    public static func write(_ bytes: [UInt8], toPath path: String) throws(ProvenanceError) {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let dirfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw ProvenanceError(.io, "cannot open the folder of \(path): \(Errno.current.text)") }
        defer { FileDescriptor(dirfd).close() }
        try write(bytes, to: name, in: dirfd, display: path)
    }
}
