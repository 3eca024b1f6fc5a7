import AirlockSystem
import AirlockTrace
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// `O_PATH` and `AT_EMPTY_PATH`, which glibc's Swift module does not export; used by every file of the emulator.
let oPath = airlock_o_path()
let atEmptyPath = airlock_at_empty_path()

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
    let rootFd: Int32
    let hostUid: UInt32
    let hostGid: UInt32
    let insideUid: UInt32
    let insideGid: UInt32
    let privileged: Bool
    /// The sandbox's `RLIMIT_FSIZE`.
    let fileSizeLimit: UInt64
    /// Descriptors passed with SCM_RIGHTS for the sandbox so far, and the most per run (four times its open files).
    var passedDescriptors = 0
    let maxPassedDescriptors: Int

    /// - Parameters:
    ///   - sandboxPid: the sandbox's PID 1 on the host, whose root every caller shares (chroot is refused).
    private let sandboxPid: pid_t

    init(listener: FileDescriptor, sandboxPid: pid_t, profile: Profile) throws(SandboxError) {
        self.listener = listener.rawValue
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
        var call = Call(
            emulator: self, name: name, args: args, operands: o, caller: caller, trace: trace, recheck: recheck)
        let outcome = call.run()
        trace = call.trace
        return outcome
    }

    /// One call being performed: holds the descriptors it opens and closes them at the end.
    struct Call {
        // The emulator's types, named as they were when every part of `Call` sat inside `CallEmulator`: its
        // extensions in the other files see them too.
        typealias Outcome = CallEmulator.Outcome
        typealias Caller = CallEmulator.Caller

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

        // MARK: As the sandbox's user

        mutating func act(_ p: inout Prepared) -> Result<Outcome, Stop> {
            switch name {
            case "open", "openat", "creat", "openat2":
                return openFile()
            case "unlink", "rmdir", "unlinkat":
                let flags =
                    name == "rmdir" ? AT_REMOVEDIR : (name == "unlink" ? 0 : Int32(truncatingIfNeeded: operands.flags))
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
                        t.baseAddress!.withMemoryRebound(to: CChar.self, capacity: t.count) {
                            symlinkat($0, parent, entry)
                        }
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
                    return onDescriptorItself { object in
                        CallEmulator.onMagic(object) { fchmodat(AT_FDCWD, $0, mode, 0) }
                    }
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
                let rc = airlock_pidfd_signal(
                    pidfd, Int32(truncatingIfNeeded: args[1]), UInt32(truncatingIfNeeded: args[3]))
                return Call.answer(rc, 0)
            default:
                return .success(.passThrough)
            }
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
}
