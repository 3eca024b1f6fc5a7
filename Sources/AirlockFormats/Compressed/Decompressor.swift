import CCodecs
import CZlib

#if canImport(Glibc)
    import Glibc
#endif

/// What decompressing a stream gave: the content (at most the limit), and how the input ended.
public struct Decompressed: Sendable {
    /// The decompressed bytes, at most the limit asked for.
    public var data: ByteView
    /// Input bytes the streams used; what follows them is trailing data.
    public var consumed: Int
    /// Streams decoded to their end (gzip members, bzip2 streams, xz streams, zstd or lz4 frames).
    public var streams: Int
    /// Whether the last stream ended properly (false: cut short, corrupt, or stopped at the limit).
    public var complete: Bool
    /// Whether more than the limit would have come out: `data` is its first `limit` bytes.
    public var overLimit: Bool
    /// Why decoding stopped early (corrupt data, an unsupported option, a memory limit), if it did.
    public var failure: String?
}

/// Streaming decompression into one bounded buffer: the declared sizes are never trusted, the buffer never grows
/// past the limit (plus one byte, to tell "exactly the limit" from "more"), and a stream that fails part-way
/// keeps what came out before the damage.
public enum Decompressor {
    /// Most memory a decoder may use for its dictionary or window (xz, lzma, zstd): 128 MiB.
    public static let maxDecoderMemory: UInt64 = 128 << 20
    /// Most concatenated streams read from one input (each one a decoder set up anew: a bzip2 stream allocates
    /// 3.6 MB): past it, decoding stops with a failure, and what follows is not analysed.
    public static let maxStreams = 100_000

    /// Decompresses `view`, which starts with `kind`, into at most `limit` bytes. Concatenated streams of the same
    /// kind are read as their loaders read them (gzip members, bzip2 and xz streams, zstd and lz4 frames).
    public static func decompress(_ view: ByteView, _ kind: Compression, limit: Int) -> Decompressed {
        var start = 0
        if kind == .joblibZF {
            start = Compression.zfHeader
            if view.byte(at: start) == 0x20 { start += 1 }  // joblib <= 0.8.4 wrote one more space
        }
        if kind == .gzip { return gunzip(view, limit: limit) }
        var limit = limit
        // The decoder's dictionary keeps a second copy of up to that much output: with a dictionary over half the
        // budget (a large one: that is where memory counts), half the budget comes out, so that both copies together
        // stay within it.
        if kind == .xz || kind == .lzma, limit > 64 << 20, let dict = declaredDictionary(view), dict > UInt64(limit / 2)
        {
            limit /= 2
        }
        return run(view, from: start, limit: limit, next: { rest in nextStream(kind, rest) }) {
            StreamCodec.make(kind)
        }
    }

    /// The dictionary size the first stream declares: the lzma "alone" header's, or the first xz block's LZMA2
    /// property byte (a block header right after the 12-byte stream header).
    static func declaredDictionary(_ view: ByteView) -> UInt64? {
        if view.starts(with: Compression.xzMagic) {
            // Block header: size, flags (no sizes, one filter), then filter 0x21 with one property byte.
            guard view.byte(at: 13).map({ $0 & 0xC3 == 0 }) == true, view.byte(at: 14) == 0x21,
                view.byte(at: 15) == 1, let p = view.byte(at: 16), p <= 40
            else { return nil }
            return p == 40 ? 0xFFFF_FFFF : UInt64(2 | UInt32(p & 1)) << UInt64(p / 2 + 11)
        }
        return view.le(UInt32.self, at: 1).map(UInt64.init)
    }

    /// gzip members as Python's `gzip` module reads them (joblib, pandas): the header by `_read_gzip_header`, which
    /// ignores reserved flag bits and never checks the header CRC (zlib refuses both), then raw deflate, the 8-byte
    /// trailer, zero padding, and the next member.
    static func gunzip(_ view: ByteView, limit: Int) -> Decompressed {
        guard let first = gzipHeader(view) else {
            return Decompressed(
                data: ByteView([]), consumed: 0, streams: 0, complete: false, overLimit: false,
                failure: "the gzip header is cut short or names another method than deflate")
        }
        var out = run(view, from: first, limit: limit, next: nextGzipMember) { StreamCodec.zlib(bits: -15) }
        if out.complete {
            if out.consumed <= view.count - 8 {
                out.consumed += 8
            } else {
                out.complete = false
                // The trailer is cut short: Python fails there, after giving the content (a truncation).
            }
        }
        return out
    }

