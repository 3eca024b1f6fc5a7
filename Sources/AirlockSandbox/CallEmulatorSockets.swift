import AirlockSystem
import AirlockTrace
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

// Socket calls performed for a notified caller: bind, connect and listen resolved beneath the sandbox's root, sends
// of the bytes the supervisor read once (with SCM_RIGHTS carried as the supervisor's own copies), and the bounded
// waits that keep the supervisor's thread from blocking. Part of `CallEmulator`: its invariants (at the top of
// CallEmulator.swift) hold here.

private typealias Call = CallEmulator.Call

extension CallEmulator.Call {
    // MARK: Sockets

    mutating func socketCall() -> Result<Outcome, Stop> {
        guard let socket = operands.descriptor else { return .failure(.errno(EBADF)) }
        if name == "listen" {
            let rc = listen(socket, Int32(truncatingIfNeeded: args[1]))
            return Call.answer(rc, 0)
        }
        // The address, with a path-named Unix socket replaced by a path the kernel resolves through a
        // descriptor opened beneath the sandbox's root.
        var address: [UInt8]? = operands.sockaddr
        if let a = address, a.count > 2, Int32(UInt16(a[0]) | UInt16(a[1]) << 8) == AF_UNIX, a[2] != 0 {
            let sunPath = Array(a[2...].prefix { $0 != 0 })
            let hostTid = caller.hostTid
            let operand = PathOperand(
                raw: sunPath, dirfd: Int32(AT_FDCWD), truncated: false,
                base: asSupervisor({ SyscallDecoder.link("/proc/\(hostTid)/cwd") }))
            var via: [UInt8]
            if name == "bind" {
                let p: (Int32, [UInt8])
                switch parent(operand) {
                case .success(let x): p = x
                case .failure(let s): return .failure(s)
                }
                if case .refused(let d) = checkEntry(p.0, p.1) { return .success(.refused(d)) }
                // The kernel keeps the path given to bind as the socket's name (getsockname, a peer's
                // getpeername): a privileged supervisor binds with the caller's own path from inside the
                // sandbox's root, so the name is what the caller asked for.
                if emulator.privileged {
                    let rc = bindInRoot(socket, a)
                    return Call.answer(rc, 0)
                }
                via = Array("/proc/thread-self/fd/\(p.0)/".utf8) + p.1
            } else {
                let object: Int32
                switch resolve(operand, lookupFlags: oPath | O_CLOEXEC) {
                case .success(let fd): object = fd
                case .failure(let s): return .failure(s)
                }
                if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
                via = Array("/proc/thread-self/fd/\(object)".utf8)
            }
            guard via.count < 108 else { return .failure(.errno(ENAMETOOLONG)) }
            address = [a[0], a[1]] + via + [0]
        }
        // Netlink judges an explicitly addressed message by the sender's capabilities alone, not the socket
        // opener's: sent by the supervisor that would be the supervisor's (an unprivileged supervisor owns the
        // sandbox's user namespace and has every capability in it). A message to the kernel goes without the
        // address (the same destination, judged by the caller's socket); to a multicast group, refused.
        if SyscallDecoder.socketDomain(socket) == AF_NETLINK, let a = address, a.count >= 12 {
            let groups = a.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }
            let port = a.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
            if groups != 0 { return .failure(.errno(EPERM)) }
            if port == 0 && (name == "sendto" || name == "sendmsg") { address = nil }
            if name == "connect" && port != 0 { return .failure(.errno(EPERM)) }
        }
        let wantsBlocking = fcntl(socket, F_GETFL) & O_NONBLOCK == 0
        switch name {
        case "bind":
            guard let address else { return .failure(.errno(EINVAL)) }
            let rc = withUmaskValue { CallEmulator.withSockaddr(address) { bind(socket, $0, $1) } }
            return Call.answer(rc, 0)
        case "connect":
            guard let address else { return .failure(.errno(EINVAL)) }
            // Bounded whatever the socket's flags and timeouts say by then (another thread of the caller can
            // change both while the connect waits): a timer of this thread interrupts it after a second.
            _ = airlock_interrupt_after(UInt32(CallEmulator.socketWaitMicroseconds / 1000))
            let rc = CallEmulator.boundedWait(socket, wantsBlocking) {
                CallEmulator.withSockaddr(address) { connect(socket, $0, $1) }
            }
            let connectErrno = errno
            airlock_interrupt_cancel()
            errno = connectErrno == EINTR ? ETIMEDOUT : connectErrno
            return Call.answer(rc, 0)
        default:
            return send(socket, address: address, wantsBlocking: wantsBlocking)
        }
    }

    /// bind(2) with the caller's address, resolved from the caller's working directory beneath the sandbox's
    /// root: this thread chroots into the sandbox for the call (it has its own fs struct) and comes back.
    mutating func bindInRoot(_ socket: Int32, _ address: [UInt8]) -> Int32 {
        let cwd: Int32
        switch directory(Int32(AT_FDCWD)) {
        case .success(let fd): cwd = fd
        case .failure:
            errno = ENOENT
            return -1
        }
        airlock_impersonate_end()
        let savedRoot = open("/", oPath | O_DIRECTORY | O_CLOEXEC)
        let savedCwd = open(".", oPath | O_DIRECTORY | O_CLOEXEC)
        guard savedRoot >= 0, savedCwd >= 0 else { abort() }
        defer {
            // Back to the supervisor's own root and directory; a thread that cannot get back must not go on.
            airlock_impersonate_end()
            guard fchdir(savedRoot) == 0, chroot(".") == 0, fchdir(savedCwd) == 0 else { abort() }
            close(savedRoot)
            close(savedCwd)
            _ = airlock_impersonate(emulator.hostUid, emulator.hostGid, 1)
        }
        // The caller's umask, read while this thread's /proc is still the host's.
        let mask = callerStatus()?.umask ?? 0o022
        guard fchdir(emulator.rootFd) == 0, chroot(".") == 0, fchdir(cwd) == 0 else { return -1 }
        guard airlock_impersonate(emulator.hostUid, emulator.hostGid, 1) == 0 else { return -1 }
        let savedMask = airlock_set_umask(mask)
        let rc = CallEmulator.withSockaddr(address) { bind(socket, $0, $1) }
        let bindErrno = errno
        _ = airlock_set_umask(savedMask)
        errno = bindErrno
        let e = errno
        errno = e
        return rc
    }

    /// sendto/sendmsg with the data, address and control messages read once.
    mutating func send(_ socket: Int32, address: [UInt8]?, wantsBlocking: Bool) -> Result<Outcome, Stop> {
        let decoder = SyscallDecoder(hostPid: caller.hostTid)
        var data: [UInt8] = []
        var type: Int32 = 0
        var size = socklen_t(4)
        _ = getsockopt(socket, SOL_SOCKET, SO_TYPE, &type, &size)
        let stream = type == Int32(SOCK_STREAM.rawValue)
        func gather(_ base: UInt64, _ length: UInt64) -> Bool {
            let room = CallEmulator.maxSendBytes - data.count
            let want = Int(min(length, UInt64(room)))
            guard want > 0 else { return length == 0 || stream }
            guard let chunk = asSupervisor({ decoder.read(base, count: want) }), chunk.count == want else {
                return false
            }
            data += chunk
            return length <= UInt64(room) || stream
        }
        var flags = Int32(truncatingIfNeeded: operands.flags)
        if name == "sendto" {
            guard gather(args[1], args[2]) else { return .failure(.errno(stream ? EFAULT : EMSGSIZE)) }
        } else {
            guard let header = operands.msghdr else { return .failure(.errno(EFAULT)) }
            let iov = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self) }
            let count = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self) }
            guard count <= 1024 else { return .failure(.errno(EMSGSIZE)) }
            if count > 0 {
                guard let vectors = asSupervisor({ decoder.read(iov, count: Int(count) * 16) }),
                    vectors.count == Int(count) * 16
                else {
                    return .failure(.errno(EFAULT))
                }
                for k in 0..<Int(count) {
                    let base = vectors.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: k * 16, as: UInt64.self) }
                    let length = vectors.withUnsafeBytes {
                        $0.loadUnaligned(fromByteOffset: k * 16 + 8, as: UInt64.self)
                    }
                    guard gather(base, length) else { return .failure(.errno(stream ? EFAULT : EMSGSIZE)) }
                    if data.count >= CallEmulator.maxSendBytes { break }
                }
            }
        }
        let callerAskedNoSignal = flags & Int32(MSG_NOSIGNAL) != 0
        // A broken pipe must signal the caller, not the supervisor.
        flags |= Int32(MSG_NOSIGNAL)
        let control = controlBytes ?? []
        // Never a blocking send, whatever the socket's flags say (another thread of the caller can change them
        // at any moment): MSG_DONTWAIT, and for a caller that asked to wait, at most one second of polling.
        let callerWaits = wantsBlocking && flags & Int32(MSG_DONTWAIT) == 0
        flags |= Int32(MSG_DONTWAIT)
        let sent: Int = CallEmulator.pollingUntilSent(socket, callerWaits) {
            data.withUnsafeMutableBytes { d in
                var vector = iovec(iov_base: d.baseAddress, iov_len: d.count)
                var message = msghdr()
                return withUnsafeMutablePointer(to: &vector) { v in
                    message.msg_iov = v
                    message.msg_iovlen = 1
                    var controlCopy = control
                    return controlCopy.withUnsafeMutableBytes { c in
                        if !control.isEmpty {
                            message.msg_control = c.baseAddress
                            message.msg_controllen = c.count
                        }
                        guard let address else { return sendmsg(socket, &message, flags) }
                        var a = address
                        return a.withUnsafeMutableBytes { n in
                            message.msg_name = n.baseAddress
                            message.msg_namelen = socklen_t(n.count)
                            return sendmsg(socket, &message, flags)
                        }
                    }
                }
            }
        }
        if sent < 0 {
            let e = errno
            if e == EPIPE && !callerAskedNoSignal, let status = callerStatus() {
                _ = airlock_tgkill(status.hostTgid, caller.hostTid, SIGPIPE)
            }
            return .failure(.errno(e))
        }
        return .success(.returned(Int64(sent)))
    }

    /// Copies the control messages of a sendmsg, replacing each SCM_RIGHTS descriptor by the supervisor's copy.
    /// Credentials (SCM_CREDENTIALS) cannot be sent on the caller's behalf: EPERM.
    mutating func translateControl(_ address: UInt64, _ length: Int) -> Result<([UInt8], [Int32]), Stop> {
        let decoder = SyscallDecoder(hostPid: caller.hostTid)
        guard var bytes = decoder.read(address, count: length), bytes.count == length else {
            return .failure(.errno(EFAULT))
        }
        var copies: [Int32] = []
        // The kernel takes at most SCM_MAX_FD (253) descriptors in one SCM_RIGHTS message: refuse more before
        // copying any, as it would.
        var scan = 0
        while scan + 16 <= bytes.count {
            let length = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: scan, as: UInt64.self) }
            guard length >= 16, length <= UInt64(bytes.count - scan) else { break }
            let level = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: scan + 8, as: Int32.self) }
            let type = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: scan + 12, as: Int32.self) }
            if level == SOL_SOCKET && type == 1 && (Int(length) - 16) / 4 > 253 { return .failure(.errno(EINVAL)) }
            scan += (Int(length) + 7) & ~7
        }
        var offset = 0
        while offset + 16 <= bytes.count {
            let rawLength = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
            guard rawLength <= UInt64(bytes.count) else { break }
            let cmsgLength = Int(rawLength)
            let level = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 8, as: Int32.self) }
            let type = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: Int32.self) }
            guard cmsgLength >= 16, offset + cmsgLength <= bytes.count else { break }
            if level == SOL_SOCKET && type == 1 /* SCM_RIGHTS */ {
                var at = offset + 16
                while at + 4 <= offset + cmsgLength {
                    let theirs = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: Int32.self) }
                    // Descriptors in flight are charged to the sender's user on the host, not to the sandbox:
                    // a bound per run on how many the supervisor passes for it.
                    guard emulator.passedDescriptors < emulator.maxPassedDescriptors else {
                        for fd in copies { close(fd) }
                        return .failure(.errno(ETOOMANYREFS))
                    }
                    guard let mine = decoder.copyDescriptor(theirs) else {
                        for fd in copies { close(fd) }
                        return .failure(.errno(EBADF))
                    }
                    emulator.passedDescriptors += 1
                    copies.append(mine)
                    withUnsafeBytes(of: mine) { bytes.replaceSubrange(at..<(at + 4), with: $0) }
                    at += 4
                }
            } else if level == SOL_SOCKET && type == 2 /* SCM_CREDENTIALS */ {
                for fd in copies { close(fd) }
                return .failure(.errno(EPERM))
            }
            offset += (cmsgLength + 7) & ~7
        }
        return .success((bytes, copies))
    }
}

