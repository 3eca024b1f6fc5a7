import AirlockNames

/// A ZIP archive read by its central directory, the way PyTorch's reader does (`torch.load` →
/// `PyTorchFileReader` → miniz 3.0.2), with every place where another reader — Python's `zipfile`, a reader that
/// follows local headers, a forward-scanning reader — would see something else reported as an `Observation`.
///
/// What miniz 3.0.2 (as vendored and built by PyTorch) does, and this reader models:
/// - The end record is the *last* `PK\5\6` in the final 64 KiB + 22 bytes with at least 22 bytes after it
///   (Python's `zipfile` picks the same one).
/// - zip64: a locator right before the end record; the zip64 end record is read *where the locator points*
///   (Python reads the 56 bytes right before the locator instead and ignores the pointer).
/// - Offsets are absolute: miniz applies no shift for data prepended to the archive. Python's `zipfile` adds
///   `concat = (end of directory) − (directory offset + size)` to every offset (`zip.offset-shift`).
/// - Exactly the declared number of central records is read (Python reads records until the directory's declared
///   size is used up, so records past the count are seen by Python only: `hiddenEntries`).
/// - Names are looked up case-insensitively (ASCII) by binary search over an unstable heap sort of the names, so
///   with duplicate names the record PyTorch gets is neither reliably the first nor the last: `minizIndex(of:)`
///   replays the exact algorithm. Python's `zipfile` takes the last record with the name.
/// - CRC-32 is *not* checked: PyTorch builds miniz with `MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS`. Python checks it.
/// - Extraction refuses encrypted members and methods other than 0 and 8, reads the local header only for its name
///   and extra lengths, and fails when the inflated size differs from the declared one.
public struct ZipArchive: Sendable {
    /// The central records PyTorch's miniz reads: the first `declaredEntryCount` (fewer if the directory ends early).
    public var entries: [ZipEntry]
    /// Records after the declared count but inside the directory's declared size: Python's `zipfile` lists them,
    /// miniz does not. Scan them too.
    public var hiddenEntries: [ZipEntry]
    /// What was noticed, with stable kinds (`zip.*`).
    public var observations: [Observation]
    /// Bytes before the first local header (or before the central directory when there are no entries).
    public var prefixBytes: Int
    /// Bytes after the end record and its comment.
    public var trailingBytes: Int
    /// The archive comment (as far as it is present).
    public var comment: [UInt8]
    /// Offset of the end-of-central-directory record used.
    public var endRecordOffset: Int
    /// Offset of the central directory used (after any base shift).
    public var centralDirectoryOffset: Int
    /// Entry count declared by the end record (the zip64 one when present).
    public var declaredEntryCount: UInt64
    /// Shift added to every offset: 0 as miniz reads; Python's `concat` only when the directory is not where the
    /// end record says but is where Python would look.
    public var baseOffset: Int
    /// Why miniz 3.0.2 (so `torch.load`) would refuse to open the archive or one of its members; nil when it opens.
    public var minizRefusal: String?
    /// Indices into `entries` in miniz's sorted order (for lookups).
    var minizOrder: [Int]

    /// Reads the archive. Throws only when no end record with a usable central directory exists; everything else
    /// is an observation. Allocation is bounded by what is present in `view`, never by declared counts, and by
    /// `budget.maxEntries` records.
    public static func read(_ view: ByteView, budget: ScanBudget = .standard) throws(FormatError) -> ZipArchive {
        var reader = ZipReader(view: view, budget: budget)
        return try reader.read()
    }

    /// The entry PyTorch gets for `name` (miniz's case-insensitive binary search), or nil.
    public func minizEntry(named name: String) -> ZipEntry? {
        minizIndex(of: Array(name.utf8)).map { entries[$0] }
    }

    /// Index into `entries` of the record miniz's `mz_zip_reader_locate_file(name, nil, 0)` returns, or nil.
    public func minizIndex(of name: [UInt8]) -> Int? {
        MinizLookup.locate(name, count: entries.count, order: minizOrder) { entries[$0].nameBytes }
    }

    /// The entry Python's `zipfile` gets for `name`: the last record (of `entries` then `hiddenEntries`) whose name,
    /// cut at the first NUL as `ZipInfo` does, equals `name`.
    public func pythonEntry(named name: String) -> ZipEntry? {
        let wanted = Array(name.utf8)
        return (entries + hiddenEntries).last { pythonName($0.nameBytes) == wanted }
    }
}

func pythonName(_ bytes: [UInt8]) -> [UInt8] {
    if let nul = bytes.firstIndex(of: 0) { return Array(bytes[..<nul]) }
    return bytes
}

/// What one end record says, with zip64 values applied.
struct EndRecord {
    var offset: Int
    var diskNumber: UInt32
    var directoryDisk: UInt32
    var countOnDisk: UInt64
    var count: UInt64
    var directorySize: UInt64
    var directoryOffset: UInt64
    var commentLength: Int
    var zip64RecordOffset: Int?
    /// Where Python expects the zip64 end record (right before the locator), when a locator exists.
    var pythonZip64RecordOffset: Int?
    var refusals: [String] = []
    var notes: [(String, String)] = []
}

struct ZipReader {
    let view: ByteView
    let budget: ScanBudget
    var sink = ObservationSink()
    var refusals: [String] = []

