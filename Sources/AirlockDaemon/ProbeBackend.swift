public import AirlockAnalysis
public import AirlockProbe
public import AirlockSystem
internal import AirlockSandbox

/// Where detonations run, chosen once by each caller (the CLI, the intake; airlockd is always `local`): here, with
/// the options assembled once for every file, or in airlockd, through its socket. Both answer the same thing for an
/// open file or folder: its reports, one per file.
public enum ProbeBackend: Sendable {
    /// In this process: static analysis, then a sandbox of its own per detonation.
    case local(ProbeOptions)
    /// In airlockd, which the file is passed to as a descriptor.
    case daemon(DaemonBackend)

    /// The options for probing here, assembled the one way every caller needs them: the profile (a name or a path),
    /// its seccomp filter compiled once, the verdict policy (policy.json beside the profiles when nil) and the loader
    /// harness. `requireCgroup` raises the profile's cgroup requirement to required (airlockd's default).
    ///
    /// `python` names the consumer's interpreter (`PythonRuntime.resolve`): the system's `/usr/bin/python3` when nil.
    /// `resolvePython` false leaves the options without a runtime, for a caller that resolves its own (airlockd,
    /// one per configured name: `DaemonRuntimes`).
    public static func localOptions(
        profile: String, policy: String?, timeout: Double? = nil, probePhase: Bool = true, requireCgroup: Bool = false,
        python: String? = nil, resolvePython: Bool = true
    ) throws(ProbeSetupError) -> ProbeOptions {
        do {
            var loaded = try Profile.load(profile)
            if requireCgroup { loaded.sandbox.cgroup = .required }
            let program = try SeccompProgram(profile: loaded)
            let verdictPolicy = try VerdictPolicy.load(policy, for: loaded)
            guard let harness = ProbeOptions.locateHarness() else {
                let searched = ProfileLocator.searchDirectories().joined(separator: ", ")
                throw ProbeSetupError("no loader harness (harness/serve.py) in \(searched) (set AIRLOCK_PROFILE_DIR)")
            }
            let runtime =
                resolvePython
                ? try PythonRuntime.resolve(python, profile: loaded, program: program, harnessDirectory: harness)
                : nil
            return ProbeOptions(
                profile: loaded, program: program, policy: verdictPolicy, harnessDirectory: harness,
                timeoutSeconds: timeout, probePhase: probePhase, runtime: runtime)
        } catch let error as ProbeSetupError {
            throw error
        } catch {
            throw ProbeSetupError("\(error)")
        }
    }

    /// Where probes run, for messages: `"airlockd at /run/airlock/airlockd.sock"`, or `"this process"`.
    public var place: String {
        switch self {
        case .local: "this process"
        case .daemon(let daemon): "airlockd at \(daemon.socket)"
        }
    }

    /// Probes the open file or folder `fd`, shown as `name`: its reports, one per file (none for an empty folder).
    /// Through airlockd, a connection of its own.
    public func probe(fd: Int32, isFolder: Bool, name: String) throws(ClientError) -> [Report] {
        switch self {
        case .local(let options):
            var reports: [Report] = []
            ModelWalk.walk(
                fd: fd, isDirectory: isFolder, path: name,
                examine: { Prober.probe(fd: $0, path: $1, options: options) },
                repository: RemoteCodeDetonation.examiner(options: options)
            ) { reports.append($0) }
            return reports
        case .daemon(let daemon):
            var client: DaemonClient? = nil
            return try daemon.examine(fd: fd, name: name, with: &client)
        }
    }
}

/// airlockd as the place detonations run: its socket, and what each request asks of it.
public struct DaemonBackend: Sendable {
    /// The daemon's socket.
    public let socket: String
    /// `probe`, or `scan` for static analysis alone.
    public let method: DaemonRequest.Method
    /// The detonation deadline asked for, seconds; nil for the daemon's.
    public let timeout: Double?
    /// Whether the detonation touches the loaded object afterwards.
    public let probePhase: Bool
    /// The name of the daemon's Python runtime to probe with (`airlockd --python NAME=PATH`); nil for its default.
    /// Sent as a name: the daemon never resolves a path a client sends.
    public let python: String?
    /// How many worlds each file is detonated in (`worlds`); nil for the daemon's default.
    public let worlds: Int?
    /// Seconds the worlds of one file may take together (`worldBudget`); nil for the daemon's default.
    public let worldBudget: Double?
    /// Folders: most entries to walk (`maxEntries`); nil for the daemon's (a daemon never walks more than its own).
    public var maxEntries: Int? = nil
    /// Folders: seconds the walk may take (`folderBudget`); nil for the daemon's (never more than its own).
    public var folderBudget: Double? = nil

