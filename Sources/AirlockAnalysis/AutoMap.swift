public import AirlockJSON
internal import AirlockFormats
internal import AirlockNames

/// The `auto_map` of a Hugging Face config (`config.json`, `tokenizer_config.json`, a processor's config): the
/// classes transformers imports from the repository's own Python files when a model is loaded with
/// `trust_remote_code=True`, read as `transformers.dynamic_module_utils.get_class_from_dynamic_module` reads them.
///
/// A reference is `module.ClassName` (the file `module.py` beside the config), or `repo--module.ClassName` (code from
/// another repository on the Hub). transformers joins the module name to the repository's folder as it is, so an
/// absolute name (`/tmp/x.Evil`) imports a file the repository does not hold. Only references whose module and
/// class are plain identifiers are ever detonated; the others are findings.
public struct AutoMap: Sendable, Equatable {
    /// Why a reference is not one the repository's own files answer.
    public enum Problem: String, Sendable {
        /// An absolute module name or one with a `..` component: a file outside the repository.
        case traversal
        /// `repo--module.Class`: code from another repository, downloaded from the Hub when loaded.
        case external
        /// Anything else that is not `identifier.Identifier` (transformers fails on it, or reads a subfolder).
        case invalid
    }

    /// One class reference.
    public struct Reference: Sendable, Equatable {
        /// The auto class it is for (`AutoModel`, `AutoConfig`, `AutoTokenizer`).
        public var key: String
        /// The reference as written.
        public var text: String
        /// The module (file name without `.py`) and the class, when valid.
        public var module: String?
        public var className: String?
        /// Why it is not valid, when it is not.
        public var problem: Problem?
    }

    /// Every reference, in the config's order (`null` entries of tokenizer pairs left out).
    public var references: [Reference]

    /// Most references read from one config.
    public static let maxReferences = 64

    /// The valid references' modules, in order, without repeats.
    public var modules: [String] {
        var seen = Set<String>()
        return references.compactMap(\.module).filter { seen.insert($0).inserted }
    }

    /// The `auto_map` of the config open as `fd` (named `name` in errors); nil when the file is not a JSON object
    /// with an `auto_map` member, or is over 16 MiB.
    public static func read(fd: Int32, name: String) -> AutoMap? {
        guard let view = try? ByteView.map(fd: fd, name: name), view.count < 16 << 20 else { return nil }
        let bytes = view.array
        guard let tree = try? JSON.parse(bytes, maxDepth: 128, dialect: .python), var map = AutoMap(config: tree) else {
            return nil
        }
        map.locate(in: bytes)
        return map
    }

    /// Where the `auto_map` member is in the config's text, and each reference's string in it, for reports that
    /// point at lines (SARIF). Found in the raw bytes: a key or reference written with escapes, or a file that is
    /// not UTF-8, gets the member's place or none.
    var keyPoint: TextPoint?
    var referencePoints: [String: TextPoint] = [:]

    mutating func locate(in bytes: [UInt8]) {
        let scan = TextPosition.scanJSON(bytes, key: "auto_map")
        guard let key = scan.keyOffset else { return }
        let offsets = references.map { scan.strings[Array($0.text.utf8)] }
        let places = TextPosition.points(bytes, offsets: [key] + offsets.compactMap { $0 })
        keyPoint = places[key]
        for (r, offset) in zip(references, offsets) {
            if let offset, let p = places[offset] { referencePoints[r.text] = p }
        }
    }

    /// The `auto_map` of a parsed config; nil without one. The legacy tokenizer form, a list of two class names, is
    /// the `AutoTokenizer` entry.
    public init?(config: JSON) {
        guard case .object(let members) = config, let (_, map) = members.first(where: { $0.0 == "auto_map" }) else {
            return nil
        }
        var pairs: [(String, String)] = []
        func add(_ key: String, _ value: JSON) {
            switch value {
            case .string(let s): pairs.append((key, s))
            case .array(let items): for case .string(let s) in items { pairs.append((key, s)) }
            default: break
            }
        }
        switch map {
        case .object(let entries): for (key, value) in entries { add(key, value) }
        case .array: add("AutoTokenizer", map)
        default: return nil
        }
        references = pairs.prefix(AutoMap.maxReferences).map { AutoMap.reference(key: $0.0, text: $0.1) }
        truncated = pairs.count > AutoMap.maxReferences
    }

    /// Whether the map held more than `maxReferences` references: the rest were never judged, so a detonation of
    /// the repository proves nothing about them.
    public var truncated = false

    /// One reference checked the way transformers splits it: `repo--` first, then exactly one dot.
    static func reference(key: String, text: String) -> Reference {
        var r = Reference(key: key, text: text, module: nil, className: nil, problem: nil)
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let pathLike = text.contains("/") || text.contains("\\")
        if text.hasPrefix("/") || text.hasPrefix("\\") || text.hasPrefix("~")
            || (pathLike && text.split(whereSeparator: { $0 == "/" || $0 == "\\" }).contains(".."))
            || text.contains("\0")
        {
            r.problem = .traversal
        } else if text.contains("--") {
            r.problem = .external
        } else if parts.count == 2, isIdentifier(parts[0]), isIdentifier(parts[1]) {
            r.module = parts[0]
            r.className = parts[1]
        } else {
            r.problem = .invalid
        }
        return r
    }

    /// An ASCII Python identifier of at most 100 characters: nothing else becomes a file name or an import.
    public static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 100, first == UInt8(ascii: "_") || isLetter(first) else {
            return false
        }
        return s.utf8.allSatisfy { $0 == UInt8(ascii: "_") || isLetter($0) || (0x30...0x39).contains($0) }
    }

    private static func isLetter(_ b: UInt8) -> Bool { (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) }

    /// The place of a reference's string, else of the member, as evidence details.
    private func point(_ r: Reference) -> [(String, String)] {
        (referencePoints[r.text] ?? keyPoint)?.details ?? []
    }

    /// The static findings for this map in the config `name`: `hf.remote-code` (high), and one finding per
    /// reference that the repository's own files do not answer.
    public func findings(config name: String) -> [Finding] {
        let targets = references.map(\.text)
        var out = [
            Finding(
                rule: "hf.remote-code", severity: .high,
                message:
                    "config maps model classes to code in the repository (auto_map): trust_remote_code=True would run it",
                evidence: Evidence(
                    member: name, args: targets.isEmpty ? nil : targets, details: keyPoint?.details ?? [])
            )
        ]
        for r in references {
            guard let problem = r.problem else { continue }
            let shown = FileName.escapingControls(r.text.count > 200 ? String(r.text.prefix(200)) + "…" : r.text)
            switch problem {
            case .traversal:
                out.append(
                    Finding(
                        rule: "hf.auto-map-traversal", severity: .critical,
                        message:
                            "auto_map names code outside the repository (\(r.key): \(shown)): transformers would import a file the repository does not hold; not detonated",
                        evidence: Evidence(member: name, args: [r.text], details: point(r))))
            case .external:
                out.append(
                    Finding(
                        rule: "hf.remote-code-external", severity: .high,
                        message:
                            "auto_map names code in another repository (\(r.key): \(shown)): transformers would download it from the Hub and run it; not detonated",
                        evidence: Evidence(member: name, args: [r.text], details: point(r))))
            case .invalid:
                out.append(
                    Finding(
                        rule: "hf.auto-map-invalid", severity: .medium,
                        message:
                            "auto_map entry \(r.key): \(shown) is not module.ClassName with plain identifiers; not detonated",
                        evidence: Evidence(member: name, args: [r.text], details: point(r))))
            }
        }
        return out
    }
}
