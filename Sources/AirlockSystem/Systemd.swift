#if canImport(Glibc)
    import Glibc
#endif

/// The parts of systemd's service protocol airlockd speaks: readiness and watchdog notifications on
/// `$NOTIFY_SOCKET` (sd_notify), and socket activation (`$LISTEN_FDS`).
public enum Systemd {
    /// Sends `state` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`) to `$NOTIFY_SOCKET`, if set. Returns
    /// whether it was sent.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        guard let env = getenv("NOTIFY_SOCKET") else { return false }
        var path = Array(String(cString: env).utf8)
        guard !path.isEmpty, path.count < 108, path[0] == UInt8(ascii: "/") || path[0] == UInt8(ascii: "@") else {
            return false
        }
        if path[0] == UInt8(ascii: "@") { path[0] = 0 }  // the abstract namespace
        guard
            let fd = try? FileDescriptor.check(
                socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0), "socket")
        else { return false }
        defer { fd.close() }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes {
                    sendto(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length)
                }
            }
        }
        return sent == message.count
    }

    /// Half the watchdog interval systemd asked for (`$WATCHDOG_USEC`, for this process), in nanoseconds.
    public static func watchdogIntervalNs() -> UInt64? {
        guard let usec = getenv("WATCHDOG_USEC").flatMap({ UInt64(String(cString: $0)) }), usec > 0 else { return nil }
        if let pid = getenv("WATCHDOG_PID").flatMap({ Int32(String(cString: $0)) }), pid != getpid() { return nil }
        return usec * 1000 / 2
    }

    /// The listening socket systemd passed (socket activation: `$LISTEN_PID` is this process, `$LISTEN_FDS` ≥ 1):
    /// descriptor 3. The variables are removed so that children do not see them.
    public static func listenFD() -> Int32? {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid(),
            let count = getenv("LISTEN_FDS").flatMap({ Int(String(cString: $0)) }), count >= 1
        else { return nil }
        let fd: Int32 = 3
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }
}
