internal import AirlockJSON
import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// A sandbox profile: an OCI runtime-spec seccomp section (as used by Docker and Podman) plus Airlock's own
/// `airlock` section (mounts, limits, identity, and how notified system calls are answered).
///
/// See `docs/profiles.md` for the format. Profiles are trusted configuration, written by the operator; what runs
/// inside the sandbox is not.
public struct Profile: Sendable {
    /// The profile's name (file name without `.json`) or path.
    public var name: String
    /// What happens to system calls no rule names.
    public var defaultAction: SeccompAction
    /// ABIs the filter accepts; every other one kills the process.
    public var architectures: [String]
    /// Seccomp rules, in profile order.
    public var syscalls: [SyscallRule]
    /// Airlock's extension: the sandbox's shape.
    public var sandbox: SandboxSettings

    /// Parses and validates a profile. Errors name the offending field, e.g. `airlock.mounts[2].destination`.
    public init(json: [UInt8], name: String) throws(SandboxError) {
        let raw: RawProfile
        do {
            let tree = try JSON.parse(json)
            raw = try RawProfile(JSONField(value: tree, path: ""))
        } catch let error as SandboxError {
            throw SandboxError(.profile, "profile \(name): \(error.message)")
        } catch {
            throw SandboxError(.profile, "profile \(name): \(error)")
        }
        do {
            self = try Profile(raw: raw, name: name)
        } catch {
            throw SandboxError(.profile, "profile \(name): \(error.message)")
        }
    }

    /// Loads a profile by name (looked up in the profile directories) or by path (anything containing `/` or
    /// ending in `.json`).
    public static func load(_ nameOrPath: String) throws(SandboxError) -> Profile {
        let bytes = try FileBytes.read(try locate(nameOrPath), limit: 4 << 20, what: "profile")
        return try Profile(json: bytes, name: nameOrPath)
    }

    /// The file `load` reads for `nameOrPath`: the path itself, or the first `NAME.json` in the profile directories.
    public static func locate(_ nameOrPath: String) throws(SandboxError) -> String {
        let path: String
        if nameOrPath.contains("/") || nameOrPath.hasSuffix(".json") {
            path = nameOrPath
        } else {
            guard nameOrPath.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw SandboxError(.profile, "profile name '\(nameOrPath)' may hold letters, digits, - and _ only")
            }
            let dirs = ProfileLocator.searchDirectories()
            let candidates = dirs.map { "\($0)/\(nameOrPath).json" }
            guard let found = candidates.first(where: { access($0, R_OK) == 0 }) else {
                throw SandboxError(
                    .profile,
                    "no profile named '\(nameOrPath)' in \(dirs.joined(separator: ", ")) (set AIRLOCK_PROFILE_DIR)"
                )
            }
            path = found
        }
        return path
    }

    /// The bytes of a profile file (or any JSON file read like one), at most 4 MiB.
    public static func readFile(_ path: String, what: String = "profile") throws(SandboxError) -> [UInt8] {
        try FileBytes.read(path, limit: 4 << 20, what: what)
    }
}

/// A seccomp action, as named by the OCI runtime spec (`SCMP_ACT_*`).
public enum SeccompAction: Sendable, Equatable {
    /// Let the call run (`SCMP_ACT_ALLOW`).
    case allow
    /// Fail the call with this errno (`SCMP_ACT_ERRNO`).
    case errno(Int32)
    /// Kill the whole process (`SCMP_ACT_KILL_PROCESS`).
    case killProcess
    /// Kill the calling thread (`SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`).
    case killThread
    /// Let the call run and log it to the kernel audit log (`SCMP_ACT_LOG`).
    case log
    /// Ask the supervisor (`SCMP_ACT_NOTIFY`), which decides by `SandboxSettings.notify`.
    case notify
}

/// One entry of the profile's `syscalls` array.
public struct SyscallRule: Sendable {
    /// System call names.
    public var names: [String]
    /// What to do when the call and its arguments match.
    public var action: SeccompAction
    /// Argument conditions, all of which must hold.
    public var args: [ArgumentCondition]
    /// Position in the profile, used to name the rule in traces (`syscalls[3]`).
    public var index: Int
}

