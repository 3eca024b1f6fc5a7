internal import AirlockFormats
internal import AirlockJSON

/// Legacy Keras HDF5 (`.h5`): the model config is a JSON string attribute of the root group (`model_config`), read
/// by keras with Python's `json.loads`. h5py writes attribute strings contiguously (in the object header or the
/// global heap), so the config is located in the bytes: every `{` followed by a key starts a candidate whose
/// matching brace is found by a bounded scan, and a candidate that parses in Python's dialect is read as
/// `config.json` is. The work is bounded to a linear amount; past it, and whenever no parsed config showed a Lambda,
/// the JSON strings of the whole file are decoded (escapes included) and looked at for Lambda names.
extension KerasFindings {
    /// Most configs read from one file.
    static let maxConfigs = 64
    /// Largest config read.
    static let maxConfigBytes = 64 << 20
    /// Bytes examined by the candidate scans, in all: this many times the file size plus `scanWorkExtra`.
    static let scanWorkFactor = 4
    static let scanWorkExtra = 64 << 20
    /// Bytes looked at between two questions to the scan's deadline (`ScanDeadline.current`): a few ms of work.
    static let strideBytes = 1 << 20

    static func hdf5(_ view: ByteView) -> [Finding] {
        let located = locateConfigs(view)
        var out = located.findings
        var sawLambda = false
        for c in located.configs {
            for var f in config(c.bytes, member: nil) {
                f.evidence.offset = c.offset
                if f.rule == "keras.lambda" { sawLambda = true }
                out.append(f)
            }
        }
        if !sawLambda { out += searchLambda(view) }
        return out
    }

    /// The JSON objects in the file that Python's `json` reads (at most `maxConfigs`, each at most
    /// `maxConfigBytes`), and a finding when the scan stopped early.
    static func locateConfigs(_ view: ByteView) -> (configs: [(offset: Int, bytes: ByteView)], findings: [Finding]) {
        var out: [(Int, ByteView)] = []
        var findings: [Finding] = []
        let (product, over) = view.count.multipliedReportingOverflow(by: scanWorkFactor)
        let workLimit = over ? Int.max : ArchiveScanner.saturatingSum(product, scanWorkExtra)
        var work = 0
        var clock = DeadlineStride(every: strideBytes)
        view.withUnsafeBytes { buf in
            var i = 0
            while i < buf.count {
                // The scans below count into `work`: the deadline is asked every `strideBytes` of it and of `i`.
                if clock.stop(at: ArchiveScanner.saturatingSum(i, work)) { return }
                guard buf[i] == UInt8(ascii: "{") else {
                    i += 1
                    continue
                }
                var k = i + 1
                while k < buf.count, isSpace(buf[k]) { k += 1 }
                guard k < buf.count, buf[k] == UInt8(ascii: "\"") else {
                    i += 1
                    continue
                }
                guard out.count < maxConfigs else {
                    findings.append(
                        Finding(
                            rule: "keras.config-scan-limit", severity: .medium,
                            message:
                                "only the first \(maxConfigs) JSON objects of the HDF5 file were read as Keras configs")
                    )
                    return
                }
                guard work < workLimit else {
                    findings.append(
                        Finding(
                            rule: "keras.config-scan-limit", severity: .medium,
                            message:
                                "the search for the Keras model config stopped after examining \(workLimit) bytes; JSON objects from byte \(i) on were not parsed",
                            evidence: Evidence(offset: i)))
                    return
                }
                let end = matchingBrace(buf, from: i, clock: &clock)
                if clock.deadline?.interrupted != nil { return }
                work = ArchiveScanner.saturatingSum(work, end.scanned)
                if let e = end.end, let slice = view.slice(i, e - i) {
                    work = ArchiveScanner.saturatingSum(work, e - i)
                    let parsed = try? JSON.parse(
                        slice.array, maxDepth: 256, dialect: .python, stop: clock.deadline.map { d in { d.expired } })
                    if clock.deadline?.interrupted != nil { return }
                    if parsed != nil {
                        out.append((i, slice))
                        i = e
                        continue
                    }
                }
                i += 1
            }
        }
        return (out, findings)
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }

