import AirlockNames
internal import AirlockFormats
internal import AirlockJSON
internal import Crypto

/// One file as signed.
public struct SignedResource: Sendable, Equatable {
    /// The file's path relative to the model folder, `/`-separated, as model-signing wrote it (`sub/tokenizer.txt`).
    /// A model signed as a single file has one resource named `.`: the signed file itself.
    public var name: String
    /// SHA-256 of the file's bytes, lower-case hex.
    public var sha256: String

    /// Creates a resource.
    public init(name: String, sha256: String) {
        self.name = name
        self.sha256 = sha256
    }
}

/// What a verified bundle vouches for: the signed statement of a model-signing bundle whose signature verified.
///
/// Comparing it with the files on disk is the caller's job: every resource must be present with its digest, and files
/// that are neither resources nor under `ignorePaths` were not signed.
public struct SignedModel: Sendable {
    /// The subject name: the model folder's (or file's) name when it was signed. Informative only; renaming the
    /// folder does not invalidate the signature.
    public var modelName: String
    /// The subject digest: lower-case hex SHA-256 over the resources' raw digests in order (checked to add up).
    public var rootDigest: String
    /// The signed files, in the order of the statement (model-signing sorts them by name).
    public var resources: [SignedResource]
    /// Paths (relative to the model folder) the signer left out, such as `.git`; a folder covers everything under it.
    public var ignorePaths: [String]
    /// Whether the signer followed symbolic links.
    public var allowSymlinks: Bool
    /// Hex SHA-256 of the verifying key's canonical PEM SubjectPublicKeyInfo text, the same as model-signing's hint.
    public var keyFingerprint: String

    /// Creates a signed model.
    public init(
        modelName: String, rootDigest: String, resources: [SignedResource], ignorePaths: [String], allowSymlinks: Bool,
        keyFingerprint: String
    ) {
        self.modelName = modelName
        self.rootDigest = rootDigest
        self.resources = resources
        self.ignorePaths = ignorePaths
        self.allowSymlinks = allowSymlinks
        self.keyFingerprint = keyFingerprint
    }
}

/// Verification of OpenSSF model-signing bundles (`model.sig`, PyPI `model-signing` 1.x) made with its private-key
/// method (`model_signing sign key`): a Sigstore bundle v0.3 holding a DSSE envelope over an in-toto statement.
///
/// Only what the key method writes is verified: an EC key on P-256, P-384 or P-521, and the `files` serialization with
/// SHA-256 digests. Certificate-based and keyless (Sigstore) bundles, shard serialization and other hash types are
/// refused as `.unsupported`, never half-verified.
public enum ModelSigning {
    /// The most resources a statement may list.
    public static let maxResources = 1_000_000
    /// The most signatures an envelope may carry.
    static let maxSignatures = 64

    static let bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
    static let payloadType = "application/vnd.in-toto+json"
    static let statementType = "https://in-toto.io/Statement/v1"
    static let predicateType = "https://model_signing/signature/v1.0"
    static let predicateTypeV01 = "https://model_signing/Digests/v0.1"

    /// Verifies `bundle` (the bytes of model.sig) with the PEM public key; throws ProvenanceError
    ///
    /// Checks, in order: the key is an EC key on a supported curve; the bundle is a v0.3 Sigstore bundle carrying a
    /// public-key hint (certificate-based and keyless bundles are `.unsupported`); the hint, when present, names this
    /// key (else `.badSignature`); a DSSE signature verifies over the in-toto payload (else `.badSignature`); the
    /// statement is a model-signing v1.0 statement with `files`/`sha256` serialization; the resources' digests add up to
    /// the subject digest (else `.badSignature`). Unreadable input is `.malformed`; a bound hit is `.limit`.
    ///
    /// Transparency-log entries and timestamps, which the key method does not write, are not checked. A bundle without
    /// a hint (model-signing before 1.0) is checked by its signature alone, as model-signing does, including over
    /// model-signing 0.2's variant of the DSSE encoding. The caller bounds the bundle's size (model.sig is small: about
    /// 200 bytes per file).
    public static func verify(bundle: [UInt8], publicKeyPEM: [UInt8]) throws(ProvenanceError) -> SignedModel {
        let key = try ECVerifyingKey(pem: publicKeyPEM)
        let envelope = try Envelope(bundle: bundle, key: key)
        try envelope.verifySignature(key: key)
        return try statement(envelope.payload, key: key)
    }