    init(view: ByteView, budget: ScanBudget) {
        self.view = view
        self.budget = budget
    }

    func u16(_ at: Int) -> UInt16? { view.le(UInt16.self, at: at) }
    func u32(_ at: Int) -> UInt32? { view.le(UInt32.self, at: at) }
    func u64(_ at: Int) -> UInt64? { view.le(UInt64.self, at: at) }

    mutating func refuse(_ why: String) {
        if refusals.count < 16 { refusals.append(why) }
    }

    /// Offsets of `PK\5\6` in the search window with a whole record after them, last first.
    func endCandidates() -> [Int] {
        let n = view.count
        guard n >= ZipFormat.endSize else { return [] }
        var out: [Int] = []
        let lowest = max(0, n - ZipFormat.endSearchWindow)
        var p = n - ZipFormat.endSize
        while p >= lowest {
            if view.byte(at: p) == 0x50, u32(p) == ZipFormat.endSignature { out.append(p) }
            p -= 1
        }
        return out
    }

    /// Parses the end record at `offset`, following a zip64 locator as miniz 3.0.2 does.
    func endRecord(at offset: Int) -> EndRecord? {
        guard u32(offset) == ZipFormat.endSignature, let disk = u16(offset + 4), let cdDisk = u16(offset + 6),
            let onDisk = u16(offset + 8), let total = u16(offset + 10), let size = u32(offset + 12),
            let cdOffset = u32(offset + 16), let commentLength = u16(offset + 20)
        else { return nil }
        var rec = EndRecord(
            offset: offset, diskNumber: UInt32(disk), directoryDisk: UInt32(cdDisk),
            countOnDisk: UInt64(onDisk), count: UInt64(total), directorySize: UInt64(size),
            directoryOffset: UInt64(cdOffset), commentLength: Int(commentLength))
        let locator = offset - ZipFormat.locatorSize
        guard offset >= ZipFormat.locatorSize + ZipFormat.end64Size, u32(locator) == ZipFormat.locatorSignature,
            let pointer = u64(locator + 8), let totalDisks = u32(locator + 16)
        else { return rec }
        let pythonAt = locator - ZipFormat.end64Size
        rec.pythonZip64RecordOffset = u32(pythonAt) == ZipFormat.end64Signature ? pythonAt : nil
        var at: Int? = nil
        if let p = Int(exactly: pointer), p >= 0, p <= view.count - ZipFormat.end64Size,
            u32(p) == ZipFormat.end64Signature
        {
            at = p
        } else if let p = rec.pythonZip64RecordOffset {
            rec.refusals.append("zip64 locator points to \(pointer), where there is no zip64 end record")
            at = p
        }
        guard let at, let recordSize = u64(at + 4), let disk64 = u32(at + 16), let cdDisk64 = u32(at + 20),
            let onDisk64 = u64(at + 24), let total64 = u64(at + 32), let size64 = u64(at + 40),
            let cdOffset64 = u64(at + 48)
        else { return rec }
        rec.zip64RecordOffset = at
        if recordSize < UInt64(ZipFormat.end64Size - 12) {
            rec.refusals.append("zip64 end record size \(recordSize) is too small")
        }
        if totalDisks != 1 { rec.refusals.append("zip64 locator declares \(totalDisks) disks") }
        if total64 > UInt64(UInt32.max) { rec.refusals.append("zip64 entry count \(total64) exceeds miniz's limit") }
        if size64 > UInt64(UInt32.max) { rec.refusals.append("zip64 directory size \(size64) exceeds miniz's limit") }
        // Readers without zip64 use the 32-bit fields; they only agree when those are saturated or equal.
        if total != 0xFFFF && UInt64(total) != total64 { rec.notes.append(("count32", String(total))) }
        if size != 0xFFFF_FFFF && UInt64(size) != size64 { rec.notes.append(("directorySize32", String(size))) }
        if cdOffset != 0xFFFF_FFFF && UInt64(cdOffset) != cdOffset64 {
            rec.notes.append(("directoryOffset32", String(cdOffset)))
        }
        rec.diskNumber = disk64
        rec.directoryDisk = cdDisk64
        rec.countOnDisk = onDisk64
        rec.count = total64
        rec.directorySize = size64
        rec.directoryOffset = cdOffset64
        return rec
    }

    /// Python's `concat`: how far the directory actually ends from where its offset and size say it ends.
    func pythonShift(_ rec: EndRecord) -> Int? {
        var end = rec.offset
        if rec.pythonZip64RecordOffset != nil { end -= ZipFormat.locatorSize + ZipFormat.end64Size }
        guard let off = Int(exactly: rec.directoryOffset), let size = Int(exactly: rec.directorySize) else {
            return nil
        }
        let (sum, o1) = off.addingReportingOverflow(size)
        guard !o1 else { return nil }
        let (shift, o2) = end.subtractingReportingOverflow(sum)
        return o2 ? nil : shift
    }

