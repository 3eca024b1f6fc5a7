import AirlockDaemon
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
            """,
        version: "0.1.0"
    )

    @Option(name: .long, help: "Socket path (default /run/airlock/airlockd.sock; ignored under socket activation).")
    var socket: String?

    @Option(name: .long, help: "Configuration file (JSON; command-line options override it).")
    var config: String?

    @Option(name: .customLong("allow-uid"), help: "Also allow this uid (repeatable).")
    var allowUIDs: [UInt32] = []

    @Option(name: .customLong("allow-group"), help: "Allow members of this group (repeatable; default: airlock).")
    var allowGroups: [String] = []

    @Option(name: .customLong("max-concurrent"), help: "Requests handled at once (default: the number of CPUs).")
    var maxConcurrent: Int?

    @Option(name: .long, help: "Requests that may wait for a worker before the answer is busy (default 64).")
    var queue: Int?

    @Option(name: .long, help: "Sandbox profile, name or path (default: default).")
    var profile: String?

    @Option(name: .long, help: "Verdict policy file (default: policy.json beside the profiles).")
    var policy: String?

    func run() throws {
        var settings = DaemonConfig()
        do {
            if let config { settings = try DaemonConfig.load(config) }
            if let socket { settings.socketPath = socket }
            if !allowUIDs.isEmpty { settings.allowUIDs += allowUIDs }
            if !allowGroups.isEmpty { settings.allowGroups = allowGroups }
            if let maxConcurrent { settings.maxConcurrent = maxConcurrent }
            if let queue { settings.queue = queue }
            if let profile { settings.profile = profile }
            if let policy { settings.policy = policy }
            try settings.validate()
        } catch {
            Log.write(.err, "\(error)")
            throw ExitCode(2)
        }
        let options: ProbeOptions
        do {
            var loaded = try Profile.load(settings.profile)
            if settings.cgroup == .required { loaded.sandbox.cgroup = .required }
            if let reason = Sandbox.cgroupUnavailable(limits: loaded.sandbox.limits) {
                let consequence = loaded.sandbox.cgroup == .required
                    ? "every detonation will be refused (cgroup: required; docs/daemon.md, \"Cgroups\")"
                    : "detonations run bounded by their rlimits alone (cgroup: optional)"
                Log.write(.warning, "no cgroup can be made for the sandboxes: \(reason); \(consequence)")
            }
            guard let harness = ProbeOptions.locateHarness() else {
                Log.write(.err, "no loader harness (harness/load.py) in \(ProfileLocator.searchDirectories().joined(separator: ", "))")
                throw ExitCode(2)
            }
            options = ProbeOptions(profile: loaded, program: try SeccompProgram(profile: loaded),
                                   policy: try VerdictPolicy.load(settings.policy, for: loaded), harnessDirectory: harness)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            Log.write(.err, "\(error)")
            throw ExitCode(2)
        }
        let server: Server
        do {
            server = try Server(config: settings, options: options, version: AirlockD.configuration.version)
        } catch {
            Log.write(.err, "\(error)")
            throw ExitCode(1)
        }
        Log.write(.info, "airlockd \(AirlockD.configuration.version): \(settings.maxConcurrent) workers, queue \(settings.queue), profile \(settings.profile)")
        throw ExitCode(server.run())
    }
}

AirlockD.main()
