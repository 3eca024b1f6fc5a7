public import AirlockJSON
public import AirlockSandbox
public import AirlockSystem
internal import AirlockProbe

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd's host identities for its sandboxes (docs/daemon.md, "Sandbox identities"): each live sandbox (a cold
/// detonation, a warm sandbox waiting for its model, a repository's or ONNX detonation, the runtimes' descriptions at
/// start) holds a host uid and gid of the configured range that no other live sandbox holds, so the kernel's per-uid
/// accounting (pipe buffers, keyrings, `RLIMIT_NPROC` where it is counted per uid, user-watch counters) is never
/// shared between two models. An identity comes back only once its sandbox is gone (`SandboxIdentitySource`); when
/// every one is held, a sandbox is refused (`uid-range-exhausted`) rather than given a shared one.
///
/// Identities are handed out round-robin, so an id just given back is the last to be reused. Ids that some host
/// process was found running under (`HostIdUsage`, at start: a crashed daemon's leftovers) are held back, and looked
/// at again only when nothing else is free.
public final class SandboxIdentities: SandboxIdentitySource, @unchecked Sendable {
    /// The range handed out.
    public let range: SandboxIdRange
    private let usage: @Sendable () -> HostIdUsage
    private let monitor = Monitor()
    /// Offsets in the range held by live sandboxes.
    private var held = Set<UInt32>()
    /// Offsets some host process was seen running under; never handed out while that holds.
    private var quarantined = Set<UInt32>()
    /// Where the next search starts.
    private var cursor: UInt32 = 0
    private var refusals = 0
    private var peak = 0
    /// When the quarantine was last looked at again (monotonic ns): at most once a `rescanInterval`.
    private var lastRescan: UInt64 = 0
    /// The shortest time between two passes over /proc for the quarantine, ns: refused requests cannot make the
    /// daemon read every process's status more often.
    private let rescanInterval: UInt64

    /// The reason a refusal for want of an identity is counted under (`Metrics.refused(…, reason:)`).
    public static let exhaustedReason = "uid-range-exhausted"

    /// An allocator over `range`. `usage` tells which host ids processes run under now (`HostIdUsage.scan`, one pass
    /// over /proc); it is read once here, and again only when the range seems exhausted, at most once per
    /// `rescanInterval` ns (1 s).
    public init(
        range: SandboxIdRange, usage: @escaping @Sendable () -> HostIdUsage = { HostIdUsage.scan() },
        rescanInterval: UInt64 = 1_000_000_000
    ) {
        self.range = range
        self.usage = usage
        self.rescanInterval = rescanInterval
        quarantined = Self.offsets(in: range, usedBy: usage())
    }

    /// The offsets of `range` whose uid or gid `used` holds.
    private static func offsets(in range: SandboxIdRange, usedBy used: HostIdUsage) -> Set<UInt32> {
        var offsets = Set<UInt32>()
        for uid in used.uids where range.containsUid(uid) { offsets.insert(uid - range.firstUid) }
        for gid in used.gids where range.containsGid(gid) { offsets.insert(gid - range.firstGid) }
        return offsets
    }

    /// Host ids held back because a process outside airlockd's sandboxes was found running under them.
    public var quarantinedCount: Int { monitor.locked { quarantined.count } }

    /// Identities held by live sandboxes now.
    public var inUse: Int { monitor.locked { held.count } }

    /// An identity no live sandbox holds. Throws `SandboxError.Code.identities` when there is none.
    public func acquire() throws(SandboxError) -> SandboxHostIdentity {
        let found = monitor.locked { () -> SandboxHostIdentity? in
            if let offset = nextFree() ?? (quarantined.isEmpty ? nil : recheckQuarantine()) {
                held.insert(offset)
                peak = max(peak, held.count)
                return SandboxHostIdentity(uid: range.firstUid + offset, gid: range.firstGid + offset)
            }
            refusals += 1
            return nil
        }
        if let found { return found }
        SandboxIdentities.exhaustion?.noted = true
        throw SandboxError(
            .identities,
            "\(SandboxIdentities.exhaustedReason): all \(range.count) sandbox identities (sandboxIds \(range)) are held by live sandboxes; a sandbox never shares one"
        )
    }

