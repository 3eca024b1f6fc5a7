/// What the ONNX parser found.
public struct ONNXReport: Sendable {
    /// `ModelProto.ir_version`.
    public var irVersion: Int?
    /// `producer_name`.
    public var producer: String?
    /// Operator-set domains imported (`""` is the default ONNX domain).
    public var opsetDomains: [String] = []
    /// Nodes seen, subgraphs and functions included.
    public var nodes = 0
    /// Initializers (weights) seen.
    public var initializers = 0
    /// External-data locations, as written.
    public var externalLocations: [String] = []
    /// Parser observations (`onnx.*`).
    public var observations: [Observation] = []
}

/// ONNX `ModelProto` read with a protobuf wire reader of our own: external-data paths, operator domains, tensor
/// sizes. Subgraphs (`If`/`Loop` bodies, functions) are followed with an explicit work list, so nesting depth is a
/// budget, not recursion.
public enum ONNXParser {
    /// Domains the ONNX standard and onnxruntime define; anything else needs a custom operator library.
    public static let standardDomains: Set<String> = [
        "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft",
        "com.microsoft.nchwc", "com.microsoft.experimental", "com.ms.internal.nhwc", "org.pytorch.aten",
    ]

    private enum Kind { case model, graph, node, attribute, tensor, function, opset }

    /// Parses `view` as a `ModelProto`.
    public static func parse(_ view: ByteView, budget: ScanBudget = .standard) -> ONNXReport {
        var report = ONNXReport()
        var work: [(ByteView, Kind, Int, Int)] = [(view, .model, 0, 0)]  // (bytes, kind, depth, base offset)
        var operations = 0
        var sawGraph = false
        var customDomains = Set<String>()
        while let (bytes, kind, depth, base) = work.popLast() {
            var reader = ProtobufReader(bytes)
            var tensorDims: [Int64] = []
            var tensorType: Int64?
            var rawDataSize: Int?
            var tensorName = ""
            var external: [(String, String)] = []
            var nodeDomain = "", nodeOp = ""
            while !reader.atEnd {
                operations += 1
                if operations > budget.maxOperations {
                    report.observations.append(
                        Observation(
                            "onnx.budget", "stopped after \(budget.maxOperations) protobuf fields",
                            Evidence(offset: base + reader.offset)))
                    return report
                }
                guard let field = reader.next() else {
                    report.observations.append(
                        Observation(
                            "onnx.malformed", "malformed protobuf in \(kind) at byte \(base + reader.offset)",
                            Evidence(offset: base + reader.offset)))
                    break
                }
                let child = { (k: Kind) in
                    if case .bytes(let b, let at) = field.value {
                        if depth + 1 > 64 {
                            report.observations.append(
                                Observation(
                                    "onnx.too-deep", "subgraphs nested deeper than 64 levels",
                                    Evidence(offset: base + at)))
                        } else {
                            work.append((b, k, depth + 1, base + at))
                        }
                    }
                }
                switch (kind, field.number) {
                case (.model, 1): if case .varint(let v) = field.value { report.irVersion = Int(truncatingIfNeeded: v) }
                case (.model, 2): report.producer = field.string
                case (.model, 7):
                    sawGraph = true
                    child(.graph)
                case (.model, 8): child(.opset)
                case (.model, 25): child(.function)
                case (.opset, 1): if let d = field.string { report.opsetDomains.append(d) }
                case (.graph, 1): child(.node)
                case (.graph, 5), (.graph, 15):
                    report.initializers += 1
                    child(.tensor)
                case (.function, 7): child(.node)
                case (.node, 4): nodeOp = field.string ?? ""
                case (.node, 7): nodeDomain = field.string ?? ""
                case (.node, 5): child(.attribute)
                case (.attribute, 5), (.attribute, 10): child(.tensor)
                case (.attribute, 6), (.attribute, 11): child(.graph)
                case (.tensor, 1):
                    if case .varint(let v) = field.value {
                        tensorDims.append(Int64(bitPattern: v))
                    } else if case .bytes(let b, _) = field.value {
                        tensorDims += ProtobufReader.packedVarints(b).map { Int64(bitPattern: $0) }
                    }
                case (.tensor, 2): if case .varint(let v) = field.value { tensorType = Int64(truncatingIfNeeded: v) }
                case (.tensor, 8): tensorName = field.string ?? ""
                case (.tensor, 9): if case .bytes(let b, _) = field.value { rawDataSize = b.count }
                case (.tensor, 13):
                    if case .bytes(let b, _) = field.value {
                        var r = ProtobufReader(b)
                        var k = "", v = ""
                        while !r.atEnd, let f = r.next() {
                            if f.number == 1 { k = f.string ?? "" }
                            if f.number == 2 { v = f.string ?? "" }
                        }
                        external.append((k, v))
                    }
                default: break
                }
            }
            switch kind {
            case .node:
                report.nodes += 1
                if !standardDomains.contains(nodeDomain) && customDomains.insert(nodeDomain).inserted {
                    report.observations.append(
                        Observation(
                            "onnx.custom-domain",
                            "operator \(nodeOp) from custom domain '\(nodeDomain)': running it needs a custom operator library",
                            Evidence(offset: base, details: [("domain", nodeDomain), ("op", nodeOp)])
                        ))
                }
            case .tensor:
                for (k, v) in external where k == "location" {
                    report.externalLocations.append(v)
                    if let why = traversal(v) {
                        report.observations.append(
                            Observation(
                                "onnx.external-data-traversal",
                                "tensor \(tensorName) reads its data from '\(v)' (\(why)): outside the model's folder",
                                Evidence(offset: base, details: [("tensor", tensorName), ("location", v)])
                            ))
                    }
                }
                if let size = rawDataSize, let type = tensorType, let item = itemSize(type) {
                    var count: Int64 = 1
                    var overflow = false
                    for d in tensorDims {
                        if d < 0 {
                            overflow = true
                            break
                        }
                        let (m, o) = count.multipliedReportingOverflow(by: d)
                        if o {
                            overflow = true
                            break
                        }
                        count = m
                    }
                    let (bytes, o2) = count.multipliedReportingOverflow(by: Int64(item))
                    if overflow || o2 || bytes != Int64(size) {
                        report.observations.append(
                            Observation(
                                "onnx.size-mismatch",
                                "tensor \(tensorName): dims \(tensorDims) of type \(type) need \(overflow || o2 ? "an impossible number of" : String(bytes)) bytes, raw_data has \(size)",
                                Evidence(offset: base, details: [("tensor", tensorName)])
                            ))
                    }
                }
            default:
                break
            }
        }
        if !sawGraph {
            report.observations.append(Observation("onnx.no-graph", "no graph in the model: not a usable ONNX file"))
        }
        return report
    }

