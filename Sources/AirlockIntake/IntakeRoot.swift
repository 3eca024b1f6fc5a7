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
    /// `.airlock/`: the lock and the journal.
    let state: Int32
    /// `.airlock/delivered/`: each delivery as the uploader made it (`ID/NAME`), kept from `take` until the intake's
    /// own copy is released (or the delivery is moved back to incoming/). The intake's alone (0700).
    let delivered: Int32
    private let lockFD: Int32

    /// The folders under a root, by name.
    static let folders = ["incoming", "quarantine", "approved", "rejected"]

    /// Opens `path` (creating it and its folders if missing), checks that they are one file system (moves must be
    /// renames), and takes the root's lock.
    init(path: String) throws(IntakeError) {
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
        if mkdirat(fds[4], "delivered", 0o700) != 0 && errno != EEXIST {
            throw fail(.system("cannot create \(path)/.airlock/delivered"))
        }
        let delivered = openat(fds[4], "delivered", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard delivered >= 0 else {
            throw fail(.system("cannot open \(path)/.airlock/delivered (a folder, not a link)"))
        }
        fds.append(delivered)
        var deliveredStat = stat()
        guard fstat(delivered, &deliveredStat) == 0, deliveredStat.st_dev == rootStat.st_dev else {
            throw fail(
                IntakeError(
                    "\(path)/.airlock/delivered is on another file system than \(path): models must move by rename, which cannot cross file systems"
                ))
        }
        let lock = openat(fds[4], "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lock >= 0 else { throw fail(.system("cannot open the lock \(path)/.airlock/lock")) }
        if !FileSystem.tryLock(lock) {
            let e = Errno.current
            var buf = [UInt8](repeating: 0, count: 32)
            let n = buf.withUnsafeMutableBytes { pread(lock, $0.baseAddress, $0.count, 0) }
            let holder = n > 0 ? String(decoding: buf[0..<n].prefix { $0 != 0x0A }, as: UTF8.self) : "?"
            FileDescriptor(lock).close()
            if e.rawValue == EWOULDBLOCK {
                throw fail(
                    IntakeError(
                        "another airlock intake (pid \(holder)) works on \(path): one intake per root", errno: e))
            }
            throw fail(.system("cannot lock \(path)/.airlock/lock", errno: e))
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(lock, 0)
        _ = pid.withUnsafeBytes { pwrite(lock, $0.baseAddress, $0.count, 0) }
        self.root = root
        incoming = fds[0]
        quarantine = fds[1]
        approved = fds[2]
        rejected = fds[3]
        state = fds[4]
        self.delivered = delivered
        lockFD = lock
    }

    deinit {
        for fd in [incoming, quarantine, approved, rejected, state, delivered, lockFD, root] {
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