    /// Where the directory starts (absolute), and the base shift needed, or nil when neither miniz's nor Python's
    /// reading finds a central directory there.
    func directoryStart(_ rec: EndRecord) -> (start: Int, base: Int)? {
        let empty = rec.count == 0 && rec.directorySize == 0
        if let off = Int(exactly: rec.directoryOffset), off >= 0, off <= view.count {
            if u32(off) == ZipFormat.centralSignature || empty { return (off, 0) }
        }
        if let shift = pythonShift(rec), shift != 0, let off = Int(exactly: rec.directoryOffset) {
            let (start, o) = off.addingReportingOverflow(shift)
            if !o, start >= 0, u32(start) == ZipFormat.centralSignature { return (start, shift) }
        }
        return nil
    }

    /// Throws once the scan's deadline (`budget.deadline`) passed: asked every 4096 central records and between the
    /// checks over all records (each linear, at most `budget.maxEntries` records). The scanner's report of a read
    /// stopped this way is an error (`ScanDeadline`), never a verdict on the records read.
    func checkDeadline() throws(FormatError) {
        if let deadline = budget.deadline, let stop = deadline.stopped() {
            throw FormatError(.budget, deadline.message(stop, what: "reading the ZIP central directory"))
        }
    }

    mutating func read() throws(FormatError) -> ZipArchive {
        let n = view.count
        let candidates = endCandidates()
        guard !candidates.isEmpty else {
            throw FormatError(
                .malformed, "no end-of-central-directory record in the last \(ZipFormat.endSearchWindow) bytes")
        }
        // miniz and Python use the last candidate; if its directory is unusable, fall back to an earlier one.
        var chosen: (rec: EndRecord, start: Int, base: Int)? = nil
        for c in candidates {
            guard let rec = endRecord(at: c), let (start, base) = directoryStart(rec) else { continue }
            chosen = (rec, start, base)
            break
        }
        guard let chosen else {
            throw FormatError(.malformed, "no usable central directory (end record at \(candidates[0]))")
        }
        let rec = chosen.rec
        if rec.offset != candidates[0] {
            refuse("the last end record (at \(candidates[0])) has no usable central directory")
        }
        refusals.append(contentsOf: rec.refusals)
        let base = chosen.base
        let cdStart = chosen.start

        // End-record consistency, as miniz checks it.
        if rec.count != rec.countOnDisk {
            refuse("entry count \(rec.count) differs from the count on this disk \(rec.countOnDisk)")
        }
        if (rec.diskNumber | rec.directoryDisk) != 0 && (rec.diskNumber != 1 || rec.directoryDisk != 1) {
            refuse("multi-disk archive (disk \(rec.diskNumber), directory on disk \(rec.directoryDisk))")
        }
        let (minSize, over) = rec.count.multipliedReportingOverflow(by: UInt64(ZipFormat.centralSize))
        if over || rec.directorySize < minSize {
            refuse("directory size \(rec.directorySize) is too small for \(rec.count) entries")
        }
        let cdEndDeclared: Int? = {
            guard let size = Int(exactly: rec.directorySize) else { return nil }
            let (e, o) = cdStart.addingReportingOverflow(size)
            return o ? nil : e
        }()
        if cdEndDeclared.map({ $0 > n }) ?? true { refuse("central directory extends past the end of the file") }
        let cdEnd = min(cdEndDeclared ?? n, n)
        if base != 0 {
            refuse(
                "the central directory is not at its declared offset \(rec.directoryOffset) (only Python's shifted reading finds it)"
            )
        }
        if let shift = pythonShift(rec), shift != 0 {
            sink.add(
                "zip.offset-shift",
                "Python's zipfile adds \(shift) to every offset (the directory does not end where the end record is); PyTorch's miniz uses the offsets as written, so the two can read different directories and members",
                Evidence(
                    offset: rec.offset,
                    details: [
                        ("shift", String(shift)), ("directoryOffset", String(rec.directoryOffset)),
                        ("readAs", base == 0 ? "miniz" : "python"),
                    ]))
        }

        // Central records: by count as miniz does, then on to the declared size as Python does.
        var records: [ZipEntry] = []
        var pos = cdStart
        var limited = false
        while pos < cdEnd {
            guard pos <= cdEnd - ZipFormat.centralSize, u32(pos) == ZipFormat.centralSignature else { break }
            if records.count & 0xFFF == 0 { try checkDeadline() }
            if records.count >= budget.maxEntries {
                limited = true
                break
            }
            let counted = UInt64(records.count) < rec.count
            guard
                let (entry, next) = centralRecord(
                    at: pos, index: records.count, base: base, end: cdEnd, counted: counted,
                    thisDisk: rec.diskNumber)
            else { break }
            records.append(entry)
            pos = next
        }
        if limited {
            sink.add(
                "zip.entry-limit",
                "the central directory has more than \(budget.maxEntries) records; the rest were not read",
                Evidence(offset: pos, details: [("limit", String(budget.maxEntries))]))
        }
        let counted = Int(clamping: min(rec.count, UInt64(records.count)))
        let hidden = Array(records[counted...])
        if UInt64(records.count) < rec.count && !limited {
            refuse("the end record declares \(rec.count) entries but the directory holds \(records.count)")
        }
        if (UInt64(records.count) != rec.count && !limited) || rec.count != rec.countOnDisk
            || rec.notes.contains(where: { $0.0 == "count32" })
        {
            var details: [(String, String)] = [
                ("declared", String(rec.count)), ("declaredOnDisk", String(rec.countOnDisk)),
                ("found", String(records.count)),
            ]
            if let c32 = rec.notes.first(where: { $0.0 == "count32" }) { details.append(("declared32", c32.1)) }
            if !hidden.isEmpty {
                details.append(("seenOnlyByPython", hidden.prefix(16).map(\.name).joined(separator: ", ")))
            }
            sink.add(
                "zip.count-mismatch",
                hidden.isEmpty
                    ? "the end record declares \(rec.count) entries but the central directory holds \(records.count)"
                    : "\(hidden.count) central record(s) after the declared count of \(rec.count): Python's zipfile lists them, PyTorch's miniz does not",
                Evidence(offset: rec.offset, details: details))
        }

        // Local headers, against their central records.
        for i in records.indices {
            if i & 0xFFF == 0 { try checkDeadline() }
            checkLocal(&records[i])
        }
        try checkDeadline()

        let minizEntries = Array(records[..<counted])
        let order = MinizLookup.sortedOrder(minizEntries.map(\.nameBytes))
        var archive = ZipArchive(
            entries: minizEntries, hiddenEntries: Array(records[counted...]), observations: [],
            prefixBytes: 0, trailingBytes: 0, comment: [], endRecordOffset: rec.offset,
            centralDirectoryOffset: cdStart, declaredEntryCount: rec.count, baseOffset: base,
            minizRefusal: nil, minizOrder: order)

        checkNames(records, archive: archive)
        try checkDeadline()
        checkMembers(records, counted: counted)
        try checkDeadline()
        checkLayout(records, cdStart: cdStart, cdEnd: cdEnd)
        try checkDeadline()
        checkZip64(records, rec: rec)
        try checkDeadline()

        // Prefix, trailing data, comment.
        let firstLocal =
            records.filter { $0.dataOffset != nil }.compactMap { Int(exactly: $0.localHeaderOffset) }.min() ?? cdStart
        let prefix = min(firstLocal, cdStart)
        archive.prefixBytes = max(0, prefix)
        if prefix > 0 {
            let why =
                ZipDetector.torchTreatsAsZip(view)
                ? "the file starts with a local header that no central record uses: streaming readers see a member the directory does not list"
                : "torch.load checks for PK\\x03\\x04 at offset 0 and loads such a file as a legacy pickle instead, while zip readers still see the archive (self-extracting or polyglot file)"
            sink.add(
                "zip.prefix-data", "\(prefix) bytes before the first local header: \(why)",
                Evidence(offset: 0, details: [("bytes", String(prefix)), ("startsWith", hexPrefix(0, 8))]))
        }
        let commentStart = rec.offset + ZipFormat.endSize
        let commentAvailable = max(0, min(rec.commentLength, n - commentStart))
        archive.comment = view.bytes(commentStart, commentAvailable) ?? []
        let end = commentStart + commentAvailable
        if end < n {
            archive.trailingBytes = n - end
            sink.add(
                "zip.trailing-data", "\(n - end) bytes after the end record and its comment",
                Evidence(offset: end, details: [("bytes", String(n - end)), ("startsWith", hexPrefix(end, 8))]))
        }
        checkOtherEnds(candidates, chosen: rec.offset, records: records)

        if !refusals.isEmpty {
            archive.minizRefusal = refusals[0]
            sink.add(
                "zip.miniz-refuses", "PyTorch's miniz would refuse this archive or a member: \(refusals[0])",
                Evidence(
                    offset: rec.offset, details: refusals.enumerated().map { ("reason\($0.offset + 1)", $0.element) }))
        }
        archive.observations = sink.finished()
        return archive
    }

