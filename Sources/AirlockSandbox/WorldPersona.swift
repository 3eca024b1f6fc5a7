internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// The part of a drawn world (`HostWorld`) that set-up itself applies, beyond the mount tree and settings
/// `HostWorld.apply` changes: the command's pid, PID 1's name and command line, the root's size, the GPU nodes under
/// /dev, and the ordinary rlimits the command sees while the cgroup and the supervisor keep the profile's limits.
struct WorldPersona {
    /// Writes PID 1 makes through its procfs while `/proc/sys` is still writable: `sys/kernel/ns_last_pid`, so that
    /// the command, PID 1's first child, gets the world's pid.
    var procWrites: [(name: String, value: UInt64)]
    /// The root tmpfs's options: a disk's size, not a 16 MiB tmpfs.
    var rootOptions: String
    /// Names under /dev that show /dev/null (the GPU's nodes).
    var deviceAliases: [String]
    /// PID 1's name (`PR_SET_NAME`, `/proc/1/comm`).
    var initName: String
    /// PID 1's command line (`/proc/1/cmdline`), one argument.
    var initTitle: String

    init(_ world: HostWorld) {
        var writes: [(String, UInt64)] = []
        if let pid = world.commandPid, pid > 2 {
            // Above the host's pid_max the write would fail set-up: fold the drawn pid into the range there is.
            let max = WorldPersona.pidMax()
            let fitted = pid < max ? pid : 300 + pid % Swift.max(1, max - 600)
            writes.append(("sys/kernel/ns_last_pid", UInt64(fitted - 1)))
        }
        procWrites = writes
        let size = world.rootSizeBytes ?? (64 << 30)
        rootOptions = "mode=0755,size=\(size),nr_inodes=\(max(4096, min(size / 16384, 1 << 26)))"
        deviceAliases = world.gpu ? HostWorld.gpuDeviceNames : []
        initName = String(world.initName.utf8.prefix(15)) ?? "systemd"
        initTitle = world.initCommand
    }

    /// The host's `kernel.pid_max` (a PID namespace has the same); 32768, the kernel's smallest default, when it
    /// cannot be read.
    static func pidMax() -> Int32 {
        let fd = open("/proc/sys/kernel/pid_max", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 32768 }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &bytes, bytes.count)
        guard n > 0, let value = Int32(String(decoding: bytes[0..<n], as: UTF8.self).trimmingNewline), value > 1200
        else { return 32768 }
        return value
    }

    /// Where the supervisor's own argument area lies, and where the environment area after it ends when the two are
    /// adjacent (the kernel then shows a longer title across both): `/proc/self/stat` fields 48–51. PID 1 is a copy
    /// of this process, so the addresses are its own.
    static func argumentArea() -> (start: UInt64, end: UInt64, areaEnd: UInt64)? {
        let fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &bytes, bytes.count)
        guard n > 0, let close = bytes[0..<n].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // After the command name come fields 3, 4, …: field k is at index k - 3.
        let fields = bytes[(close + 1)..<n].split(separator: UInt8(ascii: " ")).map {
            UInt64(String(decoding: $0, as: UTF8.self).trimmingNewline)
        }
        guard fields.count >= 49, let start = fields[45], let end = fields[46], let envStart = fields[47],
            let envEnd = fields[48], start > 0, end > start
        else { return nil }
        return (start, end, envStart == end && envEnd > envStart ? envEnd : end)
    }

    /// What `getrlimit` shows in a world: systemd's defaults for a service (NOFILE 1024:524288, NPROC as the
    /// supervisor's own, address space, CPU and file size unlimited, MEMLOCK 8 MiB, the host's pending signals and
    /// 819200 bytes of message queues). The profile's limits are kept by the cgroup (memory, pids), the supervisor
    /// (CPU seconds, from the cgroup's usage) and the tmpfs sizes (file sizes). No core files: the host's
    /// `core_pattern` may hand one to a host program.
    static func ordinaryRlimits(_ limits: Limits) -> [airlock_rlimit] {
        let unlimited = UInt64.max
        let own = { (resource: __rlimit_resource) -> (UInt64, UInt64) in
            var r = rlimit()
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &r) == 0 else { return (4096, 4096) }
            return (UInt64(r.rlim_cur), UInt64(r.rlim_max))
        }
        let entry = { (resource: __rlimit_resource, soft: UInt64, hard: UInt64) in
            airlock_rlimit(resource: Int32(resource.rawValue), soft: soft, hard: hard)
        }
        let files = min(524_288, own(RLIMIT_NOFILE).1)
        let processes = own(__RLIMIT_NPROC)
        let signals = own(__RLIMIT_SIGPENDING)
        return [
            entry(RLIMIT_AS, unlimited, unlimited), entry(RLIMIT_CPU, unlimited, unlimited),
            entry(RLIMIT_NOFILE, min(1024, files), files),
            airlock_rlimit(resource: airlock_rlimit_nproc(), soft: processes.0, hard: processes.1),
            entry(RLIMIT_FSIZE, unlimited, unlimited), entry(RLIMIT_CORE, 0, 0),
            entry(__RLIMIT_SIGPENDING, signals.0, signals.1), entry(__RLIMIT_MSGQUEUE, 819_200, 819_200),
            entry(__RLIMIT_MEMLOCK, 8 << 20, 8 << 20),
        ]
    }
}

extension String {
    fileprivate var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