    /// How `busy` is retried (`examine(fd:name:with:)` with a connection it may replace).
    public var retry: BusyRetry

    /// The seconds `busy` is retried for when the caller does not say: the detonation deadline asked for, else
    /// airlockd's default deadline (`requestTimeoutSeconds`, 60 s).
    public static func retrySeconds(timeout: Double?) -> Double { timeout ?? 60 }

    /// A backend for `method` requests to the daemon at `socket`. `busy` is retried for `retry`'s seconds (by
    /// default `retrySeconds(timeout:)`, silently).
    public init(
        socket: String, method: DaemonRequest.Method = .probe, timeout: Double? = nil, probePhase: Bool = true,
        python: String? = nil, worlds: Int? = nil, worldBudget: Double? = nil, retry: BusyRetry? = nil
    ) {
        self.retry = retry ?? BusyRetry(seconds: DaemonBackend.retrySeconds(timeout: timeout))
        self.worlds = worlds
        self.worldBudget = worldBudget
        self.socket = socket
        self.method = method
        self.timeout = timeout
        self.probePhase = probePhase
        self.python = python
    }

    /// How long a client waits for one reply: a detonation's deadline plus room for the queue and the static
    /// analysis of a folder.
    /// With several worlds the detonations of a file take at most the longer of the deadline and the worlds' budget.
    public var replyTimeout: Double {
        if method == .scan { return 600 }
        let deadline = timeout ?? 600
        return max(deadline, worldBudget ?? 2 * deadline) + 600
    }

    /// Connects to the daemon.
    public func connect() throws(ClientError) -> DaemonClient { try DaemonClient(path: socket) }

    /// Sends `fd` shown as `name` and reads the reports of the reply, retrying `busy` as `retry` says: on `client`
    /// while the daemon keeps it open, else on a new connection (`client` is then replaced; nil connects first).
    public func examine(fd: Int32, name: String, with client: inout DaemonClient?) throws(ClientError) -> [Report] {
        try retry.run { () throws(ClientError) -> [Report] in
            let connected: DaemonClient
            if let client {
                connected = client
            } else {
                connected = try connect()
                client = connected
            }
            do throws(ClientError) {
                return try examine(fd: fd, name: name, with: connected)
            } catch {
                // The daemon closed it (a busy notice), or the stream cannot be trusted: the next request connects.
                if error.closed || ["io", "protocol", "timeout"].contains(error.code) { client = nil }
                throw error
            }
        }
    }

    /// Sends `fd` shown as `name` on `client` and reads the reports of the reply: one attempt, `busy` included.
    public func examine(fd: Int32, name: String, with client: DaemonClient) throws(ClientError) -> [Report] {
        var request = DaemonRequest(
            method: method, name: name, timeout: method == .probe ? timeout : nil, probePhase: probePhase,
            python: python)
        if method == .probe {
            request.worlds = worlds
            request.worldBudget = worldBudget
        }
        request.maxEntries = maxEntries
        request.folderBudget = folderBudget
        let reports = try ExaminationReply.reports(try client.call(request, descriptor: fd, timeout: replyTimeout))
        // A daemon that predates the `python` parameter ignores it (unknown members are): never pass its default
        // runtime off as the one asked for.
        if let python,
            let used = reports.lazy.compactMap({ $0.detonation?.runtime }).first(where: { $0.name != python })
        {
            throw ClientError(
                "protocol",
                "airlockd detonated with runtime \(used.name ?? used.interpreter), not \(python) as asked (a daemon without named runtimes?)"
            )
        }
        return reports
    }
}

/// Why detonations cannot be prepared here: the profile, its filter, the verdict policy or the harness.
public struct ProbeSetupError: AirlockError {
    /// What is missing or wrong, naming the file.
    public let message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    /// `"probe-setup"`.
    public var code: String { "probe-setup" }
    public var description: String { message }
}
