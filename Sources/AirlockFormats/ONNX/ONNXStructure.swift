/// Recognises an ONNX `ModelProto` by its protobuf structure rather than by a version number: every top-level field
/// that ONNX defines must carry its wire type, and field 7 must hold a `GraphProto` with a node that names its
/// operator, or with inputs, outputs or initializers. Unknown fields are skipped as protobuf skips them, so a model
/// with unknown fields in front, a missing `ir_version` or an IR version Airlock has never heard of is still ONNX;
/// sentencepiece's `tokenizer.model` (field 1 is a message there), TensorFlow's `saved_model.pb` and a `GraphDef`
/// (no field 7, or field 1 a message) are not.
public enum ONNXStructure {
    /// Most fields looked at on one level before deciding.
    static let maxFields = 10_000

    /// Whether `view` is laid out as an ONNX `ModelProto`.
    public static func looks(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var fields = 0
        var graph = false
        while !reader.atEnd && fields < maxFields {
            fields += 1
            guard let field = reader.next() else { return false }
            switch (field.number, field.value) {
            case (1, .varint), (5, .varint): continue
            case (1, _), (5, _): return false
            case (7, .bytes(let b, _)): graph = graph || looksLikeGraph(b)
            case (8, .bytes(let b, _)): if !looksLikeOpset(b) { return false }
            case (2, .bytes), (3, .bytes), (4, .bytes), (6, .bytes), (14, .bytes), (20, .bytes), (25, .bytes): continue
            case (2, _), (3, _), (4, _), (6, _), (7, _), (8, _), (14, _), (20, _), (25, _): return false
            default: continue
            }
        }
        return graph
    }

    /// A `GraphProto`: fields 1 (nodes), 5, 11, 12, 13, 15 are messages, 2 and 10 strings.
    static func looksLikeGraph(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var fields = 0
        var content = false
        while !reader.atEnd && fields < maxFields {
            fields += 1
            guard let field = reader.next() else { return false }
            switch (field.number, field.value) {
            case (1, .bytes(let b, _)):
                guard looksLikeNode(b) else { return false }
                content = true
            case (5, .bytes), (11, .bytes), (12, .bytes), (15, .bytes): content = true
            case (2, .bytes), (10, .bytes), (13, .bytes), (14, .bytes), (16, .bytes): continue
            case (1, _), (2, _), (5, _), (10, _), (11, _), (12, _), (13, _), (14, _), (15, _), (16, _): return false
            default: continue
            }
        }
        return content
    }

    /// A `NodeProto` that names its operator (field 4), with strings and attributes where ONNX puts them.
    static func looksLikeNode(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var fields = 0
        var op = false
        while !reader.atEnd && fields < maxFields {
            fields += 1
            guard let field = reader.next() else { return false }
            switch (field.number, field.value) {
            case (4, .bytes(let b, _)): op = b.count > 0
            case (1, .bytes), (2, .bytes), (3, .bytes), (5, .bytes), (6, .bytes), (7, .bytes), (8, .bytes): continue
            case (1...8, _): return false
            default: continue
            }
        }
        return op
    }

    /// An `OperatorSetIdProto`: domain (1, string), version (2, varint).
    static func looksLikeOpset(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var fields = 0
        while !reader.atEnd && fields < 64 {
            fields += 1
            guard let field = reader.next() else { return false }
            switch (field.number, field.value) {
            case (1, .bytes), (2, .varint): continue
            case (1, _), (2, _): return false
            default: continue
            }
        }
        return true
    }
}
