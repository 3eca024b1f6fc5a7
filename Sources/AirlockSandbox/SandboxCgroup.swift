import AirlockSystem
import AirlockTrace
internal import CSandbox
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

extension Sandbox {
    /// Why a sandbox run with `limits` could have no cgroup of its own here, or nil when it could: one is made and
    /// removed at once. For a supervisor's start-up, to say early what every run would otherwise say.
    public static func cgroupUnavailable(limits: Limits) -> String? {
        do throws(CgroupUnavailable) {
            let cgroup = try SandboxCgroup(limits: limits)
            cgroup.remove()
            return nil
        } catch {
            return error.reason
        }
    }
}

/// One sandbox's cgroup in the memory and pids controllers: created under the supervisor's own cgroup before the
/// sandbox starts, holding PID 1 before the command runs (cgroup v2: born there with `CLONE_INTO_CGROUP`; v1: PID 1
/// writes itself into `tasks` during set-up, after its uid map and before the mount tree), read and removed after
/// the whole tree is dead.
///
/// `memfd` pages, tmpfs pages and page cache are charged to the cgroup of the process that touches them first and
/// are counted by no rlimit: only the cgroup bounds them.
final class SandboxCgroup {
    /// A controller's directory for this sandbox.
    private struct Place {
        var controller: String  // "memory" or "pids"
        var version: Int
        var path: String
    }

    private var places: [Place] = []
    private let limits: Limits
    /// The v2 directory, open for `CLONE_INTO_CGROUP`; nil when the sandbox is placed by writing `tasks` (v1).
    private(set) var cloneFD: FileDescriptor?
    private var removed = false
    /// Where the sandbox's CPU time is read: v2's `cpu.stat` (`usage_usec`, in every cgroup), or v1's
    /// `cpuacct.usage` (ns) of a cpuacct cgroup made for it when that hierarchy is writable; nil: neither.
    private var cpuUsage: (path: String, v2: Bool)?
    /// The v1 cpuacct cgroup, removed with the others.
    private var cpuacct: String?
    /// Whether the supervisor can keep the profile's CPU seconds from the cgroup (`cpuSeconds`), so that the command
    /// may see an unlimited `RLIMIT_CPU`.
    var watchesCPU: Bool { cpuUsage != nil }

    /// Creates the sandbox's cgroup with the limits of `limits` (memory, pids = `processes`). Throws a sentence
    /// saying why there can be none.
    init(limits: Limits) throws(CgroupUnavailable) {
        self.limits = limits
        let hierarchies = CgroupHierarchies.current()
        let name = "airlock-\(getpid())-\(String(UInt64.random(in: 0..<(1 << 48)), radix: 16))"
        do throws(CgroupUnavailable) {
            for controller in ["memory", "pids"] {
                let parent = try hierarchies.directory(for: controller)
                SandboxCgroup.removeStale(in: parent.path)
                let place = Place(controller: controller, version: parent.version, path: "\(parent.path)/\(name)")
                // v2 holds both controllers in one directory.
                if !places.contains(where: { $0.path == place.path }) {
                    guard mkdir(place.path, 0o755) == 0 else {
                        throw CgroupUnavailable("cannot create \(place.path): \(Errno.current)")
                    }
                }
                places.append(place)
                try configure(place)
            }
            if let v2 = places.first(where: { $0.version == 2 }) {
                cpuUsage = ("\(v2.path)/cpu.stat", true)
                do throws(SystemCallError) {
                    cloneFD = try FileDescriptor.open(v2.path, O_RDONLY | O_DIRECTORY)
                } catch {
                    throw CgroupUnavailable("cannot open \(v2.path): \(error.errnoValue)")
                }
            }
        } catch {
            remove()
            throw error
        }
        if cpuUsage == nil, let v1 = try? hierarchies.directory(for: "cpuacct"), v1.version == 1 {
            SandboxCgroup.removeStale(in: v1.path)
            let path = "\(v1.path)/\(name)"
            if mkdir(path, 0o755) == 0 {
                cpuacct = path
                cpuUsage = ("\(path)/cpuacct.usage", false)
            }
        }
    }

