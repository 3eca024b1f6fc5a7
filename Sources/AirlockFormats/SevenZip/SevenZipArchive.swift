/// A bounded 7z reader (7zFormat.txt): the signature header, the next header (plain or `kEncodedHeader`, itself
/// packed with LZMA), folders of coders, pack streams, substreams and files. Read top to bottom as one concept, the
/// header's grammar. Nothing declared is trusted: every count is bounded, every offset checked against the file,
/// and folders are decoded (`SevenZipArchive.decode`) into at most the limit given, whatever their declared size.
public struct SevenZipArchive: Sendable {
    /// `7z\xBC\xAF\x27\x1C`.
    public static let signature: [UInt8] = [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]

    /// Most files, folders, coders per folder and substreams read.
    public static let maxFiles = 100_000
    static let maxFolders = 100_000
    static let maxCoders = 8
    /// Most times an encoded header may wrap another.
    static let maxHeaderWrappings = 4

    /// One coder of a folder: its method id (`21` LZMA2, `030101` LZMA, `06F10701` AES, …) and properties.
    public struct Coder: Sendable {
        public var method: [UInt8]
        public var properties: [UInt8]
        public var inStreams: Int
        public var outStreams: Int
    }

    /// A folder: coders, how they are bound, where its packed streams are, and its declared unpacked sizes.
    public struct Folder: Sendable {
        public var coders: [Coder] = []
        /// (in stream index, out stream index).
        public var bindPairs: [(Int, Int)] = []
        /// In stream indexes fed by packed streams, in pack order.
        public var packedStreams: [Int] = []
        /// One declared size per out stream, in coder order.
        public var unpackSizes: [UInt64] = []
        /// Offset and size of each packed stream in the file.
        public var packs: [(offset: Int, size: Int)] = []
        /// The sizes of the files stored one after the other in the folder's output.
        public var substreams: [UInt64] = []
        /// Whether the coders info gave the folder's CRC (then a lone substream's CRC is not repeated).
        var crcDefined = false

        /// The declared size of the folder's output: that of the out stream no bind pair consumes.
        public var unpackSize: UInt64 {
            var index = 0
            for (i, _) in unpackSizes.enumerated() where !bindPairs.contains(where: { $0.1 == i }) {
                index = i
                break
            }
            return index < unpackSizes.count ? unpackSizes[index] : 0
        }
    }

    /// A file of the archive: its name, and where its bytes are (nil for empty files and folders).
    public struct Member: Sendable {
        public var name: String
        public var folder: Int?
        public var offset: UInt64
        public var size: UInt64
    }

    public var folders: [Folder] = []
    public var members: [Member] = []
    /// `7z.malformed`, `7z.crc-mismatch`, `7z.encrypted` (an AES coder, of the header or of files), …
    public var observations: [Observation] = []
    /// Whether the header itself is encrypted (`-mhe=on`): nothing else can be read.
    public var encryptedHeader = false

    /// Reads the archive's headers, decoding an encoded header into at most `limit` bytes. Never throws: what
    /// cannot be read is an observation, and whatever was read before it is kept.
    public static func read(_ view: ByteView, limit: Int) -> SevenZipArchive {
        var archive = SevenZipArchive()
        var sink = ObservationSink()
        do throws(FormatError) {
            try archive.readHeaders(view, limit: limit, sink: &sink)
        } catch {
            sink.add(
                error.kind == .budget ? "7z.bomb" : "7z.malformed", "the 7z headers cannot be read: \(error.message)")
        }
        archive.observations = sink.finished()
        return archive
    }

