public import AirlockSandbox
public import AirlockSystem
internal import AirlockJSON
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// What one detonation tells the loader harness, and nothing inside the sandbox can read afterwards: the harness's
/// arguments, the paths whose opens announce its phases, and the prefix of its detail lines, all drawn per run.
///
/// The harness runs as a consumer's own service would: `python3 /srv/NAME/serve.py`, with no argument. Its settings
/// arrive as one JSON object on `descriptor` (the first passed descriptor, `Sandbox.firstPassedFD`), which it reads
/// and closes before its start-up imports anything of the consumer's, so the model finds no argument, descriptor,
/// marker path or line prefix that says what runs it (`Profiles/harness/model_loader.py`, `settings`).
public struct HarnessSettings: Sendable, Equatable {
    /// The path whose open announces each phase after `startup`: a message catalogue lookup that finds nothing
    /// (`/usr/share/locale/LANG/LC_MESSAGES/DOMAIN.mo`), what gettext does all the time.
    public var markers: [HarnessPhase: String]
    /// The prefix of the harness's lines on stdout and stderr (`HarnessProtocol.Line`).
    public var linePrefix: String
    /// Where the harness's folder is mounted, read-only: a service's own folder (`/srv/NAME`).
    public var appDirectory: String

    /// The descriptor the settings arrive on inside the sandbox; the model's is the next one.
    public static let descriptor = Sandbox.firstPassedFD
    /// The harness's entry point's file name in `appDirectory`.
    public static let entryName = "serve.py"
    /// Names a service's folder under `/srv` is drawn from.
    static let serviceNames = [
        "inference", "model-api", "predictor", "scoring", "ranker", "recsys", "ml-serving", "embeddings", "classifier",
        "forecast",
    ]
    /// Locales a catalogue lookup is drawn from.
    static let locales = ["en_US.UTF-8", "en_US", "en", "C.UTF-8", "en_GB.UTF-8"]

    /// Creates settings.
    public init(markers: [HarnessPhase: String], linePrefix: String, appDirectory: String) {
        self.markers = markers
        self.linePrefix = linePrefix
        self.appDirectory = appDirectory
    }

    /// Draws fresh settings: markers no one can guess (64 random bits each), a random line prefix, and a service
    /// folder that is not `avoiding` one of the runtime's trees, inside one or holding one.
    public static func draw(avoiding trees: [String] = []) -> HarnessSettings {
        var rng = SystemRandomNumberGenerator()
        let token = { (n: Int) in
            String((0..<n).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement(using: &rng)! })
        }
        var markers: [HarnessPhase: String] = [:]
        for phase in HarnessPhase.allCases where phase != .startup {
            markers[phase] =
                "/usr/share/locale/\(locales.randomElement(using: &rng)!)/LC_MESSAGES/\(token(14)).mo"
        }
        let clashes = { (dir: String) in
            trees.contains { $0 == dir || $0.hasPrefix(dir + "/") || dir.hasPrefix($0 + "/") }
        }
        var app = "/srv/" + serviceNames.randomElement(using: &rng)!
        if clashes(app) { app = serviceNames.map { "/srv/" + $0 }.first { !clashes($0) } ?? "/srv/" + token(12) }
        return HarnessSettings(markers: markers, linePrefix: "[\(token(12))] ", appDirectory: app)
    }

    /// The harness's entry point inside the sandbox.
    public var entryPoint: String { appDirectory + "/" + HarnessSettings.entryName }

    /// The markers as the sandbox request takes them (`SandboxRequest.phaseMarkers`): path → phase name.
    public var phaseMarkers: [String: String] {
        Dictionary(uniqueKeysWithValues: markers.map { ($0.value, $0.key.rawValue) })
    }

    /// The settings object the harness reads: `arguments` (what followed the entry point on the command line before:
    /// `HarnessProtocol.arguments`), the markers and the line prefix.
    public func json(arguments: [String]) -> String {
        let marks = markers.sorted { $0.key < $1.key }.map { ($0.key.rawValue, JSON.string($0.value)) }
        return JSON.object([
            ("arguments", .array(arguments.map(JSON.string))), ("markers", .object(marks)),
            ("prefix", .string(linePrefix)),
        ]).serialized()
    }

    /// An in-memory file holding `json(arguments:)`, sealed, at offset 0, for `SandboxRequest.passedFDs`; the caller
    /// closes it.
    public func descriptor(arguments: [String]) throws(SandboxError) -> FileDescriptor {
        let bytes = Array(json(arguments: arguments).utf8)
        let fd = airlock_memfd("settings")
        guard fd >= 0 else { throw SandboxError(.mountSource, "cannot create the harness's settings", errno: .current) }
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let failure = Errno.current
                FileDescriptor(fd).close()
                throw SandboxError(.mountSource, "cannot write the harness's settings", errno: failure)
            }
            written += n
        }
        return FileDescriptor(fd)
    }
}