    /// CPU seconds every process of the sandbox used so far, when the cgroup says (`watchesCPU`).
    func cpuSeconds() -> Double? {
        guard let cpuUsage else { return nil }
        if cpuUsage.v2 { return CgroupFiles.keyed(cpuUsage.path, "usage_usec").map { Double($0) / 1e6 } }
        return CgroupFiles.number(cpuUsage.path).map { Double($0) / 1e9 }
    }

    deinit {
        cloneFD?.close()
        if !removed { _ = remove() }
    }

    private func configure(_ place: Place) throws(CgroupUnavailable) {
        let memory = String(limits.memoryBytes)
        switch (place.controller, place.version) {
        case ("memory", 1):
            try write(place, "memory.limit_in_bytes", memory)
            // memory+swap: without it the limit pushes the sandbox into swap instead of stopping it. Absent when
            // the kernel does no swap accounting (swapaccount=0), and then swap is not bounded (docs/sandbox.md).
            if access("\(place.path)/memory.memsw.limit_in_bytes", F_OK) == 0 {
                try write(place, "memory.memsw.limit_in_bytes", memory)
            }
        case ("memory", _):
            try write(place, "memory.max", memory)
            if access("\(place.path)/memory.swap.max", F_OK) == 0 { try write(place, "memory.swap.max", "0") }
        default:
            try write(place, "pids.max", String(limits.processes))
        }
    }

    private func write(_ place: Place, _ file: String, _ value: String) throws(CgroupUnavailable) {
        let error = CgroupFiles.write("\(place.path)/\(file)", value)
        if error != 0 {
            throw CgroupUnavailable("cannot set \(place.path)/\(file) to \(value): \(Errno(error))")
        }
    }

    /// The `tasks` files of the v1 cgroups, which the sandbox's PID 1 writes itself into during set-up, before
    /// anything else runs in the sandbox (v2 creates PID 1 in its cgroup instead).
    var v1TaskFiles: [String] {
        places.filter { $0.version == 1 }.map { "\($0.path)/tasks" } + (cpuacct.map { ["\($0)/tasks"] } ?? [])
    }

    /// What the sandbox used and ran into. Read after the tree is dead, before `remove`.
    func usage() -> (CgroupUsage, [ResourceLimitHit]) {
        var usage = CgroupUsage(
            hierarchy: "", memoryLimitBytes: limits.memoryBytes, pidsLimit: limits.processes, memoryPeakBytes: nil,
            memoryLimitReached: 0, oomKills: 0, pidsLimitReached: 0, removed: removed
        )
        usage.paths = Array(Set(places.map(\.path))).sorted()
        let versions = Set(places.map(\.version))
        usage.hierarchy =
            versions.count == 1
            ? "v\(versions.first!)" : places.map { "\($0.controller) v\($0.version)" }.joined(separator: ", ")
        for place in places {
            switch (place.controller, place.version) {
            case ("memory", 1):
                usage.memoryPeakBytes = CgroupFiles.number("\(place.path)/memory.max_usage_in_bytes")
                usage.memoryLimitReached =
                    Int(CgroupFiles.number("\(place.path)/memory.failcnt") ?? 0)
                    + Int(CgroupFiles.number("\(place.path)/memory.memsw.failcnt") ?? 0)
                usage.oomKills = Int(CgroupFiles.keyed("\(place.path)/memory.oom_control", "oom_kill") ?? 0)
            case ("memory", _):
                usage.memoryPeakBytes = CgroupFiles.number("\(place.path)/memory.peak")
                usage.memoryLimitReached = Int(CgroupFiles.keyed("\(place.path)/memory.events", "oom") ?? 0)
                usage.oomKills = Int(CgroupFiles.keyed("\(place.path)/memory.events", "oom_kill") ?? 0)
            default:
                usage.pidsLimitReached = Int(CgroupFiles.keyed("\(place.path)/pids.events", "max") ?? 0)
            }
        }
        var hits: [ResourceLimitHit] = []
        // v1's failcnt also counts limits met by reclaiming page cache, which a large honest load can do: there only
        // an OOM kill says the sandbox wanted more than it may have. v2's oom event is already that.
        let v2Memory = places.contains { $0.controller == "memory" && $0.version == 2 }
        if usage.oomKills > 0 || (v2Memory && usage.memoryLimitReached > 0) {
            var detail =
                "the sandbox's memory limit of \(limits.memoryBytes) bytes (airlock.limits.memoryBytes, "
                + "all its processes and the memory they hold together) was reached"
            if usage.oomKills > 0 {
                detail += "; the kernel killed \(usage.oomKills) process\(usage.oomKills == 1 ? "" : "es")"
            }
            hits.append(ResourceLimitHit(resource: .memory, limit: limits.memoryBytes, detail: detail))
        }
        if usage.pidsLimitReached > 0 {
            hits.append(
                ResourceLimitHit(
                    resource: .pids, limit: limits.processes,
                    detail:
                        "the sandbox's limit of \(limits.processes) processes and threads (airlock.limits.processes) "
                        + "was reached; \(usage.pidsLimitReached) "
                        + (usage.pidsLimitReached == 1 ? "fork was refused" : "forks were refused")
                ))
        }
        return (usage, hits)
    }