    mutating func readHeaders(_ view: ByteView, limit: Int, sink: inout ObservationSink) throws(FormatError) {
        guard view.starts(with: SevenZipArchive.signature), let offset = view.le(UInt64.self, at: 12),
            let size = view.le(UInt64.self, at: 20), let crc = view.le(UInt32.self, at: 28)
        else { throw FormatError(.malformed, "the signature header is incomplete") }
        guard offset <= UInt64(view.count), size <= UInt64(view.count), 32 + offset + size <= UInt64(view.count)
        else {
            throw FormatError(
                .malformed, "the next header (\(size) bytes at \(32 &+ offset)) is not inside the file (truncated?)")
        }
        guard size > 0, var header = view.slice(32 + Int(offset), Int(size)) else {
            throw FormatError(.malformed, "the archive has no header")
        }
        if ZipCRC.crc32(header) != crc {
            sink.add("7z.crc-mismatch", "the next header's CRC does not match: 7-Zip refuses the archive")
        }
        for _ in 0..<SevenZipArchive.maxHeaderWrappings {
            var r = Cursor(header)
            let id = try r.byte()
            if id == 0x01 {
                try readHeader(&r, view: view)
                checkEncryption(&sink)
                return
            }
            guard id == 0x17 else { throw FormatError(.malformed, "unknown header type \(id)") }
            var packed = SevenZipArchive()
            try packed.readStreamsInfo(&r, view: view)
            guard let folder = packed.folders.first else {
                throw FormatError(.malformed, "the encoded header is empty")
            }
            if folder.coders.contains(where: { $0.method == SevenZipArchive.aes }) {
                encryptedHeader = true
                sink.add(
                    "7z.encrypted",
                    "the archive's header is encrypted (7z -mhe=on): its file names and content cannot be analysed without the password"
                )
                return
            }
            let decoded = SevenZipArchive.decode(folder, from: view, limit: limit)
            if let failure = decoded.failure { throw FormatError(decoded.overLimit ? .budget : .malformed, failure) }
            header = decoded.data
        }
        throw FormatError(.malformed, "encoded headers nested more than \(SevenZipArchive.maxHeaderWrappings) deep")
    }

    static let aes: [UInt8] = [0x06, 0xF1, 0x07, 0x01]

    mutating func checkEncryption(_ sink: inout ObservationSink) {
        let encrypted = folders.indices.filter { folders[$0].coders.contains { $0.method == SevenZipArchive.aes } }
        guard !encrypted.isEmpty else { return }
        let set = Set(encrypted)
        var names: [String] = []
        for m in members where names.count < 5 { if let f = m.folder, set.contains(f) { names.append(m.name) } }
        sink.add(
            "7z.encrypted",
            "\(encrypted.count) folder(s) of the archive are encrypted (AES): their files (\(names.joined(separator: ", "))) cannot be analysed without the password",
            Evidence(details: [("folders", String(encrypted.count))]))
    }

    // MARK: The header's grammar

    mutating func readHeader(_ r: inout Cursor, view: ByteView) throws(FormatError) {
        var id = try r.byte()
        if id == 0x02 {  // kArchiveProperties
            while try r.number() != 0 { try r.skip(try r.number()) }
            id = try r.byte()
        }
        if id == 0x03 {  // kAdditionalStreamsInfo: read and ignored (external data, unused by 7-Zip's writers)
            var extra = SevenZipArchive()
            try extra.readStreamsInfo(&r, view: view)
            id = try r.byte()
        }
        if id == 0x04 {  // kMainStreamsInfo
            try readStreamsInfo(&r, view: view)
            id = try r.byte()
        }
        if id == 0x05 {  // kFilesInfo
            try readFiles(&r)
            id = try r.byte()
        }
        guard id == 0x00 else { throw FormatError(.malformed, "unexpected property \(id) in the header") }
    }

    mutating func readStreamsInfo(_ r: inout Cursor, view: ByteView) throws(FormatError) {
        var packs: [(offset: Int, size: Int)] = []
        var id = try r.byte()
        if id == 0x06 {  // kPackInfo
            let packPos = try r.number()
            let count = try r.count(max: SevenZipArchive.maxFolders * 4)
            var sizes: [UInt64] = []
            id = try r.byte()
            while id != 0x00 {
                if id == 0x09 {
                    for _ in 0..<count { sizes.append(try r.number()) }
                } else if id == 0x0A {
                    _ = try r.digests(count)
                } else {
                    try r.skip(try r.number())
                }
                id = try r.byte()
            }
            let (first, wrapped) = UInt64(32).addingReportingOverflow(packPos)
            guard !wrapped else { throw FormatError(.malformed, "the packed streams' position is outside the file") }
            var at = first
            for s in sizes {
                guard at <= UInt64(view.count), s <= UInt64(view.count) - at else {
                    throw FormatError(.malformed, "a packed stream (\(s) bytes at \(at)) is not inside the file")
                }
                packs.append((Int(at), Int(s)))
                at += s
            }
            id = try r.byte()
        }
        if id == 0x07 {  // kUnPackInfo
            try readFolders(&r)
            id = try r.byte()
        }
        // Packed streams go to folders in order.
        var next = 0
        for i in folders.indices {
            let n = max(1, folders[i].packedStreams.count)
            guard next + n <= packs.count else {
                throw FormatError(.malformed, "folder \(i) has no packed stream")
            }
            folders[i].packs = Array(packs[next..<(next + n)])
            next += n
            folders[i].substreams = [folders[i].unpackSize]
        }
        if id == 0x08 {  // kSubStreamsInfo
            try readSubstreams(&r)
            id = try r.byte()
        }
        guard id == 0x00 else { throw FormatError(.malformed, "unexpected property \(id) in the streams info") }
    }

