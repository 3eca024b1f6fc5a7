internal import CCap
internal import CSandbox
internal import CSeccomp
import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// Everything the sandbox's PID 1 needs between clone and exec, marshalled into the C structures of
/// `airlock_sandbox.h`: the mount list, the limits, the command's candidates, arguments and environment, the ids,
/// the empty capability set and the filter. The parent prepares all of it, so the child never allocates; the memory
/// lives as long as this object, past the clone.
///
/// Every constant the C side defines (flags, fixed paths, options) comes from the header, never written again here.
final class SpawnSpecification {
    private let arena: CArena
    private var spec = airlock_spawn_spec()
    private let program: SeccompProgram
    private let limits: Limits
    private let emptyCaps: cap_t
    /// The drawn world's part of set-up (nil: the profile as written).
    private let persona: WorldPersona?
    /// Whether the command sees ordinary rlimits, its real limits kept by the cgroup and the supervisor (set by
    /// `spawn`).
    private(set) var ordinaryRlimits = false

    /// Marshals `request` (with its effective `limits`) and checks that every required bind source exists, naming
    /// the profile field of one that does not.
    init(request: SandboxRequest, limits: Limits, program: SeccompProgram) throws(SandboxError) {
        let arena = CArena()
        self.arena = arena
        self.program = program
        self.limits = limits
        let settings = request.profile.sandbox
        let mounts = try SpawnSpecification.mounts(
            settings.mounts + request.extraMounts, profileMounts: settings.mounts.count, arena: arena
        )
        let persona = request.world.map(WorldPersona.init)
        self.persona = persona
        let userLimits = (SharedBudgets.userNamespaceLimits(limits) + (persona?.procWrites ?? [])).map {
            airlock_user_limit(
                path: UnsafePointer(arena.string($0.name.contains("/") ? $0.name : "sys/user/\($0.name)")),
                value: UnsafePointer(arena.string(String($0.value)))
            )
        }
        let candidates: [UnsafePointer<CChar>?] =
            SpawnSpecification.candidates(request.argv[0], settings).map { UnsafePointer(arena.string($0)) } + [nil]
        let argv: [UnsafeMutablePointer<CChar>?] = request.argv.map { arena.string($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = settings.environment.map { arena.string("\($0.0)=\($0.1)") } + [nil]
        guard let caps = cap_init() else { throw SandboxError(.supervisor, "libcap: cap_init", errno: .current) }
        emptyCaps = caps

        spec.namespaces = airlock_namespace_flags()
        spec.hostname = UnsafePointer(arena.string(settings.hostname))
        spec.staging = UnsafePointer(arena.string(AIRLOCK_STAGING_DIRECTORY))
        spec.root_options = UnsafePointer(arena.string(persona?.rootOptions ?? AIRLOCK_ROOT_TMPFS_OPTIONS))
        spec.mounts = UnsafePointer(arena.array(mounts))
        spec.mount_count = mounts.count
        spec.uid = settings.user.uid
        spec.gid = settings.user.gid
        spec.drop_supplementary_groups = geteuid() == 0 ? 1 : 0
        spec.empty_caps = UnsafeMutableRawPointer(emptyCaps)
        spec.cap_last = Int32(cap_max_bits()) - 1
        spec.filter_len = UInt16(program.instructions.count)
        spec.filter_flags = airlock_filter_flags()
        spec.cwd = UnsafePointer(arena.string(settings.cwd))
        spec.candidates = UnsafePointer(arena.array(candidates))
        spec.argv = UnsafePointer(arena.array(argv))
        spec.envp = UnsafePointer(arena.array(envp))
        spec.passed_fds = UnsafePointer(arena.array(request.passedFDs.map(\.rawValue)))
        spec.passed_fd_count = request.passedFDs.count
        spec.user_limits = UnsafePointer(arena.array(userLimits))
        spec.user_limit_count = userLimits.count
        if let persona {
            let aliases: [UnsafePointer<CChar>?] = persona.deviceAliases.map { UnsafePointer(arena.string($0)) }
            spec.device_aliases = UnsafePointer(arena.array(aliases))
            spec.device_alias_count = aliases.count
            spec.init_name = UnsafePointer(arena.string(persona.initName))
            spec.init_title = UnsafePointer(arena.string(persona.initTitle))
            if let area = WorldPersona.argumentArea() {
                (spec.arg_start, spec.arg_end, spec.area_end) = (area.start, area.end, area.areaEnd)
            }
        }
    }

    deinit { cap_free(UnsafeMutableRawPointer(emptyCaps)) }

    /// Clones the sandbox's PID 1 with `child` as its ends of the pipes, in `cgroup` when it has one. Returns its
    /// PID in the supervisor's namespace and a pidfd the caller owns.
    func spawn(
        cgroup: SandboxCgroup?, child: SandboxPipes.ChildEnds
    ) throws(SandboxError) -> (pid: pid_t, pidfd: FileDescriptor) {
        // With a pids cgroup, the cgroup is the limit that answers (and is reported); RLIMIT_NPROC, one above it,
        // stays as the backstop that also bounds what is charged to the supervisor's user.
        let nproc = cgroup == nil ? limits.processes : limits.processes + 1
        let limit = { (resource: __rlimit_resource, soft: UInt64, hard: UInt64) in
            airlock_rlimit(resource: Int32(resource.rawValue), soft: soft, hard: hard)
        }
        ordinaryRlimits = persona != nil && cgroup?.watchesCPU == true
        let rlimits: [airlock_rlimit] =
            ordinaryRlimits
            ? WorldPersona.ordinaryRlimits(limits)
            : [
                limit(RLIMIT_AS, limits.addressSpaceBytes, limits.addressSpaceBytes),
                limit(RLIMIT_CPU, limits.cpuSeconds, limits.cpuSeconds + 1),
                limit(RLIMIT_NOFILE, SpawnSpecification.openFiles(limits), SpawnSpecification.openFiles(limits)),
                airlock_rlimit(resource: airlock_rlimit_nproc(), soft: nproc, hard: nproc),
                limit(RLIMIT_FSIZE, limits.fileSizeBytes, limits.fileSizeBytes),
                limit(RLIMIT_CORE, 0, 0),
            ] + SharedBudgets.rlimits(limits)
        spec.rlimits = UnsafePointer(arena.array(rlimits))
        spec.rlimit_count = rlimits.count
        spec.cgroup_fd = cgroup?.cloneFD?.rawValue ?? -1
        let taskFiles: [UnsafePointer<CChar>?] = (cgroup?.v1TaskFiles ?? []).map { UnsafePointer(arena.string($0)) }
        spec.cgroup_tasks = UnsafePointer(arena.array(taskFiles))
        spec.cgroup_task_count = taskFiles.count
        spec.stdin_fd = child.stdin.rawValue
        spec.stdout_fd = child.stdout.rawValue
        spec.stderr_fd = child.stderr.rawValue
        spec.status_fd = child.status.rawValue
        spec.control_fd = child.control.rawValue

        var pidfd: Int32 = -1
        let rc = program.instructions.withUnsafeBytes { filter -> Int32 in
            spec.filter = filter.baseAddress
            return airlock_spawn(&spec, &pidfd)
        }
        guard rc > 0 else {
            throw SandboxError(
                .spawn, "clone3 with new user, pid, net, mount, ipc, uts and cgroup namespaces", errno: Errno(-rc)
            )
        }
        return (rc, FileDescriptor(pidfd))
    }

    /// The profile's `openFiles`, at most the supervisor's own hard limit: a process without CAP_SYS_RESOURCE in the
    /// first user namespace cannot raise it, and PID 1 would die in set-up trying (under `prlimit --nofile=40:40`).
    static func openFiles(_ limits: Limits) -> UInt64 {
        var files = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0 else { return limits.openFiles }
        return min(limits.openFiles, UInt64(files.rlim_max))
    }

    /// The mount list as `airlock_mount`s. A required bind source must exist now: the error names its profile field
    /// (`airlock.mounts[i].source`) or, for a mount the caller added, its destination.
    private static func mounts(
        _ mounts: [MountSpec], profileMounts: Int, arena: CArena
    ) throws(SandboxError) -> [airlock_mount] {
        var cMounts: [airlock_mount] = []
        for (i, m) in mounts.enumerated() {
            var c = airlock_mount()
            c.destination = UnsafePointer(arena.string(String(m.destination.dropFirst())))
            c.mode = m.mode ?? 0o755
            c.optional = m.optional ? 1 : 0
            switch m.kind {
            case .bind:
                let source = m.source ?? ""
                var st = stat()
                if stat(source, &st) != 0 && !m.optional {
                    let field = i < profileMounts ? "airlock.mounts[\(i)].source" : "mount \(m.destination)"
                    throw SandboxError(.mountSource, "mount source \(source) (\(field)) is missing", errno: .current)
                }
                c.kind = Int32(AIRLOCK_MOUNT_BIND.rawValue)
                c.source = UnsafePointer(arena.string(source))
            case .tmpfs:
                c.kind = Int32(AIRLOCK_MOUNT_TMPFS.rawValue)
                let size = m.sizeBytes ?? (64 << 20)
                c.data = UnsafePointer(
                    arena.string("mode=\(String(m.mode ?? 0o1777, radix: 8)),size=\(size),nr_inodes=16384")
                )
            case .proc:
                c.kind = Int32(AIRLOCK_MOUNT_PROC.rawValue)
            case .dev:
                c.kind = Int32(AIRLOCK_MOUNT_DEV.rawValue)
            case .file:
                c.kind = Int32(AIRLOCK_MOUNT_FILE.rawValue)
                let bytes = m.bytes ?? Array((m.contents ?? "").utf8)
                c.data = UnsafePointer(arena.bytes(bytes))
                c.data_len = bytes.count
                c.mode = m.mode ?? 0o644
            case .symlink:
                c.kind = Int32(AIRLOCK_MOUNT_SYMLINK.rawValue)
                c.source = UnsafePointer(arena.string(m.target ?? ""))
            case .dir:
                c.kind = Int32(AIRLOCK_MOUNT_DIR.rawValue)
            case .sysfs:
                c.kind = Int32(AIRLOCK_MOUNT_SYSFS.rawValue)
            }
            cMounts.append(c)
        }
        return cMounts
    }

    /// The paths the command is tried at, in order: itself when it holds a `/`, otherwise each `PATH` entry of the
    /// sandbox's environment.
    private static func candidates(_ command: String, _ settings: SandboxSettings) -> [String] {
        if command.contains("/") { return [command] }
        let path = settings.environment.first { $0.0 == "PATH" }?.1 ?? "/usr/bin:/bin"
        return path.split(separator: ":").filter { $0.hasPrefix("/") }.map { "\($0)/\(command)" }
    }
}

/// The pipes between the supervisor and the sandbox's PID 1, all close-on-exec: the command's output, the status pipe
/// PID 1 reports on, and the control pipe it waits on (its stdin is /dev/null).
enum SandboxPipes {
    /// The supervisor's ends. The output and status ends do not block.
    struct ParentEnds {
        var stdout: FileDescriptor
        var stderr: FileDescriptor
        var status: FileDescriptor
        var control: FileDescriptor

        func close() { for fd in [stdout, stderr, status, control] { fd.close() } }
    }

    /// PID 1's ends, which the supervisor closes once it is cloned.
    struct ChildEnds {
        var stdin: FileDescriptor
        var stdout: FileDescriptor
        var stderr: FileDescriptor
        var status: FileDescriptor
        var control: FileDescriptor

        func close() { for fd in [stdin, stdout, stderr, status, control] { fd.close() } }
    }

    /// Opens /dev/null and the four pipes; on failure closes what it opened.
    static func open() throws(SandboxError) -> (parent: ParentEnds, child: ChildEnds) {
        var opened: [FileDescriptor] = []
        do throws(SystemCallError) {
            let devNull = try FileDescriptor.open("/dev/null", O_RDONLY)
            opened.append(devNull)
            var pairs: [(read: FileDescriptor, write: FileDescriptor)] = []
            for _ in 0..<4 {
                var fds: [Int32] = [-1, -1]
                guard airlock_pipe(&fds) == 0 else { throw SystemCallError("pipe2") }
                pairs.append((FileDescriptor(fds[0]), FileDescriptor(fds[1])))
                opened += [FileDescriptor(fds[0]), FileDescriptor(fds[1])]
            }
            let (out, err, status, control) = (pairs[0], pairs[1], pairs[2], pairs[3])
            for fd in [out.read, err.read, status.read] {
                _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) | O_NONBLOCK)
            }
            return (
                ParentEnds(stdout: out.read, stderr: err.read, status: status.read, control: control.write),
                ChildEnds(
                    stdin: devNull, stdout: out.write, stderr: err.write, status: status.write, control: control.read
                )
            )
        } catch {
            for fd in opened { fd.close() }
            throw SandboxError(.supervisor, error.operation, error)
        }
    }
}

/// C memory that must outlive the clone call.
private final class CArena {
    private var mallocs: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        mallocs.append(UnsafeMutableRawPointer(p))
        return p
    }

    func bytes(_ b: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let p = malloc(max(b.count, 1))!
        b.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        mallocs.append(p)
        return p.assumingMemoryBound(to: CChar.self)
    }

    func array<T>(_ items: [T]) -> UnsafeMutablePointer<T> {
        let capacity = max(items.count, 1)
        let p = malloc(capacity * MemoryLayout<T>.stride)!.bindMemory(to: T.self, capacity: capacity)
        p.initialize(from: items, count: items.count)
        mallocs.append(UnsafeMutableRawPointer(p))
        return p
    }

    deinit { for p in mallocs { free(p) } }
}