    /// Removes the cgroup (every controller's directory). Call once the tree is dead: a cgroup with tasks cannot go,
    /// and one whose last tasks are still being torn down answers EBUSY for a moment, so this retries for up to 2 s.
    @discardableResult
    func remove() -> Bool {
        var ok = true
        let paths = places.map(\.path) + (cpuacct.map { [$0] } ?? [])
        for path in paths.reversed() where access(path, F_OK) == 0 {
            var tries = 0
            while rmdir(path) != 0 {
                if errno == ENOENT { break }
                tries += 1
                if tries > 200 || (errno != EBUSY && errno != EAGAIN && errno != EINTR) {
                    ok = false
                    break
                }
                usleep(10_000)
            }
        }
        removed = ok
        return ok
    }

    /// Reads what the sandbox used and removes the cgroup: the run's `SandboxResult.cgroup` and `limitsHit`.
    func finish() -> (SandboxCgroupStatus, [ResourceLimitHit]) {
        var (usage, hits) = usage()
        usage.removed = remove()
        return (.applied(usage), hits)
    }

    /// Removes the cgroups a supervisor that died (killed, or a crash) left in `directory`: `airlock-PID-…` whose
    /// PID no longer exists. Their sandboxes died with that supervisor (PID 1 exits when its control pipe closes), so
    /// they are empty; one that is not is left alone (rmdir refuses it).
    static func removeStale(in directory: String) {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            let parts = name.split(separator: "-")
            guard parts.count == 3, parts[0] == "airlock", let pid = Int32(parts[1]), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { _ = rmdir("\(directory)/\(name)") }
        }
    }

    /// The directories of this sandbox's cgroup (for tests and messages).
    var paths: [String] { places.map(\.path) }
}

/// Why a sandbox could have no cgroup.
struct CgroupUnavailable: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Small reads and writes of cgroup files.
enum CgroupFiles {
    /// Writes `value` to `path`; returns 0 or the errno.
    static func write(_ path: String, _ value: String) -> Int32 {
        let fd: FileDescriptor
        do throws(SystemCallError) {
            fd = try FileDescriptor.open(path, O_WRONLY)
        } catch {
            return error.errnoValue.rawValue
        }
        defer { fd.close() }
        let n = value.withCString { Glibc.write(fd.rawValue, $0, strlen($0)) }
        return n == value.utf8.count ? 0 : (n < 0 ? errno : EIO)
    }