    /// The model-signing hint for a PEM public key (hex SHA-256 of its canonical PEM SPKI text).
    ///
    /// Canonical means as Python's `cryptography` serialises the key: `-----BEGIN PUBLIC KEY-----`, the DER in base64
    /// lines of 64 columns, `-----END PUBLIC KEY-----`, each line ending in a newline; so a key file re-wrapped or with
    /// CRLF line ends has the same fingerprint.
    public static func fingerprint(publicKeyPEM: [UInt8]) throws(ProvenanceError) -> String {
        try ECVerifyingKey(pem: publicKeyPEM).fingerprint
    }

    // MARK: - The signed statement

    /// Reads the in-toto statement a verified signature covers.
    static func statement(_ payload: [UInt8], key: ECVerifyingKey) throws(ProvenanceError) -> SignedModel {
        let root: JSON
        do {
            root = try JSON.parse(payload, maxDepth: 32)
        } catch {
            throw ProvenanceError(.malformed, "model-signing bundle: the signed payload is \(error)")
        }
        let fail: @Sendable (String) -> ProvenanceError = {
            ProvenanceError(.malformed, "model-signing bundle: signed statement \($0)")
        }
        let top = try JSONField(value: root, path: "", fail: fail).object(allowed: [
            "_type", "subject", "predicateType", "predicate",
        ])
        let type = try required(top, "_type", in: "", fail).string()
        guard type == statementType else {
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: the signed statement is of type \(quoted(type)), not an in-toto \(statementType) statement"
            )
        }
        let predicateTypeText = try required(top, "predicateType", in: "", fail).string()
        guard predicateTypeText == predicateType else {
            if predicateTypeText == predicateTypeV01 {
                throw ProvenanceError(
                    .unsupported,
                    "model-signing bundle: the pre-1.0 predicate \(predicateTypeV01) (model-signing 0.2) is not supported: it signs no root digest nor serialization; re-sign with model-signing 1.x"
                )
            }
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: the predicate type is \(quoted(predicateTypeText)), expected \(predicateType)")
        }

        let subjects = try required(top, "subject", in: "", fail).array()
        guard subjects.count == 1 else {
            throw fail("field subject: expected exactly one subject, found \(subjects.count)")
        }
        let subject = try subjects[0].object(allowed: ["name", "digest"])
        let modelName = try required(subject, "name", in: subjects[0].path, fail).string()
        let subjectDigestField = try required(subject, "digest", in: subjects[0].path, fail)
        // Other digest algorithms may sit beside sha256; only sha256 is checked (model-signing writes only it).
        guard case .object(let digestMembers) = subjectDigestField.value else {
            throw fail("field \(subjectDigestField.path): expected an object of digests")
        }
        guard let sha = digestMembers.first(where: { $0.0 == "sha256" })?.1 else {
            throw fail("field \(subjectDigestField.path).sha256: missing")
        }
        let subjectDigestText = try JSONField(value: sha, path: "\(subjectDigestField.path).sha256", fail: fail)
            .string()
        guard let subjectDigest = Hex.decode(subjectDigestText, count: 32) else {
            throw fail("field \(subjectDigestField.path).sha256: not 64 hex digits")
        }

        // The predicate: only `serialization` and `resources` are defined in v1.0; other fields are ignored, as the
        // predicate's specification asks of v1.0 verifiers.
        let predicateField = try required(top, "predicate", in: "", fail)
        guard case .object(let predicateMembers) = predicateField.value else {
            throw fail("field predicate: expected an object")
        }
        let predicate = Dictionary(
            predicateMembers.map { ($0.0, JSONField(value: $0.1, path: "predicate.\($0.0)", fail: fail)) },
            uniquingKeysWith: { a, _ in a })

