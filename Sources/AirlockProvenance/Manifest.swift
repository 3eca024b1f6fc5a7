import AirlockNames
public import AirlockJSON
internal import AirlockFormats

#if canImport(Glibc)
    import Glibc
#endif

/// An organisation or hub account models may come from, and the keys that speak for it.
public struct TrustedSource: Sendable, Equatable {
    /// The name a manifest's `source` gives (`acme-research`, `huggingface.co/acme`).
    public var name: String
    /// Fingerprints (hex SHA-256 of the PEM public key, model-signing's key hint) of keys that sign for it. When not
    /// empty, a model counts as coming from this source only if a signature by one of them verifies.
    public var keys: [String]

    /// Creates a trusted source.
    public init(name: String, keys: [String] = []) {
        self.name = name
        self.keys = keys
    }
}

/// What a manifest demands beyond the hashes.
public struct ManifestPolicy: Sendable, Equatable {
    /// Formats any source may ship (format names as reports give them); nil allows every format.
    public var allowedFormats: [String]?
    /// Formats accepted only when the model comes from a trusted source ("no pickle unless the source is trusted").
    public var trustedOnlyFormats: [String]
    /// Sources that count as trusted.
    public var trustedSources: [TrustedSource]
    /// Whether a verified signature is required.
    public var requireSignature: Bool
    /// Whether files the manifest does not list are accepted (otherwise each is a finding).
    public var allowExtraFiles: Bool

    /// Creates a policy; the defaults demand nothing.
    public init(
        allowedFormats: [String]? = nil, trustedOnlyFormats: [String] = [], trustedSources: [TrustedSource] = [],
        requireSignature: Bool = false, allowExtraFiles: Bool = false
    ) {
        self.allowedFormats = allowedFormats
        self.trustedOnlyFormats = trustedOnlyFormats
        self.trustedSources = trustedSources
        self.requireSignature = requireSignature
        self.allowExtraFiles = allowExtraFiles
    }
}

/// The files a model must consist of (path, size, SHA-256, format), where it comes from, and what is accepted.
///
/// The JSON form is documented in docs/manifest.md and described by docs/manifest.schema.json. Reading is strict:
/// unknown fields, duplicate paths, paths that climb out of the folder, paths not in the escaped form of
/// `FileName.escaped` (how a manifest names a file whose name is not UTF-8 or holds control characters) and digests
/// that are not 64 hex digits are errors naming the field. Paths are compared as the bytes they stand for.
public struct Manifest: Sendable, Equatable {
    /// The version this code reads and writes.
    public static let version = 1
    /// Largest manifest read, in bytes.
    public static let maxBytes = 64 << 20

    /// The model's name (its folder or file name unless given).
    public var name: String
    /// Where the model comes from, as the trusted sources name it.
    public var source: String?
    /// `file` or `folder`: a file manifest lists one entry, its file name.
    public var kind: ModelInventory.Kind
    /// The files, in path order.
    public var files: [InventoryFile]
    /// What is accepted; nil checks the hashes only.
    public var policy: ManifestPolicy?

    /// Creates a manifest.
    public init(
        name: String, source: String? = nil, kind: ModelInventory.Kind, files: [InventoryFile],
        policy: ManifestPolicy? = nil
    ) {
        self.name = name
        self.source = source
        self.kind = kind
        self.files = files
        self.policy = policy
    }

    /// A manifest of what `inventory` holds, named after its last path component unless `name` is given.
    public init(inventory: ModelInventory, name: String? = nil, source: String? = nil, policy: ManifestPolicy? = nil) {
        let last = inventory.display.split(separator: "/").last.map(String.init) ?? inventory.display
        self.init(name: name ?? last, source: source, kind: inventory.kind, files: inventory.files, policy: policy)
    }

