public import AirlockJSON

/// The Python a detonation loaded the model with (the report's `detonation.runtime`): which interpreter, which
/// version, and which libraries did the loading, real or stood in for.
///
/// The interpreter, its version and the installed distributions come from the supervisor's own look at the
/// environment, in a sandbox with no model in it (`PythonRuntime` in AirlockProbe). Which libraries were imported at
/// start-up is said by the harness before the model's bytes are touched; which ones loading imported afterwards, the
/// stand-ins used and torch's `weights_only` answer are said by the harness in the model's process, and are detail:
/// the verdict never rests on them.
public struct RuntimeSummary: Sendable, Equatable {
    /// One library the detonation used.
    public struct Library: Sendable, Equatable {
        /// The top-level module (`sklearn`).
        public var module: String
        /// The distribution that provides it (`scikit-learn`), when installed as one.
        public var distribution: String?
        /// Its version, from the distribution's metadata.
        public var version: String?
        /// `startup` when imported before the model was touched, `load` when loading the model imported it.
        public var when: String

        /// Creates an entry.
        public init(module: String, distribution: String?, version: String?, when: String) {
            self.module = module
            self.distribution = distribution
            self.version = version
            self.when = when
        }
    }

    /// airlockd's name for the runtime it detonated with (the one the client chose, or the daemon's default); nil for
    /// a local probe.
    public var name: String?
    /// The interpreter's path (the same inside the sandbox and on the host).
    public var interpreter: String
    /// `3.11.2`.
    public var version: String
    /// `cpython`, `pypy`.
    public var implementation: String
    /// `sys.prefix`.
    public var prefix: String
    /// The libraries imported at start-up and by loading, in that order.
    public var libraries: [Library]
    /// Libraries the harness's stand-ins answered for because the environment lacks them.
    public var standIns: [String]
    /// What `torch.load(weights_only=True)` on this torch said of the file: `accepted`, `refused …`, `unsupported`,
    /// `not-applicable …` (TorchScript, which torch passes to `torch.jit.load`); nil when torch did not load it.
    public var weightsOnly: String?

    /// Creates a summary.
    public init(
        name: String?, interpreter: String, version: String, implementation: String, prefix: String,
        libraries: [Library], standIns: [String], weightsOnly: String?
    ) {
        self.name = name
        self.interpreter = interpreter
        self.version = version
        self.implementation = implementation
        self.prefix = prefix
        self.libraries = libraries
        self.standIns = standIns
        self.weightsOnly = weightsOnly
    }

    /// One line for people: `loaded with /usr/bin/python3 3.11.2: torch 1.13.1 (start-up); torch.load(weights_only=
    /// True) would refuse it`.
    public var line: String {
        var text = "loaded with \(interpreter) \(version)"
        if let name { text += " (runtime \(name))" }
        let named = libraries.prefix(8).map { "\($0.distribution ?? $0.module) \($0.version ?? "?")" }
        if !named.isEmpty { text += ": " + named.joined(separator: ", ") }
        if !standIns.isEmpty { text += "; stand-ins for \(standIns.joined(separator: ", "))" }
        switch weightsOnlyAccepted {
        case true?: text += "; torch.load(weights_only=True) would accept it"
        case false?: text += "; torch.load(weights_only=True) would refuse it"
        case nil:
            if weightsOnly?.hasPrefix("not-applicable") == true {
                text += "; weights_only does not apply (TorchScript)"
            }
        }
        return text
    }

    /// Whether `weights_only=True` accepted the file.
    public var weightsOnlyAccepted: Bool? {
        guard let weightsOnly else { return nil }
        if weightsOnly == "accepted" { return true }
        return weightsOnly.hasPrefix("refused") ? false : nil
    }

    /// The `runtime` member of the report's `detonation`.
    public var json: JSON {
        .object([
            ("name", .optional(name)),
            ("interpreter", .string(interpreter)),
            ("version", .string(version)),
            ("implementation", .string(implementation)),
            ("prefix", .string(prefix)),
            (
                "libraries",
                .array(
                    libraries.map {
                        .object([
                            ("module", .string($0.module)), ("distribution", .optional($0.distribution)),
                            ("version", .optional($0.version)), ("when", .string($0.when)),
                        ])
                    })
            ),
            ("standIns", .array(standIns.map(JSON.string))),
            ("weightsOnly", .optional(weightsOnly)),
            ("weightsOnlyAccepted", weightsOnlyAccepted.map(JSON.bool) ?? .null),
        ])
    }

    /// A summary read back from its JSON; nil when `value` is not one.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func string(_ key: String, in v: JSON?) -> String? { if case .string(let s)? = v { s } else { nil } }
        guard let interpreter = string("interpreter", in: field("interpreter")),
            let version = string("version", in: field("version")),
            case .array(let items)? = field("libraries")
        else { return nil }
        var libraries: [Library] = []
        for item in items {
            guard case .object(let l) = item, let module = string("", in: l.first { $0.0 == "module" }?.1),
                let when = string("", in: l.first { $0.0 == "when" }?.1)
            else { return nil }
            libraries.append(
                Library(
                    module: module, distribution: string("", in: l.first { $0.0 == "distribution" }?.1),
                    version: string("", in: l.first { $0.0 == "version" }?.1), when: when))
        }
        var standIns: [String] = []
        if case .array(let s)? = field("standIns") {
            standIns = s.compactMap { if case .string(let v) = $0 { v } else { nil } }
        }
        self.init(
            name: string("name", in: field("name")), interpreter: interpreter, version: version,
            implementation: string("", in: field("implementation")) ?? "",
            prefix: string("", in: field("prefix")) ?? "",
            libraries: libraries, standIns: standIns, weightsOnly: string("", in: field("weightsOnly")))
    }
}
