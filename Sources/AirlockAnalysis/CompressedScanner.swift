internal import AirlockFormats

/// Compressed files (joblib `compress=`, pandas `compression=`): decompressed within the budget and analysed
/// exactly as a file of that content — same sniffing, parsers and rules — with the compression named in every
/// finding's evidence and in the report's `target.compression`.
enum CompressedScanner {
    /// Analyses `view`, which starts with a `kind` stream. `depth` counts the wrappings and archives around it.
    static func analyse(_ view: ByteView, kind: Compression, name: String, budget: ScanBudget, depth: Int)
        -> StaticScanner.Analysis
    {
        guard depth + 1 < budget.maxNesting else {
            return StaticScanner.Analysis(
                format: .unknown,
                findings: [
                    Finding(
                        rule: "compressed.nested-too-deep", severity: .medium,
                        message:
                            "a \(kind.rawValue) stream nested deeper than \(budget.maxNesting) levels of compression or archives: its content is not analysed",
                        evidence: Evidence(details: [("compression", kind.rawValue)]))
                ])
        }
        let result = Decompressor.decompress(view, kind, limit: budget.maxInflatedBytes)
        var findings = streamFindings(result, kind: kind, compressedSize: view.count, budget: budget)
        // Zero padding after the data (tape blocks, Python's gzip skips it) is noted, not held against the file.
        if let tail = view.suffix(from: result.consumed), tail.withUnsafeBytes({ $0.allSatisfy { $0 == 0 } }) {
            for i in findings.indices where findings[i].rule == "compressed.trailing-data" {
                findings[i].severity = .low
            }
        }
        let weak = kind == .zlib || kind == .lzma
        if result.data.count == 0 && !result.complete {
            // Nothing came out: not a stream after all (a weak magic number), or one broken from its first byte.
            findings = [

                Finding(
                    rule: "compressed.unreadable", severity: weak && !claimsModel(name) ? .low : .medium,
                    message:
                        "the file starts like a \(kind.rawValue) stream but nothing could be decompressed\(result.failure.map { ": \($0)" } ?? ""): its content is not analysed",
                    evidence: Evidence(details: [("compression", kind.rawValue)]))
            ]
            return StaticScanner.Analysis(format: .unknown, findings: findings)
        }
        // Whatever the content decompresses further (nested streams, archive members) comes out of what is left of
        // the budget, so that the bytes held at once stay within it however deep the nesting.
        var rest = budget
        rest.maxInflatedBytes = max(0, budget.maxInflatedBytes - result.data.count)
        var inner = StaticScanner.analyse(result.data, name: name, budget: rest, depth: depth + 1)
        for i in inner.findings.indices {
            inner.findings[i].evidence.details.insert(("compression", kind.rawValue), at: 0)
        }
        // A weak header (zlib, lzma) over bytes that only decode part-way into nothing known is most likely no
        // stream at all: noted, not held against the file.
        if weak && inner.format == .unknown && inner.compression.isEmpty {
            for i in findings.indices
            where findings[i].rule == "compressed.corrupt" || findings[i].rule == "compressed.truncated" {
                findings[i].severity = .low
            }
        }
        inner.findings = findings + inner.findings
        inner.compression.insert(kind.rawValue, at: 0)
        if inner.format == .unknown && inner.compression.count == 1 && inner.findings.count == findings.count {
            inner.findings.append(
                Finding(
                    rule: "compressed.unrecognised-content", severity: .low,
                    message:
                        "the \(kind.rawValue) stream decompresses to \(result.data.count) bytes of no format Airlock knows",
                    evidence: Evidence(details: [("compression", kind.rawValue)])))
        }
        return inner
    }

    /// Whether a name says the file is a model or a compressed stream (`model.pkl.xz`, `clf.joblib`, `x.lzma`): then
    /// a weak header (zlib, lzma) that does not decode is a loader's input that Airlock could not read, not noise.
    static func claimsModel(_ name: String) -> Bool {
        let base = (name.split(separator: "/").last.map(String.init) ?? name).lowercased()
        let claims: Set<Substring> = [
            "pkl", "pickle", "joblib", "pt", "pth", "ckpt", "sav", "npy", "npz", "lzma", "xz", "z", "zlib", "gz",
            "bz2", "zst", "lz4",
        ]
        return base.split(separator: ".").dropFirst().contains { claims.contains($0) }
    }

    /// The stream's own findings: what it is (info), and what was wrong with it.
    static func streamFindings(_ result: Decompressed, kind: Compression, compressedSize: Int, budget: ScanBudget)
        -> [Finding]
    {
        let sizes: [(String, String)] = [
            ("compression", kind.rawValue), ("compressed", String(compressedSize)),
            ("decompressed", String(result.data.count)), ("streams", String(result.streams)),
        ]
        var out = [
            Finding(
                rule: "compressed.stream", severity: .info,
                message:
                    "a \(kind.rawValue) stream of \(compressedSize) bytes: its \(result.data.count) decompressed bytes are analysed as the file's content",
                evidence: Evidence(details: sizes))
        ]
        if result.overLimit {
            out.append(
                Finding(
                    rule: "compressed.bomb", severity: .high,
                    message:
                        "the \(kind.rawValue) stream decompresses past the limit of \(budget.maxInflatedBytes) bytes: only its first \(budget.maxInflatedBytes) bytes were analysed",
                    evidence: Evidence(details: sizes + [("limit", String(budget.maxInflatedBytes))])))
        } else if UInt64(result.data.count) >= ZipLimits.bombMinimumBytes
            && UInt64(result.data.count) / UInt64(max(result.consumed, 1)) > ZipLimits.bombRatio
        {
            out.append(
                Finding(
                    rule: "compressed.bomb", severity: .high,
                    message:
                        "the \(kind.rawValue) stream decompresses \(result.consumed) bytes to \(result.data.count) (more than \(ZipLimits.bombRatio) times)",
                    evidence: Evidence(details: sizes)))
        } else if !result.complete && result.data.count > 0 {
            let why = result.failure ?? "the data ends before the stream does"
            out.append(
                Finding(
                    rule: result.failure == nil ? "compressed.truncated" : "compressed.corrupt", severity: .medium,
                    message:
                        "the \(kind.rawValue) stream stops after \(result.data.count) decompressed bytes (\(why)): what came out before was analysed, and a loader fails there",
                    evidence: Evidence(offset: result.consumed, details: sizes)))
        }
        if result.complete && result.consumed < compressedSize {
            let trailing = compressedSize - result.consumed
            out.append(
                Finding(
                    rule: "compressed.trailing-data", severity: .medium,
                    message:
                        "\(trailing) bytes follow the end of the \(kind.rawValue) data: loaders ignore them (or fail on them), and they are not analysed",
                    evidence: Evidence(offset: result.consumed, details: sizes + [("trailing", String(trailing))])))
        }
        return out
    }
}
