public struct SignedResource: Sendable, Equatable { public var name: String; public var sha256: String }
public struct SignedModel: Sendable {
    public var modelName: String
    public var rootDigest: String
    public var resources: [SignedResource]
    public var ignorePaths: [String]
    public var allowSymlinks: Bool
    public var keyFingerprint: String
}
public enum ModelSigning {
    public static func verify(bundle: [UInt8], publicKeyPEM: [UInt8]) throws(ProvenanceError) -> SignedModel { throw ProvenanceError(.unsupported, "x") }
    public static func fingerprint(publicKeyPEM: [UInt8]) throws(ProvenanceError) -> String { "" }
}
