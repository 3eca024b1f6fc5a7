/// One regular file of a tar archive: its name (after GNU long-name and pax `path` records) and where its bytes are.
public struct TarMember: Sendable {
    /// The member's name, as Python's tarfile reports it.
    public var name: String
    /// Offset of its data in the archive.
    public var offset: Int
    /// Its size.
    public var size: Int
}

/// A bounded ustar / pax / GNU tar reader: 512-byte headers checked by their checksum, sizes in octal or GNU
/// base-256, GNU `L`/`K` long names, pax `x` records (`path`, `size`) and `g` globals. Regular files are listed with
/// where their data is (no copy); directories, links and devices are skipped; what cannot be read is an
/// observation. pandas' `compression="tar"` writes one of these, and the legacy PyTorch format is one.
public struct TarArchive: Sendable {
    /// The regular files, in archive order.
    public var members: [TarMember] = []
    /// What was odd: `tar.truncated`, `tar.bad-header`, `tar.sparse`, `tar.too-many-members`, `tar.path-traversal`.
    public var observations: [Observation] = []

    /// Most headers read.
    public static let maxHeaders = 100_000
    /// Largest pax or GNU long-name record read (and most bytes of global pax records in all).
    public static let maxRecordBytes = 1 << 20
    /// Most extension headers (pax, GNU long names) before one member: Python recurses on each (three frames) and
    /// stops near 330; their records are bounded in all to 16 MiB.
    static let maxChain = 400

    /// Whether `view` starts with what Python's `tarfile.open` reads as a header: every numeric field parses and the
    /// checksum matches (torch.load tries any file as a legacy tar this way; no magic is needed).
    public static func looks(_ view: ByteView) -> Bool {
        guard view.count >= 512, let block = view.bytes(0, 512) else { return false }
        if case .header = parse(block) { return true }
        return false
    }

    /// One header block as `TarInfo.frombuf` reads it.
    struct Header {
        var name: String
        var size: Int
        var type: UInt8
        var linkname: String
        var canonical: Bool
        var sparseExtended = false
        var origSize = 0
    }

    enum Parsed {
        case header(Header)
        case end  // an all-zero block
        case invalid
    }