extension CallEmulator {
    static func withSockaddr(_ address: [UInt8], _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        address.withUnsafeBytes { b in
            b.baseAddress!.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(address.count)) }
        }
    }

    /// Runs a non-blocking send again while it says EAGAIN and the socket becomes writable, for at most
    /// `socketWaitMicroseconds` when the caller asked to wait.
    static func pollingUntilSent(_ socket: Int32, _ callerWaits: Bool, _ body: () -> Int) -> Int {
        let until = monotonicNow() + UInt64(socketWaitMicroseconds) * 1000
        while true {
            let rc = body()
            guard rc < 0, errno == EAGAIN, callerWaits else { return rc }
            let now = monotonicNow()
            guard now < until else {
                errno = EAGAIN
                return -1
            }
            var p = pollfd(fd: socket, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, Int32((until - now) / 1_000_000) + 1)
        }
    }

    /// Runs a socket call that may wait (a full backlog, a full buffer) with a bounded send timeout on the socket,
    /// restored afterwards: the supervisor's thread never waits longer than `socketWaitMicroseconds`.
    static func boundedWait(_ socket: Int32, _ blocking: Bool, _ body: () -> Int32) -> Int32 {
        Int32(truncatingIfNeeded: boundedWaitInt(socket, blocking) { Int(body()) })
    }

    static func boundedWaitInt(_ socket: Int32, _ blocking: Bool, _ body: () -> Int) -> Int {
        guard blocking else { return body() }
        var saved = timeval()
        var size = socklen_t(MemoryLayout<timeval>.size)
        let hadTimeout = getsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &saved, &size) == 0
        let limit = socketWaitMicroseconds
        let current = saved.tv_sec * 1_000_000 + saved.tv_usec
        if current == 0 || current > limit {
            var bound = timeval(tv_sec: limit / 1_000_000, tv_usec: limit % 1_000_000)
            _ = setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &bound, socklen_t(MemoryLayout<timeval>.size))
        }
        let rc = body()
        let e = errno
        if hadTimeout { _ = setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &saved, socklen_t(MemoryLayout<timeval>.size)) }
        errno = e
        return rc
    }
}
