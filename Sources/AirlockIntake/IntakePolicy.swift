internal import AirlockSystem
public import AirlockAnalysis
internal import AirlockJSON
internal import AirlockProvenance
internal import AirlockSystem
internal import AirlockDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// What the quarantine stage demands of a model before it is approved: the verdicts that pass, the provenance
/// checks, how detonations run, and when a model counts as arrived. JSON, read strictly (docs/intake.md).
public struct IntakePolicy: Sendable {
    /// Probe verdicts released to `approved/`, when provenance is clean (a model that is not the one meant never
    /// passes); everything else goes to `rejected/`.
    public var pass: Set<Verdict> = [.clean]
    /// A folder without a `.ready` marker is taken when nothing in it changed for this long.
    public var settleSeconds: Double = 30
    /// A folder of pinned manifests: a model named NAME is checked against NAME.json when it exists.
    public var manifests: String?
    /// Whether a model without a pinned manifest is rejected.
    public var requireManifest = false
    /// PEM public keys model-signing signatures may be made with.
    public var publicKeys: [String] = []
    /// Whether a model without a verified signature is rejected.
    public var requireSignature = false
    /// The signature's file name inside a model folder (model-signing's default).
    public var signatureFile = "model.sig"
    /// Detonation deadline in seconds (nil: the profile's).
    public var timeoutSeconds: Double?
    /// Whether the probe phase runs after loading.
    public var probePhase = true
    /// How many worlds each file is detonated in (docs/probe.md, "Worlds"): 1 to 5, default 3.
    public var worlds = 3
    /// Seconds the worlds of one file may take together (nil: twice the deadline).
    public var worldBudgetSeconds: Double?
    /// Sandbox profile name or path for local detonations.
    public var profile = "default"
    /// Verdict policy file for local detonations (nil: the default policy).
    public var verdictPolicy: String?
    /// airlockd's socket: detonations go there instead of running here.
    public var socket: String?
    /// The consumer's Python: through airlockd, the name of one of its runtimes (`airlockd --python NAME=PATH`);
    /// probing here, the absolute path of an interpreter or a virtual environment's folder. nil: the daemon's
    /// default runtime, or `/usr/bin/python3` here. A name holds no `/` and a path starts with one, so the value
    /// says which it is; the intake refuses to start when it is not the kind its backend takes
    /// (`IntakeExaminer.backend`).
    public var python: String?
    /// Models examined at once (0: one per CPU).
    public var workers = 0
    /// The most bytes one model may hold (the sum of its files' sizes, a sparse file at its full size): the intake
    /// copies, hashes and probes every byte, so this bounds the time and room one delivery can take. Larger
    /// deliveries stay in incoming/ and are reported.
    public var maxBytes = 256 << 30

    /// The defaults: only clean models pass, nothing else demanded.
    public init() {}

    /// Reads the policy at `path`.
    public static func load(_ path: String) throws(IntakeError) -> IntakePolicy {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path, limit: 1 << 20, what: "intake policy")
        } catch {
            throw IntakeError(error.description, errno: error.errno)
        }
        return try parse(bytes, name: path)
    }

    /// Parses a policy; `name` names it in messages.
    public static func parse(_ bytes: [UInt8], name: String) throws(IntakeError) -> IntakePolicy {
        let document: JSON
        do {
            document = try JSON.parse(bytes, maxDepth: 16)
        } catch {
            throw IntakeError("intake policy \(name): \(error.description)")
        }
        let root = JSONField<IntakeError>(
            value: document, path: "", fail: { IntakeError("intake policy \(name): \($0)") })
        let f = try root.object(allowed: [
            "pass", "settleSeconds", "manifests", "requireManifest", "publicKeys", "requireSignature", "signatureFile",
            "timeoutSeconds", "probePhase", "worlds", "worldBudgetSeconds", "profile", "verdictPolicy", "socket",
            "workers", "maxBytes", "python",
        ])
        var p = IntakePolicy()
        if let pass = f["pass"] {
            var verdicts: Set<Verdict> = []
            for item in try pass.array() {
                let text = try item.string()
                guard let v = Verdict(rawValue: text) else {
                    throw IntakeError(
                        "intake policy \(name): field \(item.path): expected clean, suspicious, malicious or error, found \"\(text)\""
                    )
                }
                verdicts.insert(v)
            }
            p.pass = verdicts
        }
        if let s = f["settleSeconds"] {
            p.settleSeconds = try s.double()
            guard p.settleSeconds >= 0 && p.settleSeconds <= 86_400 else {
                throw IntakeError("intake policy \(name): field settleSeconds: between 0 and 86400")
            }
        }
        p.manifests = try f["manifests"]?.string()
        p.requireManifest = try f["requireManifest"]?.bool() ?? false
        p.publicKeys = try f["publicKeys"]?.strings() ?? []
        p.requireSignature = try f["requireSignature"]?.bool() ?? false
        if let s = f["signatureFile"] {
            p.signatureFile = try s.string()
            guard Manifest.pathProblem(p.signatureFile) == nil else {
                throw IntakeError("intake policy \(name): field signatureFile: a path inside the model folder")
            }
        }
        if let t = f["timeoutSeconds"] {
            let v = try t.double()
            guard v > 0 && v <= 86_400 else {
                throw IntakeError("intake policy \(name): field timeoutSeconds: between 0 and 86400")
            }
            p.timeoutSeconds = v
        }
        p.probePhase = try f["probePhase"]?.bool() ?? true
        if let w = f["worlds"] {
            let v: Int = try w.integer()
            guard (1...5).contains(v) else { throw IntakeError("intake policy \(name): field worlds: 1 to 5") }
            p.worlds = v
        }
        if let b = f["worldBudgetSeconds"] {
            let v = try b.double()
            guard v > 0 && v <= 86_400 else {
                throw IntakeError("intake policy \(name): field worldBudgetSeconds: between 0 and 86400")
            }
            p.worldBudgetSeconds = v
        }
        p.profile = try f["profile"]?.string() ?? "default"
        p.verdictPolicy = try f["verdictPolicy"]?.string()
        p.socket = try f["socket"]?.string()
        if let python = f["python"] {
            let value = try python.string()
            guard DaemonRuntimes.isName(value) || (value.hasPrefix("/") && value.utf8.count <= 4096) else {
                throw IntakeError(
                    "intake policy \(name): field python: expected the name of one of airlockd's runtimes (\(DaemonRuntimes.nameSyntax)) or the absolute path of an interpreter or a virtual environment, found \"\(value)\""
                )
            }
            p.python = value
        }
        if let w = f["workers"] {
            p.workers = try w.integer(Int.self)
            guard p.workers >= 0 && p.workers <= 256 else {
                throw IntakeError("intake policy \(name): field workers: between 0 and 256")
            }
        }
        if let m = f["maxBytes"] {
            p.maxBytes = try m.integer(Int.self)
            guard p.maxBytes >= 1 && p.maxBytes <= 1 << 50 else {
                throw IntakeError("intake policy \(name): field maxBytes: between 1 and 2^50")
            }
        }
        if p.requireManifest && p.manifests == nil {
            throw IntakeError("intake policy \(name): requireManifest needs manifests (the folder of pinned manifests)")
        }
        return p
    }
}