    func hexPrefix(_ at: Int, _ count: Int) -> String {
        let bytes = view.bytes(at, max(0, min(count, view.count - at))) ?? []
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }

    /// Parses the central record at `pos`; nil when it does not fit in the file at all.
    mutating func centralRecord(
        at pos: Int, index: Int, base: Int, end cdEnd: Int, counted: Bool,
        thisDisk: UInt32
    ) -> (ZipEntry, Int)? {
        guard let flags = u16(pos + 8), let method = u16(pos + 10), let crc = u32(pos + 16),
            let comp32 = u32(pos + 20), let uncomp32 = u32(pos + 24), let nameLength = u16(pos + 28),
            let extraLength = u16(pos + 30), let commentLength = u16(pos + 32), let diskStart = u16(pos + 34),
            let lho32 = u32(pos + 42)
        else { return nil }
        let nameAt = pos + ZipFormat.centralSize
        let extraAt = nameAt + Int(nameLength)
        let next = extraAt + Int(extraLength) + Int(commentLength)
        guard let nameBytes = view.bytes(nameAt, Int(nameLength)) else { return nil }
        let name = FileName(bytes: nameBytes).escaped  // shown losslessly; records are told apart by `nameBytes`
        let extra = view.slice(extraAt, Int(extraLength)) ?? ByteView([])
        let fields = ZipExtra.fields(extra)
        if fields.malformed {
            sink.add(
                "zip.malformed-extra",
                "the central extra field of \(name) does not parse (Python's zipfile rejects it)",
                Evidence(offset: extraAt, member: name))
        }
        var comp = UInt64(comp32), uncomp = UInt64(uncomp32), lho = UInt64(lho32)
        let saturated = comp32 == 0xFFFF_FFFF || uncomp32 == 0xFFFF_FFFF || lho32 == 0xFFFF_FFFF
        if saturated {
            if let z = fields.zip64,
                let values = ZipExtra.zip64Values(
                    z, uncompressed: uncomp32 == 0xFFFF_FFFF,
                    compressed: comp32 == 0xFFFF_FFFF,
                    offset: lho32 == 0xFFFF_FFFF)
            {
                uncomp = values.uncompressed ?? uncomp
                comp = values.compressed ?? comp
                lho = values.offset ?? lho
            } else {
                sink.add(
                    "zip.malformed-extra", "\(name) has 0xFFFFFFFF sizes or offset but no usable zip64 extra field",
                    Evidence(offset: pos, member: name))
                if counted { refuse("\(name): zip64 fields missing") }
            }
        }
        if counted {
            if next > cdEnd { refuse("\(name): central record runs past the directory") }
            if comp != 0xFFFF_FFFF && uncomp != 0xFFFF_FFFF {
                if (method == 0 && comp != uncomp) || (uncomp != 0 && comp == 0) {
                    refuse("\(name): stored sizes disagree (\(comp) compressed, \(uncomp) uncompressed)")
                }
            }
            if diskStart == 0xFFFF || (UInt32(diskStart) != thisDisk && diskStart != 1) {
                refuse("\(name): starts on disk \(diskStart)")
            }
            let (a, o1) = lho.addingReportingOverflow(UInt64(ZipFormat.localSize))
            let (b, o2) = a.addingReportingOverflow(comp)
            if comp != 0xFFFF_FFFF && (o1 || o2 || b > UInt64(view.count)) {
                refuse("\(name): data extends past the end of the file")
            }
            if flags & 0x2000 != 0 { refuse("\(name): central directory encryption (flag bit 13)") }
        }
        // The base shift applies to local header offsets too (Python's reading).
        if base != 0 {
            let shifted =
                base > 0 ? lho.addingReportingOverflow(UInt64(base)) : lho.subtractingReportingOverflow(UInt64(-base))
            lho = shifted.overflow ? UInt64.max : shifted.partialValue
        }
        let entry = ZipEntry(
            name: name, nameBytes: nameBytes, method: method, flags: flags, crc32: crc,
            compressedSize: comp, uncompressedSize: uncomp, localHeaderOffset: lho, dataOffset: nil,
            isZip64: fields.zip64 != nil, index: index, centralHeaderOffset: pos)
        return (entry, next)
    }