    /// The file's text (at most 64 KiB), or nil.
    static func read(_ path: String) -> String? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        defer { fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A file holding one number (`max` reads as nil).
    static func number(_ path: String) -> UInt64? {
        read(path).flatMap { UInt64($0.trimmingWhitespace) }
    }

    /// The value of `key` in a flat-keyed file (`oom_kill 1` lines).
    static func keyed(_ path: String, _ key: String) -> UInt64? {
        guard let text = read(path) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2 && parts[0] == key { return UInt64(parts[1]) }
        }
        return nil
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}

/// Where the memory and pids controllers are, and the supervisor's own cgroup in each (from /proc/self/mountinfo
/// and /proc/self/cgroup).
struct CgroupHierarchies: Sendable {
    /// A v1 hierarchy: its mount point and the supervisor's cgroup in it.
    struct V1: Sendable {
        var controllers: Set<String>
        var mountPoint: String
        var path: String
    }

    var v1: [V1] = []
    /// The v2 mount point and the supervisor's cgroup in it.
    var v2: (mountPoint: String, path: String)?

    /// The v2 cgroup that holds the sandboxes, once set up (see `v2Base`), for the life of the process: after the
    /// supervisor has moved itself into a leaf, /proc/self/cgroup no longer names it.
    private static let v2BaseCache = Mutex<String?>(nil)

    /// Whether the next `current()` takes `prefetched` (`Sandbox.prepareInBackground`) instead of reading again.
    private static let prefetchExpected = Atomic<Bool>(false)
    /// The hierarchies as read ahead, on another thread, for a process about to run one sandbox; whoever touches it
    /// first reads them, the other waits.
    private static let prefetched = CgroupHierarchies.read()

    /// Says that the next `current()` may take what `prefetch()` reads.
    static func expectPrefetch() { prefetchExpected.store(true, ordering: .releasing) }

    /// Reads the hierarchies for the next `current()`, on the calling thread.
    static func prefetch() { _ = prefetched }

    /// The hierarchies now: read ahead once after `expectPrefetch()`, read afresh otherwise (a long-running
    /// supervisor reads them for each sandbox).
    static func current() -> CgroupHierarchies {
        if prefetchExpected.exchange(false, ordering: .acquiringAndReleasing) { return prefetched }
        return read()
    }

