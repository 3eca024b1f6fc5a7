import AirlockSystem
internal import CSandbox
#if canImport(Glibc)
import Glibc
#endif

private let oPath = airlock_o_path()
private let atEmptyPath = airlock_at_empty_path()

/// Performs allowed notified calls in the supervisor, on the sandboxed caller's behalf, so that what the kernel does
/// is exactly what the supervisor judged and recorded.
///
/// Answering a notification with "continue" lets the kernel read the caller's memory again, after the supervisor
/// has judged it: another thread of the caller can swap a path, open flags or a socket address in between. So an
/// allowed call whose effect depends on the caller's memory or descriptor table is never continued. The supervisor
/// performs it with the bytes it read once, as the sandbox's user, resolving every path beneath the sandbox's root,
/// and hands the result back: a descriptor installed with `SECCOMP_IOCTL_NOTIF_ADDFD`, a value or an
/// errno in the response. Where it cannot (a later `execve`), the call is continued and its event says so.
///
/// Security invariants (docs/sandbox.md, "Notified calls"):
/// - every path a caller names is resolved with `RESOLVE_IN_ROOT` from the sandbox's root, or with the caller's own
///   `RESOLVE_BENEATH`/`RESOLVE_IN_ROOT` from its own directory; nothing the caller controls is ever resolved
///   against the supervisor's root, and no symlink's target is followed outside such a resolution;
/// - the call runs under the sandbox user's file-system ids with no supplementary group and no effective
///   capability (`airlock_impersonate`), so the kernel grants exactly what it would grant the caller;
/// - what is checked against the policy is the path the kernel actually resolved (the opened object's own name),
///   checked before any effect (creation, truncation) takes place;
/// - nothing the supervisor does here can block: opens of FIFOs and devices are non-blocking, sends and connects
///   have a bounded timeout.
final class CallEmulator {
    /// What the supervisor did with an allowed call.
    enum Outcome {
        /// Not performed here: the kernel continues the call (its decision rests on register values only).
        case passThrough
        /// The policy refused it once the supervisor saw what the path resolves to.
        case refused(Decision)
        /// Performed: what the call returns (a descriptor already installed in the caller by ADDFD, a count, 0).
        case returned(Int64)
        /// Performed, and the kernel said no.
        case failed(Int32)
    }

    /// The system calls the supervisor performs itself when they are allowed.
    static let performed: Set<String> = [
        "open", "openat", "openat2", "creat",
        "unlink", "unlinkat", "rmdir", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "link", "linkat",
        "symlink", "symlinkat", "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat",
        "truncate", "utime", "utimes", "futimesat", "utimensat",
        "setxattr", "lsetxattr", "removexattr", "lremovexattr",
        "connect", "bind", "listen", "sendto", "sendmsg",
        "memfd_create", "pidfd_send_signal",
    ]

    /// Longest wait for a connect or a send the supervisor performs (a full backlog or buffer).
    static let socketWaitMicroseconds = 1_000_000
    /// Most bytes one emulated send carries (a stream send may be partial; a larger datagram is `EMSGSIZE`).
    static let maxSendBytes = 256 * 1024

    private let listener: Int32
    fileprivate let rootFd: Int32
    fileprivate let hostUid: UInt32
    fileprivate let hostGid: UInt32
    private let insideUid: UInt32
    private let insideGid: UInt32
    fileprivate let privileged: Bool
    /// The sandbox's `RLIMIT_FSIZE`.
    fileprivate let fileSizeLimit: UInt64
    /// Descriptors passed with SCM_RIGHTS for the sandbox so far, and the most per run (four times its open files).
    fileprivate var passedDescriptors = 0
    fileprivate let maxPassedDescriptors: Int

    /// - Parameters:
    ///   - sandboxPid: the sandbox's PID 1 on the host, whose root every caller shares (chroot is refused).
    private let sandboxPid: pid_t

    init(listener: Int32, sandboxPid: pid_t, profile: Profile) throws(SandboxError) {
        self.listener = listener
        self.sandboxPid = sandboxPid
        let ids = profile.sandbox.user.hostIDs
        hostUid = ids.uid
        hostGid = ids.gid
        insideUid = profile.sandbox.user.uid
        insideGid = profile.sandbox.user.gid
        privileged = geteuid() == 0
        fileSizeLimit = UInt64(max(0, profile.sandbox.limits.fileSizeBytes))
        maxPassedDescriptors = Int(clamping: max(64, profile.sandbox.limits.openFiles)) * 4
        rootFd = open("/proc/\(sandboxPid)/root", oPath | O_DIRECTORY | O_CLOEXEC)
        guard rootFd >= 0 else { throw SandboxError(.supervisor, "cannot open the sandbox's root", errno: .current) }
        // This thread's umask becomes the caller's for each call that creates something; give the thread its own
        // so the supervisor's other threads keep theirs.
        // (deinit closes rootFd if this throws: the object is fully initialised by then.)
        guard airlock_private_fs() == 0 else {
            throw SandboxError(.supervisor, "unshare(CLONE_FS) for the notification thread", errno: .current)
        }
    }

    deinit { close(rootFd) }

    /// The sandbox's PID namespace (device and inode of PID 1's `ns/pid`).
    private lazy var sandboxPidNamespace: (UInt64, UInt64)? = CallEmulator.pidNamespace(of: sandboxPid)

