/// Why a provenance operation (hashing a model, reading a manifest, verifying a signature) could not be done at all.
///
/// Problems *with the model* (a changed file, a bad signature) are findings, not errors: an error means there is
/// nothing trustworthy to say.
public struct ProvenanceError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure, stable for programs.
    public enum Code: String, Sendable {
        /// A file or folder could not be opened or read.
        case io
        /// A manifest, key or signature bundle is not what it claims to be.
        case malformed
        /// Something valid that Airlock does not handle yet (keyless signatures, other hash types).
        case unsupported
        /// A signature that does not verify, a key that did not make it, signed content that contradicts itself.
        case badSignature
        /// A bound was hit (too many files, a document too large).
        case limit
    }

    /// The kind of failure.
    public let code: Code
    /// A sentence for people, naming the file or field.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