/// A condition on one system-call argument, as in libseccomp's `scmp_arg_cmp`.
public struct ArgumentCondition: Sendable, Equatable {
    /// The comparison.
    public enum Operator: String, Sendable {
        case notEqual = "SCMP_CMP_NE", lessThan = "SCMP_CMP_LT", lessOrEqual = "SCMP_CMP_LE"
        case equal = "SCMP_CMP_EQ", greaterOrEqual = "SCMP_CMP_GE", greaterThan = "SCMP_CMP_GT"
        case maskedEqual = "SCMP_CMP_MASKED_EQ"
    }
    /// Argument position, 0–5.
    public var index: Int
    /// The value compared with, or the mask for `SCMP_CMP_MASKED_EQ`.
    public var value: UInt64
    /// The value the masked argument must equal, for `SCMP_CMP_MASKED_EQ`.
    public var valueTwo: UInt64
    /// The comparison.
    public var op: Operator

    /// Whether the argument satisfies the condition (the same test the kernel filter makes).
    public func matches(_ argument: UInt64) -> Bool {
        switch op {
        case .notEqual: argument != value
        case .lessThan: argument < value
        case .lessOrEqual: argument <= value
        case .equal: argument == value
        case .greaterOrEqual: argument >= value
        case .greaterThan: argument > value
        case .maskedEqual: argument & value == valueTwo
        }
    }
}

/// Airlock's `airlock` section of a profile.
public struct SandboxSettings: Sendable {
    /// The sandbox's host name (UTS namespace).
    public var hostname: String
    /// Ids inside the sandbox and the host ids they map to.
    public var user: UserMapping
    /// Working directory of the command.
    public var cwd: String
    /// The command's whole environment (nothing is inherited).
    public var environment: [(String, String)]
    /// The private mount tree, in order.
    public var mounts: [MountSpec]
    /// Resource limits and bounds.
    public var limits: Limits
    /// When true, calls refused by `SCMP_ACT_ERRNO`/`KILL` rules are routed through the supervisor so they appear
    /// in the trace; it always refuses them the same way. When false the kernel refuses them unseen.
    public var recordRefused: Bool
    /// How notified calls are answered: first matching rule wins.
    public var notify: [NotifyRule]
    /// The answer when no notify rule matches.
    public var notifyDefault: NotifyRule.Action
    /// System calls decided harmless: left to the filter's default action (allowed without a round trip). With the
    /// profile's `syscalls` rules they make its inventory: a system call this machine's libseccomp knows that
    /// neither names is refused with `ENOSYS` (rule `undecided`), and so is any number beyond libseccomp's table
    /// (rule `unknown-syscall`). docs/profiles.md lists the inventory.
    public var allowedInKernel: [String]
    /// Whether a run without its own cgroup (memory and pids limits for the whole sandbox) is an error.
    public var cgroup: CgroupRequirement
}

/// Whether a sandbox must have its own cgroup (`airlock.cgroup` in a profile, `cgroup` in airlockd's configuration).
public enum CgroupRequirement: String, Sendable, Equatable {
    /// No cgroup, no run: the sandbox is not built and the error says why.
    case required
    /// Without a cgroup (no controller, not delegated, not root) the run goes on with the rlimits alone, and its
    /// result says so (`SandboxResult.cgroup`).
    case optional
}

/// The uid/gid the command runs as inside the sandbox, and the unprivileged host ids they map to.
public struct UserMapping: Sendable, Equatable {
    /// uid inside.
    public var uid: UInt32
    /// gid inside.
    public var gid: UInt32
    /// Host uid the inside uid maps to when the supervisor runs as root; otherwise the supervisor's own uid.
    public var hostUid: UInt32
    /// Host gid, likewise.
    public var hostGid: UInt32

    /// The host uid and gid the sandbox's user runs as: `hostUid` and `hostGid` when the supervisor is root,
    /// otherwise the supervisor's own.
    public var hostIDs: (uid: UInt32, gid: UInt32) { geteuid() == 0 ? (hostUid, hostGid) : (geteuid(), getegid()) }
}

