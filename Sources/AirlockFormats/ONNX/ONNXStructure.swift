/// Recognises an ONNX `ModelProto` by its protobuf structure rather than by a version number: field 7 must hold a
/// `GraphProto` with a node that names its operator, or with inputs, outputs or initializers (or the model must pair
/// an IR version with operator sets, functions or training graphs). Unknown fields are skipped as protobuf skips them, so a model
/// with unknown fields in front, a missing `ir_version` or an IR version Airlock has never heard of is still ONNX;
/// sentencepiece's `tokenizer.model` (field 1 is a message there), TensorFlow's `saved_model.pb` and a `GraphDef`
/// (no field 7, or field 1 a message) are not.
public enum ONNXStructure {
    /// No cap on fields: protobuf reads every one, so a cap would let ten thousand empty fields in front hide a
    /// model. Each level is one linear pass (a node's bytes are read again once, inside its graph's pass).

    /// Whether `view` is laid out as an ONNX `ModelProto`: the whole file parses as protobuf, and a field 7 holds a
    /// graph with content, or an IR version comes with operator sets, functions or training graphs. A field whose wire
    /// type differs from ONNX's is what protobuf keeps as an unknown field, not a reason for onnx.load to refuse the
    /// file, so it is no reason here either.
    public static func looks(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var graph = false
        var ir = false
        var other = false
        while !reader.atEnd {
            guard let field = reader.next() else { return false }
            switch (field.number, field.value) {
            case (1, .varint): ir = true
            case (7, .bytes(let b, _)): graph = graph || looksLikeGraph(b)
            case (8, .bytes(let b, _)): other = other || looksLikeOpset(b)
            case (20, .bytes), (25, .bytes): other = true
            default: continue
            }
        }
        return graph || (ir && other)
    }

    /// A `GraphProto` with content: a node that names its operator, or inputs, outputs or initializers.
    static func looksLikeGraph(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var content = false
        while !reader.atEnd {
            guard let field = reader.next() else { return false }
            switch (field.number, field.value) {
            case (1, .bytes(let b, _)): content = content || looksLikeNode(b)
            case (5, .bytes), (11, .bytes), (12, .bytes), (15, .bytes): content = true
            default: continue
            }
        }
        return content
    }

    /// A `NodeProto` that names its operator (field 4) and parses whole.
    static func looksLikeNode(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        var op = false
        while !reader.atEnd {
            guard let field = reader.next() else { return false }
            if field.number == 4, case .bytes(let b, _) = field.value { op = b.count > 0 }
        }
        return op
    }

    /// An `OperatorSetIdProto`: domain (1, string), version (2, varint).
    static func looksLikeOpset(_ view: ByteView) -> Bool {
        var reader = ProtobufReader(view)
        while !reader.atEnd {
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
