/// A symbolic stack or memo value packed into 8 bytes: a 4-bit tag and a 60-bit payload. Strings are spans of the
/// scanned bytes (no copy); containers, owned strings and names are indices into the machine's bounded tables.
struct PVal: Equatable {
    var raw: UInt64

    static let payloadBits: UInt64 = 60
    static let payloadMask: UInt64 = (1 << 60) - 1
    /// Index payload meaning "not tracked" (tables full) or "not known".
    static let none32: UInt64 = 0xFFFF_FFFF

    enum Tag: UInt64 {
        case unknown = 0
        case const = 1  // payload: Const
        case int = 2  // 60-bit two's complement
        case float = 3  // bit pattern >> 4 (rounded)
        case strSpan = 4  // offset << 20 | length (saturating)
        case bytesSpan = 5
        case bytearraySpan = 6
        case strOwned = 7  // index into owned
        case bytesOwned = 8
        case callable = 9  // name id, or none32
        case module = 10  // name id
        case container = 11  // container index, or anonymousBit | kind
        case callResult = 12  // callee name id, or none32
        case instance = 13  // class name id, or none32
        case bigInt = 14  // index into bigInts, or none32
        case object = 15  // index into objects (dtypes, joblib array wrappers)
    }

    enum Const: UInt64 {
        case none = 0, falseValue = 1, trueValue = 2, persistent = 3, buffer = 4
    }

    static let spanLengthBits: UInt64 = 20
    static let spanLengthMax: UInt64 = (1 << 20) - 1
    static let spanOffsetLimit: Int = 1 << 40
    static let anonymousBit: UInt64 = 1 << 59

    @inline(__always) init(raw: UInt64) { self.raw = raw }
    @inline(__always) init(_ tag: Tag, _ payload: UInt64) { raw = tag.rawValue << 60 | (payload & PVal.payloadMask) }

    static let unknown = PVal(raw: 0)
    static let noneValue = PVal(.const, Const.none.rawValue)
    static let falseValue = PVal(.const, Const.falseValue.rawValue)
    static let trueValue = PVal(.const, Const.trueValue.rawValue)

    @inline(__always) var tagBits: UInt64 { raw >> 60 }
    @inline(__always) var tag: Tag { Tag(rawValue: raw >> 60) ?? .unknown }
    @inline(__always) var payload: UInt64 { raw & PVal.payloadMask }

    /// An integer, inline when it fits in 60 bits; nil when it does not.
    @inline(__always) static func int(_ v: Int64) -> PVal? {
        guard v >= -(1 << 59) && v < (1 << 59) else { return nil }
        return PVal(.int, UInt64(bitPattern: v))
    }
    var intValue: Int64 { Int64(bitPattern: payload << 4) >> 4 }

    @inline(__always) static func float(bits: UInt64) -> PVal {
        // Round the 4 dropped mantissa bits to nearest; keep NaN/inf patterns as they are.
        let exponentAllOnes = (bits >> 52) & 0x7FF == 0x7FF
        let rounded = exponentAllOnes ? bits >> 4 : (bits &+ 8) >> 4
        return PVal(.float, rounded)
    }
    var floatValue: Double { Double(bitPattern: payload << 4) }

    @inline(__always) static func span(_ tag: Tag, offset: Int, length: Int) -> PVal {
        let len = UInt64(length) > spanLengthMax ? spanLengthMax : UInt64(length)
        return PVal(tag, UInt64(offset) << spanLengthBits | len)
    }
    var spanOffset: Int { Int(payload >> PVal.spanLengthBits) }
    var spanLength: Int { Int(payload & PVal.spanLengthMax) }
    var spanSaturated: Bool { payload & PVal.spanLengthMax == PVal.spanLengthMax }

    var index: Int? { payload == PVal.none32 ? nil : Int(payload) }

    var isStringLike: Bool {
        switch tag {
        case .strSpan, .bytesSpan, .bytearraySpan, .strOwned, .bytesOwned: true
        default: false
        }
    }
}

/// Container kinds.
enum PKind: UInt8 {
    case list = 0, tuple, dict, set, frozenset
}

/// A container's bookkeeping: how many items, and where its first few children are kept.
struct PContainer {
    /// Items (pairs, for dicts).
    var count: Int
    /// Index of the first child slot in the pool.
    var first: UInt32
    var kind: PKind
    /// Children kept.
    var nchild: UInt8
    /// Child slots reserved (0 until the first child arrives).
    var cap: UInt8
}
