import AirlockSystem
import AirlockTrace
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// Reads a notified caller's memory and turns raw system-call arguments into `TraceArguments`.
///
/// Everything read here is hostile and may change while we read it: every read is bounded, and the supervisor
/// re-validates the notification id afterwards. Memory is read once: what the supervisor acts on (`CallOperands`,
/// `CallEmulator`) is what was decoded here, never a second read (docs/sandbox.md, "Notified calls").
struct SyscallDecoder {
    /// Longest path read from a caller.
    static let maxPath = 4096
    /// Most argv entries kept.
    static let maxArgs = 256
    /// Most argv bytes kept in all.
    static let maxArgvBytes = 64 * 1024

    let hostPid: pid_t

    // MARK: Memory

    /// Reads up to `count` bytes at `address` in the caller; fewer when a page is unmapped.
    func read(_ address: UInt64, count: Int) -> [UInt8]? {
        guard address != 0, count > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { airlock_read_process_memory(hostPid, $0.baseAddress, count, address) }
        guard n > 0 else { return nil }
        if n < count { out.removeSubrange(n...) }
        return out
    }

    /// Reads a NUL-terminated string's bytes, a page at a time so a string that ends before an unmapped page is
    /// still read.
    func bytes(_ address: UInt64, max: Int = SyscallDecoder.maxPath) -> ([UInt8], truncated: Bool)? {
        guard address != 0 else { return nil }
        var bytes: [UInt8] = []
        var at = address
        while bytes.count < max {
            let toPage = Int(4096 - (at % 4096))
            let want = Swift.min(toPage, max - bytes.count)
            guard let chunk = read(at, count: want), !chunk.isEmpty else { return bytes.isEmpty ? nil : (bytes, true) }
            if let nul = chunk.firstIndex(of: 0) {
                bytes.append(contentsOf: chunk[..<nul])
                return (bytes, false)
            }
            bytes.append(contentsOf: chunk)
            at &+= UInt64(chunk.count)
        }
        return (bytes, true)
    }

    /// Reads a NUL-terminated string for display (`PathText.display`: lossless, escaped).
    func string(_ address: UInt64, max: Int = SyscallDecoder.maxPath) -> (String, truncated: Bool)? {
        bytes(address, max: max).map { (PathText.display($0.0), $0.truncated) }
    }

    /// Reads a NULL-terminated pointer array of strings (argv), bounded.
    func stringArray(_ address: UInt64) -> ([String], truncated: Bool)? {
        guard address != 0 else { return nil }
        var result: [String] = []
        var total = 0
        for i in 0..<SyscallDecoder.maxArgs {
            guard let raw = read(address &+ UInt64(i * 8), count: 8), raw.count == 8 else { return (result, true) }
            let pointer = raw.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            if pointer == 0 { return (result, false) }
            guard
                let (s, cut) = string(
                    pointer, max: Swift.min(SyscallDecoder.maxPath, SyscallDecoder.maxArgvBytes - total))
            else {
                return (result, true)
            }
            result.append(s)
            total += s.utf8.count
            if cut || total >= SyscallDecoder.maxArgvBytes { return (result, true) }
        }
        return (result, true)
    }

    // MARK: Paths

    /// The caller's view of a path argument: absolute, lexically normalised, for display and policy. The bytes as
    /// read, and the directory they are relative to, go to `operand` for the supervisor to act on: the caller's
    /// memory is read once.
    func path(
        _ address: UInt64, dirfd: Int32 = Int32(AT_FDCWD), arguments: inout TraceArguments,
        operand: inout PathOperand?
    ) -> String? {
        guard let (raw, cut) = bytes(address) else {
            arguments.unreadable = "path"
            return nil
        }
        if cut { arguments.unreadable = "path longer than \(SyscallDecoder.maxPath) bytes" }
        var op = PathOperand(raw: raw, dirfd: dirfd, truncated: cut)
        defer { operand = op }
        if raw.first == UInt8(ascii: "/") { return PathText.display(PathText.normalize(raw)) }
        if dirfd != Int32(AT_FDCWD) { arguments.dirfd = dirfd }
        let base =
            dirfd == Int32(AT_FDCWD)
            ? SyscallDecoder.link("/proc/\(hostPid)/cwd") : SyscallDecoder.link("/proc/\(hostPid)/fd/\(dirfd)")
        op.base = base
        guard let base, base.first == UInt8(ascii: "/") else { return PathText.display(raw) }
        return PathText.display(PathText.normalize(base + [UInt8(ascii: "/")] + raw))
    }

