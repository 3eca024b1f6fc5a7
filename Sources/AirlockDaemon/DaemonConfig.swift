internal import AirlockJSON
public import AirlockSystem
public import AirlockSandbox
public import AirlockAnalysis

#if canImport(Glibc)
    import Glibc
#endif

/// A configuration that could not be read or makes no sense, or a daemon that cannot start with it (its socket, its
/// signals): the message names the field or the step.
public struct ConfigError: AirlockError {
    /// What is wrong, and where.
    public let message: String
    /// The errno, when a system call failed.
    public let errno: Errno?
    /// Creates an error.
    public init(_ message: String, errno: Errno? = nil) {
        self.message = message
        self.errno = errno
    }
    /// `"config"`.
    public var code: String { "config" }
    public var description: String { message }
}

/// How airlockd runs: where it listens, who may ask, how much it does at once. Read from `--config FILE` (JSON,
/// every field optional, unknown fields refused), then overridden by command-line options. docs/daemon.md.
public struct DaemonConfig: Sendable {
    /// The socket's path (ignored under socket activation).
    public var socketPath = "/run/airlock/airlockd.sock"
    /// Users allowed besides root and the daemon's own user.
    public var allowUIDs: [UInt32] = []
    /// Groups whose members are allowed (missing groups are skipped with a warning).
    public var allowGroups: [String] = ["airlock"]
    /// Requests handled at once (worker threads).
    public var maxConcurrent = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    /// Requests that may wait for a worker before the daemon answers `busy`.
    public var queue = 64
    /// Worker threads of the static lane (docs/daemon.md, "Lanes"): scans, and probes answered without a sandbox.
    public var staticWorkers = 2
    /// Requests that may wait for a static worker before the daemon answers `busy`.
    public var staticQueue = 1024
    /// Requests of one peer uid that may wait for a detonation worker; nil: half the queue (at least 1). In the static
    /// lane one uid may have half of `staticQueue` waiting.
    public var queuePerUid: Int? = nil
    /// Connections one peer uid may hold; nil: a quarter of `maxConnections` (at least 1). At the cap, the uid's
    /// longest-idle connection is closed to admit a new one (docs/daemon.md, "Back-pressure").
    public var maxConnectionsPerUid: Int? = nil
    /// `queuePerUid`, or its default.
    public var effectiveQueuePerUid: Int { queuePerUid ?? max(1, queue / 2) }
    /// `maxConnectionsPerUid`, or its default.
    public var effectiveMaxConnectionsPerUid: Int { maxConnectionsPerUid ?? max(1, maxConnections / 4) }
    /// Largest message accepted, bytes.
    public var maxMessage = Wire.defaultMaxMessage
    /// Most open connections.
    public var maxConnections = 1024
    /// A connection with nothing in flight and nothing arriving for this long is closed, seconds.
    public var idleTimeout = 60.0
    /// A message must arrive whole within this long of its first byte, and a reply be taken within this long, seconds.
    public var ioTimeout = 10.0
    /// Longest detonation deadline a client may ask for; also the deadline when it asks for none, seconds.
    public var requestTimeout = 60.0
    /// On SIGTERM, in-flight requests get this long to finish, seconds.
    public var shutdownGrace = 10.0
    /// The sandbox profile (name or path).
    public var profile = "default"
    /// The verdict policy file; `policy.json` beside the profiles when nil.
    public var policy: String? = nil
    /// Whether a detonation without a cgroup of its own (memory and pids limits for the whole sandbox) is refused.
    /// Required by default: airlockd runs as root under systemd with `Delegate=yes`, where a cgroup can always be
    /// made, and one that cannot says something is wrong with the host; a profile that requires one is obeyed
    /// whatever this says.
    public var cgroup: CgroupRequirement = .required
    /// The Python runtimes clients may choose by name (`--python NAME=PATH`, the `python` key): name → the
    /// interpreter's or virtual environment's absolute path. Resolved once at start (`DaemonRuntimes.resolve`); the
    /// default runtime and the built-in `system` follow `DaemonRuntimes.plan`.
    public var python: [String: String] = [:]
    /// Warm sandboxes kept ready per runtime (docs/sandbox.md, "Warm start"): started ahead, each serves one model.
    /// 0 disables warm start: every detonation starts its own sandbox.
    public var warm = 1
    /// How long a warm sandbox may wait for its model before it is replaced by a fresh one, seconds.
    public var warmIdle = 600.0
    /// The worlds of the catalog warm sandboxes are kept for (docs/sandbox.md, "Warm sandboxes and worlds"): the
    /// first this many, each with `warm` sandboxes per runtime start-up.
    public var warmWorlds = 1
    /// The worlds a probe detonates each file in when the client does not say (`worlds`, docs/probe.md "Worlds").
    public var worlds = 3
    /// The host uids and gids sandboxes map to (docs/daemon.md, "Sandbox identities"); `shared` keeps the profile's
    /// (65534) for all. Nil, the default: each live sandbox its own of `SandboxIdRange.standard` when the daemon is
    /// root, `shared` (with a warning) when it is not and so can map no other id than its own.
    public var sandboxIds: SandboxIdSetting? = nil
    /// Where the HTTP metrics endpoint listens (`GET /metrics`, Prometheus' text), nil for none (the default):
    /// `127.0.0.1:PORT`, `[::1]:PORT`, a port alone for loopback, or another address literal, which exposes the counts
    /// unauthenticated to whoever reaches it (docs/daemon.md, "Metrics over HTTP").
    public var metricsListen: MetricsAddress? = nil
    /// Most entries of a folder one request walks (docs/daemon.md, "Folder budgets"); the rest is reported as not
    /// examined. 10,000: a model folder holds tens to a few thousand files, and 10,000 empty ones cost a worker
    /// well under a second and a reply of a few MB.
    public var folderMaxEntries = 10_000
    /// Seconds a folder request may walk for; nil: `requestTimeout`, at most 60.
    public var folderBudgetSeconds: Double? = nil

