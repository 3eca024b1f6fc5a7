import CZlib

/// A member's bytes and what checking them showed.
public struct ZipExtraction: Sendable {
    /// The stored bytes, or the inflated bytes (at most the limit given).
    public var data: ByteView
    /// CRC-32 of `data`.
    public var actualCRC: UInt32
    /// Whether `actualCRC` equals the central directory's. PyTorch does not check it; Python's zipfile does.
    public var crcMatches: Bool
    /// Whether the inflated size equals the declared uncompressed size (miniz fails the extraction otherwise).
    public var sizeMatches: Bool
    /// Whether the deflate stream ended properly (false: the compressed data ran out first).
    public var streamComplete: Bool
}

extension ZipArchive {
    /// The member's bytes as a reader that trusts the central directory sees them: stored data is returned as a
    /// slice of `view` (no copy); deflated data is inflated, stopping with `FormatError.budget` as soon as more than
    /// `limit` bytes come out, whatever the header declares. Methods other than 0 and 8 throw `.malformed`.
    /// The CRC is *not* verified here (PyTorch does not verify it either): use `extractChecked` or `verifyAll`.
    /// The encrypted flag is ignored and the bytes are returned as they are.
    public func extract(_ entry: ZipEntry, from view: ByteView, limit: Int) throws(FormatError) -> ByteView {
        try extractChecked(entry, from: view, limit: limit).data
    }

    /// `extract`, plus the CRC-32 and size checks.
    public func extractChecked(_ entry: ZipEntry, from view: ByteView, limit: Int) throws(FormatError) -> ZipExtraction
    {
        let raw = try rawData(entry, from: view)
        switch entry.method {
        case 0:
            guard raw.count <= limit else {
                throw FormatError(.budget, "\(entry.name): \(raw.count) stored bytes exceed the limit of \(limit)")
            }
            let crc = ZipCRC.crc32(raw)
            return ZipExtraction(
                data: raw, actualCRC: crc, crcMatches: crc == entry.crc32,
                sizeMatches: UInt64(raw.count) == entry.uncompressedSize, streamComplete: true)
        case 8:
            let (bytes, complete) = try Inflater.inflateRaw(
                raw, limit: limit, sizeHint: entry.uncompressedSize, name: entry.name)
            let data = ByteView(bytes)
            let crc = ZipCRC.crc32(data)
            return ZipExtraction(
                data: data, actualCRC: crc, crcMatches: crc == entry.crc32,
                sizeMatches: UInt64(bytes.count) == entry.uncompressedSize, streamComplete: complete)
        case 12, 14:
            // bzip2 and LZMA: miniz (PyTorch) refuses them, Python's zipfile (pandas' zip compression) reads them.
            let out = try decodeOther(entry, raw, limit: limit)
            let crc = ZipCRC.crc32(out.data)
            return ZipExtraction(
                data: out.data, actualCRC: crc, crcMatches: crc == entry.crc32,
                sizeMatches: UInt64(out.data.count) == entry.uncompressedSize, streamComplete: out.complete)
        default:
            throw FormatError(.malformed, "\(entry.name): unsupported compression method \(entry.method)")
        }
    }

    /// Method 12 (a bzip2 stream) and 14 (LZMA: version, properties size, 5 properties bytes, raw LZMA1 data), in at
    /// most `limit` bytes; LZMA without an end marker ends at the declared size, as Python's zipfile ends it.
    func decodeOther(_ entry: ZipEntry, _ raw: ByteView, limit: Int) throws(FormatError) -> (
        data: ByteView, complete: Bool
    ) {
        let out: Decompressed
        if entry.method == 12 {
            out = Decompressor.bunzip(raw, limit: limit)
        } else {
            guard raw.le(UInt16.self, at: 2) == 5, let props = raw.bytes(4, 5), let data = raw.suffix(from: 9) else {
                throw FormatError(.malformed, "\(entry.name): the LZMA header is malformed")
            }
            out = Decompressor.decodeRaw(data, filters: [.lzma1(props)], limit: limit)
        }
        if out.overLimit { throw FormatError(.budget, "\(entry.name): decompresses past the limit of \(limit) bytes") }
        var data = out.data
        if UInt64(data.count) > entry.uncompressedSize, let cut = data.slice(0, Int(entry.uncompressedSize)) {
            data = cut
        }
        if data.count == 0 && entry.uncompressedSize > 0, let failure = out.failure {
            throw FormatError(.malformed, "\(entry.name): \(failure)")
        }
        return (data, out.complete || UInt64(data.count) == entry.uncompressedSize)
    }

    /// The member's compressed bytes, where miniz reads them.
    func rawData(_ entry: ZipEntry, from view: ByteView) throws(FormatError) -> ByteView {
        guard let data = entry.dataOffset, let offset = Int(exactly: data),
            let length = Int(exactly: entry.compressedSize),
            let raw = view.slice(offset, length)
        else { throw FormatError(.malformed, "\(entry.name): data is not inside the file") }
        return raw
    }

