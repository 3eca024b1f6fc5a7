import AirlockNames

/// One central-directory record, resolved the way PyTorch's reader (miniz 3.0.2) resolves it: 32-bit fields replaced
/// by the zip64 extra field where they are `0xFFFFFFFF`, offsets absolute in the file (miniz applies no prefix shift).
public struct ZipEntry: Sendable, Equatable {
    /// The name as `FileName.escaped` shows it (lossless: invalid UTF-8 and controls escaped); `nameBytes` is authoritative.
    public var name: String
    /// The name exactly as stored in the central directory.
    public var nameBytes: [UInt8]
    /// Compression method (0 stored, 8 deflate).
    public var method: UInt16
    /// General-purpose bit flags from the central directory.
    public var flags: UInt16
    /// CRC-32 declared by the central directory.
    public var crc32: UInt32
    /// Compressed size declared by the central directory (zip64-resolved).
    public var compressedSize: UInt64
    /// Uncompressed size declared by the central directory (zip64-resolved).
    public var uncompressedSize: UInt64
    /// Offset of the local header in the file (zip64-resolved, plus the archive's base shift when one was needed).
    public var localHeaderOffset: UInt64
    /// Offset of the member's data (after the local header, with the *local* name and extra lengths, as miniz
    /// computes it); nil when there is no valid local header there.
    public var dataOffset: UInt64?
    /// Whether the central or the local header carries a zip64 extended-information field.
    public var isZip64: Bool
    /// Position of this record in the central directory (0-based).
    public var index: Int
    /// Offset of this record's central header in the file.
    public var centralHeaderOffset: Int

    public init(
        name: String, nameBytes: [UInt8], method: UInt16, flags: UInt16, crc32: UInt32, compressedSize: UInt64,
        uncompressedSize: UInt64, localHeaderOffset: UInt64, dataOffset: UInt64?, isZip64: Bool,
        index: Int = 0, centralHeaderOffset: Int = 0
    ) {
        self.name = name
        self.nameBytes = nameBytes
        self.method = method
        self.flags = flags
        self.crc32 = crc32
        self.compressedSize = compressedSize
        self.uncompressedSize = uncompressedSize
        self.localHeaderOffset = localHeaderOffset
        self.dataOffset = dataOffset
        self.isZip64 = isZip64
        self.index = index
        self.centralHeaderOffset = centralHeaderOffset
    }

    /// Bit 0 (traditional encryption) or bit 6 (strong encryption).
    public var isEncrypted: Bool { flags & 0x0041 != 0 }
    /// Bit 3: sizes and CRC follow the data in a data descriptor.
    public var hasDataDescriptor: Bool { flags & 0x0008 != 0 }
    /// A name ending in `/`.
    public var isDirectory: Bool { nameBytes.last == UInt8(ascii: "/") }
}

/// Record signatures and fixed sizes.
enum ZipFormat {
    static let localSignature: UInt32 = 0x0403_4b50
    static let centralSignature: UInt32 = 0x0201_4b50
    static let endSignature: UInt32 = 0x0605_4b50
    static let end64Signature: UInt32 = 0x0606_4b50
    static let locatorSignature: UInt32 = 0x0706_4b50
    static let descriptorSignature: UInt32 = 0x0807_4b50
    static let localSize = 30
    static let centralSize = 46
    static let endSize = 22
    static let end64Size = 56
    static let locatorSize = 20
    /// How far back from the end an end record is searched for: the longest comment plus the record.
    static let endSearchWindow = 0xFFFF + endSize
    static let zip64ExtraID: UInt16 = 0x0001
}

/// Collects observations, at most `cap` per kind, then one summary per kind saying how many were left out, so that
/// a directory of a million hostile records cannot make a million observations.
struct ObservationSink {
    private(set) var items: [Observation] = []
    private var counts: [String: Int] = [:]
    let cap: Int

    init(cap: Int = 64) { self.cap = cap }

    mutating func add(_ kind: String, _ message: String, _ evidence: Evidence = Evidence()) {
        let n = counts[kind, default: 0] + 1
        counts[kind] = n
        if n <= cap { items.append(Observation(kind, message, evidence)) }
    }

    func count(_ kind: String) -> Int { counts[kind, default: 0] }

    func finished() -> [Observation] {
        var out = items
        for (kind, n) in counts.sorted(by: { $0.key < $1.key }) where n > cap {
            out.append(
                Observation(
                    kind, "\(n - cap) more observations of this kind were not listed",
                    Evidence(details: [("omitted", String(n - cap)), ("total", String(n))])))
        }
        return out
    }
}