    mutating func readFolders(_ r: inout Cursor) throws(FormatError) {
        guard try r.byte() == 0x0B else { throw FormatError(.malformed, "the coders info has no folders") }
        let count = try r.count(max: SevenZipArchive.maxFolders)
        guard try r.byte() == 0 else { throw FormatError(.malformed, "external folders are not supported") }
        for _ in 0..<count {
            var folder = Folder()
            let coders = try r.count(max: SevenZipArchive.maxCoders)
            var ins = 0, outs = 0
            for _ in 0..<coders {
                let flags = try r.byte()
                guard flags & 0x80 == 0 else { throw FormatError(.malformed, "alternative coder methods") }
                let method = try r.bytes(Int(flags & 0x0F))
                var coder = Coder(method: method, properties: [], inStreams: 1, outStreams: 1)
                if flags & 0x10 != 0 {
                    coder.inStreams = try r.count(max: 8)
                    coder.outStreams = try r.count(max: 8)
                }
                if flags & 0x20 != 0 { coder.properties = try r.bytes(try r.count(max: 1 << 16)) }
                ins += coder.inStreams
                outs += coder.outStreams
                folder.coders.append(coder)
            }
            guard outs >= 1 else { throw FormatError(.malformed, "a folder without output") }
            for _ in 0..<(outs - 1) { folder.bindPairs.append((try r.count(max: ins - 1), try r.count(max: outs - 1))) }
            let packed = ins - (outs - 1)
            guard packed >= 1 else { throw FormatError(.malformed, "a folder without packed streams") }
            if packed == 1 {
                folder.packedStreams = [(0..<ins).first { i in !folder.bindPairs.contains { $0.0 == i } } ?? 0]
            } else {
                for _ in 0..<packed { folder.packedStreams.append(try r.count(max: ins - 1)) }
            }
            folder.unpackSizes = Array(repeating: 0, count: outs)
            folders.append(folder)
        }
        guard try r.byte() == 0x0C else { throw FormatError(.malformed, "the coders info has no unpack sizes") }
        for i in folders.indices {
            for j in folders[i].unpackSizes.indices { folders[i].unpackSizes[j] = try r.number() }
        }
        var id = try r.byte()
        while id != 0x00 {
            if id == 0x0A {
                let defined = try r.digests(folders.count)
                for i in folders.indices { folders[i].crcDefined = defined[i] }
            } else {
                try r.skip(try r.number())
            }
            id = try r.byte()
        }
    }

    mutating func readSubstreams(_ r: inout Cursor) throws(FormatError) {
        var counts = Array(repeating: 1, count: folders.count)
        var id = try r.byte()
        var total = folders.count
        if id == 0x0D {  // kNumUnPackStream
            total = 0
            for i in counts.indices {
                counts[i] = try r.count(max: SevenZipArchive.maxFiles)
                total += counts[i]
                guard total <= SevenZipArchive.maxFiles else {
                    throw FormatError(.budget, "more than \(SevenZipArchive.maxFiles) substreams")
                }
            }
            id = try r.byte()
        }
        for i in folders.indices {
            let size = folders[i].unpackSize
            guard counts[i] > 0 else {
                folders[i].substreams = []
                continue
            }
            var sizes: [UInt64] = []
            var sum: UInt64 = 0
            if id == 0x09 {
                for _ in 0..<(counts[i] - 1) {
                    let s = try r.number()
                    guard s <= size - sum else { throw FormatError(.malformed, "substreams larger than their folder") }
                    sizes.append(s)
                    sum += s
                }
            }
            sizes.append(size - sum)
            folders[i].substreams = sizes
        }
        if id == 0x09 { id = try r.byte() }
        while id != 0x00 {
            if id == 0x0A {
                var unknown = 0
                for i in folders.indices where counts[i] != 1 || !folders[i].crcDefined { unknown += counts[i] }
                _ = try r.digests(unknown)
            } else {
                try r.skip(try r.number())
            }
            id = try r.byte()
        }
    }