/// One entry of the sandbox's mount tree.
public struct MountSpec: Sendable, Equatable {
    /// Kinds of entries.
    public enum Kind: String, Sendable, CaseIterable {
        case bind, tmpfs, proc, dev, file, symlink, dir, sysfs
    }
    /// The kind of entry.
    public var kind: Kind
    /// Host path (bind).
    public var source: String?
    /// Absolute path inside the sandbox.
    public var destination: String
    /// Link target (symlink).
    public var target: String?
    /// File contents (file).
    public var contents: String?
    /// File contents as bytes (file), used instead of `contents` when set: a file that is not text.
    public var bytes: [UInt8]? = nil
    /// Size in bytes (tmpfs).
    public var sizeBytes: UInt64?
    /// Permission bits (tmpfs, file, dir).
    public var mode: UInt32?
    /// A missing source is skipped instead of being an error (bind).
    public var optional: Bool
}

extension MountSpec {
    /// A file created at an absolute sandbox path with `bytes` (in the sandbox's root, read-only once set up).
    public static func file(sandbox: String, bytes: [UInt8], mode: UInt32 = 0o644) throws(SandboxError) -> MountSpec {
        let destination = try SandboxSettings.sandboxPath(sandbox, field: "mount destination")
        var m = MountSpec(
            kind: .file, source: nil, destination: destination, target: nil, contents: nil, sizeBytes: nil, mode: mode,
            optional: false)
        m.bytes = bytes
        return m
    }

    /// A read-only bind of a host path (made absolute) at an absolute sandbox path.
    public static func readOnlyBind(host: String, sandbox: String) throws(SandboxError) -> MountSpec {
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard realpath(host, &resolved) != nil else {
            throw SandboxError(.mountSource, "mount source \(host) is missing", errno: .current)
        }
        let source = String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let destination = try SandboxSettings.sandboxPath(sandbox, field: "mount destination")
        if destination == "/" { throw SandboxError(.profile, "cannot mount over /") }
        return MountSpec(
            kind: .bind, source: source, destination: destination, target: nil, contents: nil, sizeBytes: nil,
            mode: nil, optional: false
        )
    }
}

/// Resource limits and bounds of one sandbox run.
public struct Limits: Sendable, Equatable {
    /// `RLIMIT_AS`.
    public var addressSpaceBytes: UInt64
    /// `RLIMIT_CPU`.
    public var cpuSeconds: UInt64
    /// `RLIMIT_NOFILE`.
    public var openFiles: UInt64
    /// `RLIMIT_NPROC` (counted per host uid).
    public var processes: UInt64
    /// `RLIMIT_FSIZE`.
    public var fileSizeBytes: UInt64
    /// Wall-clock deadline; the whole tree is killed when it passes.
    public var timeoutSeconds: Double
    /// Bytes kept of stdout and of stderr each; the rest is read and counted.
    public var outputBytes: Int
    /// Trace events kept; later ones are answered and counted.
    public var traceEvents: Int
    /// Bytes the trace may take as JSON (escapes included); events past it are answered and counted. Each event's
    /// path and argv are also bounded (`TraceRecorder`), so a report stays within a few MiB whatever the model does.
    public var traceBytes: Int

    /// `traceBytes` when the profile does not say: 4 MiB, a few thousand events with long arguments, or the whole
    /// default event bound of ordinary ones.
    public static let defaultTraceBytes = 4 << 20

    /// Memory of the whole sandbox, every process and every page it holds (memfd, tmpfs, page cache) together: the
    /// limit of its cgroup (memory and memory+swap, so nothing goes to swap).
    public var memoryBytes: UInt64 = 4 << 30
    /// inotify instances of the whole sandbox (`/proc/sys/user/max_inotify_instances` of its user namespace).
    public var inotifyInstances: UInt64 = 16
    /// inotify watches of the whole sandbox (`max_inotify_watches` of its user namespace).
    public var inotifyWatches: UInt64 = 1024
    /// `RLIMIT_MSGQUEUE`: bytes of POSIX message queues (0: none can be created).
    public var messageQueueBytes: UInt64 = 0
    /// `RLIMIT_SIGPENDING`: signals queued to the sandbox's user at once.
    public var pendingSignals: UInt64 = 256
    /// `RLIMIT_MEMLOCK`: bytes of memory locked (`mlock`, `SHM_LOCK`).
    public var lockedMemoryBytes: UInt64 = 64 << 10
    /// Bytes of data a sealed in-memory copy of the model may hold (`ModelSeal.passableDescriptor`); a file with more
    /// data that must be copied is refused. Holes of a sparse file cost nothing.
    public var modelCopyBytes: UInt64 = 2 << 30
}

