import CCodecs
import CZlib

/// How one decoding step ended.
enum StepStatus {
    /// Bytes moved (or the decoder wants more input: the caller tells by whether anything moved).
    case progress
    /// The stream (gzip member, xz stream, zstd or lz4 frame) ended properly.
    case streamEnd
    /// The data is corrupt or asks for more than allowed.
    case failed(String)
}

/// One stream's decoder, over the system libraries. Each C stream lives at a fixed address (zlib and libbz2 check
/// that their state points back to it), allocated here and released by `end()`.
final class StreamCodec {
    private enum State {
        case zlib(UnsafeMutablePointer<z_stream>)
        case bzip2(UnsafeMutablePointer<bz_stream>)
        case lzma(UnsafeMutablePointer<lzma_stream>)
        case zstd(OpaquePointer)
        case lz4(OpaquePointer)
    }
    private var state: State?

    private init(_ state: State) { self.state = state }

    /// The decoder for one stream of `kind`.
    static func make(_ kind: Compression) -> StreamCodec? {
        switch kind {
        case .zlib, .joblibZF: return zlib(bits: 15)
        case .gzip: return zlib(bits: -15)  // the header is read here as Python's gzip reads it
        case .bzip2:
            let s = UnsafeMutablePointer<bz_stream>.allocate(capacity: 1)
            s.initialize(to: bz_stream())
            guard BZ2_bzDecompressInit(s, 0, 0) == BZ_OK else {
                s.deallocate()
                return nil
            }
            return StreamCodec(.bzip2(s))
        case .xz, .lzma:
            let s = UnsafeMutablePointer<lzma_stream>.allocate(capacity: 1)
            s.initialize(to: airlock_lzma_stream_init())
            // Python's lzma.LZMAFile (joblib, pandas) reads with FORMAT_AUTO, stream after stream: either kind.
            // No memory limit, as Python's: liblzma allocates the declared dictionary but touches only as much of it
            // as output came out, and the output stops at the budget (a distance never reaches past the output).
            let rc = lzma_auto_decoder(s, UInt64.max, 0)
            guard rc == LZMA_OK else {
                s.deallocate()
                return nil
            }
            return StreamCodec(.lzma(s))
        case .zstd:
            guard let d = ZSTD_createDCtx() else { return nil }
            // zstd's default limit (2^27, 128 MiB), as python-zstandard and so pandas decode: a frame asking for a
            // larger window is refused by them too ("Frame requires too much memory for decoding"), and the window
            // stays within the budget.
            _ = ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 27)
            return StreamCodec(.zstd(d))
        case .lz4:
            var ctx: OpaquePointer?
            guard LZ4F_isError(LZ4F_createDecompressionContext(&ctx, UInt32(LZ4F_VERSION))) == 0, let ctx else {
                return nil
            }
            return StreamCodec(.lz4(ctx))
        }
    }

    /// zlib's inflate with `bits` (15 zlib, 31 gzip, -15 raw deflate).
    static func zlib(bits: Int32) -> StreamCodec? {
        let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        s.initialize(to: z_stream())
        guard airlock_inflate_init_window(s, bits) == Z_OK else {
            s.deallocate()
            return nil
        }
        return StreamCodec(.zlib(s))
    }

    /// liblzma's raw decoder for a 7z coder chain, `filters` listed from the packed input to the output.
    static func raw(_ filters: [RawFilter]) -> StreamCodec? {
        guard !filters.isEmpty, filters.count <= 3 else { return nil }
        var lzmaOptions = [lzma_options_lzma](repeating: lzma_options_lzma(), count: filters.count)
        var deltaOptions = [lzma_options_delta](repeating: lzma_options_delta(), count: filters.count)
        var chain: [lzma_filter] = []
        // liblzma lists a chain in encoding order: BCJ and Delta first, LZMA last.
        for (i, f) in filters.enumerated() {
            switch f {
            case .lzma1(let props):
                guard props.count == 5, props[0] < 225 else { return nil }
                let d = UInt32(props[1]) | UInt32(props[2]) << 8 | UInt32(props[3]) << 16 | UInt32(props[4]) << 24
                guard UInt64(d) <= Decompressor.maxDecoderMemory else { return nil }
                lzmaOptions[i].dict_size = max(d, 4096)
                lzmaOptions[i].lc = UInt32(props[0] % 9)
                lzmaOptions[i].lp = UInt32(props[0] / 9 % 5)
                lzmaOptions[i].pb = UInt32(props[0] / 45)
                chain.append(lzma_filter(id: airlock_lzma_filter_lzma1, options: nil))
            case .lzma2(let p):
                guard p <= 40 else { return nil }
                let d: UInt64 = p == 40 ? 0xFFFF_FFFF : UInt64(2 | UInt32(p & 1)) << UInt64(p / 2 + 11)
                guard d <= Decompressor.maxDecoderMemory else { return nil }
                lzmaOptions[i].dict_size = UInt32(d)
                chain.append(lzma_filter(id: airlock_lzma_filter_lzma2, options: nil))
            case .x86:
                chain.append(lzma_filter(id: airlock_lzma_filter_x86, options: nil))
            case .delta(let distance):
                guard distance >= 1 && distance <= 256 else { return nil }
                deltaOptions[i].type = LZMA_DELTA_TYPE_BYTE
                deltaOptions[i].dist = UInt32(distance)
                chain.append(lzma_filter(id: airlock_lzma_filter_delta, options: nil))
            }
        }
        let s = UnsafeMutablePointer<lzma_stream>.allocate(capacity: 1)
        s.initialize(to: airlock_lzma_stream_init())
        let rc = lzmaOptions.withUnsafeMutableBufferPointer { lz in
            deltaOptions.withUnsafeMutableBufferPointer { de in
                for (i, f) in filters.enumerated() {
                    switch f {
                    case .lzma1, .lzma2: chain[i].options = UnsafeMutableRawPointer(lz.baseAddress! + i)
                    case .delta: chain[i].options = UnsafeMutableRawPointer(de.baseAddress! + i)
                    case .x86: break
                    }
                }
                // Decoding order → encoding order, then the terminator.
                var ordered = Array(chain.reversed())
                ordered.append(lzma_filter(id: airlock_lzma_vli_unknown, options: nil))
                return lzma_raw_decoder(s, &ordered)
            }
        }
        guard rc == LZMA_OK else {
            s.deallocate()
            return nil
        }
        return StreamCodec(.lzma(s))
    }

    /// Feeds `input`, writes into `output`; adds what it wrote to `produced` and what it read to `consumed`.
    func step(
        _ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer, produced: inout Int,
        consumed: inout Int
    ) -> StepStatus {
        let inCount = min(input.count, Int(UInt32.max))
        let outCount = min(output.count, Int(UInt32.max))
        let inBase = input.baseAddress
        let outBase = output.baseAddress
        switch state {
        case .zlib(let s):
            s.pointee.next_in = UnsafeMutablePointer(mutating: inBase?.assumingMemoryBound(to: Bytef.self))
            s.pointee.avail_in = uInt(inCount)
            s.pointee.next_out = outBase?.assumingMemoryBound(to: Bytef.self)
            s.pointee.avail_out = uInt(outCount)
            let rc = inflate(s, Z_NO_FLUSH)
            consumed += inCount - Int(s.pointee.avail_in)
            produced += outCount - Int(s.pointee.avail_out)
            switch rc {
            case Z_STREAM_END: return .streamEnd
            case Z_OK, Z_BUF_ERROR: return .progress
            case Z_NEED_DICT: return .failed("the stream needs a preset dictionary")
            default: return .failed("invalid deflate data (\(s.pointee.msg.map { String(cString: $0) } ?? "\(rc)"))")
            }
        case .bzip2(let s):
            s.pointee.next_in = UnsafeMutablePointer(
                mutating: inBase?.assumingMemoryBound(to: CChar.self))
            s.pointee.avail_in = UInt32(inCount)
            s.pointee.next_out = outBase?.assumingMemoryBound(to: CChar.self)
            s.pointee.avail_out = UInt32(outCount)
            let rc = BZ2_bzDecompress(s)
            consumed += inCount - Int(s.pointee.avail_in)
            produced += outCount - Int(s.pointee.avail_out)
            switch rc {
            case BZ_STREAM_END: return .streamEnd
            case BZ_OK: return .progress
            default: return .failed("invalid bzip2 data (error \(rc))")
            }
        case .lzma(let s):
            s.pointee.next_in = inBase?.assumingMemoryBound(to: UInt8.self)
            s.pointee.avail_in = inCount
            s.pointee.next_out = outBase?.assumingMemoryBound(to: UInt8.self)
            s.pointee.avail_out = outCount
            let rc = lzma_code(s, LZMA_RUN)
            consumed += inCount - s.pointee.avail_in
            produced += outCount - s.pointee.avail_out
            switch rc {
            case LZMA_STREAM_END: return .streamEnd
            case LZMA_OK, LZMA_BUF_ERROR, LZMA_NO_CHECK, LZMA_UNSUPPORTED_CHECK, LZMA_GET_CHECK: return .progress
            case LZMA_MEMLIMIT_ERROR, LZMA_MEM_ERROR:
                return .failed("the decoder could not allocate the memory the stream declares")
            case LZMA_FORMAT_ERROR: return .failed("not an xz/lzma stream")
            case LZMA_OPTIONS_ERROR: return .failed("unsupported xz/lzma options")
            default: return .failed("invalid xz/lzma data (error \(rc.rawValue))")
            }
        case .zstd(let d):
            var inb = ZSTD_inBuffer(src: inBase, size: inCount, pos: 0)
            var outb = ZSTD_outBuffer(dst: outBase, size: outCount, pos: 0)
            let rc = ZSTD_decompressStream(d, &outb, &inb)
            consumed += inb.pos
            produced += outb.pos
            if ZSTD_isError(rc) != 0 {
                return .failed("invalid zstd data (\(String(cString: ZSTD_getErrorName(rc))))")
            }
            return rc == 0 ? .streamEnd : .progress
        case .lz4(let ctx):
            var outSize = outCount, inSize = inCount
            let rc = LZ4F_decompress(ctx, outBase, &outSize, inBase, &inSize, nil)
            consumed += inSize
            produced += outSize
            if LZ4F_isError(rc) != 0 { return .failed("invalid lz4 data (\(String(cString: LZ4F_getErrorName(rc))))") }
            return rc == 0 ? .streamEnd : .progress
        case nil:
            return .failed("the decoder was released")
        }
    }

    /// Releases the decoder.
    func end() {
        switch state {
        case .zlib(let s):
            inflateEnd(s)
            s.deallocate()
        case .bzip2(let s):
            BZ2_bzDecompressEnd(s)
            s.deallocate()
        case .lzma(let s):
            lzma_end(s)
            s.deallocate()
        case .zstd(let d): ZSTD_freeDCtx(d)
        case .lz4(let ctx): LZ4F_freeDecompressionContext(ctx)
        case nil: break
        }
        state = nil
    }

    deinit { end() }
}
