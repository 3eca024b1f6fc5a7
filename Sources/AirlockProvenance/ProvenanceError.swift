public import AirlockSystem

/// Why a provenance operation (hashing a model, reading a manifest, verifying a signature) could not be done at all.
///
/// Problems *with the model* (a changed file) are findings, not errors: an error means there is nothing trustworthy to
/// say. A signature that does not hold up is `.badSignature`, distinct from an unreadable bundle (`.malformed`), so a
/// caller can report tampering or a wrong key as such.
public struct ProvenanceError: AirlockError {
    /// What kind of failure, stable for programs.
    public enum Code: String, Sendable {
        /// A file or folder could not be opened or read.
        case io
        /// A manifest, key or signature bundle is not what it claims to be.
        case malformed
        /// Something valid that Airlock does not handle yet (keyless signatures, other hash types).
        case unsupported
        /// A bound was hit (too many files, a document too large).
        case limit
        /// A readable signature that does not hold up: it does not verify with the key, the bundle names another key,
        /// or the signed statement contradicts itself (resource digests that do not add up to the subject digest).
        /// Tampering or the wrong key, not an unreadable file.
        case badSignature
    }

    /// The kind of failure: switch on this.
    public let kind: Code
    /// A sentence for people, naming the file or field.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.kind = code
        self.message = message
    }

    /// The kind's stable name (`"io"`, `"malformed"`, `"badSignature"`), as `AirlockError` asks.
    public var code: String { kind.rawValue }
    public var description: String { message }
}