        let serialization = try required(predicate, "serialization", in: "predicate", fail)
        guard case .object(let serializationMembers) = serialization.value else {
            throw fail("field predicate.serialization: expected an object")
        }
        guard let methodValue = serializationMembers.first(where: { $0.0 == "method" })?.1 else {
            throw fail("field predicate.serialization.method: missing")
        }
        let method = try JSONField(value: methodValue, path: "predicate.serialization.method", fail: fail).string()
        guard method == "files" else {
            let what =
                method == "shards"
                ? "shard serialization (\"shards\", files hashed in pieces)" : "serialization method \(quoted(method))"
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: \(what) is not supported yet; only \"files\" with sha256 is verified")
        }
        let s = try serialization.object(allowed: ["method", "hash_type", "allow_symlinks", "ignore_paths"])
        let hashType = try required(s, "hash_type", in: serialization.path, fail).string()
        guard hashType == "sha256" else {
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: hash type \(quoted(hashType)) is not supported yet; only sha256 is verified")
        }
        let allowSymlinks = try required(s, "allow_symlinks", in: serialization.path, fail).bool()
        var ignorePaths: [String] = []
        if let field = s["ignore_paths"] {
            for item in try field.array() {
                let path = try item.string()
                if let problem = pathProblem(path) {
                    throw fail("field \(item.path): the ignored path \(quoted(path)) \(problem)")
                }
                ignorePaths.append(path)
            }
        }

        let resourcesField = try required(predicate, "resources", in: "predicate", fail)
        guard case .array(let resourceValues) = resourcesField.value else {
            throw fail("field predicate.resources: expected an array")
        }
        guard resourceValues.count <= maxResources else {
            throw ProvenanceError(
                .limit,
                "model-signing bundle: \(resourceValues.count) resources, more than the \(maxResources) Airlock reads")
        }
        var resources: [SignedResource] = []
        resources.reserveCapacity(resourceValues.count)
        // By bytes: `String` equality would call NFC and NFD spellings (two files) one resource.
        var names = Set<FileName>()
        names.reserveCapacity(resourceValues.count)
        var hasher = SHA256()
        for (i, value) in resourceValues.enumerated() {
            let item = JSONField(value: value, path: "predicate.resources[\(i)]", fail: fail)
            let r = try item.object(allowed: ["name", "algorithm", "digest"])
            let name = try required(r, "name", in: item.path, fail).string()
            let algorithm = try required(r, "algorithm", in: item.path, fail).string()
            let digestText = try required(r, "digest", in: item.path, fail).string()
            guard algorithm == "sha256" else {
                throw ProvenanceError(
                    .unsupported,
                    "model-signing bundle: resource \(quoted(name)) is hashed with \(quoted(algorithm)); only sha256 is verified"
                )
            }
            guard let digest = Hex.decode(digestText, count: 32) else {
                throw fail("field \(item.path).digest: not 64 hex digits")
            }
            if name == "." {
                // A model signed as one file: its only resource is the file itself.
                guard resourceValues.count == 1 else {
                    throw fail("field \(item.path).name: \".\" (a single-file model) beside other resources")
                }
            } else if let problem = pathProblem(name) {
                throw fail("field \(item.path).name: \(quoted(name)) \(problem)")
            }
            guard names.insert(FileName(name)).inserted else {
                throw fail("field \(item.path).name: \(quoted(name)) is listed twice")
            }
            hasher.update(data: digest)
            resources.append(SignedResource(name: name, sha256: Hex.encode(digest)))
        }
        let computed = Array(hasher.finalize())
        guard computed == subjectDigest else {
            throw ProvenanceError(
                .badSignature,
                "model-signing bundle: the resource digests do not add up to the subject digest (subject \(Hex.encode(subjectDigest)), resources hash to \(Hex.encode(computed))); the signer signed an inconsistent statement"
            )
        }
        return SignedModel(
            modelName: modelName, rootDigest: Hex.encode(subjectDigest), resources: resources,
            ignorePaths: ignorePaths, allowSymlinks: allowSymlinks, keyFingerprint: key.fingerprint
        )
    }

    /// Why `path` is not a plain relative path (`a/b.bin`), or nil when it is one.
    static func pathProblem(_ path: String) -> String? {
        let bytes = Array(path.utf8)
        if bytes.isEmpty { return "is empty" }
        if bytes.first == UInt8(ascii: "/") { return "is absolute" }
        if bytes.contains(0) { return "contains a NUL byte" }
        for segment in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if segment.isEmpty { return "has an empty path segment" }
            if segment.elementsEqual([UInt8(ascii: ".")]) { return "has a \".\" segment" }
            if segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { return "climbs out with \"..\"" }
        }
        return nil
    }

    static func required(
        _ fields: [String: JSONField<ProvenanceError>], _ key: String, in path: String,
        _ fail: (String) -> ProvenanceError
    ) throws(ProvenanceError) -> JSONField<ProvenanceError> {
        guard let field = fields[key] else { throw fail("field \(path.isEmpty ? key : "\(path).\(key)"): missing") }
        return field
    }

    /// `text` in quotes, cut at 100 characters, for messages.
    static func quoted(_ text: String) -> String {
        text.count > 100 ? "\"\(text.prefix(100))…\"" : "\"\(text)\""
    }
}