    /// Reads the local header of `entry`, sets `dataOffset`, and reports every disagreement with the central record.
    mutating func checkLocal(_ entry: inout ZipEntry) {
        let n = view.count
        let member = entry.name
        guard let lh = Int(exactly: entry.localHeaderOffset), lh <= n - ZipFormat.localSize else {
            sink.add(
                "zip.entry-out-of-bounds", "the local header of \(member) is past the end of the file",
                Evidence(
                    offset: entry.centralHeaderOffset, member: member,
                    details: [("localHeaderOffset", String(entry.localHeaderOffset)), ("fileSize", String(n))]))
            return
        }
        guard u32(lh) == ZipFormat.localSignature, let flags = u16(lh + 6), let method = u16(lh + 8),
            let crc = u32(lh + 14), let comp32 = u32(lh + 18), let uncomp32 = u32(lh + 22),
            let nameLength = u16(lh + 26), let extraLength = u16(lh + 28)
        else {
            sink.add(
                "zip.bad-local-header", "no local header where the central directory says \(member) starts",
                Evidence(offset: lh, member: member, details: [("found", hexPrefix(lh, 4))]))
            return
        }
        let data = lh + ZipFormat.localSize + Int(nameLength) + Int(extraLength)
        entry.dataOffset = UInt64(data)
        let localName = view.bytes(lh + ZipFormat.localSize, Int(nameLength))
        let extra = view.slice(lh + ZipFormat.localSize + Int(nameLength), Int(extraLength))
        let fields = extra.map { ZipExtra.fields($0) }
        if fields?.zip64 != nil { entry.isZip64 = true }
        if localName == nil || extra == nil {
            sink.add(
                "zip.entry-out-of-bounds", "the local header of \(member) runs past the end of the file",
                Evidence(offset: lh, member: member))
        } else if localName != entry.nameBytes {
            sink.add(
                "zip.local-name-mismatch",
                "the local header names \(member) differently (Python's zipfile refuses it; miniz and streaming readers disagree on the name)",
                Evidence(
                    offset: lh, member: member,
                    details: [("localName", FileName(bytes: localName ?? []).escaped)]))
        }
        if flags != entry.flags {
            sink.add(
                "zip.local-flags-mismatch",
                "the local header of \(member) has flags 0x\(String(flags, radix: 16)), the central directory 0x\(String(entry.flags, radix: 16))",
                Evidence(
                    offset: lh, member: member, details: [("local", String(flags)), ("central", String(entry.flags))]))
        }
        if method != entry.method {
            sink.add(
                "zip.local-method-mismatch",
                "the local header of \(member) says method \(method), the central directory \(entry.method)",
                Evidence(
                    offset: lh, member: member, details: [("local", String(method)), ("central", String(entry.method))])
            )
        }
        var comp = UInt64(comp32), uncomp = UInt64(uncomp32)
        if comp32 == 0xFFFF_FFFF || uncomp32 == 0xFFFF_FFFF, let z = fields?.zip64,
            let v = ZipExtra.zip64Values(
                z, uncompressed: uncomp32 == 0xFFFF_FFFF, compressed: comp32 == 0xFFFF_FFFF, offset: false)
        {
            uncomp = v.uncompressed ?? uncomp
            comp = v.compressed ?? comp
        }
        let deferred = flags & 0x0008 != 0 && crc == 0 && comp32 == 0 && uncomp32 == 0
        if !deferred {
            if comp != entry.compressedSize || uncomp != entry.uncompressedSize {
                sink.add(
                    "zip.local-size-mismatch",
                    "the local header of \(member) declares other sizes than the central directory (streaming readers follow the local ones)",
                    Evidence(
                        offset: lh, member: member,
                        details: [
                            ("localCompressed", String(comp)), ("localUncompressed", String(uncomp)),
                            ("centralCompressed", String(entry.compressedSize)),
                            ("centralUncompressed", String(entry.uncompressedSize)),
                        ]))
            }
            if crc != entry.crc32 {
                sink.add(
                    "zip.local-crc-mismatch",
                    "the local header of \(member) declares another CRC-32 than the central directory",
                    Evidence(
                        offset: lh, member: member, details: [("local", String(crc)), ("central", String(entry.crc32))])
                )
            }
        } else if let descriptor = descriptorMatches(entry, at: data), !descriptor {
            sink.add(
                "zip.local-size-mismatch", "the data descriptor after \(member) disagrees with the central directory",
                Evidence(offset: lh, member: member, details: [("source", "data descriptor")]))
        }
        let (end, o) = UInt64(data).addingReportingOverflow(entry.compressedSize)
        if o || end > UInt64(n) {
            sink.add(
                "zip.entry-out-of-bounds", "the data of \(member) extends past the end of the file",
                Evidence(
                    offset: data, member: member,
                    details: [("compressedSize", String(entry.compressedSize)), ("fileSize", String(n))]))
        }
    }