    /// Same, for calls whose path is not acted on by the supervisor.
    func path(_ address: UInt64, dirfd: Int32 = Int32(AT_FDCWD), arguments: inout TraceArguments) -> String? {
        var ignored: PathOperand? = nil
        return path(address, dirfd: dirfd, arguments: &arguments, operand: &ignored)
    }

    /// The target of a symbolic link (here: the magic links of /proc), as bytes.
    static func link(_ path: String) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4097)
        let n = buffer.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: 4097) { readlink(path, $0, 4096) }
        }
        guard n > 0 else { return nil }
        return Array(buffer[0..<n])
    }

    // MARK: Sockets

    /// Decodes a `struct sockaddr` of `length` bytes, and returns the bytes read (at most 128: the size of
    /// `sockaddr_storage`; a longer length is the kernel's EINVAL).
    @discardableResult
    /// `socketFamily` is the family of the socket itself (from the supervisor's copy of it), which is what the
    /// kernel goes by: it, not the address's family field, is what `family` shows when known. An IPv4 socket takes an
    /// `AF_UNSPEC` address as IPv4, so such an address is decoded as one.
    func socketAddress(_ address: UInt64, length: UInt64, into a: inout TraceArguments, socketFamily: String? = nil)
        -> [UInt8]?
    {
        guard address != 0 else { return nil }
        let len = Int(Swift.min(length, 128))
        guard len >= 2, let raw = read(address, count: len), raw.count >= 2 else {
            a.unreadable = "socket address"
            return nil
        }
        defer { if length > 128 { a.unreadable = "socket address longer than 128 bytes" } }
        var family = Int32(UInt16(raw[0]) | UInt16(raw[1]) << 8)
        if family == AF_UNSPEC && socketFamily == "inet" { family = AF_INET }
        a.family = socketFamily ?? SyscallDecoder.familyName(family)
        switch family {
        case AF_INET where raw.count >= 8:
            a.port = Int(UInt16(raw[2]) << 8 | UInt16(raw[3]))
            a.address = raw[4..<8].map(String.init).joined(separator: ".")
        case AF_INET6 where raw.count >= 24:
            a.port = Int(UInt16(raw[2]) << 8 | UInt16(raw[3]))
            var text = [CChar](repeating: 0, count: 64)
            let bytes = Array(raw[8..<24])
            _ = bytes.withUnsafeBytes { inet_ntop(AF_INET6, $0.baseAddress, &text, 64) }
            a.address = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        case AF_UNIX:
            let path = raw.dropFirst(2)
            if path.first == 0 {
                a.address = "@" + PathText.display(Array(path.dropFirst()))
            } else {
                a.address = PathText.display(Array(path.prefix { $0 != 0 }))
            }
        default:
            break
        }
        return length > 128 ? nil : raw
    }

    /// A copy of the caller's descriptor `fd` in the supervisor (pidfd_getfd), close-on-exec; nil when it is not open.
    func copyDescriptor(_ fd: Int32) -> Int32? {
        // pidfd_open wants a thread-group leader; the caller may be any thread.
        let opened = airlock_pidfd_open(threadGroup() ?? hostPid)
        guard opened >= 0 else { return nil }
        let pidfd = FileDescriptor(opened)
        defer { pidfd.close() }
        let copy = airlock_pidfd_getfd(pidfd.rawValue, fd)
        return copy >= 0 ? copy : nil
    }

    /// The address family of a socket the supervisor holds.
    static func socketDomain(_ copy: Int32) -> Int32? {
        var domain: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &size) == 0 else { return nil }
        return domain
    }

    static func familyName(_ family: Int32) -> String {
        addressFamilies.first { $0.value == family }?.key ?? "af\(family)"
    }

    static func socketTypeName(_ type: UInt64) -> String {
        let base = Int32(truncatingIfNeeded: type) & 0xf
        let names: [Int32: String] = [1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"]
        return names[base] ?? "type\(base)"
    }

    // MARK: Flags

    static func openFlags(_ value: UInt64) -> String {
        let flags = Int32(truncatingIfNeeded: value)
        var parts: [String]
        switch flags & O_ACCMODE {
        case O_WRONLY: parts = ["O_WRONLY"]
        case O_RDWR: parts = ["O_RDWR"]
        default: parts = ["O_RDONLY"]
        }
        let named: [(Int32, String)] = [
            (O_CREAT, "O_CREAT"), (O_EXCL, "O_EXCL"), (O_NOCTTY, "O_NOCTTY"), (O_TRUNC, "O_TRUNC"),
            (O_APPEND, "O_APPEND"), (O_NONBLOCK, "O_NONBLOCK"), (O_DIRECTORY, "O_DIRECTORY"),
            (O_NOFOLLOW, "O_NOFOLLOW"), (O_CLOEXEC, "O_CLOEXEC"), (0o10000000, "O_PATH"), (0o20000000, "O_TMPFILE"),
        ]
        for (bit, name) in named where flags & bit == bit { parts.append(name) }
        return parts.joined(separator: "|")
    }

    /// Whether open flags ask to change the file system.
    static func opensForWrite(_ value: UInt64) -> Bool {
        let flags = Int32(truncatingIfNeeded: value)
        return flags & O_ACCMODE != O_RDONLY || flags & (O_CREAT | O_TRUNC | O_APPEND | 0o20000000) != 0
    }

    /// The number of a signal name (`SIGTERM` → 15), or nil.
    static func signalNumber(_ name: String) -> Int32? {
        (1..<32).first { signalName(UInt64($0)) == name }.map(Int32.init)
    }

    static func signalName(_ value: UInt64) -> String {
        let names = [
            "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
            "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
            "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF",
            "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
        ]
        let n = Int(truncatingIfNeeded: value)
        return n >= 0 && n < names.count ? names[n] : "SIG\(n)"
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    // MARK: Per system call

    /// Decodes the arguments of `name`. `args` are the six raw register values.
    func decode(_ name: String, _ args: [UInt64]) -> TraceArguments {
        var operands = CallOperands()
        defer { if let copy = operands.descriptor { close(copy) } }
        return decode(name, args, operands: &operands)
    }

    /// Decodes the arguments of `name` for the trace, and keeps in `operands` the bytes the supervisor needs to
    /// perform the call itself (`CallEmulator`): everything is read from the caller once.
    func decode(_ name: String, _ args: [UInt64], operands o: inout CallOperands) -> TraceArguments {
        var a = TraceArguments()
        let fd = { (i: Int) in Int32(truncatingIfNeeded: args[i]) }
        switch name {
        case "open":
            a.path = path(args[0], arguments: &a, operand: &o.path)
            o.flags = args[1]
            o.mode = args[2]
            a.flags = SyscallDecoder.openFlags(args[1])
            if SyscallDecoder.opensForWrite(args[1]) { a.mode = String(args[2] & 0o7777, radix: 8) }
        case "creat":
            a.path = path(args[0], arguments: &a, operand: &o.path)
            o.flags = UInt64(O_WRONLY | O_CREAT | O_TRUNC)
            o.mode = args[1]
            a.flags = "O_WRONLY|O_CREAT|O_TRUNC"
            a.mode = String(args[1] & 0o7777, radix: 8)
        case "openat":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
            o.flags = args[2]
            o.mode = args[3]
            a.flags = SyscallDecoder.openFlags(args[2])
            if SyscallDecoder.opensForWrite(args[2]) { a.mode = String(args[3] & 0o7777, radix: 8) }
        case "openat2":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
            // open_how is 24 bytes today; a larger size with non-zero extra bytes is the kernel's E2BIG.
            if args[3] >= 24, let how = read(args[2], count: 24), how.count == 24 {
                o.flags = how.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                o.mode = how.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }
                o.resolve = how.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self) }
                o.howSize = args[3]
                a.flags = SyscallDecoder.openFlags(o.flags)
                if o.resolve != 0 { a.flags! += " resolve=" + SyscallDecoder.hex(o.resolve) }
                a.openHowWrites = SyscallDecoder.opensForWrite(o.flags)
                if a.openHowWrites == true { a.mode = String(o.mode & 0o7777, radix: 8) }
            } else {
                a.unreadable = "open_how"
                o.path = nil
            }
        case "execve":
            a.path = path(args[0], arguments: &a)
            if let (argv, cut) = stringArray(args[1]) {
                a.argv = argv
                if cut { a.argvTruncated = true }
            }
        case "execveat":
            a.path = path(args[1], dirfd: fd(0), arguments: &a)
            if let (argv, cut) = stringArray(args[2]) {
                a.argv = argv
                if cut { a.argvTruncated = true }
            }
            a.flags = SyscallDecoder.hex(args[4])
        case "connect", "bind":
            a.fd = fd(0)
            socketFamilyOnly(fd(0), &a, &o)
            o.sockaddr = socketAddress(args[1], length: args[2], into: &a, socketFamily: a.family)
        case "sendto":
            a.fd = fd(0)
            o.flags = args[3]
            socketFamilyOnly(fd(0), &a, &o)
            if args[4] != 0 { o.sockaddr = socketAddress(args[4], length: args[5], into: &a, socketFamily: a.family) }
        case "sendmsg":
            a.fd = fd(0)
            o.flags = args[2]
            if let header = read(args[1], count: 56), header.count == 56 {
                o.msghdr = header
                let name = header.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                let length = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }
                socketFamilyOnly(fd(0), &a, &o)
                if name != 0 {
                    o.sockaddr = socketAddress(name, length: UInt64(length), into: &a, socketFamily: a.family)
                }
            } else {
                a.unreadable = "msghdr"
            }
        case "listen":
            a.fd = fd(0)
            socketFamilyOnly(fd(0), &a, &o)
        case "socket":
            a.family = SyscallDecoder.familyName(Int32(truncatingIfNeeded: args[0]))
            a.socketType = SyscallDecoder.socketTypeName(args[1])
        case "unlink", "rmdir", "truncate", "removexattr", "lremovexattr":
            a.path = path(args[0], arguments: &a, operand: &o.path)
        case "setxattr", "lsetxattr", "utime", "utimes":
            a.path = path(args[0], arguments: &a, operand: &o.path)
        case "unlinkat":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
            o.flags = args[2]
        case "futimesat":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
        case "utimensat":
            a.fd = fd(0)
            if args[1] != 0 { a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path) }
            o.flags = args[3]
        case "mkdir", "chmod":
            a.path = path(args[0], arguments: &a, operand: &o.path)
            o.mode = args[1]
            a.mode = String(args[1] & 0o7777, radix: 8)
        case "mkdirat", "fchmodat", "fchmodat2":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
            o.mode = args[2]
            a.mode = String(args[2] & 0o7777, radix: 8)
            if name == "fchmodat2" {
                o.flags = args[3]
                a.flags = SyscallDecoder.hex(args[3])
            }
        case "chown", "lchown":
            a.path = path(args[0], arguments: &a, operand: &o.path)
            o.owner = (args[1], args[2])
            o.flags = name == "lchown" ? UInt64(AT_SYMLINK_NOFOLLOW) : 0
            a.raw = [String(Int32(truncatingIfNeeded: args[1])), String(Int32(truncatingIfNeeded: args[2]))]
        case "fchownat":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
            o.owner = (args[2], args[3])
            o.flags = args[4]
            a.raw = [String(Int32(truncatingIfNeeded: args[2])), String(Int32(truncatingIfNeeded: args[3]))]
        case "rename", "link":
            a.path = path(args[0], arguments: &a, operand: &o.path)
            var b = TraceArguments()
            a.path2 = path(args[1], arguments: &b, operand: &o.path2)
        case "renameat", "renameat2", "linkat":
            a.path = path(args[1], dirfd: fd(0), arguments: &a, operand: &o.path)
            var b = TraceArguments()
            a.path2 = path(args[3], dirfd: fd(2), arguments: &b, operand: &o.path2)
            o.flags = name == "renameat" ? 0 : args[4]
        case "symlink":
            if let (target, cut) = bytes(args[0]) {
                a.path2 = PathText.display(target)
                if !cut { o.linkTarget = target }
            }
            a.path = path(args[1], arguments: &a, operand: &o.path)
        case "symlinkat":
            if let (target, cut) = bytes(args[0]) {
                a.path2 = PathText.display(target)
                if !cut { o.linkTarget = target }
            }
            a.path = path(args[2], dirfd: fd(1), arguments: &a, operand: &o.path)
        case "kill", "tkill":
            a.target = Int64(Int32(truncatingIfNeeded: args[0]))
            a.signal = SyscallDecoder.signalName(args[1])
        case "tgkill", "rt_tgsigqueueinfo":
            a.target = Int64(Int32(truncatingIfNeeded: args[0]))
            a.signal = SyscallDecoder.signalName(args[2])
        case "rt_sigqueueinfo":
            a.target = Int64(Int32(truncatingIfNeeded: args[0]))
            a.signal = SyscallDecoder.signalName(args[1])
        case "pidfd_send_signal":
            a.fd = fd(0)
            a.signal = SyscallDecoder.signalName(args[1])
            // The caller's descriptor table can change after this look: the supervisor sends the signal itself,
            // through its own copy of the pidfd (CallEmulator), so this is the process that gets it.
            if let copy = copyDescriptor(fd(0)) {
                o.descriptor = copy
                if let ids = SyscallDecoder.pidfdTargetIds(copy) {
                    a.target = Int64(ids.inside)
                    o.signalTargetHost = ids.host
                }
            }
            // A target the supervisor cannot name is refused (NotifyPolicy: signal-outside): the supervisor would
            // send from outside the sandbox's PID namespace, where even its PID 1 can be signalled.
            if a.target == nil { a.unreadable = "signal target" }
        case "memfd_create":
            if let (n, cut) = bytes(args[0], max: 256) {
                a.path = PathText.display(n)
                if !cut { o.linkTarget = n }
            }
            o.flags = args[1]
            a.flags = SyscallDecoder.hex(args[1])
        case "mount":
            a.path = string(args[1])?.0
            a.path2 = string(args[0])?.0
            a.flags = SyscallDecoder.hex(args[3])
        case "umount2", "pivot_root", "chroot", "swapon", "swapoff", "acct":
            a.path = string(args[0])?.0
        case "clone", "unshare":
            a.flags = SyscallDecoder.hex(args[0])
        case "ioctl":
            a.fd = fd(0)
            a.raw = [SyscallDecoder.hex(args[1] & 0xffff_ffff)]
        case "ptrace":
            a.raw = [String(args[0])]
            a.target = Int64(Int32(truncatingIfNeeded: args[1]))
        default:
            a.raw = args.map(SyscallDecoder.hex)
        }
        return a
    }

    /// The caller's thread-group id (its process), from `Tgid:` in /proc/TID/status.
    func threadGroup() -> pid_t? {
        guard let bytes = try? FileBytes.read("/proc/\(hostPid)/status", limit: 65536, what: "status") else {
            return nil
        }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Tgid:") {
            return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { pid_t($0) }
        }
        return nil
    }

    /// The target of the pidfd the supervisor holds as `fd`: its PID on the host (nil for a `/proc/PID` directory of
    /// the sandbox's own procfs, whose PID is the sandbox's by construction) and its PID as the `NSpid:` line's last
    /// field gives it. That last field is the sandbox's PID only when the process is in the sandbox's PID namespace:
    /// the caller checks that (`CallEmulator.inSandbox`), or a pidfd of a process outside (the supervisor itself,
    /// through `SO_PEERPIDFD`) would look like an ordinary target.
    static func pidfdTargetIds(_ fd: Int32) -> (host: pid_t?, inside: Int32)? {
        // A /proc/PID directory descriptor also works as a pidfd: its name in the sandbox's procfs is the PID.
        if let name = link("/proc/thread-self/fd/\(fd)"), name.hasPrefix("/proc/") {
            let digits = name.dropFirst(6)
            if !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }),
                let pid = Int32(String(decoding: digits, as: UTF8.self))
            {
                return (nil, pid)
            }
        }
        guard let bytes = try? FileBytes.read("/proc/thread-self/fdinfo/\(fd)", limit: 4096, what: "fdinfo") else {
            return nil
        }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("NSpid:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst()
            guard let first = fields.first.flatMap({ pid_t($0) }), let last = fields.last.flatMap({ Int32($0) }) else {
                return nil
            }
            return (first, last)
        }
        return nil
    }

    /// The family of the caller's socket `fd`, from a copy the supervisor keeps in `operands.descriptor`: the
    /// supervisor acts on that copy, so the socket judged is the socket used, whatever the caller's descriptor
    /// table holds by then.
    private func socketFamilyOnly(_ fd: Int32, _ a: inout TraceArguments, _ o: inout CallOperands) {
        guard let copy = copyDescriptor(fd) else { return }
        if let old = o.descriptor { close(old) }
        o.descriptor = copy
        if let f = SyscallDecoder.socketDomain(copy) { a.family = SyscallDecoder.familyName(f) }
    }
}
