/// The compressed streams a model file may be wrapped in: what joblib (`compress=`) and pandas (`compression=`)
/// write, and what their loaders open again. Decided by the content, as joblib decides it (`_detect_compressor`
/// reads the first bytes), never by the name.
public enum Compression: String, Sendable, CaseIterable {
    /// zlib (RFC 1950): joblib `compress="zlib"` (and `compress=3`).
    case zlib
    /// gzip (RFC 1952), one member or several: joblib, pandas `.gz`.
    case gzip
    /// bzip2, one stream or several: joblib, pandas `.bz2`.
    case bzip2
    /// xz: joblib, pandas `.xz`.
    case xz
    /// The legacy `.lzma` ("alone") format: joblib `compress="lzma"`.
    case lzma
    /// Zstandard frames: pandas `.zst`.
    case zstd
    /// LZ4 frames: joblib `compress="lz4"`.
    case lz4
    /// joblib < 0.10's `ZF` files: `ZF`, the content's length in hex padded to 19 characters, then zlib.
    case joblibZF = "joblib-zf"

    /// Whether `joblib.load` opens this compression by itself (it sniffs the prefix).
    public var joblibReads: Bool { self != .zstd }

    /// What pandas calls it (`read_pickle(compression=…)`), when pandas reads it.
    public var pandasName: String? {
        switch self {
        case .gzip: "gzip"
        case .bzip2: "bz2"
        case .xz, .lzma: "xz"
        case .zstd: "zstd"
        case .zlib, .lz4, .joblibZF: nil
        }
    }

    /// The `ZF` header's length: `ZF` and `len(hex(2**64))` characters.
    static let zfHeader = 2 + 19

    /// The compression `view` starts with, if any. Strong magic numbers for gzip, bzip2, xz, zstd and lz4; for zlib
    /// and lzma, what joblib's sniffing accepts (`0x78`, `]\0`) and any other valid header.
    public static func detect(_ view: ByteView) -> Compression? {
        guard let b0 = view.byte(at: 0), let b1 = view.byte(at: 1) else { return nil }
        if b0 == 0x1F && b1 == 0x8B { return .gzip }
        if view.starts(with: Array("BZh".utf8)), let level = view.byte(at: 3), level >= 0x31 && level <= 0x39 {
            return .bzip2
        }
        if view.starts(with: xzMagic) { return .xz }
        if view.starts(with: zstdMagic) || isSkippableZstd(view) { return .zstd }
        if view.starts(with: lz4Magic) { return .lz4 }
        if looksLikeZF(view) { return .joblibZF }
        if looksLikeLzmaAlone(view) { return .lzma }
        // zlib: deflate with a 32 KiB window or less, and the header check (CMF·256 + FLG divisible by 31).
        if b0 & 0x0F == 8 && b0 >> 4 <= 7 && (Int(b0) << 8 | Int(b1)) % 31 == 0 { return .zlib }
        return nil
    }

    static let xzMagic: [UInt8] = [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]
    static let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
    static let lz4Magic: [UInt8] = [0x04, 0x22, 0x4D, 0x18]

    /// A zstd skippable frame (magic `0x184D2A50`–`0x184D2A5F`), which a decoder skips before the data frame.
    static func isSkippableZstd(_ view: ByteView) -> Bool {
        guard let m = view.le(UInt32.self, at: 0) else { return false }
        return m & 0xFFFF_FFF0 == 0x184D_2A50
    }

    /// `ZF0x…`: joblib's own check is the `ZF` prefix; the length must parse as Python's `int(…, 16)` would.
    static func looksLikeZF(_ view: ByteView) -> Bool {
        guard view.starts(with: Array("ZF".utf8)), let header = view.bytes(2, zfHeader - 2) else { return false }
        return zfLength(header) != nil
    }

    /// The hex length in a `ZF` header (`0x1a2b` then spaces), as `int(text, 16)` reads it.
    static func zfLength(_ field: [UInt8]) -> UInt64? {
        var text = field[...]
        while let last = text.last, last == 0x20 || last == 0x09 || last == 0x0A || last == 0x0D { text.removeLast() }
        while let first = text.first, first == 0x20 || first == 0x09 { text.removeFirst() }
        if text.starts(with: Array("0x".utf8)) || text.starts(with: Array("0X".utf8)) { text.removeFirst(2) }
        guard !text.isEmpty, text.count <= 16 else { return nil }
        var value: UInt64 = 0
        for c in text {
            let digit: UInt8
            switch c {
            case 0x30...0x39: digit = c - 0x30
            case 0x61...0x66: digit = c - 0x61 + 10
            case 0x41...0x46: digit = c - 0x41 + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// The `.lzma` header: properties (lc + lp·9 + pb·45 < 225), a dictionary size, the uncompressed size (-1 when
    /// unknown). joblib sniffs `]\0` (the default properties, a dictionary under 16 MiB); liblzma takes any
    /// properties with a dictionary of 2^n or 2^n + 2^(n-1) bytes, or 0xFFFFFFFF.
    static func looksLikeLzmaAlone(_ view: ByteView) -> Bool {
        guard let props = view.byte(at: 0), props < 225, let dict = view.le(UInt32.self, at: 1),
            let size = view.le(UInt64.self, at: 5)
        else { return false }
        if props == 0x5D && view.byte(at: 1) == 0 { return true }
        guard size == UInt64.max || size < 1 << 48 else { return false }
        if dict == UInt32.max { return true }
        guard dict >= 4096 else { return false }
        let high = 31 - dict.leadingZeroBitCount
        let rest = dict & ~(UInt32(1) << high)
        return rest == 0 || (high > 0 && rest == UInt32(1) << (high - 1))
    }
}