    /// Gives `identity` back (its sandbox is gone). An identity not handed out here is ignored.
    public func release(_ identity: SandboxHostIdentity) {
        guard range.containsUid(identity.uid) else { return }
        let offset = identity.uid - range.firstUid
        guard identity.gid == range.firstGid + offset else { return }
        monitor.locked { _ = held.remove(offset) }
    }

    public func mayHandOut(uid: UInt32) -> Bool { range.containsUid(uid) }
    public func mayHandOut(gid: UInt32) -> Bool { range.containsGid(gid) }

    /// Call with the monitor held: the first offset from the cursor that is neither held nor quarantined. At most
    /// `range.count` steps, usually one (identities are released in about the order they were taken).
    private func nextFree() -> UInt32? {
        guard held.count + quarantined.count < Int(range.count) else { return nil }
        var offset = cursor
        for _ in 0..<range.count {
            if !held.contains(offset) && !quarantined.contains(offset) {
                cursor = offset + 1 == range.count ? 0 : offset + 1
                return offset
            }
            offset = offset + 1 == range.count ? 0 : offset + 1
        }
        return nil
    }

    /// Call with the monitor held: reads the host's processes again and frees the quarantined ids nobody runs
    /// under any more; the first free offset then, if any.
    private func recheckQuarantine() -> UInt32? {
        let time = monotonicNs()
        guard lastRescan == 0 || time - lastRescan >= rescanInterval else { return nil }
        lastRescan = time
        let now = Self.offsets(in: range, usedBy: usage())
        let cleared = quarantined.subtracting(now)
        guard !cleared.isEmpty else { return nil }
        quarantined.subtract(cleared)
        Log.write(.info, "\(cleared.count) sandbox identities no host process runs under any more are free again")
        return nextFree()
    }

    /// The `sandboxIds` member of the daemon's status: the range, what is held and what was refused.
    public var status: (held: Int, peak: Int, quarantined: Int, refusals: Int) {
        monitor.locked { (held.count, peak, quarantined.count, refusals) }
    }

    /// `status` as the `sandboxIds` member of the `status` reply (docs/protocol.md).
    public var statusJSON: JSON {
        let s = status
        return .object([
            ("firstUid", .int(Int(range.firstUid))), ("firstGid", .int(Int(range.firstGid))),
            ("count", .int(Int(range.count))), ("held", .int(s.held)),
            ("peak", .int(s.peak)), ("quarantined", .int(s.quarantined)), ("refused", .int(s.refusals)),
        ])
    }

    // MARK: Noticing a refusal on the request's thread

    /// Set by `acquire` when it refused, for the examination that asked (`noticingExhaustion`): its reply is then a
    /// refusal with reason `uid-range-exhausted`, not reports of detonations that never ran.
    public final class Exhaustion: @unchecked Sendable {
        /// Whether an identity was refused.
        public var noted = false
        public init() {}
    }

    /// The thread's `Exhaustion` while `noticingExhaustion` runs: a pthread key, as `acquire` runs on the worker's
    /// own thread, which has no task (task-locals of a closure type bound there crashed a release build: see
    /// `ModelFolder.Reading`).
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The `Exhaustion` of the examination running on this thread, if any.
    static var exhaustion: Exhaustion? {
        guard let pointer = pthread_getspecific(key) else { return nil }
        return Unmanaged<Exhaustion>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Runs `body`, and says whether any identity it asked for on this thread was refused.
    public static func noticingExhaustion<T>(_ body: () -> T) -> (T, exhausted: Bool) {
        let exhaustion = Exhaustion()
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, Unmanaged.passUnretained(exhaustion).toOpaque())
        defer { pthread_setspecific(key, previous) }
        let value = withExtendedLifetime(exhaustion) { body() }
        return (value, exhaustion.noted)
    }
}

/// The host ids processes run under (real, effective, saved and file-system uids and gids), read from /proc.
public struct HostIdUsage: Sendable {
    /// The uids.
    public var uids: Set<UInt32>
    /// The gids.
    public var gids: Set<UInt32>

    /// Usage made of these ids.
    public init(uids: Set<UInt32> = [], gids: Set<UInt32> = []) {
        self.uids = uids
        self.gids = gids
    }

