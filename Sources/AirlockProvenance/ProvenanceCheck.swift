import AirlockNames
public import AirlockAnalysis
internal import AirlockFormats

/// What checking a signature gave.
public enum SignatureOutcome: Sendable {
    /// The bundle verified with one of the given keys; the files it lists still have to match.
    case verified(SignedModel)
    /// The bundle did not verify, could not be read, or is of a kind not verified yet.
    case failed(ProvenanceError)
}

/// Compares a model as it is (its inventory) with what was meant (a manifest, a signature) and with what the
/// manifest's policy accepts. Every difference is a finding with `source: "provenance"`.
public enum ProvenanceCheck {
    /// The findings for `inventory` against `manifest` and `signature` (either may be nil, not both).
    public static func findings(inventory: ModelInventory, manifest: Manifest?, signature: SignatureOutcome?)
        -> [Finding]
    {
        var out: [Finding] = []
        for (path, reason) in inventory.problems {
            out.append(
                finding("provenance.unreadable", .high, "\(path) cannot be hashed: \(reason)", path: path.escaped))
        }
        if manifest != nil || signature != nil {
            for (path, target) in inventory.symlinks {
                out.append(
                    finding(
                        "provenance.symlink", .high,
                        "\(path) is a symbolic link to \(target): neither manifests nor signatures vouch for what a link points to",
                        path: path.escaped, details: [("target", target)]
                    ))
            }
        }
        if let manifest {
            out += lookalikes(manifest.files.map(\.name), in: "manifest")
            out += compare(
                inventory, expected: manifest.files.map { ($0.name, $0.sha256, $0.size) }, against: "manifest",
                extraAllowed: manifest.policy?.allowExtraFiles ?? false, singleFile: manifest.kind == .file)
        }
        var signer: String? = nil
        switch signature {
        case .verified(let signed):
            signer = signed.keyFingerprint
            if inventory.kind == .folder && signed.resources.count == 1 && signed.resources[0].name == "." {
                out.append(
                    finding(
                        "provenance.signature-mismatch", .critical,
                        "the signature is for a single file (model \(signed.modelName)), and this is a folder"))
            } else {
                // The paths the signature itself leaves out (model-signing's ignore_paths) count for it alone; a
                // manifest still sees them. A single-file model's one resource is `.`: compared by content.
                out += lookalikes(signed.resources.map { FileName($0.name) }, in: "signature")
                // The bundle names resources with (Unicode) strings: their UTF-8 bytes are the names meant.
                out += compare(
                    inventory.excluding(signed.ignorePaths),
                    expected: signed.resources.map { (FileName($0.name), $0.sha256, nil) },
                    against: "signature", extraAllowed: false, singleFile: inventory.kind == .file)
            }
        case .failed(let error):
            switch error.kind {
            case .unsupported:
                out.append(
                    finding(
                        "provenance.signature-unsupported", .high, "the signature was not verified: \(error.message)"))
            case .badSignature:
                out.append(
                    finding("provenance.signature-invalid", .critical, "the signature does not hold: \(error.message)"))
            default:
                out.append(
                    finding(
                        "provenance.signature-unreadable", .high, "the signature cannot be checked: \(error.message)"))
            }
        case nil:
            break
        }
        if let manifest, let policy = manifest.policy {
            out += policyFindings(inventory, manifest: manifest, policy: policy, signature: signature, signer: signer)
        }
        return out
    }

    /// Whether the manifest's source is one of the policy's trusted sources, proven by a signature when that source
    /// lists keys; and if not, why not.
    public static func trust(manifest: Manifest, policy: ManifestPolicy, signer: String?) -> (
        trusted: Bool, why: String
    ) {
        guard let source = manifest.source else { return (false, "the manifest names no source") }
        guard let entry = policy.trustedSources.first(where: { $0.name == source }) else {
            return (false, "source \(source) is not one of the trusted sources")
        }
        if entry.keys.isEmpty { return (true, "source \(source) is trusted") }
        guard let signer else {
            return (
                false, "source \(source) is trusted only with a signature by one of its keys, and no signature verified"
            )
        }
        guard entry.keys.contains(signer) else {
            return (
                false,
                "source \(source) is trusted only with a signature by one of its keys; the signature is by key \(signer)"
            )
        }
        return (true, "source \(source) is trusted and its key signed the model")
    }

