import AirlockDaemon
import AirlockSystem
import AirlockProbe
import AirlockSandbox
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// `airlockd`: the supervisor daemon. Inference services ask it, over a Unix socket, whether a model is safe to load.
struct AirlockD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlockd",
        abstract: "Answer probe and scan requests on a Unix socket (docs/daemon.md, docs/protocol.md).",
        discussion: """
            Clients pass the model as an open descriptor; the daemon never opens a path for them. Connections are checked with SO_PEERCRED: root, the daemon's own user, --allow-uid users and members of --allow-group groups (default: airlock) may ask; everyone else gets a refusal. Under systemd, socket activation (LISTEN_FDS), readiness and watchdog notifications (NOTIFY_SOCKET) are used when present. SIGTERM stops accepting, lets requests in flight finish within the grace period, then exits 0.

            Python runtimes: detonations load models with a Python environment the operator names, never one a client names. --python NAME=PATH (repeatable; also the configuration's "python" object) offers the interpreter or virtual environment at PATH (absolute) under NAME ([a-z0-9][a-z0-9._-]{0,63}); clients choose by name (airlock --socket S probe --python NAME). The default, for requests that name none, is the runtime named "default" when configured, otherwise "system", which is /usr/bin/python3 unless configured. Every runtime is resolved and described once at start; one that cannot be used stops the daemon with exit status 2.
            """,
        version: "0.1.0"
    )

    @Option(name: .long, help: "Socket path (default /run/airlock/airlockd.sock; ignored under socket activation).")
    var socket: String?

    @Option(name: .long, help: "Configuration file (JSON; command-line options override it).")
    var config: String?

    @Option(
        name: .customLong("allow-uid"), parsing: .unconditionalSingleValue, help: "Also allow this uid (repeatable).")
    var allowUIDs: [UInt32] = []

    @Option(name: .customLong("allow-group"), help: "Allow members of this group (repeatable; default: airlock).")
    var allowGroups: [String] = []

    @Option(
        name: .customLong("max-concurrent"), parsing: .unconditional,
        help: "Requests handled at once (default: the number of CPUs).")
    var maxConcurrent: Int?

    @Option(
        name: .long, parsing: .unconditional,
        help: "Requests that may wait for a worker before the answer is busy (default 64).")
    var queue: Int?

    @Option(
        name: .customLong("folder-max-entries"), parsing: .unconditional,
        help: "Most entries of a folder one request walks; the rest is reported as not examined (default 10000).")
    var folderMaxEntries: Int?

    @Option(
        name: .customLong("folder-budget"), parsing: .unconditional,
        help: "Seconds a folder request may walk for (default: the request timeout, at most 60).")
    var folderBudget: Double?

    @Option(
        name: .customLong("static-workers"), parsing: .unconditional,
        help: "Workers of the static lane: scans, probes without a sandbox (default 2).")
    var staticWorkers: Int?

    @Option(
        name: .customLong("queue-per-uid"), parsing: .unconditional,
        help: "Requests of one uid that may wait for a detonation (default: half the queue).")
    var queuePerUid: Int?

    @Option(
        name: .customLong("max-connections-per-uid"), parsing: .unconditional,
        help: "Connections one uid may hold (default: maxConnections / 4).")
    var maxConnectionsPerUid: Int?

    @Option(name: .long, help: "Sandbox profile, name or path (default: default).")
    var profile: String?

    @Option(name: .long, help: "Verdict policy file (default: policy.json beside the profiles).")
    var policy: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A Python runtime clients may choose by name: an interpreter or a virtual environment's folder, absolute (repeatable; adds to or replaces the configuration's \"python\" entries).",
            valueName: "NAME=PATH"))
    var python: [String] = []

    @Option(
        name: .customLong("sandbox-ids"),
        help: ArgumentHelp(
            "Host ids for the sandboxes: FIRST:COUNT (each live sandbox its own uid and gid of the range), subuid (the /etc/subuid and /etc/subgid entries of user airlockd or airlock), or shared (all the profile's, 65534). Default 1878982656:65536 (docs/daemon.md, \"Sandbox identities\").",
            valueName: "FIRST:COUNT|subuid|shared"))
    var sandboxIds: String?

    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Serve GET /metrics (Prometheus text) over HTTP at this address: 127.0.0.1:PORT, [::1]:PORT, or PORT for loopback. Off by default; unauthenticated (docs/daemon.md, \"Metrics over HTTP\").",
            valueName: "ADDRESS"))
    var metricsListen: String?

    /// The numeric flags' ranges (the configuration keys' of docs/daemon.md): a value outside is a usage error, exit
    /// status 64, before any configuration is read. Every numeric flag is `parsing: .unconditional`, so that a
    /// negative value reaches this check instead of "Missing value".
    func validate() throws {
        func count(_ name: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
            if let value, !range.contains(value) {
                throw ValidationError(
                    "\(name) must be at least \(range.lowerBound) and at most \(range.upperBound), not \(value)")
            }
        }
        try count("--max-concurrent", maxConcurrent, DaemonConfig.Limits.maxConcurrent)
        try count("--queue", queue, DaemonConfig.Limits.queue)
        try count("--folder-max-entries", folderMaxEntries, DaemonConfig.Limits.folderMaxEntries)
        try count("--static-workers", staticWorkers, DaemonConfig.Limits.staticWorkers)
        try count("--queue-per-uid", queuePerUid, DaemonConfig.Limits.perUid)
        try count("--max-connections-per-uid", maxConnectionsPerUid, DaemonConfig.Limits.perUid)
        if let folderBudget, !(folderBudget > 0 && folderBudget <= 86_400) {
            throw ValidationError("--folder-budget must be more than 0 and at most 86400 seconds, not \(folderBudget)")
        }
    }

    func run() throws {
        var settings = DaemonConfig()
        do {
            if let config { settings = try DaemonConfig.load(config) }
            if let socket { settings.socketPath = socket }
            if !allowUIDs.isEmpty { settings.allowUIDs += allowUIDs }
            if !allowGroups.isEmpty { settings.allowGroups = allowGroups }
            if let maxConcurrent { settings.maxConcurrent = maxConcurrent }
            if let queue { settings.queue = queue }
            if let folderMaxEntries { settings.folderMaxEntries = folderMaxEntries }
            if let folderBudget { settings.folderBudgetSeconds = folderBudget }
            if let staticWorkers { settings.staticWorkers = staticWorkers }
            if let queuePerUid { settings.queuePerUid = queuePerUid }
            if let maxConnectionsPerUid { settings.maxConnectionsPerUid = maxConnectionsPerUid }
            if let profile { settings.profile = profile }
            if let policy { settings.policy = policy }
            if let sandboxIds {
                guard let setting = SandboxIdSetting.parse(sandboxIds) else {
                    throw ConfigError("--sandbox-ids \(sandboxIds): expected FIRST:COUNT, subuid or shared")
                }
                settings.sandboxIds = setting
            }
            if let metricsListen {
                guard let address = MetricsAddress(metricsListen) else {
                    throw ConfigError("--metrics-listen \(metricsListen): expected \(MetricsAddress.syntax)")
                }
                settings.metricsListen = address
            }
            var named = Set<String>()
            for option in python {
                guard let equals = option.firstIndex(of: "=") else {
                    throw ConfigError("--python \(option): expected NAME=PATH")
                }
                let name = String(option[..<equals])
                let path = String(option[option.index(after: equals)...])
                guard named.insert(name).inserted else { throw ConfigError("--python \(name): given twice") }
                if let problem = DaemonRuntimes.configProblem(name: name, path: path) {
                    throw ConfigError("--python \(option): \(problem)")
                }
                settings.python[name] = path
            }
            try settings.validate()
        } catch {
            Log.write(.err, "\(error)")
            throw ExitCode(2)
        }
        Sandbox.raiseDescriptorLimit()
        // In a container whose /proc is another PID namespace's, a private one was mounted before main (`ProcMount`).
        switch ProcMount.start {
        case .own: break
        case .madePrivate(let there, let here):
            Log.write(
                .notice,
                "/proc belonged to another PID namespace (airlockd \(there) there, \(here) here): a private "
                    + "/proc was mounted in a mount namespace of airlockd's own")
        case .foreign:
            Log.write(
                .warning,
                "\(ProcMount.problem() ?? "/proc is another PID namespace's"); every detonation will be refused")
        }
        var options: ProbeOptions
        let runtimes: DaemonRuntimes
        do {
            options = try ProbeBackend.localOptions(
                profile: settings.profile, policy: settings.policy, requireCgroup: settings.cgroup == .required,
                resolvePython: false)
            options.identities = try SandboxIdentities.start(settings)
            runtimes = try DaemonRuntimes.resolve(
                settings.python, profile: options.profile, program: options.program,
                harnessDirectory: options.harnessDirectory, identities: options.identities)
            SandboxIdentities.checkSize(settings, runtimes: runtimes, identities: options.identities)
        } catch {
            Log.write(.err, "\(error)")
            throw ExitCode(2)
        }
        if let reason = Sandbox.cgroupUnavailable(limits: options.profile.sandbox.limits) {
            let consequence =
                options.profile.sandbox.cgroup == .required
                ? "every detonation will be refused (cgroup: required; docs/daemon.md, \"Cgroups\")"
                : "detonations run bounded by their rlimits alone (cgroup: optional)"
            Log.write(.warning, "no cgroup can be made for the sandboxes: \(reason); \(consequence)")
        }
        let server: Server
        do {
            server = try Server(
                config: settings, options: options, runtimes: runtimes, version: AirlockD.configuration.version)
        } catch {
            Log.write(.err, "\(error)")
            throw ExitCode(1)
        }
        Log.write(
            .info,
            "airlockd \(AirlockD.configuration.version): \(settings.maxConcurrent) workers, queue \(settings.queue), profile \(settings.profile), runtimes \(runtimes.summary)"
        )
        throw ExitCode(server.run())
    }
}

AirlockD.main()