    /// The most processes read (pid_max is at most 2^22).
    static let maxProcesses = 1 << 22

    /// One pass over `/proc/*/status` (the `Uid:` and `Gid:` lines, 4 KiB read of each), skipping processes that end
    /// meanwhile. `root` is for tests.
    public static func scan(root: String = "/proc") -> HostIdUsage {
        var usage = HostIdUsage()
        guard let dir = opendir(root) else { return usage }
        defer { closedir(dir) }
        var seen = 0
        while let entry = readdir(dir), seen < maxProcesses {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { continue }
            seen += 1
            let fd = open("\(root)/\(name)/status", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard n > 0 else { continue }
            for line in buffer[0..<n].split(separator: 0x0A) {
                let text = String(decoding: line, as: UTF8.self)
                let isUid = text.hasPrefix("Uid:")
                guard isUid || text.hasPrefix("Gid:") else { continue }
                let ids = text.dropFirst(4).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap {
                    UInt32($0)
                }
                if isUid { usage.uids.formUnion(ids) } else { usage.gids.formUnion(ids) }
            }
        }
        return usage
    }
}

extension SandboxIdentities {
    /// The allocator a daemon configured with `config` uses, its range checked against the host's ids (`host`), or
    /// nil for `sandboxIds: shared`. A daemon that is not root (`euid`) cannot map host ids other than its own: with
    /// no `sandboxIds` it shares its own uid (with a warning), and a range it was given explicitly is refused.
    public static func start(
        _ config: DaemonConfig, host: @autoclosure () -> HostIdDatabase = HostIdDatabase.load(),
        euid: UInt32? = nil
    ) throws(ConfigError) -> SandboxIdentities? {
        let euid = euid ?? geteuid()
        let setting = config.sandboxIds ?? (euid == 0 ? .standard : .shared)
        if setting == .shared {
            let whose =
                euid == 0 ? "the profile's host ids (65534 by default)" : "the daemon's own uid \(euid) (not root)"
            Log.write(
                .warning,
                "sandboxIds shared: every sandbox maps to \(whose), so per-uid kernel budgets (pipe buffers, epoll watches, keyrings) are shared between concurrent models"
            )
            return nil
        }
        guard euid == 0 else {
            throw ConfigError(
                "sandboxIds \(setting): airlockd runs as uid \(euid), not root, and can map no host id but its own into a sandbox; run it as root (the packaged unit does), or set \"sandboxIds\": \"shared\" to have every sandbox share uid \(euid)"
            )
        }
        guard let range = try setting.resolve(host: host()) else { return nil }
        let identities = SandboxIdentities(range: range)
        let quarantined = identities.quarantinedCount
        if quarantined > 0 {
            Log.write(
                .warning,
                "sandboxIds \(range): \(quarantined) ids of the range are in use by host processes (a crashed daemon's sandboxes?) and are held back until nothing runs under them"
            )
        }
        return identities
    }

    /// Says, at start, when the range holds fewer identities than the configuration can have live at once
    /// (`SandboxIdRange.need`): sandboxes past it would be refused (`uid-range-exhausted`).
    public static func checkSize(
        _ config: DaemonConfig, runtimes: DaemonRuntimes, identities: (any SandboxIdentitySource)?
    ) {
        guard let identities = identities as? SandboxIdentities else { return }
        let templates = runtimes.names.compactMap { runtimes.byName[$0] }.map {
            ConsumerPlan.templates(runtime: $0).count
        }.reduce(0, +)
        let warm = config.warm * config.warmWorlds * templates
        let need = SandboxIdRange.need(workers: config.maxConcurrent, warmSandboxes: warm)
        let free = Int(identities.range.count) - identities.quarantinedCount
        if free < need {
            Log.write(
                .warning,
                "sandboxIds \(identities.range): \(free) identities free, and \(config.maxConcurrent) workers with \(warm) warm sandboxes can hold \(need) at once; sandboxes past \(free) are refused (\(exhaustedReason))"
            )
        } else {
            Log.write(.info, "sandbox identities: \(identities.range) (\(free) free, at most \(need) held at once)")
        }
    }
}
