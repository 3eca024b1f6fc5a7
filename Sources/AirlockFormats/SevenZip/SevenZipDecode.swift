/// What decoding one 7z folder gave.
public struct SevenZipFolderOutput: Sendable {
    /// The folder's output, at most the limit (and at most its declared size).
    public var data: ByteView
    /// Why the output is shorter than declared (corrupt or truncated data), if it is.
    public var failure: String?
    /// Whether the folder decodes past the limit: `data` is its first `limit` bytes.
    public var overLimit: Bool
    /// Why the folder was not decoded at all: an encrypted (`encrypted` is true) or unsupported coder.
    public var unsupported: String?
    /// Whether an AES coder encrypts the folder.
    public var encrypted = false
}

extension SevenZipArchive {
    /// The liblzma filters, or the one other decoder, of a folder's chain of coders.
    enum Chain {
        case raw([RawFilter])
        case copy
        case deflate
        case bzip2
    }

    /// Decodes `folder` from `view` into at most `limit` bytes: chains of LZMA, LZMA2, BCJ (x86) and Delta through
    /// liblzma's raw decoder; Copy, Deflate and BZip2 alone. AES and other coders (BCJ2, ARM, PPMd) are reported
    /// as unsupported, never guessed at.
    public static func decode(_ folder: Folder, from view: ByteView, limit: Int) -> SevenZipFolderOutput {
        let chain: Chain
        let pack: (offset: Int, size: Int)
        switch resolve(folder) {
        case .failure(let why, let encrypted):
            return SevenZipFolderOutput(
                data: ByteView([]), failure: nil, overLimit: false, unsupported: why, encrypted: encrypted)
        case .success(let c, let p):
            chain = c
            pack = p
        }
        guard let input = view.slice(pack.offset, pack.size) else {
            return SevenZipFolderOutput(
                data: ByteView([]), failure: "the packed stream is not inside the file", overLimit: false)
        }
        let declared = folder.unpackSize
        let result: Decompressed
        switch chain {
        case .copy:
            result = Decompressed(
                data: input.slice(0, min(input.count, limit)) ?? ByteView([]), consumed: input.count, streams: 1,
                complete: true, overLimit: input.count > limit, failure: nil)
        case .deflate: result = Decompressor.inflateRaw(input, limit: limit)
        case .bzip2: result = Decompressor.bunzip(input, limit: limit)
        case .raw(let filters): result = Decompressor.decodeRaw(input, filters: filters, limit: limit)
        }
        var data = result.data
        // LZMA1 has no end marker in 7z: the declared size ends it; what comes out past it is not the folder's.
        if UInt64(data.count) > declared { data = data.slice(0, Int(declared)) ?? data }
        let overLimit = result.overLimit && declared > UInt64(limit)
        var failure: String?
        if !overLimit && UInt64(data.count) < declared {
            failure =
                "the folder decodes to \(data.count) bytes, not the declared \(declared)\(result.failure.map { " (\($0))" } ?? " (the data ends first)")"
        }
        return SevenZipFolderOutput(data: data, failure: failure, overLimit: overLimit || result.overLimit)
    }

    enum Resolution {
        case success(Chain, (offset: Int, size: Int))
        case failure(String, encrypted: Bool)
    }

    /// Follows the folder's bind pairs from its main output to its packed stream: a chain of one-in, one-out coders.
    static func resolve(_ folder: Folder) -> Resolution {
        if folder.coders.contains(where: { $0.method == aes }) {
            return .failure("the folder is encrypted (AES)", encrypted: true)
        }
        var outBase: [Int] = [], inBase: [Int] = []
        var ins = 0, outs = 0
        for c in folder.coders {
            inBase.append(ins)
            outBase.append(outs)
            ins += c.inStreams
            outs += c.outStreams
        }
        guard folder.coders.allSatisfy({ $0.inStreams == 1 && $0.outStreams == 1 }), folder.packedStreams.count == 1,
            let mainOut = (0..<outs).first(where: { o in !folder.bindPairs.contains { $0.1 == o } })
        else { return .failure("the folder's coders are not a simple chain (BCJ2?)", encrypted: false) }
        var order: [Coder] = []  // from the output to the packed input
        var out = mainOut
        for _ in 0..<folder.coders.count {
            guard let index = outBase.firstIndex(of: out) else { break }
            order.append(folder.coders[index])
            let input = inBase[index]
            guard let pair = folder.bindPairs.first(where: { $0.0 == input }) else { break }
            out = pair.1
        }
        guard order.count == folder.coders.count, let pack = folder.packs.first else {
            return .failure("the folder's coders are not a simple chain", encrypted: false)
        }
        var filters: [RawFilter] = []  // from the packed input to the output
        var other: Chain?
        for coder in order.reversed() {
            switch coder.method {
            case [0x00]: continue
            case [0x21]:
                guard let p = coder.properties.first else {
                    return .failure("LZMA2 without properties", encrypted: false)
                }
                filters.append(.lzma2(p))
            case [0x03, 0x01, 0x01]: filters.append(.lzma1(coder.properties))
            case [0x03, 0x03, 0x01, 0x03], [0x04]: filters.append(.x86)
            case [0x03]: filters.append(.delta(Int(coder.properties.first ?? 0) + 1))
            case [0x04, 0x01, 0x08]: other = .deflate
            case [0x04, 0x02, 0x02]: other = .bzip2
            default:
                let id = coder.method.map { String($0, radix: 16) }.joined()
                return .failure("coder method \(id) is not supported", encrypted: false)
            }
        }
        if let other {
            guard filters.isEmpty else { return .failure("Deflate or BZip2 chained with filters", encrypted: false) }
            return .success(other, pack)
        }
        if filters.isEmpty { return .success(.copy, pack) }
        guard case .lzma1 = filters[0] else {
            if case .lzma2 = filters[0] { return .success(.raw(filters), pack) }
            return .failure("a filter chain that does not start with LZMA", encrypted: false)
        }
        return .success(.raw(filters), pack)
    }
}