// MARK: - The bundle and its envelope

/// The parts of a bundle verification needs, read strictly.
struct Envelope {
    /// The decoded DSSE payload (the statement's JSON bytes).
    let payload: [UInt8]
    /// The decoded DER signatures.
    let signatures: [[UInt8]]

    init(bundle: [UInt8], key: ECVerifyingKey) throws(ProvenanceError) {
        guard !bundle.isEmpty else { throw ProvenanceError(.malformed, "model-signing bundle: the file is empty") }
        let root: JSON
        do {
            root = try JSON.parse(bundle, maxDepth: 32)
        } catch {
            throw ProvenanceError(.malformed, "model-signing bundle: \(error)")
        }
        let fail: @Sendable (String) -> ProvenanceError = { ProvenanceError(.malformed, "model-signing bundle: \($0)") }
        let top = try JSONField(value: root, path: "", fail: fail).object(allowed: [
            "mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature",
        ])
        let mediaType = try ModelSigning.required(top, "mediaType", in: "", fail).string()
        guard mediaType == ModelSigning.bundleMediaType else {
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: media type \(ModelSigning.quoted(mediaType)) is not supported (expected \(ModelSigning.bundleMediaType))"
            )
        }

        let material = try ModelSigning.required(top, "verificationMaterial", in: "", fail).object(allowed: [
            "publicKey", "certificate", "x509CertificateChain", "tlogEntries", "timestampVerificationData",
        ])
        if material["certificate"] != nil || material["x509CertificateChain"] != nil {
            let which =
                material["certificate"] != nil
                ? "verificationMaterial.certificate" : "verificationMaterial.x509CertificateChain"
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: certificate-based and keyless (Sigstore) bundles are not verified yet (this one carries \(which)); only bundles made with `model_signing sign key` are"
            )
        }
        guard let publicKeyField = material["publicKey"] else {
            throw fail("field verificationMaterial.publicKey: missing (a bundle made with a private key carries it)")
        }
        // `rawBytes` and `keyDetails` are the pre-1.0 form; model-signing ignores them and so does Airlock: the key
        // that counts is the one the caller trusts.
        let publicKey = try publicKeyField.object(allowed: ["hint", "rawBytes", "keyDetails"])
        if let hintField = publicKey["hint"], case .string(let hint) = hintField.value, !hint.isEmpty {
            guard hint.lowercased() == key.fingerprint else {
                throw ProvenanceError(
                    .badSignature,
                    "model-signing bundle: signed with a different key (hint \(ModelSigning.quoted(hint)), the key given is sha256:\(key.fingerprint))"
                )
            }
        } else if let hintField = publicKey["hint"], hintField.value != .null {
            _ = try hintField.string()  // a hint of another type is malformed; null or "" mean no hint
        }

        if top["messageSignature"] != nil {
            throw ProvenanceError(
                .unsupported,
                "model-signing bundle: a messageSignature bundle (a signed digest, not a DSSE envelope) is not what model-signing writes; not supported"
            )
        }
        let dsse = try ModelSigning.required(top, "dsseEnvelope", in: "", fail).object(allowed: [
            "payload", "payloadType", "signatures",
        ])
        let type = try ModelSigning.required(dsse, "payloadType", in: "dsseEnvelope", fail).string()
        guard type == ModelSigning.payloadType else {
            throw fail(
                "field dsseEnvelope.payloadType: \(ModelSigning.quoted(type)), expected \(ModelSigning.payloadType)")
        }
        let payloadText = try ModelSigning.required(dsse, "payload", in: "dsseEnvelope", fail).string()
        guard let payload = Base64.decode(Array(payloadText.utf8)) else {
            throw fail("field dsseEnvelope.payload: not valid base64")
        }
        guard !payload.isEmpty else { throw fail("field dsseEnvelope.payload: empty") }
        self.payload = payload

        let signatureFields = try ModelSigning.required(dsse, "signatures", in: "dsseEnvelope", fail).array()
        guard !signatureFields.isEmpty else { throw fail("field dsseEnvelope.signatures: no signature") }
        guard signatureFields.count <= ModelSigning.maxSignatures else {
            throw ProvenanceError(
                .limit,
                "model-signing bundle: \(signatureFields.count) signatures, more than the \(ModelSigning.maxSignatures) Airlock tries"
            )
        }
        var signatures: [[UInt8]] = []
        for field in signatureFields {
            let s = try field.object(allowed: ["sig", "keyid"])
            if let keyid = s["keyid"] { _ = try keyid.string() }
            let text = try ModelSigning.required(s, "sig", in: field.path, fail).string()
            guard let der = Base64.decode(Array(text.utf8)), !der.isEmpty else {
                throw fail("field \(field.path).sig: not valid base64")
            }
            signatures.append(der)
        }
        self.signatures = signatures
    }

    /// Succeeds when one of the signatures verifies with `key` over the DSSE pre-authentication encoding of the
    /// payload (or over model-signing 0.2's variant of it, which model-signing 1.x still accepts).
    func verifySignature(key: ECVerifyingKey) throws(ProvenanceError) {
        let pae = DSSE.pae(type: ModelSigning.payloadType, payload: payload)
        for signature in signatures where key.isValid(derSignature: signature, message: pae) { return }
        let compat = DSSE.paeCompat(type: ModelSigning.payloadType, payload: payload)
        for signature in signatures where key.isValid(derSignature: signature, message: compat) { return }
        let which =
            signatures.count == 1
            ? "the signature does not verify" : "none of the \(signatures.count) signatures verifies"
        throw ProvenanceError(
            .badSignature,
            "model-signing bundle: \(which) with key \(key.shortFingerprint) (\(key.curveName)); the payload or signature was changed, or another key signed it"
        )
    }
}