    /// Whether the data descriptor after the data matches the central record (nil when it cannot be read).
    func descriptorMatches(_ entry: ZipEntry, at data: Int) -> Bool? {
        guard let size = Int(exactly: entry.compressedSize) else { return nil }
        let (at0, o) = data.addingReportingOverflow(size)
        guard !o else { return nil }
        var starts = [at0]
        if u32(at0) == ZipFormat.descriptorSignature { starts.insert(at0 + 4, at: 0) }
        guard u32(at0) != nil else { return nil }
        for at in starts {
            guard let crc = u32(at), crc == entry.crc32 else { continue }
            if let c = u32(at + 4), let u = u32(at + 8), UInt64(c) == entry.compressedSize,
                UInt64(u) == entry.uncompressedSize
            {
                return true
            }
            if let c = u64(at + 4), let u = u64(at + 12), c == entry.compressedSize, u == entry.uncompressedSize {
                return true
            }
        }
        return false
    }

    /// Duplicate names, names that escape, names that are not UTF-8.
    mutating func checkNames(_ records: [ZipEntry], archive: ZipArchive) {
        var exact: [[UInt8]: [Int]] = [:]
        var folded: [[UInt8]: [Int]] = [:]
        var pythonLast: [[UInt8]: Int] = [:]
        for r in records {
            pythonLast[pythonName(r.nameBytes)] = r.index
            exact[r.nameBytes, default: []].append(r.index)
            folded[r.nameBytes.map(MinizLookup.lower), default: []].append(r.index)
        }
        for r in records where exact[r.nameBytes]?.first == r.index {
            guard let indices = exact[r.nameBytes], indices.count > 1 else { continue }
            let query = pythonName(r.nameBytes)
            let miniz = archive.minizIndex(of: query).map { String($0) } ?? "none"
            let python = pythonLast[query].map { String($0) } ?? "none"
            sink.add(
                "zip.duplicate-name",
                "\(indices.count) central records are named \(r.name): PyTorch's miniz returns record \(miniz) (binary search over an unstable sort), Python's zipfile the last, \(python)",
                Evidence(
                    offset: r.centralHeaderOffset, member: r.name,
                    details: [
                        ("indices", indices.prefix(16).map(String.init).joined(separator: ",")),
                        ("minizPicks", miniz), ("pythonPicks", python),
                    ]))
        }
        for r in records where folded[r.nameBytes.map(MinizLookup.lower)]?.first == r.index {
            guard let indices = folded[r.nameBytes.map(MinizLookup.lower)] else { continue }
            let distinct = Set(indices.map { records[$0].nameBytes })
            guard distinct.count > 1 else { continue }
            let miniz = archive.minizIndex(of: pythonName(r.nameBytes)).map { String($0) } ?? "none"
            sink.add(
                "zip.duplicate-name-case",
                "names that differ only in ASCII case (\(distinct.count) spellings of \(r.name)): miniz looks names up case-insensitively, so PyTorch may read another member than the one asked for",
                Evidence(
                    offset: r.centralHeaderOffset, member: r.name,
                    details: [
                        ("indices", indices.prefix(16).map(String.init).joined(separator: ",")),
                        ("minizPicks", miniz),
                    ]))
        }
        for r in records {
            if let why = ZipNames.traversal(r.nameBytes) {
                sink.add(
                    "zip.path-traversal",
                    "\(r.name) would be written outside the extraction directory or is ambiguous: \(why)",
                    Evidence(offset: r.centralHeaderOffset, member: r.name, details: [("reason", why)]))
            }
            let utf8 = Array(String(decoding: r.nameBytes, as: UTF8.self).utf8) == r.nameBytes
            let ascii = r.nameBytes.allSatisfy { $0 < 0x80 }
            if !utf8 || (!ascii && r.flags & 0x0800 == 0) {
                sink.add(
                    "zip.non-utf8-name",
                    utf8
                        ? "\(r.name) is not ASCII and the UTF-8 flag is clear: Python's zipfile decodes it as cp437, miniz compares raw bytes"
                        : "the name of record \(r.index) is not valid UTF-8",
                    Evidence(
                        offset: r.centralHeaderOffset, member: r.name,
                        details: [
                            ("utf8Flag", r.flags & 0x0800 != 0 ? "set" : "clear"), ("validUTF8", utf8 ? "yes" : "no"),
                        ]))
            }
        }
    }