    /// `frombuf`: the checksum (`calc_chksums`, unsigned or signed) and every numeric field must parse.
    static func parse(_ buf: [UInt8]) -> Parsed {
        guard buf.count == 512 else { return .invalid }
        if buf.allSatisfy({ $0 == 0 }) { return .end }
        guard let check = TarNumbers.nti(Array(buf[148..<156])) else { return .invalid }
        var unsigned = 256, signed = 256
        for i in 0..<512 where i < 148 || i >= 156 {
            unsigned += Int(buf[i])
            signed += Int(Int8(bitPattern: buf[i]))
        }
        guard check.value == unsigned || check.value == signed else { return .invalid }
        var canonical = check.canonical && buf[148] < 0x80  // libarchive reads the checksum in octal only
        var size = 0
        for (offset, length) in [(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (329, 8), (337, 8)] {
            guard let f = TarNumbers.nti(Array(buf[offset..<(offset + length)])) else { return .invalid }
            if offset == 124 {
                size = f.value
                canonical = canonical && f.canonical
            }
        }
        var type = buf[156]
        var name = TarNumbers.nts(buf[0..<100])
        if type == 0 && name.hasSuffix("/") { type = dirType }
        var header = Header(
            name: name, size: size, type: type, linkname: TarNumbers.nts(buf[157..<257]), canonical: canonical)
        if type == UInt8(ascii: "S") {
            header.sparseExtended = buf[482] != 0
            guard let orig = TarNumbers.nti(Array(buf[483..<495])) else { return .invalid }
            header.origSize = orig.value
        }
        if type == dirType { name = String(name.reversed().drop { $0 == "/" }.reversed()) }
        let prefix = TarNumbers.nts(buf[345..<500])
        if !prefix.isEmpty && !gnuTypes.contains(type) { name = prefix + "/" + name }
        header.name = name
        return .header(header)
    }

    static let dirType = UInt8(ascii: "5")
    static let gnuTypes: Set<UInt8> = [UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "S")]
    static let regularTypes: Set<UInt8> = [0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "S")]
    static let supportedTypes: Set<UInt8> = regularTypes.union(gnuTypes).union(Array("123456".utf8))

    /// Whether Python reads data for this type (`isreg() or type not in SUPPORTED_TYPES`): its data is skipped, and
    /// `extractfile` returns it as a file.
    static func hasData(_ type: UInt8) -> Bool { regularTypes.contains(type) || !supportedTypes.contains(type) }

    static func block(_ n: Int) -> Int {
        guard n > 0 else { return 0 }
        let (p, o) = n.addingReportingOverflow(511)
        return o ? Int.max / 512 * 512 : p / 512 * 512
    }

    /// An extension header waiting for the header it applies to.
    enum Pending {
        case longName(String)
        case longLink(String)
        case pax([String: String])
    }

    /// One entry of the archive, after its extension headers.
    struct Entry {
        var name: String
        var type: UInt8
        var linkname: String
        var dataStart: Int
        var size: Int
    }

    /// Reads the archive's headers as CPython's `TarFile.next` does (`_proc_member`, `_proc_pax`, `_proc_gnulong`,
    /// `_apply_pax_info`, global headers). Never throws: what cannot be read ends the walk with an observation.
    public static func read(_ view: ByteView) -> TarArchive {
        var archive = TarArchive()
        var sink = ObservationSink()
        var divergences: [String] = []
        func diverge(_ why: String) {
            if divergences.count < 8 && !divergences.contains(why) { divergences.append(why) }
        }
        var entries: [Entry] = []
        var globals: [String: String] = [:]
        var globalBytes = 0
        var offset = 0
        var headers = 0
        // The scan's deadline, asked every 4096 headers: a walk it stops is reported as an error by the scanner.
        let deadline = ScanDeadline.current
        var members = 0
        walk: while offset >= 0, offset < view.count {
            members += 1
            if members & 0xFFF == 0, deadline?.stopped() != nil { break walk }
            var pending: [Pending] = []
            var pendingBytes = 0
            var pos = offset
            var entry: Entry
            var next: Int
            // One member: its extension headers, then the header they apply to.
            while true {
                guard pending.count <= maxChain else {
                    sink.add(
                        "tar.bad-header", "more than \(maxChain) extension headers in a row: the walk stops there",
                        Evidence(offset: pos))
                    break walk
                }
                headers += 1
                guard headers <= maxHeaders else {
                    sink.add(
                        "tar.too-many-members", "only the first \(maxHeaders) headers were read", Evidence(offset: pos))
                    break walk
                }
                guard let raw = view.bytes(pos, 512) else {
                    if !pending.isEmpty {
                        sink.add(
                            "tar.truncated", "the archive ends inside a header at offset \(pos)", Evidence(offset: pos))
                    }
                    break walk
                }
                guard case .header(let h) = parse(raw) else {
                    if case .end = parse(raw), pending.isEmpty { break walk }
                    sink.add(
                        "tar.bad-header",
                        "the header at offset \(pos) is not one Python's tarfile reads (checksum or a number): the walk stops there",
                        Evidence(offset: pos))
                    break walk
                }
                if !h.canonical {
                    diverge(
                        "a numeric field Python reads and GNU tar would not (sign, '_', '0o', tabs, base-256 checksum or a negative number)"
                    )
                }
                let dataStart = pos + 512
                switch h.type {
                case UInt8(ascii: "L"), UInt8(ascii: "K"):
                    let bytes = record(view, dataStart, h.size)
                    guard let bytes else {
                        sink.add(
                            "tar.bad-header", "the long-name record at offset \(pos) is too large",
                            Evidence(offset: pos))
                        break walk
                    }
                    let text = TarNumbers.nts(bytes[...])
                    pendingBytes += bytes.count
                    guard pendingBytes <= 16 * maxRecordBytes else {
                        sink.add(
                            "tar.bad-header", "extension headers in a row hold more than 16 MiB: the walk stops there",
                            Evidence(offset: pos))
                        break walk
                    }
                    pending.append(h.type == UInt8(ascii: "L") ? .longName(text) : .longLink(text))
                    pos = dataStart + block(h.size)
                    continue
                case UInt8(ascii: "x"), UInt8(ascii: "X"), UInt8(ascii: "g"):
                    guard let bytes = record(view, dataStart, h.size), let records = pax(bytes) else {
                        sink.add(
                            "tar.bad-header",
                            "the pax header at offset \(pos) is not one Python's tarfile reads: the walk stops there",
                            Evidence(offset: pos))
                        break walk
                    }
                    if records.keys.contains(where: { $0.hasPrefix("GNU.sparse.") }) {
                        diverge("a GNU sparse pax member, whose map and holes are not re-assembled as Python does")
                    }
                    if h.type == UInt8(ascii: "g") {
                        for (k, v) in records {
                            globalBytes += k.utf8.count + v.utf8.count
                            guard globalBytes <= maxRecordBytes else {
                                sink.add(
                                    "tar.bad-header",
                                    "global pax headers past \(maxRecordBytes) bytes: the walk stops there",
                                    Evidence(offset: pos))
                                break walk
                            }
                            globals[k] = v
                        }
                        if records["size"] != nil || records["GNU.sparse.size"] != nil
                            || records["GNU.sparse.realsize"] != nil
                        {
                            diverge("a global pax header sets the size of every later member")
                        }
                    } else {
                        pendingBytes += bytes.count
                        guard pendingBytes <= 16 * maxRecordBytes else {
                            sink.add(
                                "tar.bad-header", "pax headers in a row hold more than 16 MiB: the walk stops there",
                                Evidence(offset: pos))
                            break walk
                        }
                        if h.type == UInt8(ascii: "X") && records["size"] != nil {
                            diverge("a Solaris 'X' header sets a member's size")
                        }
                        pending.append(.pax(records))
                    }
                    pos = dataStart + block(h.size)
                    continue
                case UInt8(ascii: "S"):
                    var dataAt = dataStart
                    var extended = h.sparseExtended
                    var blocks = 0
                    while extended {
                        blocks += 1
                        guard blocks <= 10_000, let b = view.byte(at: dataAt + 504) else {
                            sink.add(
                                "tar.truncated", "a sparse map at offset \(pos) does not end", Evidence(offset: pos))
                            break walk
                        }
                        extended = b != 0
                        dataAt += 512
                    }
                    entry = Entry(name: h.name, type: h.type, linkname: h.linkname, dataStart: dataAt, size: h.size)
                    next = dataAt + block(h.size)
                    sink.add(
                        "tar.sparse", "\(h.name) is a GNU sparse file: its data is read as stored, without its holes",
                        Evidence(offset: pos, member: h.name))
                default:
                    entry = Entry(name: h.name, type: h.type, linkname: h.linkname, dataStart: dataStart, size: h.size)
                    next = dataStart + (hasData(h.type) ? block(h.size) : 0)
                    if !hasData(h.type) && h.size > 0 {
                        diverge("a directory, link or device declares data that Python reads as the next header")
                    }
                    apply(globals, to: &entry)
                }
                break
            }
            // Extension headers apply from the innermost out: the first one read wins.
            for p in pending.reversed() {
                switch p {
                case .longName(let n):
                    entry.name = entry.type == dirType ? String(n.reversed().drop { $0 == "/" }.reversed()) : n
                case .longLink(let n): entry.linkname = n
                case .pax(let records):
                    // Python applies the globals and the record together (a copy of the globals, updated).
                    apply(globals, to: &entry)
                    apply(records, to: &entry)
                    if records["size"] != nil || globals["size"] != nil {
                        next = entry.dataStart + (hasData(entry.type) ? block(entry.size) : 0)
                    }
                }
            }
            if hasData(entry.type) && block(entry.size) != next - entry.dataStart {
                diverge("\(entry.name)'s data (\(entry.size) bytes) is not what a reader skips to the next header")
            }
            guard entry.size >= 0, next >= offset + 512 else {
                sink.add(
                    "tar.bad-header", "\(entry.name) declares a negative size: the walk stops there",
                    Evidence(offset: offset, member: entry.name))
                break
            }
            entries.append(entry)
            offset = next
        }
        archive.members = resolve(entries, &sink, view)
        if !divergences.isEmpty {
            sink.add(
                "tar.reader-divergence",
                "Python's tarfile (torch.load, pandas) reads this archive differently from GNU tar or libarchive: "
                    + divergences.joined(separator: "; ") + ". It was read as Python reads it, except where said")
        }
        archive.observations = sink.finished()
        return archive
    }

    /// A pax or long-name record: the padded block Python reads, cut at the end of the file.
    static func record(_ view: ByteView, _ start: Int, _ size: Int) -> [UInt8]? {
        let n = min(block(size), max(0, view.count - start))
        guard n <= maxRecordBytes else { return nil }
        return view.bytes(start, n) ?? []
    }

    /// `_apply_pax_info`: `path`, `linkpath`, `size` (`int()`, 0 when it does not parse), `GNU.sparse.name`.
    static func apply(_ records: [String: String], to entry: inout Entry) {
        for (key, value) in records {
            switch key {
            case "GNU.sparse.name": entry.name = value
            // GNU.sparse.size / realsize are the size with holes: the member is read as stored (see tar.sparse).
            case "size": entry.size = TarNumbers.paxInt(value) ?? 0
            case "path": entry.name = String(value.reversed().drop { $0 == "/" }.reversed())
            case "linkpath": entry.linkname = value
            default: break
            }
        }
    }

    /// Members with data: regular files and unknown types, and links read as their targets (a hard link as the
    /// last member of that name before it, a symbolic link as the last one in the archive), as `extractfile` does.
    static func resolve(_ entries: [Entry], _ sink: inout ObservationSink, _ view: ByteView) -> [TarMember] {
        var byName: [String: Int] = [:]
        var lastBefore: [Int: Int] = [:]  // hard link index → target index
        for (i, e) in entries.enumerated() {
            if e.type == UInt8(ascii: "1"), let t = byName[TarNumbers.normpath(e.linkname)] { lastBefore[i] = t }
            byName[TarNumbers.normpath(e.name)] = i
        }
        var members: [TarMember] = []
        var total = 0
        for (i, e) in entries.enumerated() {
            var target = i
            var hops = 0
            while hops < 16, !hasData(entries[target].type) {
                let t = entries[target]
                hops += 1
                if t.type == UInt8(ascii: "1"),
                    let j = target == i ? lastBefore[i] : byName[TarNumbers.normpath(t.linkname)]
                {
                    target = j
                } else if t.type == UInt8(ascii: "2") {
                    let dir = t.name.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(
                        separator: "/")
                    let path = [dir, t.linkname].filter { !$0.isEmpty }.joined(separator: "/")
                    guard let j = byName[TarNumbers.normpath(path)] else { break }
                    target = j
                } else {
                    break
                }
            }
            let t = entries[target]
            guard hasData(t.type) else { continue }
            if e.name.hasPrefix("/") || e.name.split(separator: "/").contains("..") {
                sink.add(
                    "tar.path-traversal", "\(e.name) would be extracted outside the target folder",
                    Evidence(member: e.name))
            }
            if t.size > view.count - t.dataStart {
                sink.add(
                    "tar.truncated",
                    "\(e.name) declares \(t.size) bytes but the archive ends first: it was read up to the end",
                    Evidence(offset: t.dataStart, member: e.name, details: [("declared", String(t.size))]))
            }
            let size = max(0, min(t.size, view.count - t.dataStart))
            // Links and global sizes can make members overlap: the bytes listed in all stay bounded.
            total += size
            guard total <= maxListedBytes(view.count) else {
                sink.add(
                    "tar.overlapping-data",
                    "the members' data (links, sizes that run past the next header) adds up to more than \(maxListedBytes(view.count)) bytes: \(e.name) and the members after it are not analysed",
                    Evidence(member: e.name))
                break
            }
            members.append(TarMember(name: e.name, offset: min(t.dataStart, view.count), size: size))
        }
        return members
    }

    /// Most member bytes listed in all: four times the archive, and 64 MiB more.
    static func maxListedBytes(_ count: Int) -> Int { min(count, Int.max / 8) * 4 + (64 << 20) }

    /// pax records as Python 3.11 reads them: `LENGTH keyword=value\n` from the start of the block to its first NUL;
    /// nil where Python raises (a malformed record).
    static func pax(_ data: [UInt8]) -> [String: String]? {
        var out: [String: String] = [:]
        var pos = 0
        var records = 0
        while pos < data.count, data[pos] != 0 {
            records += 1
            guard records <= 100_000 else { return nil }
            var j = pos
            var length = 0
            while j < data.count, j - pos < 20, data[j] >= 0x30 && data[j] <= 0x39 {
                length = min(length * 10 + Int(data[j] - 0x30), Int.max / 20)
                j += 1
            }
            guard j > pos, j < data.count, data[j] == 0x20, length >= 5, length <= data.count - pos else { return nil }
            let end = pos + length - 1
            guard data[end] == 0x0A, j + 1 <= end else { return nil }
            let kv = data[(j + 1)..<end]
            guard let eq = kv.firstIndex(of: UInt8(ascii: "=")), eq > kv.startIndex else { return nil }
            let key = String(decoding: kv[..<eq], as: UTF8.self)
            out[key] = String(decoding: kv[(eq + 1)...], as: UTF8.self)
            pos += length
        }
        return out
    }
}