    /// The folder budget a request gets when it asks for none, and the most it may ask for.
    public var folderBudget: FolderBudget {
        FolderBudget(maxEntries: folderMaxEntries, seconds: folderBudgetSeconds ?? min(requestTimeout, 60))
    }

    /// The defaults.
    public init() {}

    /// Reads a configuration file over the defaults.
    public static func load(_ path: String) throws(ConfigError) -> DaemonConfig {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path, limit: 1 << 20, what: "config")
        } catch {
            throw ConfigError(error.description)
        }
        return try DaemonConfig(json: bytes, name: path)
    }

    /// Reads a configuration document over the defaults; `name` is used in messages.
    public init(json bytes: [UInt8], name: String) throws(ConfigError) {
        let root: JSON
        do {
            root = try JSON.parse(bytes)
        } catch {
            throw ConfigError("config \(name): \(error)")
        }
        let fail: @Sendable (String) -> ConfigError = { ConfigError("config \(name): \($0)") }
        let fields = try JSONField(value: root, path: "", fail: fail).object(allowed: [
            "comment", "socket", "allowUids", "allowGroups", "maxConcurrent", "queue", "maxMessageBytes",
            "maxConnections",
            "idleTimeoutSeconds", "ioTimeoutSeconds", "requestTimeoutSeconds", "shutdownGraceSeconds", "profile",
            "policy",
            "cgroup", "python",
            "warm", "warmIdleSeconds", "warmWorlds", "worlds", "sandboxIds",
            "metricsListen", "folderMaxEntries", "folderBudgetSeconds",
            "staticWorkers", "staticQueue", "queuePerUid", "maxConnectionsPerUid",
        ])
        self.init()
        if let f = fields["socket"] { socketPath = try f.string() }
        if let f = fields["allowUids"] {
            allowUIDs = try f.array().map { (x) throws(ConfigError) in try x.integer(UInt32.self) }
        }
        if let f = fields["allowGroups"] { allowGroups = try f.strings() }
        if let f = fields["maxConcurrent"] { maxConcurrent = try f.integer() }
        if let f = fields["queue"] { queue = try f.integer() }
        if let f = fields["maxMessageBytes"] { maxMessage = try f.integer() }
        if let f = fields["maxConnections"] { maxConnections = try f.integer() }
        if let f = fields["idleTimeoutSeconds"] { idleTimeout = try f.double() }
        if let f = fields["ioTimeoutSeconds"] { ioTimeout = try f.double() }
        if let f = fields["requestTimeoutSeconds"] { requestTimeout = try f.double() }
        if let f = fields["shutdownGraceSeconds"] { shutdownGrace = try f.double() }
        if let f = fields["profile"] { profile = try f.string() }
        if let f = fields["policy"] { policy = try f.string() }
        if let f = fields["cgroup"] {
            guard let value = CgroupRequirement(rawValue: try f.string()) else {
                throw fail("field cgroup: expected required or optional")
            }
            cgroup = value
        }
        if let f = fields["python"] {
            for (runtime, path) in try f.stringMap() {
                if python[runtime] != nil { throw fail("field python.\(runtime): named twice") }
                if let problem = DaemonRuntimes.configProblem(name: runtime, path: path) {
                    throw fail("field python.\(runtime): \(problem)")
                }
                python[runtime] = path
            }
        }
        if let f = fields["warm"] { warm = try f.integer() }
        if let f = fields["warmIdleSeconds"] { warmIdle = try f.double() }
        if let f = fields["warmWorlds"] { warmWorlds = try f.integer() }
        if let f = fields["worlds"] { worlds = try f.integer() }
        if let f = fields["sandboxIds"] { sandboxIds = try SandboxIdSetting.parse(field: f, fail: fail) }
        if let f = fields["metricsListen"], f.value != .null {
            let text = try f.string()
            guard let address = MetricsAddress(text) else {
                throw fail("field metricsListen: \(MetricsAddress.syntax), not \"\(text.prefix(80))\"")
            }
            metricsListen = address
        }
        if let f = fields["folderMaxEntries"] { folderMaxEntries = try f.integer() }
        if let f = fields["folderBudgetSeconds"] { folderBudgetSeconds = try f.double() }
        if let f = fields["staticWorkers"] { staticWorkers = try f.integer() }
        if let f = fields["staticQueue"] { staticQueue = try f.integer() }
        if let f = fields["queuePerUid"] { queuePerUid = try f.integer() }
        if let f = fields["maxConnectionsPerUid"] { maxConnectionsPerUid = try f.integer() }
        try validate()
    }

    /// The ranges of the counted settings, shared by the configuration file's check and airlockd's flags.
    public enum Limits {
        /// `maxConcurrent`, `--max-concurrent`.
        public static let maxConcurrent = 1...1024
        /// `queue`, `--queue`; also `staticQueue`.
        public static let queue = 0...100_000
        /// `staticWorkers`, `--static-workers`.
        public static let staticWorkers = 1...64
        /// `queuePerUid`, `maxConnectionsPerUid`, `maxConnections` and their flags.
        public static let perUid = 1...100_000
        /// `folderMaxEntries`, `--folder-max-entries`.
        public static let folderMaxEntries = 1...FolderBudget.maxEntriesLimit
    }

    /// Checks the values' ranges.
    public func validate() throws(ConfigError) {
        func check(_ ok: Bool, _ what: String) throws(ConfigError) { if !ok { throw ConfigError(what) } }
        try check(
            socketPath.hasPrefix("/") && socketPath.utf8.count < 108, "socket: an absolute path shorter than 108 bytes")
        try check(Limits.maxConcurrent.contains(maxConcurrent), "maxConcurrent: 1 to 1024")
        try check(Limits.queue.contains(queue), "queue: 0 to 100000")
        try check((4096...(256 << 20)).contains(maxMessage), "maxMessageBytes: 4096 to 268435456")
        try check(Limits.perUid.contains(maxConnections), "maxConnections: 1 to 100000")
        try check(Limits.staticWorkers.contains(staticWorkers), "staticWorkers: 1 to 64")
        try check(Limits.queue.contains(staticQueue), "staticQueue: 0 to 100000")
        try check(Limits.perUid.contains(effectiveQueuePerUid), "queuePerUid: 1 to 100000")
        try check(
            Limits.perUid.contains(effectiveMaxConnectionsPerUid), "maxConnectionsPerUid: 1 to 100000")
        try check((0...16).contains(warm), "warm: 0 to 16")
        try check(warmIdle >= 2 && warmIdle <= 86_400, "warmIdleSeconds: 2 to 86400")
        try check((1...5).contains(warmWorlds), "warmWorlds: 1 to 5")
        try check((1...5).contains(worlds), "worlds: 1 to 5")
        try check(
            Limits.folderMaxEntries.contains(folderMaxEntries),
            "folderMaxEntries: 1 to \(FolderBudget.maxEntriesLimit)")
        if let seconds = folderBudgetSeconds {
            try check(seconds > 0 && seconds <= 86_400, "folderBudgetSeconds: more than 0, at most 86400")
        }
        for (value, name) in [
            (idleTimeout, "idleTimeoutSeconds"), (ioTimeout, "ioTimeoutSeconds"),
            (requestTimeout, "requestTimeoutSeconds"), (shutdownGrace, "shutdownGraceSeconds"),
        ] {
            try check(value > 0 && value <= 86_400, "\(name): more than 0, at most 86400")
        }
        try check(
            python.count <= DaemonRuntimes.maxRuntimes, "python: at most \(DaemonRuntimes.maxRuntimes) runtimes")
        for (name, path) in python.sorted(by: { $0.key < $1.key }) {
            if let problem = DaemonRuntimes.configProblem(name: name, path: path) {
                throw ConfigError("python \(name): \(problem)")
            }
        }
    }
}