    private static func policyFindings(
        _ inventory: ModelInventory, manifest: Manifest, policy: ManifestPolicy, signature: SignatureOutcome?,
        signer: String?
    ) -> [Finding] {
        var out: [Finding] = []
        if policy.requireSignature && signature == nil {
            out.append(
                finding("provenance.signature-missing", .high, "the manifest requires a signature and none was given"))
        }
        let (trusted, why) = trust(manifest: manifest, policy: policy, signer: signer)
        if !policy.trustedSources.isEmpty && !trusted {
            out.append(
                finding(
                    "provenance.untrusted-source", .high, "the model does not come from a trusted source: \(why)",
                    details: [("source", manifest.source ?? "")]))
        }
        for file in inventory.files {
            // A trusted-only format stays trusted-only even when allowedFormats lists it too.
            let trustedOnly = policy.trustedOnlyFormats.contains(file.format)
            let allowedAnywhere = !trustedOnly && (policy.allowedFormats.map { $0.contains(file.format) } ?? true)
            let allowedTrusted = trusted && trustedOnly
            guard !allowedAnywhere && !allowedTrusted else { continue }
            let message =
                trustedOnly
                ? "\(file.path) is \(file.format), accepted only from a trusted source (\(why))"
                : "\(file.path) is \(file.format), which the manifest does not allow"
            out.append(
                finding(
                    "provenance.format-not-allowed", .high, message, path: file.path, details: [("format", file.format)]
                ))
        }
        return out
    }

    /// Entries of a list that are different names but read the same once decoded (invalid bytes replaced) or
    /// Unicode-normalised (NFC `é` and NFD `e` + U+0301): tools that normalise names (macOS file systems, Python
    /// code calling `unicodedata.normalize`, some archivers) would take one for the other.
    static func lookalikes(_ names: [FileName], in list: String) -> [Finding] {
        // `String` equality is canonical equivalence: grouping by it finds exactly the names that normalise alike.
        var groups: [String: [FileName]] = [:]
        for name in names { groups[name.lookalikeKey, default: []].append(name) }
        return groups.values.filter { Set($0).count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }.map { group in
            let shown = group.map(\.escaped)
            return finding(
                "provenance.name-lookalike", .high,
                "the \(list) lists \(shown.joined(separator: ", ")): different names that read the same once decoded or Unicode-normalised, so a tool that normalises names takes one for the other",
                path: shown[0],
                details: shown.dropFirst().prefix(8).enumerated().map { ("lookalike\($0.offset + 1)", $0.element) })
        }
    }

    /// Missing, extra and changed files: `expected` holds (path, sha256, size if known).
    /// Paths are compared as bytes (`FileName`): a decoded string would take `w\xff.pkl` for `w\u{FFFD}.pkl`, and
    /// Swift's `String` equality NFC `é` for NFD `é`.
    static func compare(
        _ inventory: ModelInventory, expected: [(FileName, String, Int?)], against: String, extraAllowed: Bool,
        singleFile: Bool
    ) -> [Finding] {
        var out: [Finding] = []
        var actual: [FileName: InventoryFile] = [:]
        for f in inventory.files { actual[f.name] = f }
        var expectedPaths: Set<FileName> = []
        var renamedFrom: FileName? = nil
        if singleFile, inventory.kind == .file, expected.count == 1, let file = inventory.files.first {
            // A renamed single file is still the file meant: compare its content. Findings name the file as it is
            // (model-signing names a single file's resource ".").
            actual = [expected[0].0: file]
            renamedFrom = expected[0].0
        }
        let unhashable = Set(inventory.problems.map(\.path) + inventory.symlinks.map(\.path))
        for (name, digest, size) in expected {
            expectedPaths.insert(name)
            let path = name.escaped
            guard let file = actual[name] else {
                if unhashable.contains(name) { continue }  // already a finding of its own
                out.append(
                    finding(
                        "provenance.missing", .high, "\(path) is listed by the \(against) but missing", path: path,
                        against: against,
                        details: [("expectedSha256", digest)]))
                continue
            }
            if file.sha256 != digest || (size.map { $0 != file.size } ?? false) {
                var details = [("expectedSha256", digest), ("actualSha256", file.sha256)]
                if let size { details += [("expectedSize", String(size)), ("actualSize", String(file.size))] }
                let shown = renamedFrom == nil ? path : file.path
                out.append(
                    finding(
                        "provenance.changed", .critical,
                        "\(shown) is not the file the \(against) names: its content differs", path: shown,
                        against: against, details: details))
            }
        }
        for file in inventory.files where !expectedPaths.contains(file.name) && !(singleFile && inventory.kind == .file)
        {
            out.append(
                finding(
                    "provenance.extra", extraAllowed ? .info : .high, "\(file.path) is not listed by the \(against)",
                    path: file.path, against: against,
                    details: [("actualSha256", file.sha256), ("format", file.format)]))
        }
        return out
    }

    private static func finding(
        _ rule: String, _ severity: Severity, _ message: String, path: String? = nil, against: String? = nil,
        details: [(String, String)] = []
    ) -> Finding {
        var all: [(String, String)] = []
        if let path { all.append(("path", path)) }
        if let against { all.append(("against", against)) }
        return Finding(
            rule: rule, severity: severity, source: .provenance, message: message,
            evidence: Evidence(member: nil, details: all + details))
    }
}