    mutating func readFiles(_ r: inout Cursor) throws(FormatError) {
        let count = try r.count(max: SevenZipArchive.maxFiles)
        var emptyStream = [Bool](repeating: false, count: count)
        var names: [String] = []
        while true {
            let type = try r.number()
            if type == 0 { break }
            let size = try r.number()
            guard size <= UInt64(r.remaining) else {
                throw FormatError(.malformed, "a file property overruns the header")
            }
            var p = Cursor(try r.slice(Int(size)))
            switch type {
            case 0x0E: emptyStream = try p.bits(count)
            case 0x11:
                guard try p.byte() == 0 else { throw FormatError(.malformed, "external file names are not supported") }
                names = p.utf16Names(max: count)
            default: break
            }
        }
        // Files with a stream take the substreams in folder order.
        var folder = 0, sub = 0, offset: UInt64 = 0
        for i in 0..<count {
            let name = i < names.count ? names[i] : "file\(i)"
            if emptyStream[i] {
                members.append(Member(name: name, folder: nil, offset: 0, size: 0))
                continue
            }
            while folder < folders.count && sub >= folders[folder].substreams.count {
                folder += 1
                sub = 0
                offset = 0
            }
            guard folder < folders.count else { throw FormatError(.malformed, "more files than substreams") }
            let size = folders[folder].substreams[sub]
            members.append(Member(name: name, folder: folder, offset: offset, size: size))
            offset &+= size
            sub += 1
        }
    }
}

/// A bounds-checked reader of header bytes.
struct Cursor {
    let view: ByteView
    var at = 0

    init(_ view: ByteView) { self.view = view }

    var remaining: Int { view.count - at }

    mutating func byte() throws(FormatError) -> UInt8 {
        guard let b = view.byte(at: at) else { throw FormatError(.malformed, "the header ends too early") }
        at += 1
        return b
    }

    mutating func bytes(_ n: Int) throws(FormatError) -> [UInt8] {
        guard let b = view.bytes(at, n) else { throw FormatError(.malformed, "the header ends too early") }
        at += n
        return b
    }

    mutating func slice(_ n: Int) throws(FormatError) -> ByteView {
        guard let s = view.slice(at, n) else { throw FormatError(.malformed, "the header ends too early") }
        at += n
        return s
    }

    mutating func skip(_ n: UInt64) throws(FormatError) {
        guard n <= UInt64(remaining) else { throw FormatError(.malformed, "the header ends too early") }
        at += Int(n)
    }

    /// 7z's NUMBER: the first byte's leading one bits count the bytes that follow (little-endian).
    mutating func number() throws(FormatError) -> UInt64 {
        let first = try byte()
        var mask: UInt8 = 0x80
        var value: UInt64 = 0
        for i in 0..<8 {
            if first & mask == 0 {
                return value | UInt64(first & (mask &- 1)) << (8 * UInt64(i))
            }
            value |= UInt64(try byte()) << (8 * UInt64(i))
            mask >>= 1
        }
        return value
    }

    /// A NUMBER used as a count or index, at most `max`.
    mutating func count(max: Int) throws(FormatError) -> Int {
        let n = try number()
        guard n <= UInt64(Swift.max(0, max)) else { throw FormatError(.malformed, "a count of \(n) is over \(max)") }
        return Int(n)
    }

    /// A bit vector of `n` bits, most significant bit first.
    mutating func bits(_ n: Int) throws(FormatError) -> [Bool] {
        let bytes = try self.bytes((n + 7) / 8)
        return (0..<n).map { bytes[$0 / 8] & (0x80 >> UInt8($0 % 8)) != 0 }
    }

    /// Digests: all-defined flag (or a bit vector), then a CRC-32 for each defined one; skipped, and which are
    /// defined returned.
    mutating func digests(_ n: Int) throws(FormatError) -> [Bool] {
        let all = try byte()
        let defined = all != 0 ? [Bool](repeating: true, count: n) : try bits(n)
        try skip(UInt64(defined.filter { $0 }.count) * 4)
        return defined
    }

    /// Names: UTF-16LE, each ended by a zero unit, at most `max`.
    mutating func utf16Names(max: Int) -> [String] {
        var names: [String] = []
        var units: [UInt16] = []
        while names.count < max, let lo = view.byte(at: at), let hi = view.byte(at: at + 1) {
            at += 2
            let u = UInt16(lo) | UInt16(hi) << 8
            if u == 0 {
                names.append(String(decoding: units, as: UTF16.self))
                units.removeAll(keepingCapacity: true)
            } else {
                units.append(u)
            }
        }
        return names
    }
}