    /// Methods, encryption, declared inflation.
    mutating func checkMembers(_ records: [ZipEntry], counted: Int) {
        for r in records {
            if r.method != 0 && r.method != 8 {
                sink.add(
                    "zip.unsupported-method",
                    "\(r.name) uses compression method \(r.method): miniz refuses it (Python's zipfile reads 12 bzip2 and 14 lzma)",
                    Evidence(offset: r.centralHeaderOffset, member: r.name, details: [("method", String(r.method))]))
                if r.index < counted { refuse("\(r.name): compression method \(r.method)") }
            }
            if r.isEncrypted {
                sink.add(
                    "zip.encrypted-flag",
                    "\(r.name) is flagged encrypted: miniz refuses to extract it and Python's zipfile asks for a password, but torch.load(mmap=True) reads storages at the raw record offset regardless",
                    Evidence(offset: r.centralHeaderOffset, member: r.name, details: [("flags", String(r.flags))]))
            }
            let ratio = r.compressedSize == 0 ? r.uncompressedSize : r.uncompressedSize / r.compressedSize
            if r.uncompressedSize > UInt64(budget.maxInflatedBytes)
                || (r.method != 0 && r.uncompressedSize >= ZipLimits.bombMinimumBytes && ratio > ZipLimits.bombRatio)
            {
                sink.add(
                    "zip.bomb", "\(r.name) declares \(r.uncompressedSize) bytes from \(r.compressedSize) compressed",
                    Evidence(
                        offset: r.centralHeaderOffset, member: r.name,
                        details: [
                            ("declaredUncompressed", String(r.uncompressedSize)),
                            ("compressed", String(r.compressedSize)), ("ratio", String(ratio)),
                            ("source", "declared"),
                        ]))
            }
        }
    }

    /// Members whose bytes overlap each other or the central directory.
    mutating func checkLayout(_ records: [ZipEntry], cdStart: Int, cdEnd: Int) {
        struct Span {
            var start: UInt64
            var end: UInt64
            var index: Int
        }
        var spans: [Span] = []
        spans.reserveCapacity(records.count + 1)
        for r in records {
            guard let data = r.dataOffset else { continue }
            let (end, o) = data.addingReportingOverflow(r.compressedSize)
            spans.append(Span(start: r.localHeaderOffset, end: o ? UInt64.max : end, index: r.index))
        }
        spans.append(Span(start: UInt64(cdStart), end: UInt64(max(cdStart, cdEnd)), index: -1))
        spans.sort { ($0.start, $0.end) < ($1.start, $1.end) }
        var reach: Span? = nil
        for s in spans {
            if let r = reach, s.start < r.end {
                let a = r.index >= 0 ? records[r.index].name : "the central directory"
                let b = s.index >= 0 ? records[s.index].name : "the central directory"
                sink.add(
                    "zip.overlapping-entries",
                    "\(b) starts at \(s.start), inside \(a) (which ends at \(r.end)): the same bytes serve twice",
                    Evidence(
                        offset: Int(clamping: s.start), member: s.index >= 0 ? b : a,
                        details: [("other", a), ("otherEnd", String(r.end))]))
            }
            if reach.map({ s.end > $0.end }) ?? true { reach = s }
        }
    }

    mutating func checkZip64(_ records: [ZipEntry], rec: EndRecord) {
        let members = records.filter(\.isZip64)
        guard rec.zip64RecordOffset != nil || !members.isEmpty else { return }
        var details: [(String, String)] = [("zip64Members", String(members.count))]
        if let at = rec.zip64RecordOffset { details.append(("zip64EndRecord", String(at))) }
        details += rec.notes
        sink.add(
            "zip.zip64",
            "zip64 structures: \(rec.zip64RecordOffset != nil ? "a zip64 end record" : "no zip64 end record"), \(members.count) member(s) with zip64 fields",
            Evidence(offset: rec.zip64RecordOffset ?? rec.offset, member: members.first?.name, details: details))
        if let miniz = rec.zip64RecordOffset, let python = rec.pythonZip64RecordOffset, miniz != python {
            sink.add(
                "zip.zip64-mismatch",
                "the zip64 locator points to \(miniz) (miniz reads it) but Python's zipfile reads the record right before the locator, at \(python)",
                Evidence(offset: rec.offset, details: [("miniz", String(miniz)), ("python", String(python))]))
        } else if !rec.notes.isEmpty {
            sink.add(
                "zip.zip64-mismatch",
                "the 32-bit end record disagrees with the zip64 end record: readers without zip64 see another directory",
                Evidence(offset: rec.offset, details: rec.notes))
        }
    }

