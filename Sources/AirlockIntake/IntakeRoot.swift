internal import AirlockSystem
import AirlockNames
internal import AirlockAnalysis
internal import AirlockFormats

#if canImport(Glibc)
    import Glibc
#endif

/// The quarantine root's folders, open as descriptors: every move is a `renameat2` between two of them, so a path
/// swapped for a link under the root cannot redirect a model.
final class IntakeRoot: @unchecked Sendable {
    let path: String
    let root: Int32
    let incoming: Int32
    let quarantine: Int32
    let approved: Int32
    let rejected: Int32
    /// `.airlock/`: the workers' folders (and the lock of intakes from before workers).
    let state: Int32
    /// This worker's folder, `.airlock/workers/NAME/`, and its lease.
    let lease: IntakeLease
    /// `.airlock/workers/NAME/delivered/`: each delivery this worker claimed, as the uploader made it (`ID/NAME`),
    /// kept from `take` until the intake's own copy is released (or the delivery is moved back to incoming/).
    let delivered: Int32
    /// `.airlock/workers/NAME/takeover/`: folders of dead workers this one took over, until adopted.
    let takeover: Int32
    private let lockFD: Int32

    /// The folders under a root, by name.
    static let folders = ["incoming", "quarantine", "approved", "rejected"]

    /// Opens `path` (creating it and its folders if missing), checks that they are one file system (moves must be
    /// renames), and sets up worker `worker`'s folder and lease (`IntakeLease`).
    init(path: String, worker: String, leaseSeconds: Double) throws(IntakeError) {
        self.path = path
        if mkdir(path, 0o750) != 0 && errno != EEXIST {
            throw IntakeError.system("cannot create the intake root \(path)")
        }
        let root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw IntakeError.system("cannot open the intake root \(path)") }
        var fds: [Int32] = []
        func fail(_ error: IntakeError) -> IntakeError {
            for fd in fds { FileDescriptor(fd).close() }
            FileDescriptor(root).close()
            return error
        }
        var rootStat = stat()
        _ = fstat(root, &rootStat)
        for name in IntakeRoot.folders + [".airlock"] {
            if mkdirat(root, name, name == ".airlock" ? 0o700 : 0o750) != 0 && errno != EEXIST {
                throw fail(.system("cannot create \(path)/\(name)"))
            }
            let fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw fail(.system("cannot open \(path)/\(name) (a folder, not a link)")) }
            fds.append(fd)
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_dev == rootStat.st_dev else {
                throw fail(
                    IntakeError(
                        "\(path)/\(name) is on another file system than \(path): models must move by rename, which cannot cross file systems"
                    ))
            }
        }
        // Intakes from before workers held this lock exclusively for their lifetime: a worker holds it shared, so
        // that the two never work on one root together.
        let lock = openat(fds[4], "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lock >= 0 else { throw fail(.system("cannot open the lock \(path)/.airlock/lock")) }
        if flock(lock, LOCK_SH | LOCK_NB) != 0 {
            let e = Errno.current
            var buf = [UInt8](repeating: 0, count: 32)
            let n = buf.withUnsafeMutableBytes { pread(lock, $0.baseAddress, $0.count, 0) }
            let holder = n > 0 ? String(decoding: buf[0..<n].prefix { $0 != 0x0A }, as: UTF8.self) : "?"
            FileDescriptor(lock).close()
            if e.rawValue == EWOULDBLOCK {
                throw fail(
                    IntakeError(
                        "another airlock intake (pid \(holder)) holds \(path) alone (an intake from before workers): stop it first",
                        errno: e))
            }
            throw fail(.system("cannot lock \(path)/.airlock/lock", errno: e))
        }
        let lease: IntakeLease
        do {
            lease = try IntakeLease(state: fds[4], name: worker, seconds: leaseSeconds, display: path + "/.airlock")
        } catch {
            FileDescriptor(lock).close()
            throw fail(error)
        }
        var sub: [Int32] = []
        for name in ["delivered", "takeover"] {
            if mkdirat(lease.folder, name, 0o700) != 0 && errno != EEXIST {
                for fd in sub + [lock] { FileDescriptor(fd).close() }
                throw fail(.system("cannot create \(path)/.airlock/workers/\(worker)/\(name)"))
            }
            let fd = openat(lease.folder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            var st = stat()
            guard fd >= 0, fstat(fd, &st) == 0, st.st_dev == rootStat.st_dev else {
                for fd in sub + [lock] + (fd >= 0 ? [fd] : []) { FileDescriptor(fd).close() }
                throw fail(
                    IntakeError(
                        "\(path)/.airlock/workers/\(worker)/\(name) cannot be opened or is on another file system than \(path): models must move by rename"
                    ))
            }
            sub.append(fd)
        }
        self.root = root
        incoming = fds[0]
        quarantine = fds[1]
        approved = fds[2]
        rejected = fds[3]
        state = fds[4]
        self.lease = lease
        delivered = sub[0]
        takeover = sub[1]
        lockFD = lock
    }

    deinit {
        for fd in [incoming, quarantine, approved, rejected, state, delivered, takeover, lockFD, root] {
            FileDescriptor(fd).close()
        }
    }

    /// The descriptor of `approved` or `rejected`.
    func destination(_ name: String) -> Int32 { name == "approved" ? approved : rejected }

    /// Makes a folder's entries durable (after a rename into or out of it).
    static func sync(_ dirfd: Int32) throws(IntakeError) {
        guard fsync(dirfd) == 0 else { throw IntakeError.system("cannot sync a folder") }
    }

    /// Whether `name` exists in `dirfd` (not following links).
    static func exists(_ dirfd: Int32, _ name: String) -> Bool {
        exists(dirfd, FileName(name))
    }

    /// Whether `name` exists in `dirfd` (not following links).
    static func exists(_ dirfd: Int32, _ name: FileName) -> Bool {
        var st = stat()
        return name.withCString { fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) } == 0
    }

    /// Removes `name` (a file, or a folder and everything in it) from `dirfd`, without following links. Used only for
    /// the intake's own work folders.
    static func removeTree(_ dirfd: Int32, _ name: FileName) {
        var st = stat()
        guard name.withCString({ fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let fd = name.withCString { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if fd >= 0 {
                for entry in list(fd) { removeTree(fd, entry) }
                FileDescriptor(fd).close()
            }
            _ = name.withCString { unlinkat(dirfd, $0, AT_REMOVEDIR) }
        } else {
            _ = name.withCString { unlinkat(dirfd, $0, 0) }
        }
    }

    /// The names in the folder open as `dirfd` (without `.` and `..`), in byte order, as the bytes the folder holds
    /// (a decoded name would lead a later rename to another entry); empty when it cannot be listed.
    static func list(_ dirfd: Int32) -> [FileName] {
        FolderWalk.names(dirfd) ?? []
    }
}
