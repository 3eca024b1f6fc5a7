/// A protobuf wire-format reader over a byte view: varints of at most 10 bytes, lengths checked against what
/// remains. Groups (wire types 3 and 4, deprecated but still skipped by protobuf as unknown fields) are skipped with a
/// counter, never recursion, so a reader that refused them cannot be made to stop before what a loader reads.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        /// The bytes and their offset in the reader's view.
        case bytes(ByteView, Int)
        /// A group, skipped.
        case group
    }

    /// Deepest group nesting skipped.
    static let maxGroupDepth = 64

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
        case 3:
            return skipGroup(number) ? Field(number: number, value: .group) : fail()
        default:
            return fail()
        }
    }

    /// Skips to the end-group tag that closes `number`, through nested groups; false when malformed.
    private mutating func skipGroup(_ number: UInt64) -> Bool {
        var open: [UInt64] = [number]
        while let top = open.last {
            guard let tag = varint() else { return false }
            let n = tag >> 3
            guard n > 0 else { return false }
            switch tag & 7 {
            case 0: guard varint() != nil else { return false }
            case 1:
                guard view.count - offset >= 8 else { return false }
                offset += 8
            case 5:
                guard view.count - offset >= 4 else { return false }
                offset += 4
            case 2:
                guard let length = varint(), length <= UInt64(view.count - offset) else { return false }
                offset += Int(length)
            case 3:
                guard open.count < Self.maxGroupDepth else { return false }
                open.append(n)
            case 4:
                guard n == top else { return false }
                open.removeLast()
            default: return false
            }
        }
        return true
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