    /// The manifest as JSON (members in a fixed order, so equal manifests are equal bytes).
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("manifestVersion", .int(Manifest.version)),
            ("name", .string(name)),
        ]
        if let source { members.append(("source", .string(source))) }
        members.append(("kind", .string(kind.rawValue)))
        members.append(
            (
                "files",
                .array(
                    files.map { f in
                        // `format` is optional when read (empty then): written only when known, so what is written reads back.
                        .object(
                            [("path", .string(f.path)), ("size", .int(f.size)), ("sha256", .string(f.sha256))]
                                + (f.format.isEmpty ? [] : [("format", .string(f.format))]))
                    })
            ))
        if let policy {
            var p: [(String, JSON)] = []
            if let allowed = policy.allowedFormats { p.append(("allowedFormats", .array(allowed.map(JSON.string)))) }
            p.append(("trustedOnlyFormats", .array(policy.trustedOnlyFormats.map(JSON.string))))
            p.append(
                (
                    "trustedSources",
                    .array(
                        policy.trustedSources.map { s in
                            .object([("name", .string(s.name)), ("keys", .array(s.keys.map(JSON.string)))])
                        })
                ))
            p.append(("requireSignature", .bool(policy.requireSignature)))
            p.append(("allowExtraFiles", .bool(policy.allowExtraFiles)))
            members.append(("policy", .object(p)))
        }
        return .object(members)
    }

    /// Reads the manifest at `path`.
    public static func read(path: String) throws(ProvenanceError) -> Manifest {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path, limit: maxBytes, what: "manifest")
        } catch {
            throw ProvenanceError(error.errno == nil ? .limit : .io, error.description)
        }
        return try parse(bytes, name: path)
    }

    /// Parses a manifest; `name` names it in messages.
    public static func parse(_ bytes: [UInt8], name: String) throws(ProvenanceError) -> Manifest {
        let document: JSON
        do {
            document = try JSON.parse(bytes, maxDepth: 16)
        } catch {
            throw ProvenanceError(.malformed, "manifest \(name): \(error.description)")
        }
        let root = JSONField<ProvenanceError>(
            value: document, path: "", fail: { ProvenanceError(.malformed, "manifest \(name): \($0)") })
        let top = try root.object(allowed: ["manifestVersion", "name", "source", "kind", "files", "policy"])
        func required(_ key: String) throws(ProvenanceError) -> JSONField<ProvenanceError> {
            guard let field = top[key] else {
                throw ProvenanceError(.malformed, "manifest \(name): field \(key) is required")
            }
            return field
        }
        let version = try required("manifestVersion").integer(Int.self)
        guard version == Manifest.version else {
            throw ProvenanceError(
                .unsupported,
                "manifest \(name): manifestVersion \(version) is not supported (this airlock reads version \(Manifest.version))"
            )
        }
        let modelName = try required("name").string()
        let source = try top["source"]?.string()
        let kindText = try top["kind"]?.string() ?? "folder"
        guard let kind = ModelInventory.Kind(rawValue: kindText) else {
            throw ProvenanceError(
                .malformed, "manifest \(name): field kind: expected \"file\" or \"folder\", found \"\(kindText)\"")
        }
        var files: [InventoryFile] = []
        var seen: Set<FileName> = []
        for item in try required("files").array() {
            let f = try item.object(allowed: ["path", "size", "sha256", "format"])
            guard let pathField = f["path"], let sizeField = f["size"], let digestField = f["sha256"] else {
                throw ProvenanceError(
                    .malformed, "manifest \(name): field \(item.path): path, size and sha256 are required")
            }
            let path = try pathField.string()
            if let why = Manifest.pathProblem(path) {
                throw ProvenanceError(.malformed, "manifest \(name): field \(pathField.path): \(why)")
            }
            guard let fileName = FileName(escaped: path) else {
                throw ProvenanceError(
                    .malformed,
                    "manifest \(name): field \(pathField.path): \(FileName(path).escaped) is not in the escaped form of names (docs/manifest.md): write a backslash as \\\\, and a byte that is not UTF-8 or belongs to a control or formatting character as \\xHH, upper-case, and nothing else escaped"
                )
            }
            // Bytes, not `String` equality (which takes NFC `é` for NFD `é`): two entries, two files.
            guard seen.insert(fileName).inserted else {
                throw ProvenanceError(.malformed, "manifest \(name): field \(pathField.path): \(path) is listed twice")
            }
            let size = try sizeField.integer(Int.self)
            guard size >= 0 else {
                throw ProvenanceError(
                    .malformed, "manifest \(name): field \(sizeField.path): a size cannot be negative")
            }
            let digest = try digestField.string()
            guard digest.utf8.count == 64,
                digest.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
            else {
                throw ProvenanceError(
                    .malformed, "manifest \(name): field \(digestField.path): expected 64 lower-case hex digits")
            }
            let format =
                try f["format"].map { field throws(ProvenanceError) in try Manifest.formatName(field, manifest: name) }
                ?? ""
            files.append(InventoryFile(name: fileName, size: size, sha256: digest, format: format))
        }
        if kind == .file && files.count != 1 {
            throw ProvenanceError(
                .malformed, "manifest \(name): a file manifest lists exactly one file, this one lists \(files.count)")
        }
        files.sort { $0.name < $1.name }
        var policy: ManifestPolicy? = nil
        if let p = top["policy"] {
            let fields = try p.object(allowed: [
                "allowedFormats", "trustedOnlyFormats", "trustedSources", "requireSignature", "allowExtraFiles",
            ])
            var result = ManifestPolicy()
            if let allowed = fields["allowedFormats"] {
                result.allowedFormats = try formatNames(allowed, manifest: name)
            }
            if let trustedOnly = fields["trustedOnlyFormats"] {
                result.trustedOnlyFormats = try formatNames(trustedOnly, manifest: name)
            }
            if let sources = fields["trustedSources"] {
                for item in try sources.array() {
                    let s = try item.object(allowed: ["name", "keys"])
                    guard let sourceName = try s["name"]?.string(), !sourceName.isEmpty else {
                        throw ProvenanceError(.malformed, "manifest \(name): field \(item.path).name is required")
                    }
                    var keys: [String] = []
                    for key in try s["keys"]?.array() ?? [] {
                        let k = try key.string().lowercased()
                        let hex = k.hasPrefix("sha256:") ? String(k.dropFirst(7)) : k
                        guard hex.utf8.count == 64,
                            hex.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
                        else {
                            throw ProvenanceError(
                                .malformed,
                                "manifest \(name): field \(key.path): expected a key fingerprint: 64 hex digits, the SHA-256 of the PEM public key (model-signing's key hint)"
                            )
                        }
                        keys.append(hex)
                    }
                    result.trustedSources.append(TrustedSource(name: sourceName, keys: keys))
                }
            }
            result.requireSignature = try fields["requireSignature"]?.bool() ?? false
            result.allowExtraFiles = try fields["allowExtraFiles"]?.bool() ?? false
            policy = result
        }
        return Manifest(name: modelName, source: source, kind: kind, files: files, policy: policy)
    }

    private static func formatNames(_ field: JSONField<ProvenanceError>, manifest: String) throws(ProvenanceError)
        -> [String]
    {
        var out: [String] = []
        for item in try field.array() {
            let name = try formatName(item, manifest: manifest)
            if let why = policyFormatProblem(name) {
                throw ProvenanceError(.malformed, "manifest \(manifest): field \(item.path): \(why)")
            }
            out.append(name)
        }
        return out
    }

    /// Why `format` cannot be used in a policy's format lists (it never occurs in a manifest), or nil.
    public static func policyFormatProblem(_ format: String) -> String? {
        format == "joblib"
            ? "joblib never matches: manifests identify joblib files as pickle (restrict pickle instead)" : nil
    }

    private static func formatName(_ field: JSONField<ProvenanceError>, manifest: String) throws(ProvenanceError)
        -> String
    {
        let text = try field.string()
        guard FileFormat(rawValue: text) != nil else {
            let known = FileFormat.allCases.map(\.rawValue).joined(separator: ", ")
            throw ProvenanceError(
                .malformed, "manifest \(manifest): field \(field.path): unknown format \"\(text)\" (known: \(known))")
        }
        return text
    }

    /// Why `path` cannot name a file inside a model folder, or nil when it can.
    public static func pathProblem(_ path: String) -> String? {
        if path.isEmpty { return "an empty path" }
        if path.hasPrefix("/") { return "\(path) is absolute: paths are relative to the model folder" }
        if path.utf8.contains(0) { return "a path with a NUL byte" }
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            if part.isEmpty { return "\(path) has an empty segment" }
            if part == "." || part == ".." { return "\(path) has a \(part) segment" }
        }
        return nil
    }
}