    /// Other end records that a reader could take for the archive's (not inside a member's data).
    mutating func checkOtherEnds(_ candidates: [Int], chosen: Int, records: [ZipEntry]) {
        var others: [Int] = []
        // Only members whose data reaches into the search window can contain a candidate.
        let lowest = UInt64(max(0, view.count - ZipFormat.endSearchWindow))
        var spans: [(UInt64, UInt64)] = records.compactMap { r in
            guard let d = r.dataOffset else { return nil }
            let (end, o) = d.addingReportingOverflow(r.compressedSize)
            let e = o ? UInt64.max : end
            return e > lowest && e > d ? (d, e) : nil
        }
        spans.sort { $0.0 < $1.0 }
        var merged: [(UInt64, UInt64)] = []
        for s in spans {
            if let last = merged.last, s.0 <= last.1 {
                merged[merged.count - 1].1 = max(last.1, s.1)
            } else {
                merged.append(s)
            }
        }
        for c in candidates.prefix(4096) where c != chosen {
            // The last merged span starting at or before c.
            var lo = 0, hi = merged.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if merged[mid].0 <= UInt64(c) { lo = mid + 1 } else { hi = mid }
            }
            let inside = lo > 0 && UInt64(c) < merged[lo - 1].1
            guard !inside, let other = endRecord(at: c), directoryStart(other) != nil else { continue }
            others.append(c)
        }
        guard !others.isEmpty else { return }
        sink.add(
            "zip.multiple-eocd",
            "\(others.count + 1) end-of-central-directory records: miniz and Python take the last, other readers may take another and see other members",
            Evidence(
                offset: chosen,
                details: [
                    ("used", String(chosen)), ("others", others.prefix(16).map(String.init).joined(separator: ",")),
                ]))
    }
}

/// Thresholds for `zip.bomb`.
public enum ZipLimits {
    /// Declared or actual inflation ratios above this are a bomb when the size is also above `bombMinimumBytes`.
    public static let bombRatio: UInt64 = 100
    /// Smallest inflated size reported as a bomb by ratio.
    public static let bombMinimumBytes: UInt64 = 10 << 20
}

/// Extra fields (`id`, `size`, data).
enum ZipExtra {
    struct Fields {
        var zip64: ByteView?
        var malformed = false
    }

    static func fields(_ extra: ByteView) -> Fields {
        var out = Fields()
        var p = 0
        while p < extra.count {
            guard let id = extra.le(UInt16.self, at: p), let size = extra.le(UInt16.self, at: p + 2),
                let data = extra.slice(p + 4, Int(size))
            else {
                // Trailing padding shorter than a header is common (alignment); a header that lies is not.
                if extra.count - p >= 4 {
                    out.malformed = true
                } else if extra.bytes(p, extra.count - p)?.contains(where: { $0 != 0 }) ?? false {
                    out.malformed = true
                }
                break
            }
            if id == ZipFormat.zip64ExtraID && out.zip64 == nil { out.zip64 = data }
            p += 4 + Int(size)
        }
        return out
    }

    /// The zip64 values present for the saturated fields, in the order the format (and miniz, and Python) reads them.
    static func zip64Values(_ data: ByteView, uncompressed: Bool, compressed: Bool, offset: Bool)
        -> (uncompressed: UInt64?, compressed: UInt64?, offset: UInt64?)?
    {
        var p = 0
        var u: UInt64? = nil, c: UInt64? = nil, o: UInt64? = nil
        if uncompressed {
            guard let v = data.le(UInt64.self, at: p) else { return nil }
            u = v
            p += 8
        }
        if compressed {
            guard let v = data.le(UInt64.self, at: p) else { return nil }
            c = v
            p += 8
        }
        if offset {
            guard let v = data.le(UInt64.self, at: p) else { return nil }
            o = v
            p += 8
        }
        return (u, c, o)
    }
}

enum ZipNames {
    /// Why a name escapes an extraction directory or is read differently on another system; nil when it does not.
    static func traversal(_ name: [UInt8]) -> String? {
        if name.first == UInt8(ascii: "/") { return "absolute path" }
        if name.contains(UInt8(ascii: "\\")) { return "backslash (a separator on Windows)" }
        if name.count >= 2, name[1] == UInt8(ascii: ":"),
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(name[0] & 0xDF)
        {
            return "drive letter"
        }
        if name.contains(0) { return "NUL byte (Python's zipfile cuts the name there; miniz does not)" }
        let parts = name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        if parts.contains(where: { $0.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) }) {
            return "'..' component"
        }
        return nil
    }
}