    /// Extracts every member (`entries` and `hiddenEntries`) with at most `limit` bytes each and reports
    /// `zip.crc-mismatch`, `zip.bomb` (inflates past `limit`, or actual ratio above `ZipLimits`),
    /// `zip.inflated-size-mismatch` and `zip.inflate-error`. Stored members are checked in place, whatever their size.
    /// Members already reported as unsupported or out of bounds are skipped.
    public func verifyAll(view: ByteView, limit: Int) -> [Observation] {
        var sink = ObservationSink()
        for entry in entries + hiddenEntries {
            guard [0, 8, 12, 14].contains(entry.method), let raw = try? rawData(entry, from: view) else { continue }
            if entry.method == 0 {
                let crc = ZipCRC.crc32(raw)
                if crc != entry.crc32 { addCRC(&sink, entry, crc) }
                continue
            }
            do {
                let x = try extractChecked(entry, from: view, limit: limit)
                if !x.crcMatches { addCRC(&sink, entry, x.actualCRC) }
                if !x.sizeMatches || !x.streamComplete {
                    sink.add(
                        "zip.inflated-size-mismatch",
                        "\(entry.name) inflates to \(x.data.count) bytes\(x.streamComplete ? "" : " (stream cut short)"), not the declared \(entry.uncompressedSize): miniz fails the extraction, Python's zipfile returns what it got",
                        Evidence(
                            offset: Int(clamping: entry.localHeaderOffset), member: entry.name,
                            details: [("inflated", String(x.data.count)), ("declared", String(entry.uncompressedSize))])
                    )
                }
                let actual = UInt64(x.data.count)
                if actual >= ZipLimits.bombMinimumBytes && actual / max(UInt64(raw.count), 1) > ZipLimits.bombRatio {
                    sink.add(
                        "zip.bomb", "\(entry.name) inflates \(raw.count) bytes to \(actual)",
                        Evidence(
                            offset: Int(clamping: entry.localHeaderOffset), member: entry.name,
                            details: [
                                ("inflated", String(actual)), ("compressed", String(raw.count)), ("source", "actual"),
                            ]))
                }
            } catch {
                if error.kind == .budget {
                    sink.add(
                        "zip.bomb",
                        "\(entry.name) inflates past the limit of \(limit) bytes (from \(raw.count) compressed)",
                        Evidence(
                            offset: Int(clamping: entry.localHeaderOffset), member: entry.name,
                            details: [
                                ("limit", String(limit)), ("compressed", String(raw.count)), ("source", "actual"),
                            ]))
                } else {
                    sink.add(
                        "zip.inflate-error", "\(entry.name): \(error.message)",
                        Evidence(offset: Int(clamping: entry.localHeaderOffset), member: entry.name))
                }
            }
        }
        return sink.finished()
    }

    private func addCRC(_ sink: inout ObservationSink, _ entry: ZipEntry, _ actual: UInt32) {
        sink.add(
            "zip.crc-mismatch",
            "\(entry.name) has CRC-32 \(hex(actual)) but the central directory says \(hex(entry.crc32)): PyTorch loads it anyway (miniz built without CRC checks), Python's zipfile refuses it",
            Evidence(
                offset: Int(clamping: entry.localHeaderOffset), member: entry.name,
                details: [("actual", hex(actual)), ("declared", hex(entry.crc32))]))
    }
}

private func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// CRC-32 (zlib's).
public enum ZipCRC {
    public static func crc32(_ view: ByteView) -> UInt32 {
        view.withUnsafeBytes { buf -> UInt32 in
            guard let base = buf.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return 0 }
            var crc = CZlib.crc32(0, nil, 0)
            var offset = 0
            while offset < buf.count {
                let n = min(buf.count - offset, 1 << 30)
                crc = CZlib.crc32(crc, base + offset, uInt(n))
                offset += n
            }
            return UInt32(truncatingIfNeeded: crc)
        }
    }
}

/// Raw-deflate inflation that never holds more than `limit` bytes of output.
enum Inflater {
    static func inflateRaw(_ input: ByteView, limit: Int, sizeHint: UInt64, name: String) throws(FormatError) -> (
        [UInt8], Bool
    ) {
        var stream = z_stream()
        guard airlock_inflate_init_raw(&stream) == Z_OK else {
            throw FormatError(.io, "\(name): zlib could not be initialised")
        }
        defer { inflateEnd(&stream) }
        var out: [UInt8] = []
        out.reserveCapacity(Int(clamping: min(sizeHint, UInt64(max(0, limit)), 1 << 20)))
        let chunkSize = 64 << 10
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var complete = false
        try input.withUnsafeBytes { (inBuf: UnsafeRawBufferPointer) throws(FormatError) in
            var fed = 0
            while true {
                if stream.avail_in == 0 && fed < inBuf.count, let base = inBuf.baseAddress {
                    let n = min(inBuf.count - fed, 1 << 30)
                    stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self) + fed)
                    stream.avail_in = uInt(n)
                    fed += n
                }
                let rc = chunk.withUnsafeMutableBytes { (outBuf: UnsafeMutableRawBufferPointer) -> Int32 in
                    stream.next_out = outBuf.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(outBuf.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunkSize - Int(stream.avail_out)
                if produced > 0 {
                    guard produced <= limit - out.count else {
                        throw FormatError(.budget, "\(name): inflates past the limit of \(limit) bytes")
                    }
                    out.append(contentsOf: chunk[0..<produced])
                }
                switch rc {
                case Z_STREAM_END:
                    complete = true
                    return
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    // No progress possible: the input ran out before the stream ended.
                    if stream.avail_in == 0 && fed >= inBuf.count { return }
                    if produced == 0 { return }
                default:
                    let msg = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                    throw FormatError(.malformed, "\(name): invalid deflate data (\(msg))")
                }
            }
        }
        return (out, complete)
    }
}
