/// A credential planted in a detonation's world (issue 15): a value unique to the detonation, in the real
/// credential's format, placed where a real host keeps it. Nothing but a thief ever reads or sends it, so a read of
/// one of its files is `dynamic.secrets` and its value in anything leaving the sandbox is `dynamic.exfiltration`.
///
/// The supervisor needs only where the tokens are (`HostWorld.honeytokenFiles`): reads of those files are allowed
/// and traced with the rule `TraceRule.honeytoken`. Drawing them is `Honeytokens.plant(in:)` (AirlockProbe).
public struct Honeytoken: Sendable, Equatable {
    /// Where a token was planted.
    public enum Place: Sendable, Equatable, CustomStringConvertible {
        /// An environment variable of the command.
        case environment(String)
        /// A file, by its absolute path inside the sandbox.
        case file(String)

        /// `$HF_TOKEN`, or the path.
        public var description: String {
            switch self {
            case .environment(let name): "$" + name
            case .file(let path): path
            }
        }
    }

    /// What the token is, for people (`HF_TOKEN`, `AWS secret access key`, `SSH private key (ed25519)`).
    public var name: String
    /// The credential as planted (for a key file: the value that identifies it, not the whole file).
    public var value: String
    /// The parts of the value only this detonation has (its random parts, at least 16 bytes each): what the
    /// exfiltration matcher looks for, as is and encoded. Fixed prefixes and headers are left out so that they never
    /// match by themselves.
    public var secrets: [[UInt8]]
    /// Every place it was planted.
    public var places: [Place]

    /// Creates a token.
    public init(name: String, value: String, secrets: [[UInt8]], places: [Place]) {
        self.name = name
        self.value = value
        self.secrets = secrets
        self.places = places
    }
}

extension HostWorld {
    /// The files that hold planted tokens, normalised, each once.
    public var honeytokenFiles: [String] {
        var seen = Set<String>()
        var out: [String] = []
        for token in honeytokens {
            for case .file(let path) in token.places where seen.insert(PathMatcher.normalize(path)).inserted {
                out.append(PathMatcher.normalize(path))
            }
        }
        return out
    }

    /// The tokens planted in the file at `path` (compared once `.` and `..` are collapsed).
    public func honeytokens(plantedAt path: String) -> [Honeytoken] {
        let path = PathMatcher.normalize(path)
        return honeytokens.filter { token in
            token.places.contains { if case .file(let p) = $0 { PathMatcher.normalize(p) == path } else { false } }
        }
    }

    /// Whether a token is planted in the environment: then `/proc/PID/environ` holds it, and reading it is a read of
    /// that token.
    public var honeytokensInEnvironment: Bool {
        honeytokens.contains { $0.places.contains { if case .environment = $0 { true } else { false } } }
    }
}
