/// A tensor whose data lives in another file (`TensorProto.external_data`), as the model writes it.
public struct ONNXExternalReference: Sendable, Equatable {
    /// The tensor's name.
    public var tensor: String
    /// `location`, relative to the model's folder for every loader.
    public var location: String
    /// `offset` and `length`, when given as non-negative integers.
    public var offset: Int64?
    public var length: Int64?
    /// Byte offset of the `TensorProto` in the model file.
    public var at: Int

    /// Creates a reference.
    public init(tensor: String, location: String, offset: Int64?, length: Int64?, at: Int) {
        self.tensor = tensor
        self.location = location
        self.offset = offset
        self.length = length
        self.at = at
    }
}

/// What the ONNX parser found.
public struct ONNXReport: Sendable {
    /// `ModelProto.ir_version`.
    public var irVersion: Int?
    /// `producer_name`.
    public var producer: String?
    /// Operator-set domains imported (`""` is the default ONNX domain).
    public var opsetDomains: [String] = []
    /// Nodes seen, subgraphs, functions and training graphs included.
    public var nodes = 0
    /// Initializers (weights) seen, sparse ones included.
    public var initializers = 0
    /// Tensors with external data (at most `ONNXParser.maxReferences`).
    public var externalReferences: [ONNXExternalReference] = []
    /// External-data locations, as written.
    public var externalLocations: [String] { externalReferences.map(\.location) }
    /// Parser observations (`onnx.*`).
    public var observations: [Observation] = []
}

/// ONNX `ModelProto` read with a protobuf wire reader of our own: the graph, its initializers and sparse
/// initializers, node attributes (tensors, subgraphs of `If`/`Loop`/`Scan`, sparse tensors), `functions`,
/// `training_info` and metadata. Nested messages are followed with an explicit work list, so nesting depth is a
/// budget, not recursion.
public enum ONNXParser {
    /// Domains the ONNX standard and onnxruntime define; anything else needs a custom operator library.
    public static let standardDomains: Set<String> = [
        "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "ai.onnx.preview",
        "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental", "com.ms.internal.nhwc",
        "com.microsoft.dml", "org.pytorch.aten",
    ]
    /// The newest IR version Airlock knows (onnx 1.23 writes 14); newer ones are read all the same, with a note.
    public static let newestKnownIRVersion = 14
    /// Most external references and observations kept.
    public static let maxReferences = 100_000
    static let maxObservations = 1_000
    /// Deepest message nesting followed.
    static let maxDepth = 64
    /// `external_data` keys onnx and onnxruntime read.
    static let externalKeys: Set<String> = ["location", "offset", "length", "checksum", "basepath"]

    enum Kind {
        case model, graph, node, attribute, tensor, sparseTensor, function, opset, trainingInfo, metadata
    }

    /// One message waiting to be read: its bytes, kind, depth and offset in the file.
    struct Pending {
        var bytes: ByteView
        var kind: Kind
        var depth: Int
        var base: Int
    }

    /// Parses `view` as a `ModelProto`.
    public static func parse(_ view: ByteView, budget: ScanBudget = .standard) -> ONNXReport {
        var state = State(budget: budget)
        var work = [Pending(bytes: view, kind: .model, depth: 0, base: 0)]
        while let message = work.popLast() {
            guard state.read(message, into: &work) else { break }
        }
        state.finish()
        return state.report
    }

    /// Why an external-data location escapes the model's folder by its text alone, or nil when it does not.
    public static func traversal(_ location: String) -> String? {
        if location.hasPrefix("/") { return "absolute path" }
        if location.contains("\\") { return "backslash in the path" }
        if location.count >= 2 && location.dropFirst().first == ":" { return "drive letter" }
        if location.split(separator: "/").contains("..") { return "'..' component" }
        if location.utf8.contains(0) { return "NUL byte" }
        if location.hasPrefix("~") { return "home-directory path" }
        return nil
    }

    /// Bytes per element of `TensorProto.DataType`, where fixed.
    static func itemSize(_ type: Int64) -> Int? {
        switch type {
        case 1, 6, 12: 4  // FLOAT, INT32, UINT32
        case 2, 3, 9: 1  // UINT8, INT8, BOOL
        case 4, 5, 10, 16: 2  // UINT16, INT16, FLOAT16, BFLOAT16
        case 7, 11, 13, 14: 8  // INT64, DOUBLE, UINT64, COMPLEX64
        case 15: 16  // COMPLEX128
        case 17, 18, 19, 20, 23: 1  // FLOAT8 variants, FLOAT8E8M0
        default: nil  // STRING, 4- and 2-bit types: no whole-byte size
        }
    }
}