    private static func pidNamespace(of pid: pid_t) -> (UInt64, UInt64)? {
        var st = stat()
        guard stat("/proc/\(pid)/ns/pid", &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Whether the host process `pid` is in the sandbox's PID namespace. The kernel refuses a signal through a pidfd
    /// of a process outside the sender's namespace; the supervisor, outside itself, must refuse it for the sandbox.
    func inSandbox(_ pid: pid_t) -> Bool {
        guard let mine = sandboxPidNamespace, let theirs = CallEmulator.pidNamespace(of: pid) else { return false }
        return mine == theirs
    }

    /// The caller, as the supervisor needs it for one call.
    struct Caller {
        let id: UInt64
        let hostTid: pid_t
        /// `Tgid`, `NStgid`, `NSpid` (last) and `Umask` of /proc/TID/status, read when needed.
        var status: (hostTgid: pid_t, nsTgid: pid_t, nsTid: pid_t, umask: UInt32)?
    }

    /// Performs `name` if it is one the supervisor performs. `recheck` is the policy applied again to the arguments
    /// with the resolved path(s) (`resolved`, `resolved2` of `trace`), before the call has any effect.
    func perform(
        _ name: String, _ args: [UInt64], _ o: CallOperands, trace: inout TraceArguments, caller: Caller,
        recheck: @escaping (TraceArguments) -> Decision
    ) -> Outcome {
        guard CallEmulator.performed.contains(name) else { return .passThrough }
        var call = Call(emulator: self, name: name, args: args, operands: o, caller: caller, trace: trace, recheck: recheck)
        let outcome = call.run()
        trace = call.trace
        return outcome
    }

    /// One call being performed: holds the descriptors it opens and closes them at the end.
    private struct Call {
        let emulator: CallEmulator
        let name: String
        let args: [UInt64]
        let operands: CallOperands
        var caller: Caller
        var trace: TraceArguments
        let recheck: (TraceArguments) -> Decision
        var owned: [Int32] = []

        init(
            emulator: CallEmulator, name: String, args: [UInt64], operands: CallOperands, caller: Caller,
            trace: TraceArguments, recheck: @escaping (TraceArguments) -> Decision
        ) {
            self.emulator = emulator
            self.name = name
            self.args = args
            self.operands = operands
            self.caller = caller
            self.trace = trace
            self.recheck = recheck
        }

        mutating func run() -> Outcome {
            defer { for fd in owned { close(fd) } }
            // Steps that need the supervisor's own rights (copying the caller's descriptors) happen before the
            // switch to the sandbox user; everything that touches the sandbox's files after it.
            var prepared: Prepared
            switch prepare() {
            case .success(let p): prepared = p
            case .failure(let e): return e.outcome
            }
            guard airlock_impersonate(emulator.hostUid, emulator.hostGid, emulator.privileged ? 1 : 0) == 0 else {
                return .failed(EPERM)
            }
            defer { airlock_impersonate_end() }
            switch act(&prepared) {
            case .success(let outcome): return outcome
            case .failure(let e): return e.outcome
            }
        }

        // MARK: Before the switch

        struct Prepared {
            var descriptors: [Int32] = []
        }

        /// Why a call stops: an errno for the caller, or a refusal by the policy.
        struct Stop: Error {
            let outcome: Outcome
            static func errno(_ e: Int32) -> Stop { Stop(outcome: .failed(e)) }
        }

        mutating func prepare() -> Result<Prepared, Stop> {
            var p = Prepared()
            if name == "sendmsg", let header = operands.msghdr {
                // SCM_RIGHTS carries descriptor numbers of the caller's table: the supervisor sends its own copies.
                let control = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 32, as: UInt64.self) }
                let controlLength = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 40, as: UInt64.self) }
                if control != 0 && controlLength > 0 {
                    switch translateControl(control, Int(min(controlLength, 65536))) {
                    case .success(let (bytes, fds)):
                        p.descriptors = fds
                        owned += fds
                        controlBytes = bytes
                    case .failure(let e): return .failure(e)
                    }
                }
            }
            return .success(p)
        }

        var controlBytes: [UInt8]? = nil

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

        // MARK: As the sandbox's user

        mutating func act(_ p: inout Prepared) -> Result<Outcome, Stop> {
            switch name {
            case "open", "openat", "creat", "openat2":
                return openFile()
            case "unlink", "rmdir", "unlinkat":
                let flags = name == "rmdir" ? AT_REMOVEDIR : (name == "unlink" ? 0 : Int32(truncatingIfNeeded: operands.flags))
                return onEntry(operands.path, check: true) { parent, entry in unlinkat(parent, entry, flags) }
            case "mkdir", "mkdirat":
                return withUmask {
                    let mode = mode_t(truncatingIfNeeded: $0.operands.mode & 0o7777)
                    return $0.onEntry($0.operands.path, check: true) { parent, entry in mkdirat(parent, entry, mode) }
                }
            case "symlink", "symlinkat":
                guard let target = operands.linkTarget else { return .failure(.errno(ENAMETOOLONG)) }
                return onEntry(operands.path, check: true) { parent, entry in
                    (target + [0]).withUnsafeBufferPointer { t in
                        t.baseAddress!.withMemoryRebound(to: CChar.self, capacity: t.count) { symlinkat($0, parent, entry) }
                    }
                }
            case "rename", "renameat", "renameat2", "link", "linkat":
                return twoEntries()
            case "chmod", "fchmodat", "fchmodat2":
                guard operands.mode & 0o6000 == 0 else { return .failure(.errno(EPERM)) }
                let mode = mode_t(truncatingIfNeeded: operands.mode & 0o7777)
                let flags = name == "fchmodat2" ? Int32(truncatingIfNeeded: operands.flags) : 0
                guard flags & ~(AT_SYMLINK_NOFOLLOW | atEmptyPath) == 0 else { return .failure(.errno(EINVAL)) }
                if flags & atEmptyPath != 0, operands.path?.raw.isEmpty ?? true {
                    return onDescriptorItself { object in CallEmulator.onMagic(object) { fchmodat(AT_FDCWD, $0, mode, 0) } }
                }
                // Linux cannot change a symlink's own mode: EOPNOTSUPP, as fchmodat2 says for one.
                return onObject(operands.path, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { fd in
                    var st = stat()
                    if fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK {
                        errno = EOPNOTSUPP
                        return -1
                    }
                    return CallEmulator.onMagic(fd) { fchmodat(AT_FDCWD, $0, mode, 0) }
                }
            case "chown", "lchown", "fchownat":
                return changeOwner()
            case "truncate":
                let length = off_t(truncatingIfNeeded: args[1])
                guard length >= 0 else { return .failure(.errno(EINVAL)) }
                // The sandbox's own RLIMIT_FSIZE, which the supervisor's process does not have: EFBIG and SIGXFSZ,
                // as the kernel answers the sandbox.
                if UInt64(length) > emulator.fileSizeLimit {
                    if let status = callerStatus() { _ = airlock_tgkill(status.hostTgid, caller.hostTid, SIGXFSZ) }
                    return .failure(.errno(EFBIG))
                }
                // Through a non-blocking open: truncate(2) would wait for a lease the sandbox holds to break.
                return onObject(operands.path, follow: true) { fd in
                    let writable = CallEmulator.onMagic(fd) { open($0, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
                    guard writable >= 0 else { return -1 }
                    defer { close(writable) }
                    return ftruncate(writable, length)
                }
            case "utimensat" where args[1] == 0:
                // futimens: on a descriptor the caller holds, nothing named (the kernel continues it).
                return .success(.passThrough)
            case "utime", "utimes", "futimesat", "utimensat":
                return changeTimes()
            case "setxattr", "lsetxattr", "removexattr", "lremovexattr":
                return changeAttribute()
            case "connect", "bind", "sendto", "sendmsg", "listen":
                return socketCall()
            case "memfd_create":
                guard let n = operands.linkTarget else { return .failure(.errno(EFAULT)) }
                let flags = UInt32(truncatingIfNeeded: operands.flags)
                let fd = CallEmulator.withPath(n) { airlock_memfd_create($0, flags | airlock_mfd_cloexec()) }
                guard fd >= 0 else { return .failure(.errno(errno)) }
                owned.append(fd)
                return install(fd, cloexec: flags & airlock_mfd_cloexec() != 0)
            case "pidfd_send_signal":
                guard let pidfd = operands.descriptor else { return .failure(.errno(EBADF)) }
                // From inside, the namespace's PID 1 never gets a signal it has no handler for (it has none);
                // from the supervisor it would: mimic the kernel's answer to the caller instead.
                if trace.target == 1 { return .success(.returned(0)) }
                let rc = airlock_pidfd_signal(pidfd, Int32(truncatingIfNeeded: args[1]), UInt32(truncatingIfNeeded: args[3]))
                return Call.answer(rc, 0)
            default:
                return .success(.passThrough)
            }
        }

        // MARK: Opens

        mutating func openFile() -> Result<Outcome, Stop> {
            guard let path = operands.path else { return .failure(.errno(EFAULT)) }
            let flags = Int32(truncatingIfNeeded: operands.flags)
            let tmpfile: Int32 = 0o20000000
            if name == "openat2" {
                // The kernel's own checks of open_how (unknown flags or resolve bits, mode without O_CREAT).
                let knownResolve = airlock_resolve_beneath() | airlock_resolve_in_root() | airlock_resolve_no_symlinks()
                    | airlock_resolve_no_magiclinks() | airlock_resolve_no_xdev() | 0x20 /* RESOLVE_CACHED */
                if operands.resolve & ~knownResolve != 0 || operands.flags >> 32 != 0 { return .failure(.errno(EINVAL)) }
                if flags & (O_CREAT | tmpfile) == 0 && operands.mode != 0 { return .failure(.errno(EINVAL)) }
            }
            let creates = flags & O_CREAT != 0
            if creates || flags & tmpfile == tmpfile, operands.mode & 0o6000 != 0 {
                return .failure(.errno(EPERM))
            }
            if !creates && flags & (O_TRUNC | tmpfile) == 0 && flags & oPath == 0 {
                // Nothing an open without O_CREAT, O_TRUNC or O_TMPFILE does has an effect before the descriptor is
                // used (FIFOs and devices are opened non-blocking): open it at once, judge what was opened, and close
                // it unseen if the policy refuses.
                let direct = (flags & ~O_NOCTTY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
                let fd: Int32
                switch resolve(path, lookupFlags: direct) {
                case .success(let d): fd = d
                case .failure(let stop): return .failure(stop)
                }
                if case .refused(let d) = check(resolvedOf: fd) { return .success(.refused(d)) }
                if flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags & ~(O_NONBLOCK | O_ASYNC)) }
                return install(fd, cloexec: flags & O_CLOEXEC != 0)
            }
            for attempt in 0..<2 {
                // Step 1: find the object, with no effect on it (oPath).
                var lookup = oPath | O_CLOEXEC | (flags & (O_NOFOLLOW | O_DIRECTORY))
                if creates && flags & O_EXCL != 0 { lookup |= O_NOFOLLOW }
                let found = resolve(path, lookupFlags: lookup)
                var object: Int32
                switch found {
                case .success(let fd):
                    object = fd
                    if creates && flags & O_EXCL != 0 { return .failure(.errno(EEXIST)) }
                case .failure(let stop):
                    guard creates, case .failed(ENOENT) = stop.outcome else { return .failure(stop) }
                    // Step 2: create it, exclusively, in the directory resolved beneath the root.
                    switch create(path, flags: flags) {
                    case .success(let fd): return install(fd, cloexec: flags & O_CLOEXEC != 0)
                    case .failure(let s):
                        if case .failed(EEXIST) = s.outcome, attempt == 0, flags & O_EXCL == 0 { continue }
                        return .failure(s)
                    }
                }
                // Step 3: judge what the kernel found, then open it for real through the descriptor.
                if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
                var st = stat()
                guard fstat(object, &st) == 0 else { return .failure(.errno(errno)) }
                if st.st_mode & S_IFMT == S_IFLNK { return .failure(.errno(ELOOP)) }
                if flags & oPath != 0 {
                    // ADDFD cannot install an O_PATH file (the kernel's fget skips them): the caller gets a read-only
                    // descriptor of the same object, opened as the sandbox's user (docs/sandbox.md).
                    let plain = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (st.st_mode & S_IFMT == S_IFDIR ? O_DIRECTORY : 0)
                    let fd = CallEmulator.onMagic(object) { open($0, plain) }
                    guard fd >= 0 else { return .failure(.errno(errno)) }
                    owned.append(fd)
                    return install(fd, cloexec: flags & O_CLOEXEC != 0)
                }
                var reopen = (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY)) | O_CLOEXEC | O_NOCTTY
                // A FIFO or a device could block the open, and so could a lease another process of the sandbox holds
                // on the file (O_NONBLOCK makes the lease break EWOULDBLOCK): this thread serves the whole sandbox.
                let addedNonBlock = flags & O_NONBLOCK == 0
                reopen |= O_NONBLOCK
                let createMode = mode_t(truncatingIfNeeded: operands.mode & 0o7777)
                let fd = flags & tmpfile == tmpfile
                    ? withUmaskValue { CallEmulator.onMagic(object) { open($0, reopen, createMode) } }
                    : CallEmulator.onMagic(object) { open($0, reopen) }
                guard fd >= 0 else { return .failure(.errno(errno == ENXIO && addedNonBlock ? ENXIO : errno)) }
                owned.append(fd)
                if addedNonBlock { _ = fcntl(fd, F_SETFL, flags & ~(O_NONBLOCK | O_ASYNC)) }
                return install(fd, cloexec: flags & O_CLOEXEC != 0)
            }
            return .failure(.errno(EEXIST))
        }

        /// Creates the file `path` names, exclusively, and returns it open.
        mutating func create(_ path: PathOperand, flags: Int32) -> Result<Int32, Stop> {
            let mode = mode_t(truncatingIfNeeded: operands.mode & 0o7777)
            var created: Int32 = -1
            let result = withUmask { call -> Result<Outcome, Stop> in
                call.onEntry(path, check: true) { parent, entry in
                    let fd = airlock_openat2(
                        parent, entry, UInt64(UInt32(bitPattern: (flags & ~O_NOFOLLOW) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)),
                        UInt64(mode), airlock_resolve_beneath() | airlock_resolve_no_symlinks()
                    )
                    created = fd
                    return fd >= 0 ? 0 : -1
                }
            }
            if created >= 0 { owned.append(created) }
            switch result {
            case .success(.returned): return .success(created)
            case .success(let other): return .failure(Stop(outcome: other))
            case .failure(let s): return .failure(s)
            }
        }

        // MARK: Resolution

        /// Opens what `path` names with `lookupFlags` (oPath), resolved as the caller's kernel would: from the
        /// sandbox's root (`RESOLVE_IN_ROOT`), or scoped to the caller's own directory when it asked for that.
        mutating func resolve(_ path: PathOperand, lookupFlags: Int32) -> Result<Int32, Stop> {
            guard !path.truncated else { return .failure(.errno(ENAMETOOLONG)) }
            let passThrough = operands.resolve & (airlock_resolve_no_symlinks() | airlock_resolve_no_magiclinks() | airlock_resolve_no_xdev())
            let scoped = operands.resolve & (airlock_resolve_beneath() | airlock_resolve_in_root())
            let start: Int32
            var target: [UInt8]
            var resolveFlags: UInt64
            if scoped != 0 {
                switch directory(path.dirfd) {
                case .success(let d): start = d
                case .failure(let s): return .failure(s)
                }
                target = path.raw
                resolveFlags = scoped | passThrough
            } else {
                guard var absolute = path.absolute else { return .failure(.errno(path.raw.isEmpty ? ENOENT : ENOTDIR)) }
                switch magic(&absolute, lookupFlags: lookupFlags) {
                case .some(let r): return r
                case .none: break
                }
                start = emulator.rootFd
                target = absolute
                resolveFlags = airlock_resolve_in_root() | passThrough
            }
            if target.isEmpty { target = [UInt8(ascii: ".")] }
            let fd = CallEmulator.withPath(target) {
                airlock_openat2(start, $0, UInt64(UInt32(bitPattern: lookupFlags)), 0, resolveFlags)
            }
            guard fd >= 0 else { return .failure(.errno(errno)) }
            owned.append(fd)
            return .success(fd)
        }

        /// The caller's directory `dirfd` (or working directory), open oPath.
        mutating func directory(_ dirfd: Int32) -> Result<Int32, Stop> {
            let link = dirfd == Int32(AT_FDCWD) ? "/proc/\(caller.hostTid)/cwd" : "/proc/\(caller.hostTid)/fd/\(dirfd)"
            let fd = asSupervisor { open(link, oPath | O_CLOEXEC) }
            guard fd >= 0 else { return .failure(.errno(errno == ENOENT ? EBADF : errno)) }
            owned.append(fd)
            return .success(fd)
        }

        /// Paths through /proc's magic links name the *caller's* process (`/proc/self`, `/dev/fd/N`,
        /// `/proc/PID/fd/N`): the supervisor is not in the sandbox's PID namespace, so it rewrites them to the
        /// caller's PID and opens descriptor links from the host's /proc, whose ptrace checks then apply to the
        /// sandbox's user as they would inside. Returns nil when `path` is not such a path (it may be rewritten).
        mutating func magic(_ path: inout [UInt8], lookupFlags: Int32) -> Result<Int32, Stop>? {
            var parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map { Array($0) }
            func s(_ p: [UInt8]) -> String { String(decoding: p, as: UTF8.self) }
            guard parts.count >= 2, s(parts[0]) == "proc" || s(parts[0]) == "dev" else { return nil }
            guard let status = callerStatus() else { return .failure(.errno(ESRCH)) }
            let tgid = Array(String(status.nsTgid).utf8)
            switch (s(parts[0]), s(parts[1])) {
            case ("proc", "self"): parts[1] = tgid
            // procfs's other links into the caller's own directory.
            case ("proc", "net"), ("proc", "mounts"): parts.insert(tgid, at: 1)
            case ("proc", "thread-self"): parts.replaceSubrange(1...1, with: [tgid, Array("task".utf8), Array(String(status.nsTid).utf8)])
            case ("dev", "fd"): parts.replaceSubrange(0...1, with: [Array("proc".utf8), tgid, Array("fd".utf8)])
            case ("dev", "stdin"), ("dev", "stdout"), ("dev", "stderr"):
                let n = ["stdin": "0", "stdout": "1", "stderr": "2"][s(parts[1])]!
                parts.replaceSubrange(0...1, with: [Array("proc".utf8), tgid, Array("fd".utf8), Array(n.utf8)])
            default: break
            }
            let trailingSlash = path.last == UInt8(ascii: "/")
            path = parts.reduce(into: []) { $0 += [UInt8(ascii: "/")] + $1 }
            if trailingSlash { path.append(UInt8(ascii: "/")) }
            guard s(parts[0]) == "proc", parts.count >= 3, let pid = Int32(s(parts[1])) else { return nil }
            var i = 2
            if s(parts[2]) == "task", parts.count >= 5 { i = 4 }
            guard ["fd", "cwd", "root", "exe"].contains(s(parts[i])) else { return nil }
            // Another process's descriptors and directories: not something a model needs; refused rather than
            // opened from outside with the supervisor's view.
            guard pid == status.nsTgid else { return .failure(.errno(EACCES)) }
            let rest = parts.count > i + (s(parts[i]) == "fd" ? 2 : 1)
                ? Array(parts[(i + (s(parts[i]) == "fd" ? 2 : 1))...]) : []
            var base: [UInt8]
            switch s(parts[i]) {
            case "root":
                base = [UInt8(ascii: "/")]
            case "cwd":
                let hostTid = caller.hostTid
                guard let cwd = asSupervisor({ SyscallDecoder.link("/proc/\(hostTid)/cwd") }) else { return .failure(.errno(ENOENT)) }
                base = cwd
            default:
                let hostLink = s(parts[i]) == "exe"
                    ? "/proc/\(status.hostTgid)/exe"
                    : (parts.count > i + 1 && Int32(s(parts[i + 1])) != nil ? "/proc/\(status.hostTgid)/fd/\(s(parts[i + 1]))" : nil)
                guard let hostLink else { return nil }
                if rest.isEmpty {
                    // The object itself, found through the caller's /proc link (O_PATH: no access to it yet), then
                    // opened as the sandbox's user.
                    if lookupFlags & O_NOFOLLOW != 0 && lookupFlags & oPath == 0 { return .failure(.errno(ELOOP)) }
                    let object = asSupervisor { open(hostLink, oPath | O_CLOEXEC | (lookupFlags & O_NOFOLLOW)) }
                    guard object >= 0 else { return .failure(.errno(errno)) }
                    owned.append(object)
                    if lookupFlags & oPath != 0 { return .success(object) }
                    let fd = CallEmulator.onMagic(object) { open($0, lookupFlags & ~O_NOFOLLOW) }
                    guard fd >= 0 else { return .failure(.errno(errno)) }
                    owned.append(fd)
                    return .success(fd)
                }
                guard let linked = asSupervisor({ SyscallDecoder.link(hostLink) }) else { return .failure(.errno(errno)) }
                guard linked.first == UInt8(ascii: "/"), !linked.hasSuffix(" (deleted)") else { return .failure(.errno(ENOTDIR)) }
                base = linked
            }
            path = rest.reduce(into: base) { $0 += [UInt8(ascii: "/")] + $1 }
            if trailingSlash { path.append(UInt8(ascii: "/")) }
            return nil
        }

        /// The caller's ids and umask, from /proc/TID/status (read once per call).
        mutating func callerStatus() -> (hostTgid: pid_t, nsTgid: pid_t, nsTid: pid_t, umask: UInt32)? {
            if let s = caller.status { return s }
            guard let bytes = try? FileBytes.read("/proc/\(caller.hostTid)/status", limit: 65536, what: "status") else { return nil }
            var hostTgid: pid_t = 0, nsTgid: pid_t = 0, nsTid: pid_t = 0
            var mask: UInt32 = 0o022
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let last = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.map(String.init) ?? ""
                if line.hasPrefix("Tgid:") { hostTgid = pid_t(last) ?? 0 }
                if line.hasPrefix("NStgid:") { nsTgid = pid_t(last) ?? 0 }
                if line.hasPrefix("NSpid:") { nsTid = pid_t(last) ?? 0 }
                if line.hasPrefix("Umask:") { mask = UInt32(last, radix: 8) ?? 0o022 }
            }
            guard hostTgid > 0, nsTgid > 0, nsTid > 0 else { return nil }
            caller.status = (hostTgid, nsTgid, nsTid, mask)
            return caller.status
        }

        /// The parent directory of `path`, open oPath and resolved beneath the root, and the last component
        /// (with any trailing slash kept, which the kernel judges).
        mutating func parent(_ path: PathOperand) -> Result<(Int32, [UInt8]), Stop> {
            guard !path.truncated else { return .failure(.errno(ENAMETOOLONG)) }
            var raw = path.raw
            var trailing: [UInt8] = []
            while raw.count > 1 && raw.last == UInt8(ascii: "/") {
                raw.removeLast()
                trailing.append(UInt8(ascii: "/"))
            }
            guard !raw.isEmpty else { return .failure(.errno(ENOENT)) }
            let cut = raw.lastIndex(of: UInt8(ascii: "/"))
            let entry = Array(raw[(cut.map { $0 + 1 } ?? 0)...]) + trailing
            guard !entry.isEmpty, entry != [UInt8(ascii: "/")] else { return .failure(.errno(EBUSY)) }
            var directoryPath = path
            directoryPath.raw = cut.map { $0 == 0 ? [UInt8(ascii: "/")] : Array(raw[..<$0]) } ?? []
            switch resolve(directoryPath, lookupFlags: oPath | O_DIRECTORY | O_CLOEXEC) {
            case .success(let fd): return .success((fd, entry))
            case .failure(let s): return .failure(s)
            }
        }

        /// Performs `body(parent, entry)` on the entry `path` names, after checking the resolved name.
        mutating func onEntry(
            _ path: PathOperand?, check: Bool, _ body: (Int32, UnsafePointer<CChar>) -> Int32
        ) -> Result<Outcome, Stop> {
            guard let path else { return .failure(.errno(EFAULT)) }
            let parentFd: Int32, entry: [UInt8]
            switch parent(path) {
            case .success(let (p, e)): (parentFd, entry) = (p, e)
            case .failure(let s): return .failure(s)
            }
            if check, case .refused(let d) = checkEntry(parentFd, entry) { return .success(.refused(d)) }
            let rc = CallEmulator.withPath(entry) { body(parentFd, $0) }
            return Call.answer(rc, Int64(rc))
        }

        /// Performs `body(fd)` on the object `path` names, open oPath (following a final symlink when `follow`).
        mutating func onObject(_ path: PathOperand?, follow: Bool, _ body: (Int32) -> Int32) -> Result<Outcome, Stop> {
            guard let path else { return .failure(.errno(EFAULT)) }
            let object: Int32
            switch resolve(path, lookupFlags: oPath | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW)) {
            case .success(let fd): object = fd
            case .failure(let s): return .failure(s)
            }
            if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
            let rc = body(object)
            return Call.answer(rc, Int64(rc))
        }

        /// Performs `body(fd)` on the caller's directory descriptor itself (`AT_EMPTY_PATH` with an empty path).
        mutating func onDescriptorItself(_ body: (Int32) -> Int32) -> Result<Outcome, Stop> {
            let object: Int32
            switch directory(operands.path?.dirfd ?? Int32(AT_FDCWD)) {
            case .success(let fd): object = fd
            case .failure(let s): return .failure(s)
            }
            if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
            let rc = body(object)
            return Call.answer(rc, 0)
        }

        // MARK: Policy on what was resolved

        /// Applies the policy to the name of what the kernel resolved.
        mutating func check(resolvedOf fd: Int32, second: Bool = false) -> Outcome {
            let real = SyscallDecoder.link("/proc/thread-self/fd/\(fd)") ?? []
            return record(real, second: second)
        }

        mutating func checkEntry(_ parentFd: Int32, _ entry: [UInt8], second: Bool = false) -> Outcome {
            // `.` and `..` name the directory or its parent, not an entry: judge the directory's own name (a path
            // ending in `/tmp/d/..` is `/tmp`, and `/tmp/..` is `/`). Both stay inside the sandbox's mount tree.
            var name = entry
            while name.count > 1 && name.last == UInt8(ascii: "/") { name.removeLast() }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                let dir = CallEmulator.withPath(name) { openat(parentFd, $0, oPath | O_NOFOLLOW | O_CLOEXEC) }
                guard dir >= 0 else { return .refused(Decision(action: .denied, errno: errno, rule: "default")) }
                owned.append(dir)
                return check(resolvedOf: dir, second: second)
            }
            var real = SyscallDecoder.link("/proc/thread-self/fd/\(parentFd)") ?? []
            if real != [UInt8(ascii: "/")] { real.append(UInt8(ascii: "/")) }
            real += entry
            return record(real, second: second)
        }

        private mutating func record(_ real: [UInt8], second: Bool) -> Outcome {
            let text = PathText.display(real)
            if second { trace.resolved2 = text } else { trace.resolved = text }
            // The policy already judged the requested names: judge again only when what was resolved differs.
            if (trace.resolved ?? trace.path) == trace.path && (trace.resolved2 ?? trace.path2) == trace.path2 {
                return .returned(0)
            }
            var judged = trace
            judged.path = trace.resolved ?? trace.path
            judged.path2 = trace.resolved2 ?? trace.path2
            let decision = recheck(judged)
            return decision.action == .allowed ? .returned(0) : .refused(decision)
        }

        // MARK: Two names

        mutating func twoEntries() -> Result<Outcome, Stop> {
            guard let from = operands.path, let to = operands.path2 else { return .failure(.errno(EFAULT)) }
            let linking = name == "link" || name == "linkat"
            // A trailing slash on the old name follows it too (see changeTimes).
            let follow = linking && (Int32(truncatingIfNeeded: operands.flags) & AT_SYMLINK_FOLLOW != 0 || CallEmulator.endsWithSlash(from))
            if linking && Int32(truncatingIfNeeded: operands.flags) & atEmptyPath != 0 {
                return .failure(.errno(ENOENT))  // needs CAP_DAC_READ_SEARCH, which the sandbox does not have
            }
            var source: (Int32, [UInt8])? = nil
            var object: Int32 = -1
            if follow {
                switch resolve(from, lookupFlags: oPath | O_CLOEXEC) {
                case .success(let fd): object = fd
                case .failure(let s): return .failure(s)
                }
                if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
            } else {
                switch parent(from) {
                case .success(let p): source = p
                case .failure(let s): return .failure(s)
                }
                if case .refused(let d) = checkEntry(source!.0, source!.1) { return .success(.refused(d)) }
            }
            let target: (Int32, [UInt8])
            switch parent(to) {
            case .success(let p): target = p
            case .failure(let s): return .failure(s)
            }
            if case .refused(let d) = checkEntry(target.0, target.1, second: true) { return .success(.refused(d)) }
            let flags = UInt32(truncatingIfNeeded: operands.flags)
            let rc: Int32 = CallEmulator.withPath(target.1) { newName in
                if linking {
                    if follow { return CallEmulator.onMagic(object) { linkat(AT_FDCWD, $0, target.0, newName, AT_SYMLINK_FOLLOW) } }
                    return CallEmulator.withPath(source!.1) { linkat(source!.0, $0, target.0, newName, 0) }
                }
                return CallEmulator.withPath(source!.1) {
                    airlock_renameat2(source!.0, $0, target.0, newName, flags)
                }
            }
            return Call.answer(rc, 0)
        }

        // MARK: Owner, times, attributes

        mutating func changeOwner() -> Result<Outcome, Stop> {
            guard let (uid, gid) = operands.owner else { return .failure(.errno(EFAULT)) }
            // Ids inside the sandbox: only its own user and group are mapped; -1 means "unchanged".
            func host(_ v: UInt64, inside: UInt32, host: UInt32) -> UInt32? {
                let id = UInt32(truncatingIfNeeded: v)
                if id == UInt32.max { return id }
                return id == inside ? host : nil
            }
            guard let u = host(uid, inside: emulator.insideUid, host: emulator.hostUid),
                let g = host(gid, inside: emulator.insideGid, host: emulator.hostGid)
            else { return .failure(.errno(EINVAL)) }
            let flags = Int32(truncatingIfNeeded: operands.flags)
            if flags & atEmptyPath != 0, operands.path?.raw.isEmpty ?? true {
                return onDescriptorItself { fchownat($0, "", u, g, atEmptyPath) }
            }
            return onObject(operands.path, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { fchownat($0, "", u, g, atEmptyPath) }
        }

        mutating func changeTimes() -> Result<Outcome, Stop> {
            let decoder = SyscallDecoder(hostPid: caller.hostTid)
            var times = [timespec](repeating: timespec(tv_sec: 0, tv_nsec: airlock_utime_now()), count: 2)
            let address: UInt64
            switch name {
            case "utime": address = args[1]
            case "utimes": address = args[1]
            case "futimesat": address = args[2]
            default: address = args[2]
            }
            if address != 0 {
                let size = name == "utime" ? 16 : 32
                guard let raw = asSupervisor({ decoder.read(address, count: size) }), raw.count == size else { return .failure(.errno(EFAULT)) }
                let w = raw.withUnsafeBytes { b in (0..<(size / 8)).map { b.loadUnaligned(fromByteOffset: $0 * 8, as: Int.self) } }
                switch name {
                case "utime":
                    times = [timespec(tv_sec: w[0], tv_nsec: 0), timespec(tv_sec: w[1], tv_nsec: 0)]
                case "utimes", "futimesat":
                    guard (0..<1_000_000).contains(w[1]), (0..<1_000_000).contains(w[3]) else { return .failure(.errno(EINVAL)) }
                    times = [timespec(tv_sec: w[0], tv_nsec: w[1] * 1000), timespec(tv_sec: w[2], tv_nsec: w[3] * 1000)]
                default:
                    times = [timespec(tv_sec: w[0], tv_nsec: w[1]), timespec(tv_sec: w[2], tv_nsec: w[3])]
                }
            }
            // A trailing slash makes the kernel follow the last component whatever the flags say, and the entry is
            // then resolved by the kernel from this thread's root, the host's: such a path goes the following way,
            // resolved beneath the sandbox's root.
            let noFollow = name == "utimensat" && Int32(truncatingIfNeeded: operands.flags) & AT_SYMLINK_NOFOLLOW != 0
                && !CallEmulator.endsWithSlash(operands.path)
            if noFollow {
                return onEntry(operands.path, check: true) { parent, entry in utimensat(parent, entry, times, AT_SYMLINK_NOFOLLOW) }
            }
            return onObject(operands.path, follow: true) { fd in CallEmulator.onMagic(fd) { utimensat(AT_FDCWD, $0, times, 0) } }
        }

        mutating func changeAttribute() -> Result<Outcome, Stop> {
            let decoder = SyscallDecoder(hostPid: caller.hostTid)
            guard let (attribute, cut) = asSupervisor({ decoder.bytes(args[1], max: 256) }), !cut else { return .failure(.errno(ERANGE)) }
            let setting = name.hasSuffix("setxattr")
            var value: [UInt8] = []
            if setting {
                guard args[3] <= 65536 else { return .failure(.errno(E2BIG)) }
                let size = Int(args[3])
                if size > 0 {
                    guard let v = asSupervisor({ decoder.read(args[2], count: size) }), v.count == size else { return .failure(.errno(EFAULT)) }
                    value = v
                }
            }
            let flags = Int32(truncatingIfNeeded: args[4])
            // As for utimensat: a trailing slash follows, and must be resolved beneath the sandbox's root.
            let follow = !name.hasPrefix("l") || CallEmulator.endsWithSlash(operands.path)
            let body: (UnsafePointer<CChar>) -> Int32 = { path in
                CallEmulator.withPath(attribute) { a in
                    if setting {
                        return value.withUnsafeBytes { airlock_setxattr(path, a, $0.baseAddress, value.count, flags, follow ? 1 : 0) }
                    }
                    return airlock_removexattr(path, a, follow ? 1 : 0)
                }
            }
            if follow { return onObject(operands.path, follow: true) { fd in CallEmulator.onMagic(fd, body) } }
            return onEntry(operands.path, check: true) { parent, entry in
                CallEmulator.withPath(Array("/proc/thread-self/fd/\(parent)/".utf8) + CallEmulator.bytes(entry)) { body($0) }
            }
        }

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
                let operand = PathOperand(raw: sunPath, dirfd: Int32(AT_FDCWD), truncated: false, base: asSupervisor({ SyscallDecoder.link("/proc/\(hostTid)/cwd") }))
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
                let rc = CallEmulator.boundedWait(socket, wantsBlocking) { CallEmulator.withSockaddr(address) { connect(socket, $0, $1) } }
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
            case .failure: errno = ENOENT; return -1
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
                guard let chunk = asSupervisor({ decoder.read(base, count: want) }), chunk.count == want else { return false }
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
                    guard let vectors = asSupervisor({ decoder.read(iov, count: Int(count) * 16) }), vectors.count == Int(count) * 16 else {
                        return .failure(.errno(EFAULT))
                    }
                    for k in 0..<Int(count) {
                        let base = vectors.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: k * 16, as: UInt64.self) }
                        let length = vectors.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: k * 16 + 8, as: UInt64.self) }
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

        // MARK: Helpers

        /// A system call's return value as the outcome: its errno when it failed, else `value`.
        static func answer(_ rc: some BinaryInteger, _ value: some BinaryInteger) -> Result<Outcome, Stop> {
            rc < 0 ? .failure(.errno(errno)) : .success(.returned(Int64(value)))
        }

        /// Runs `body` with this thread's own credentials for a moment. The kernel lets only a process with
        /// CAP_SYS_PTRACE in the sandbox's user namespace read a sandboxed process's memory or open its /proc links
        /// (cwd, fd/N, exe) from outside it, which the sandbox's user outside does not have. Whatever `body` opens is
        /// O_PATH or the caller's memory, never a file opened for the sandbox: that is always reopened as the
        /// sandbox's user.
        func asSupervisor<T>(_ body: () -> T) -> T {
            guard emulator.privileged else { return body() }
            airlock_impersonate_end()
            let result = body()
            let e = errno
            // Going on as the supervisor would act with its rights for the sandbox: never.
            guard airlock_impersonate(emulator.hostUid, emulator.hostGid, 1) == 0 else { abort() }
            errno = e
            return result
        }

        /// Installs `fd` in the caller; its number is then the call's result, sent in the ordinary response.
        /// Not ADDFD's SEND flag, which would answer atomically: the ordinary response hands the CPU straight back
        /// to the caller (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP), which SEND does not, at 40–50 µs per open. The
        /// atomicity is not needed: the caller, waiting with SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, cannot be
        /// interrupted between the two but by its death.
        mutating func install(_ fd: Int32, cloexec: Bool) -> Result<Outcome, Stop> {
            let n = airlock_notify_addfd(emulator.listener, caller.id, fd, cloexec ? UInt32(O_CLOEXEC) : 0, 0)
            guard n >= 0 else { return .failure(.errno(errno)) }
            return .success(.returned(Int64(n)))
        }

        /// Runs `body` with this thread's umask set to the caller's.
        mutating func withUmask(_ body: (inout Call) -> Result<Outcome, Stop>) -> Result<Outcome, Stop> {
            let mask = callerStatus()?.umask ?? 0o022
            let saved = airlock_set_umask(mask)
            defer { _ = airlock_set_umask(saved) }
            return body(&self)
        }

        mutating func withUmaskValue<T>(_ body: () -> T) -> T {
            let mask = callerStatus()?.umask ?? 0o022
            let saved = airlock_set_umask(mask)
            defer { _ = airlock_set_umask(saved) }
            return body()
        }
    }

    /// Whether a path ends with `/` (after a name): the kernel then follows its last component.
    static func endsWithSlash(_ path: PathOperand?) -> Bool {
        guard let raw = path?.raw, raw.count > 1 else { return false }
        return raw.last == UInt8(ascii: "/")
    }

    // MARK: C strings and waits

    static func withPath<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (bytes + [0]).withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { body($0) }
        }
    }

    static func bytes(_ p: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeBufferPointer(start: p, count: strlen(p))).map { UInt8(bitPattern: $0) }
    }

    /// `body` with the path of the supervisor's own descriptor `fd` through /proc, which the kernel follows to the
    /// object itself without resolving any name again.
    static func onMagic<T>(_ fd: Int32, _ body: (UnsafePointer<CChar>) -> T) -> T {
        "/proc/thread-self/fd/\(fd)".withCString(body)
    }

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
