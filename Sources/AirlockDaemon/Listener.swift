internal import AirlockSystem
internal import CDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// A Unix socket's path as a `sockaddr_un`: written once here for the listener and the client.
struct UnixSocketAddress {
    private var address = sockaddr_un()
    private let length: socklen_t

    /// Nil when `path` is empty or too long for `sun_path`.
    init?(_ path: String) {
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
    }

    /// A new stream socket (close-on-exec, and non-blocking when asked).
    static func streamSocket(nonBlocking: Bool = false) throws(SystemCallError) -> FileDescriptor {
        let flags =
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return try FileDescriptor.check(socket(AF_UNIX, flags, 0), "socket")
    }

    /// `connect`; true when it connected (errno tells why not).
    func connect(_ fd: FileDescriptor) -> Bool {
        withSockaddr { Glibc.connect(fd.rawValue, $0, length) } == 0
    }

    /// `bind`; true when it bound.
    func bind(_ fd: FileDescriptor) -> Bool {
        withSockaddr { Glibc.bind(fd.rawValue, $0, length) } == 0
    }

    private func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>) -> T) -> T {
        withUnsafePointer(to: address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }
}

/// airlockd's listening socket: the one systemd passed (socket activation) or one it made at the configured path.
struct Listener {
    /// The listening descriptor (non-blocking, close-on-exec).
    let fd: FileDescriptor
    /// The socket file this daemon made (and removes when it stops); nil under socket activation.
    let ownedPath: String?
    /// The device and inode of that file when it was made: at the stop, a file at the path that is another (a newer
    /// daemon replaced ours as stale while this one was still stopping) is left alone.
    var ownedFile: (dev: UInt, ino: UInt)? = nil

    /// Takes systemd's socket when there is one, else makes the socket file at `config.socketPath` with access for
    /// `group` (0660) or the daemon's user alone (0600).
    static func open(config: DaemonConfig, group: gid_t?) throws(ConfigError) -> Listener {
        if let passed = Systemd.listenFD() {
            // Anything but a listening Unix stream socket (Accept=yes passes a connected one, ListenDatagram= or
            // ListenStream=PORT other kinds) would leave poll reporting it readable while accept fails: a spin.
            guard isListeningUnixStream(passed) else {
                throw ConfigError(
                    "the socket systemd passed (descriptor 3) is not a listening Unix stream socket: the socket unit needs ListenStream=/path and Accept=no"
                )
            }
            Log.write(.info, "listening on the socket systemd passed (descriptor 3)")
            return Listener(fd: FileDescriptor(passed), ownedPath: nil)
        }
        let fd = try listen(path: config.socketPath, group: group)
        Log.write(.info, "listening on \(config.socketPath)")
        var st = stat()
        let made = lstat(config.socketPath, &st) == 0 ? (dev: UInt(st.st_dev), ino: UInt(st.st_ino)) : nil
        return Listener(fd: FileDescriptor(fd), ownedPath: config.socketPath, ownedFile: made)
    }

    /// Where it answers, for the status line systemd shows.
    var shownName: String { ownedPath ?? "the systemd socket" }

    /// Stops listening: the socket file goes first, so that a client trying it meanwhile gets ENOENT, not a hang.
    func close() {
        if let ownedPath {
            var st = stat()
            let same =
                lstat(ownedPath, &st) == 0
                && ownedFile.map { $0.dev == UInt(st.st_dev) && $0.ino == UInt(st.st_ino) } ?? false
            if same { unlink(ownedPath) }
        }
        fd.close()
    }

    /// The next waiting connection (non-blocking, close-on-exec), or nil with errno set (EAGAIN when none waits).
    func accept() -> FileDescriptor? {
        let connection = airlock_accept(fd.rawValue)
        return connection >= 0 ? FileDescriptor(connection) : nil
    }

    /// Whether `fd` is a Unix stream socket in the listening state.
    static func isListeningUnixStream(_ fd: Int32) -> Bool {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        return option(SO_DOMAIN) == AF_UNIX && option(SO_TYPE) == Int32(SOCK_STREAM.rawValue)
            && option(SO_ACCEPTCONN) == 1
    }

    /// Creates the socket file: a stale one is replaced, a live one is an error. Mode 0660 with the `airlock` group
    /// when it exists (0600 otherwise), matching who may connect.
    static func listen(path: String, group: gid_t?) throws(ConfigError) -> Int32 {
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !parent.isEmpty { _ = mkdir(parent, 0o755) }
        guard let address = UnixSocketAddress(path) else { throw ConfigError("socket path too long: \(path)") }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw ConfigError("\(path) exists and is not a socket") }
            let live = (try? UnixSocketAddress.streamSocket())?.closeAfter { address.connect($0) } ?? false
            if live { throw ConfigError("another airlockd is listening on \(path)") }
            unlink(path)
        }
        let fd: FileDescriptor
        do {
            fd = try UnixSocketAddress.streamSocket(nonBlocking: true)
        } catch {
            throw ConfigError(error.description, errno: error.errno)
        }
        let old = umask(0o177)
        let bound = address.bind(fd)
        let bindErrno = Errno.current
        umask(old)
        guard bound else {
            fd.close()
            throw ConfigError("cannot bind \(path): \(bindErrno)", errno: bindErrno)
        }
        if let group, chown(path, uid_t.max, group) == 0 { chmod(path, 0o660) }
        guard Glibc.listen(fd.rawValue, 256) == 0 else {
            let error = SystemCallError("listen \(path)")
            fd.close()
            throw ConfigError(error.description, errno: error.errno)
        }
        return fd.rawValue
    }
}