/// How the supervisor answers a notified system call.
public struct NotifyRule: Sendable, Equatable {
    /// The answer. `emulate` (inet and inet6 socket calls only): the sandbox's emulated network answers the call
    /// (`NetworkSink`): it succeeds into a sink the supervisor owns, and the trace records it as allowed under the
    /// rule; without an emulated network (an unprivileged supervisor) it is refused with the rule's errno, as `deny`.
    public enum Action: String, Sendable { case allow, deny, kill, emulate }
    /// Which access an open asks for.
    public enum Access: String, Sendable { case read, write }
    /// Whom a signal is aimed at.
    public enum SignalTarget: String, Sendable, CaseIterable {
        /// `kill(-1, …)`: every process the caller may signal.
        case all
        /// PID 1 of the sandbox, its reaper.
        case initProcess = "init"
        /// A process group (`kill(0, …)`, `kill(-pgid, …)`).
        case group
        /// One other process.
        case process
    }

    /// Names the rule in traces.
    public var id: String
    /// System calls it applies to.
    public var syscalls: [String]
    /// Matches when the path matches one of these globs (`*` within a segment, `**` across segments).
    public var paths: [String]?
    /// Matches when the path matches none of these globs.
    public var pathsOutside: [String]?
    /// Matches opens that ask for this access.
    public var access: Access?
    /// Matches socket calls on these address families (`unix`, `inet`, `inet6`, `netlink`, …).
    public var families: [String]?
    /// Matches signals aimed at these targets.
    public var signalTargets: [SignalTarget]?
    /// Matches calls whose mode argument sets the set-user-ID or set-group-ID bit: chmod and fchmodat(2), and
    /// opens that create a file.
    public var setIdMode: Bool?
    /// The answer.
    public var action: Action
    /// The errno a denial returns.
    public var errno: Int32
}

// MARK: - Locating profiles

/// Where sandbox profiles are looked for by name (`Profile.load`). The probe finds its own files (the loader harness,
/// the verdict policy) in the same directories: `ProfileLocator.locate`, in AirlockProbe.
public enum ProfileLocator {
    /// `$AIRLOCK_PROFILE_DIR`, a `Profiles/` folder beside or above the executable (a checkout), then the
    /// installed share directories.
    public static func searchDirectories() -> [String] {
        var dirs: [String] = []
        if let env = getenv("AIRLOCK_PROFILE_DIR") { dirs.append(String(cString: env)) }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, Int(PATH_MAX))
        if n > 0 {
            var dir = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            for _ in 0..<5 {
                guard let slash = dir.lastIndex(of: "/"), slash != dir.startIndex else { break }
                dir = String(dir[..<slash])
                let candidate = "\(dir)/Profiles"
                if access("\(candidate)/default.json", R_OK) == 0 {
                    dirs.append(candidate)
                    break
                }
                let share = "\(dir)/share/airlock/profiles"
                if access("\(share)/default.json", R_OK) == 0 {
                    dirs.append(share)
                    break
                }
            }
        }
        dirs.append("/usr/local/share/airlock/profiles")
        dirs.append("/usr/share/airlock/profiles")
        return dirs
    }
}

/// Bounded whole-file reads.
enum FileBytes {
    static func read(_ path: String, limit: Int, what: String) throws(SandboxError) -> [UInt8] {
        do {
            return try BoundedFile.read(path, limit: limit, what: what)
        } catch {
            throw SandboxError(.profile, error.message, errno: error.errno)
        }
    }
}