    /// Why an external-data location escapes the model's folder, or nil when it does not.
    static func traversal(_ location: String) -> String? {
        if location.hasPrefix("/") { return "absolute path" }
        if location.contains("\\") { return "backslash in the path" }
        if location.count >= 2 && location.dropFirst().first == ":" { return "drive letter" }
        if location.split(separator: "/").contains("..") { return "'..' component" }
        if location.utf8.contains(0) { return "NUL byte" }
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
        case 17, 18, 19, 20: 1  // FLOAT8 variants
        default: nil  // STRING, 4-bit types: no fixed size
        }
    }
}

/// A protobuf wire-format reader over a byte view: varints of at most 10 bytes, lengths checked against what
/// remains, groups refused.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        /// The bytes and their offset in the reader's view.
        case bytes(ByteView, Int)
    }

    struct Field {
        let number: UInt64
        let value: Value

        var string: String? {
            if case .bytes(let b, _) = value, b.count <= 1 << 20 { return String(decoding: b.array, as: UTF8.self) }
            return nil
        }
    }

    let view: ByteView
    private(set) var offset = 0

    init(_ view: ByteView) { self.view = view }

    var atEnd: Bool { offset >= view.count }

    mutating func varint() -> UInt64? {
        var result: UInt64 = 0
        for i in 0..<10 {
            guard let b = view.byte(at: offset) else { return nil }
            offset += 1
            result |= UInt64(b & 0x7F) << UInt64(7 * i)
            if b & 0x80 == 0 { return result }
        }
        return nil
    }

    /// The next field, or nil when the bytes are malformed (the reader is then at its end).
    mutating func next() -> Field? {
        guard let tag = varint() else { return fail() }
        let number = tag >> 3
        guard number > 0 else { return fail() }
        switch tag & 7 {
        case 0:
            guard let v = varint() else { return fail() }
            return Field(number: number, value: .varint(v))
        case 1:
            guard let v = view.le(UInt64.self, at: offset) else { return fail() }
            offset += 8
            return Field(number: number, value: .fixed64(v))
        case 5:
            guard let v = view.le(UInt32.self, at: offset) else { return fail() }
            offset += 4
            return Field(number: number, value: .fixed32(v))
        case 2:
            guard let length = varint(), length <= UInt64(view.count - offset), let b = view.slice(offset, Int(length))
            else { return fail() }
            let at = offset
            offset += Int(length)
            return Field(number: number, value: .bytes(b, at))
        default:
            return fail()
        }
    }

    private mutating func fail() -> Field? {
        offset = view.count
        return nil
    }

    /// A packed repeated varint field.
    static func packedVarints(_ b: ByteView) -> [UInt64] {
        var r = ProtobufReader(b)
        var out: [UInt64] = []
        while !r.atEnd, out.count < 64, let v = r.varint() { out.append(v) }
        return out
    }
}