    /// The length of the gzip header `view` starts with, as `gzip._read_gzip_header` reads it; nil where Python fails.
    static func gzipHeader(_ view: ByteView) -> Int? {
        guard view.starts(with: [0x1F, 0x8B]), view.byte(at: 2) == 8, let flags = view.byte(at: 3), view.count >= 10
        else { return nil }
        var pos = 10
        if flags & 0x04 != 0 {
            guard let n = view.le(UInt16.self, at: pos), pos + 2 + Int(n) <= view.count else { return nil }
            pos += 2 + Int(n)
        }
        for flag: UInt8 in [0x08, 0x10] where flags & flag != 0 {
            // NUL-terminated, or up to the end of the file (`if not s or s == b"\0": break`).
            while let b = view.byte(at: pos) {
                pos += 1
                if b == 0 { break }
            }
        }
        if flags & 0x02 != 0 {
            guard pos + 2 <= view.count else { return nil }
            pos += 2
        }
        return pos
    }

    /// Past a member's trailer and zero padding, to the data of the next member; nil when none follows.
    static func nextGzipMember(_ rest: ByteView) -> Int? {
        guard rest.count > 8 else { return nil }
        var skip = 8
        while rest.byte(at: skip) == 0 { skip += 1 }
        guard let member = rest.suffix(from: skip), let header = gzipHeader(member) else { return nil }
        return skip + header
    }

    /// Decodes a raw LZMA / LZMA2 / BCJ / Delta filter chain (7z's coders) of `view` into at most `limit` bytes.
    public static func decodeRaw(_ view: ByteView, filters: [RawFilter], limit: Int) -> Decompressed {
        run(view, from: 0, limit: limit, next: { _ in nil }) { StreamCodec.raw(filters) }
    }

    /// Inflates raw deflate (7z's Deflate coder) into at most `limit` bytes.
    public static func inflateRaw(_ view: ByteView, limit: Int) -> Decompressed {
        run(view, from: 0, limit: limit, next: { _ in nil }) { StreamCodec.zlib(bits: -15) }
    }

    /// Decodes bzip2 (7z's BZip2 coder) into at most `limit` bytes.
    public static func bunzip(_ view: ByteView, limit: Int) -> Decompressed {
        run(view, from: 0, limit: limit, next: { rest in nextStream(.bzip2, rest) }) { StreamCodec.make(.bzip2) }
    }

    /// Where another stream of `kind` starts in `rest` (0, or past padding), as its loader reads one; nil when none
    /// does. Python's gzip skips zero bytes between members; the others read a stream right after the last one.
    /// joblib's zlib reader never reads a second zlib stream.
    static func nextStream(_ kind: Compression, _ rest: ByteView) -> Int? {
        if kind == .gzip {
            var skip = 0
            while rest.byte(at: skip) == 0 { skip += 1 }
            return rest.suffix(from: skip)?.starts(with: [0x1F, 0x8B]) == true ? skip : nil
        }
        return continues(kind, rest) ? 0 : nil
    }

    /// Whether another stream of `kind` starts right at `rest`.
    static func continues(_ kind: Compression, _ rest: ByteView) -> Bool {
        switch kind {
        case .gzip: return rest.starts(with: [0x1F, 0x8B])
        case .bzip2: return Compression.detect(rest) == .bzip2
        case .xz, .lzma:
            // FORMAT_AUTO takes an xz or an lzma stream after either.
            return rest.starts(with: Compression.xzMagic) || Compression.looksLikeLzmaAlone(rest)
        case .zstd: return rest.starts(with: Compression.zstdMagic) || Compression.isSkippableZstd(rest)
        case .lz4: return rest.starts(with: Compression.lz4Magic)
        case .zlib, .joblibZF: return false
        }
    }

    /// Most input and most output bytes of one decoding step.
    static let stepBytes = 1 << 20