    /// The end (one past the closing brace) of the object starting at `start`, found outside strings within
    /// `maxConfigBytes`, or nil; and how many bytes were looked at. A NUL outside a string ends the search.
    static func matchingBrace(
        _ buf: UnsafeRawBufferPointer, from start: Int, clock: inout DeadlineStride
    ) -> (end: Int?, scanned: Int) {
        var depth = 0
        var inString = false
        var j = start
        let limit = min(buf.count, start + maxConfigBytes)
        var nextCheck = start &+ strideBytes
        while j < limit {
            if j >= nextCheck {
                nextCheck = j &+ strideBytes
                if clock.stopped { break }
            }
            let c = buf[j]
            if inString {
                if c == UInt8(ascii: "\\") { j += 1 } else if c == UInt8(ascii: "\"") { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "{") {
                depth += 1
            } else if c == UInt8(ascii: "}") {
                depth -= 1
                if depth == 0 { return (j + 1, j + 1 - start) }
            } else if c == 0 {
                break
            }
            j += 1
        }
        return (nil, min(j, limit) - start + 1)
    }

    /// Strings naming a Lambda layer or its serialized function, as Python's json decodes them.
    static let lambdaWords: Set<String> = ["Lambda", "__lambda__", "function_type", "keras.layers.Lambda"]
    /// Longest string token decoded by `searchLambda` (longer ones are not Lambda names).
    static let maxWordBytes = 32

    /// Every JSON string in the file (each `"` starts one), decoded with its escapes, compared with `lambdaWords`:
    /// `"class_name": "Lambda"` however spelled is critical, another Lambda name high. Linear: each string is read
    /// for at most `maxWordBytes` decoded bytes.
    static func searchLambda(_ view: ByteView) -> [Finding] {
        view.withUnsafeBytes { buf -> [Finding] in
            var classNameEnd = -1
            var found: (offset: Int, word: String, layer: Bool)?
            var clock = DeadlineStride(every: strideBytes)
            var i = 0
            while i < buf.count {
                if clock.stop(at: i) { break }
                defer { i += 1 }
                guard buf[i] == UInt8(ascii: "\"") else { continue }
                guard let (word, end) = decodeWord(buf, from: i) else { continue }
                if word == "class_name" {
                    classNameEnd = end
                    continue
                }
                guard lambdaWords.contains(word) else { continue }
                let layer =
                    word != "function_type" && classNameEnd >= 0 && classNameEnd <= i && onlyColon(buf, classNameEnd, i)
                if found == nil || (layer && found?.layer == false) { found = (i, word, layer) }
                if layer { break }
            }
            guard let found else { return [] }
            if found.layer {
                return [
                    Finding(
                        rule: "keras.lambda", severity: .critical,
                        message:
                            "the model config holds a \(found.word) layer: serialized Python code that runs when the model is loaded",
                        evidence: Evidence(offset: found.offset))
                ]
            }
            return [
                Finding(
                    rule: "keras.lambda-text", severity: .high,
                    message:
                        "the file holds the JSON string \"\(found.word)\" outside any config Airlock could read: a Keras Lambda layer runs Python when the model is loaded",
                    evidence: Evidence(offset: found.offset))
            ]
        }
    }

    /// Whether `buf[from..<to]` is JSON whitespace around one colon (a key and its value).
    static func onlyColon(_ buf: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Bool {
        guard to - from <= 64 else { return false }
        var colons = 0
        for j in from..<to {
            if buf[j] == UInt8(ascii: ":") { colons += 1 } else if !isSpace(buf[j]) { return false }
        }
        return colons == 1
    }

    /// The string token starting at the quote at `start`, decoded as Python's json does, and the index after its
    /// closing quote; nil when it is longer than `maxWordBytes` decoded bytes or not a well-formed string.
    static func decodeWord(_ buf: UnsafeRawBufferPointer, from start: Int) -> (String, Int)? {
        var out: [UInt8] = []
        var j = start + 1
        while j < buf.count, out.count <= maxWordBytes {
            let c = buf[j]
            if c == UInt8(ascii: "\"") { return (String(decoding: out, as: UTF8.self), j + 1) }
            if c < 0x20 { return nil }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                j += 1
                continue
            }
            guard j + 1 < buf.count else { return nil }
            let e = buf[j + 1]
            j += 2
            switch e {
            case UInt8(ascii: "u"):
                guard j + 4 <= buf.count, let v = UInt32(String(decoding: buf[j..<(j + 4)], as: UTF8.self), radix: 16),
                    buf[j..<(j + 4)].allSatisfy({
                        ($0 >= 0x30 && $0 <= 0x39) || (($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x66)
                    })
                else { return nil }
                j += 4
                let u = Unicode.Scalar(v) ?? "\u{FFFD}"
                UTF8.encode(u) { out.append($0) }
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            default: return nil
            }
        }
        return nil
    }

    /// Whether `needle` occurs in `view`.
    static func contains(_ view: ByteView, _ needle: [UInt8]) -> Bool {
        view.withUnsafeBytes { buf in
            guard buf.count >= needle.count, let first = needle.first else { return false }
            var clock = DeadlineStride(every: strideBytes)
            var i = 0
            let last = buf.count - needle.count
            while i <= last {
                if clock.stop(at: i) { return false }
                if buf[i] == first {
                    var j = 1
                    while j < needle.count && buf[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return true }
                }
                i += 1
            }
            return false
        }
    }
}
