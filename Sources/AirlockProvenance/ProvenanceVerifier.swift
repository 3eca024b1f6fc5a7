public import AirlockNames
public import AirlockAnalysis
internal import AirlockFormats
internal import Crypto

/// What to check a model against.
public struct VerificationRequest: Sendable {
    /// The manifest the model must match, if any.
    public var manifest: Manifest?
    /// The bytes of a model-signing bundle (`model.sig`), if any.
    public var signatureBundle: [UInt8]?
    /// PEM public keys; the signature must verify with one of them.
    public var publicKeys: [[UInt8]]
    /// Paths relative to a model folder left out of every comparison (the manifest and signature files themselves
    /// when they lie inside the folder).
    public var ignore: [String]
    /// Threads hashing at once.
    public var threads: Int
    /// Progress of the hashing, as `ModelInventory.Options.progress`.
    public var progress: (@Sendable (Int, Int) -> Void)?

    /// Creates a request.
    public init(
        manifest: Manifest? = nil, signatureBundle: [UInt8]? = nil, publicKeys: [[UInt8]] = [], ignore: [String] = [],
        threads: Int = ModelInventory.onlineCPUs, progress: (@Sendable (Int, Int) -> Void)? = nil
    ) {
        self.manifest = manifest
        self.signatureBundle = signatureBundle
        self.publicKeys = publicKeys
        self.ignore = ignore
        self.threads = threads
        self.progress = progress
    }
}

/// The outcome of a verification.
public struct Verification: Sendable {
    /// The model as found.
    public var inventory: ModelInventory
    /// What the signature check gave, if there was a signature.
    public var signature: SignatureOutcome?
    /// A report whose findings are the provenance findings (`clean` when the model is what was meant).
    public var report: Report
    /// Sentences saying what was checked ("3 files match the manifest", "signature verified with key …").
    public var checked: [String]
}

/// Checks a model against a manifest and/or a model-signing signature: `airlock verify`, and intake's first step.
public enum ProvenanceVerifier {
    /// Verifies the model open as `fd` (a file or a folder), named `display` in the report; a single file is
    /// compared under `name` (its directory entry's bytes) when given, as `ModelInventory.take` does.
    /// A key that is not a usable public key (RSA, a private key, not PEM) is an error, not a finding about the model.
    public static func verify(fd: Int32, display: String, name: FileName? = nil, request: VerificationRequest)
        throws(ProvenanceError) -> Verification
    {
        for key in request.publicKeys { _ = try ModelSigning.fingerprint(publicKeyPEM: key) }
        var signature: SignatureOutcome? = nil
        if let bundle = request.signatureBundle {
            signature = check(bundle: bundle, keys: request.publicKeys)
        }
        let inventory = try ModelInventory.take(
            fd: fd, display: display, name: name,
            options: .init(threads: request.threads, ignore: request.ignore, progress: request.progress))
        let findings = ProvenanceCheck.findings(inventory: inventory, manifest: request.manifest, signature: signature)
        var checked: [String] = []
        if let manifest = request.manifest {
            checked.append(
                "manifest \(manifest.name): \(manifest.files.count) file\(manifest.files.count == 1 ? "" : "s") listed, \(inventory.files.count) found"
            )
            if let policy = manifest.policy, !policy.trustedSources.isEmpty {
                let signer: String? = if case .verified(let s) = signature { s.keyFingerprint } else { nil }
                checked.append(
                    "source: " + ProvenanceCheck.trust(manifest: manifest, policy: policy, signer: signer).why)
            }
        }
        switch signature {
        case .verified(let signed):
            checked.append(
                "signature verified with key sha256:\(signed.keyFingerprint) over \(signed.resources.count) file\(signed.resources.count == 1 ? "" : "s") (model \(signed.modelName))"
            )
        case .failed(let error):
            checked.append("signature not verified: \(error.message)")
        case nil:
            break
        }
        if checked.isEmpty {
            checked.append(
                "no manifest or signature to verify against: \(inventory.files.count) file\(inventory.files.count == 1 ? "" : "s") hashed"
            )
        }
        let single = inventory.kind == .file ? inventory.files.first : nil
        let target = ReportTarget(
            path: display, size: inventory.totalBytes, sha256: single?.sha256, format: single?.format ?? "folder")
        return Verification(
            inventory: inventory, signature: signature, report: Report(target: target, findings: findings),
            checked: checked)
    }

    /// Verifies `bundle` with each key in turn; the first that verifies wins.
    static func check(bundle: [UInt8], keys: [[UInt8]]) -> SignatureOutcome {
        guard !keys.isEmpty else {
            return .failed(
                ProvenanceError(
                    .unsupported,
                    "no public key given: only bundles made with model-signing's private-key method are verified (certificate and keyless bundles are not verified yet)"
                ))
        }
        var failures: [ProvenanceError] = []
        for key in keys {
            do {
                return .verified(try ModelSigning.verify(bundle: bundle, publicKeyPEM: key))
            } catch {
                failures.append(error)
            }
        }
        if failures.count == 1 { return .failed(failures[0]) }
        // Several keys: the most telling failure decides the kind (a bundle that is malformed is so for every key).
        let code = failures.contains { $0.kind == .badSignature } ? ProvenanceError.Code.badSignature : failures[0].kind
        return .failed(
            ProvenanceError(
                code, "verifies with none of the \(keys.count) keys: " + failures.map(\.message).joined(separator: "; ")
            ))
    }
}