/// DSSE pre-authentication encodings (https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md).
enum DSSE {
    /// `DSSEv1 <len(type)> <type> <len(payload)> <payload>`, lengths in decimal bytes.
    static func pae(type: String, payload: [UInt8]) -> [UInt8] {
        var out = Array("DSSEv1 \(type.utf8.count) \(type) \(payload.count) ".utf8)
        out.append(contentsOf: payload)
        return out
    }

    /// What model-signing 0.2 signed by mistake and 1.x still verifies (its `pae_compat`):
    /// `DSSEV1 <len(type)> <type> <len(payload)> ` followed by Python's `repr()` of the payload bytes (`b'…'`).
    static func paeCompat(type: String, payload: [UInt8]) -> [UInt8] {
        var out = Array("DSSEV1 \(type.utf8.count) \(type) \(payload.count) ".utf8)
        out.append(contentsOf: pythonBytesRepr(payload))
        return out
    }

    /// CPython's `repr(bytes)`: `b'…'`, or `b"…"` when the bytes hold `'` and no `"`; `\\`, the quote, `\t`, `\n`, `\r`
    /// escaped; other bytes outside 0x20…0x7E as `\xhh`.
    static func pythonBytesRepr(_ bytes: [UInt8]) -> [UInt8] {
        let single = UInt8(ascii: "'"), double = UInt8(ascii: "\"")
        let quote = bytes.contains(single) && !bytes.contains(double) ? double : single
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        let backslash = UInt8(ascii: "\\")
        var out: [UInt8] = [UInt8(ascii: "b"), quote]
        out.reserveCapacity(bytes.count + bytes.count / 8 + 3)
        for byte in bytes {
            switch byte {
            case quote, backslash: out.append(contentsOf: [backslash, byte])
            case 0x09: out.append(contentsOf: [backslash, UInt8(ascii: "t")])
            case 0x0A: out.append(contentsOf: [backslash, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [backslash, UInt8(ascii: "r")])
            case 0x20..<0x7F: out.append(byte)
            default: out.append(contentsOf: [backslash, UInt8(ascii: "x"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            }
        }
        out.append(quote)
        return out
    }
}