    /// The one decoding loop: a fresh codec per stream, output into `Output`, stop at the limit, at the end of the
    /// input, or at the first error.
    static func run(
        _ view: ByteView, from start: Int, limit: Int, next: (ByteView) -> Int?, codec: () -> StreamCodec?
    ) -> Decompressed {
        let limit = min(max(0, limit), Int.max - 1)
        var out = Output(limit: limit, hint: view.count)
        var pos = min(start, view.count)
        var streams = 0
        var complete = false
        var failure: String?
        // Static work stops at its deadline (`ScanDeadline.current`): each step is cut to `stepBytes` in and out,
        // a few milliseconds of decoding, and the deadline is asked between steps.
        let deadline = ScanDeadline.current
        view.withUnsafeBytes { input in
            streamLoop: while true {
                guard let decoder = codec() else {
                    failure = "the decoder could not be initialised"
                    break
                }
                defer { decoder.end() }
                complete = false
                while true {
                    guard out.reserve() else { break streamLoop }
                    if let deadline, let stop = deadline.stopped() {
                        failure = deadline.message(stop, what: "decompression")
                        break streamLoop
                    }
                    let before = pos, held = out.count
                    let free = out.free
                    let status = decoder.step(
                        UnsafeRawBufferPointer(rebasing: input[pos..<min(input.count, pos + stepBytes)]),
                        UnsafeMutableRawBufferPointer(rebasing: free[..<min(free.count, stepBytes)]),
                        produced: &out.count, consumed: &pos)
                    switch status {
                    case .streamEnd:
                        streams += 1
                        complete = true
                    case .failed(let message):
                        failure = message
                        break streamLoop
                    case .progress:
                        if pos == before && out.count == held { break streamLoop }  // the input ran out first
                        continue
                    }
                    break
                }
                guard pos < view.count, let rest = view.suffix(from: pos), let skip = next(rest) else { break }
                guard streams < maxStreams else {
                    failure = "more than \(maxStreams) concatenated streams"
                    complete = false
                    break
                }
                pos += skip
            }
        }
        let overLimit = out.count > limit
        return Decompressed(
            data: out.finish(), consumed: pos, streams: streams, complete: complete && !overLimit,
            overLimit: overLimit, failure: failure)
    }
}

/// One filter of a raw liblzma chain.
public enum RawFilter: Sendable, Equatable {
    /// LZMA1 with its 5-byte properties (7z's `030101`).
    case lzma1([UInt8])
    /// LZMA2 with its 1-byte dictionary property (7z's `21`).
    case lzma2(UInt8)
    /// x86 BCJ (7z's `03030103`).
    case x86
    /// Delta with its distance (7z's `03`).
    case delta(Int)
}

/// The growing output buffer: `malloc`ed, doubled up to `limit + 1` bytes, handed to a `ByteView` without a copy.
struct Output {
    let limit: Int
    var base: UnsafeMutableRawPointer?
    var capacity = 0
    var count = 0
    private let firstCapacity: Int

    init(limit: Int, hint: Int) {
        self.limit = limit
        let (h, o) = hint.multipliedReportingOverflow(by: 4)
        firstCapacity = max(1, min(limit + 1, max(64 << 10, o ? Int.max : h)))
    }

    /// Makes room for more output; false once `limit + 1` bytes are held (more than the limit came out).
    mutating func reserve() -> Bool {
        if count > limit { return false }
        if count < capacity { return true }
        let wanted = capacity == 0 ? firstCapacity : min(limit + 1, capacity &* 2)
        guard wanted > capacity, let grown = realloc(base, wanted) else { return false }
        base = grown
        capacity = wanted
        return true
    }

    /// The unused part of the buffer.
    var free: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base.map { $0 + count }, count: capacity - count)
    }

    /// The bytes, at most `limit`.
    mutating func finish() -> ByteView {
        let n = min(count, limit)
        guard let base, n > 0 else {
            Glibc.free(base)
            return ByteView([])
        }
        let fitted = n == capacity ? base : (realloc(base, n) ?? base)
        self.base = nil
        return ByteView(adoptingMalloc: fitted, count: n)
    }
}