    private static func read() -> CgroupHierarchies {
        var h = CgroupHierarchies()
        var own: [String: String] = [:]  // controller list ("memory", "" for v2) → path
        for line in (CgroupFiles.read("/proc/self/cgroup") ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            own[String(parts[1])] = String(parts[2])
        }
        for line in (CgroupFiles.read("/proc/self/mountinfo") ?? "").split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " ")
            let right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let root = String(left[3]), mountPoint = unescape(String(left[4]))
            switch right[0] {
            case "cgroup":
                let names = { (list: Substring) in Set(list.split(separator: ",").map(String.init)) }
                let controllers = names(right[2]).intersection(["memory", "pids", "cpuacct"])
                let holder = own.first { names(Substring($0.key)).isSuperset(of: controllers) }
                guard !controllers.isEmpty, let path = holder?.value, let relative = relativePath(path, root: root)
                else { continue }
                h.v1.append(V1(controllers: controllers, mountPoint: mountPoint, path: relative))
            case "cgroup2":
                if h.v2 == nil, let path = own[""], let relative = relativePath(path, root: root) {
                    h.v2 = (mountPoint, relative)
                }
            default:
                continue
            }
        }
        return h
    }

    /// `path` as seen below a mount of `root`; nil when it lies outside it.
    private static func relativePath(_ path: String, root: String) -> String? {
        if root == "/" { return path == "/" ? "" : path }
        if path == root { return "" }
        return path.hasPrefix(root + "/") ? String(path.dropFirst(root.count)) : nil
    }

    /// Mount points in mountinfo escape space, tab, newline and backslash as octal.
    private static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "\\"), bytes.count >= 3,
                let v = UInt8(String(decoding: bytes.prefix(3), as: UTF8.self), radix: 8)
            {
                out.append(v)
                bytes = bytes.dropFirst(3)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The directory to create a sandbox's cgroup in for `controller`: the supervisor's own cgroup in the v1
    /// hierarchy that has it, else in v2 where the controller is enabled for children.
    func directory(for controller: String) throws(CgroupUnavailable) -> (path: String, version: Int) {
        if let h = v1.first(where: { $0.controllers.contains(controller) }) {
            let dir = h.mountPoint + h.path
            guard access(dir, W_OK) == 0 else {
                throw CgroupUnavailable(
                    "the supervisor's \(controller) cgroup \(dir) (v1) is not writable: \(Errno.current)"
                )
            }
            return (dir, 1)
        }
        guard let v2 else {
            throw CgroupUnavailable("no \(controller) controller is mounted (neither cgroup v1 nor v2)")
        }
        return (try v2Base(for: controller, mountPoint: v2.mountPoint, own: v2.path), 2)
    }

    /// The v2 cgroup whose children the sandboxes are, with `controller` enabled for them. cgroup v2 lets a cgroup
    /// with processes of its own give no controller to its children, so when the supervisor's cgroup is delegated
    /// to it (systemd `Delegate=yes`), the supervisor moves itself into a leaf (`supervisor`) once and enables the
    /// memory and pids controllers for the children of its cgroup. A cgroup that is not delegated is left alone.
    private func v2Base(for controller: String, mountPoint: String, own: String) throws(CgroupUnavailable) -> String {
        try CgroupHierarchies.v2BaseCache.withLock { cache throws(CgroupUnavailable) -> String in
            let base = cache ?? (mountPoint + own)
            let enabled = (CgroupFiles.read("\(base)/cgroup.subtree_control") ?? "")
                .split(whereSeparator: \.isWhitespace)
            if enabled.contains(Substring(controller)) {
                cache = base
                return base
            }
            let available = (CgroupFiles.read("\(base)/cgroup.controllers") ?? "").split(whereSeparator: \.isWhitespace)
            guard available.contains(Substring(controller)) else {
                throw CgroupUnavailable(
                    "the \(controller) controller is not available in the supervisor's cgroup \(base) (v2): "
                        + "delegate it (systemd Delegate=yes)"
                )
            }
            guard base == mountPoint || CgroupHierarchies.isDelegated(base) else {
                throw CgroupUnavailable(
                    "the supervisor's cgroup \(base) (v2) is not delegated to it (systemd Delegate=yes)"
                )
            }
            if base != mountPoint && !(CgroupFiles.read("\(base)/cgroup.procs") ?? "").isEmpty {
                let leaf = "\(base)/supervisor"
                if mkdir(leaf, 0o755) != 0 && errno != EEXIST {
                    throw CgroupUnavailable("cannot create \(leaf): \(Errno.current)")
                }
                let error = CgroupFiles.write("\(leaf)/cgroup.procs", String(getpid()))
                if error != 0 {
                    throw CgroupUnavailable("cannot move the supervisor into \(leaf): \(Errno(error))")
                }
            }
            let error = CgroupFiles.write("\(base)/cgroup.subtree_control", "+memory +pids")
            if error != 0 {
                throw CgroupUnavailable(
                    "cannot enable the memory and pids controllers in \(base) (v2): \(Errno(error))"
                )
            }
            cache = base
            return base
        }
    }

    /// systemd marks a cgroup it delegated with the extended attributes `trusted.delegate` (readable only with
    /// `CAP_SYS_ADMIN`) and, in recent versions, `user.delegate`, set to `1`.
    static func isDelegated(_ path: String) -> Bool {
        for name in ["trusted.delegate", "user.delegate"] {
            var value = [UInt8](repeating: 0, count: 8)
            let n = airlock_getxattr(path, name, &value, value.count)
            if n == 1 && value[0] == UInt8(ascii: "1") { return true }
        }
        return false
    }
}
