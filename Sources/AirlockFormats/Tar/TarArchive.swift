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
    /// Largest pax or GNU long-name record read.
    public static let maxRecordBytes = 1 << 20

    /// Whether `view` starts with a tar header: a valid checksum, and the ustar magic or a v7 type flag.
    public static func looks(_ view: ByteView) -> Bool {
        guard view.count >= 512, let header = view.slice(0, 512), checksumOK(header) else { return false }
        if header.slice(257, 5)?.array == Array("ustar".utf8) { return true }
        guard let type = header.byte(at: 156) else { return false }
        return type == 0 || (type >= 0x30 && type <= 0x37)
    }

    static func checksumOK(_ header: ByteView) -> Bool {
        guard let stored = octal(header, 148, 8) else { return false }
        var unsigned = 0, signed = 0
        for i in 0..<512 {
            let b = (i >= 148 && i < 156) ? 0x20 : header.byte(at: i)!
            unsigned += Int(b)
            signed += Int(Int8(bitPattern: b))
        }
        // An all-zero block is the end, not a header.
        return unsigned != 256 && (stored == unsigned || stored == signed)
    }

    /// A numeric field: octal digits (spaces and NULs around them), or GNU base-256 (high bit of the first byte).
    static func octal(_ header: ByteView, _ offset: Int, _ length: Int) -> Int? {
        guard let field = header.bytes(offset, length), let first = field.first else { return nil }
        if first & 0x80 != 0 {
            guard first == 0x80 else { return nil }  // negative base-256
            var value = 0
            for b in field.dropFirst() {
                guard value < Int.max >> 9 else { return nil }
                value = value << 8 | Int(b)
            }
            return value
        }
        var value = 0
        var digits = 0
        for b in field {
            if b == 0x20 || b == 0 {
                if digits > 0 { break } else { continue }
            }
            guard b >= 0x30 && b <= 0x37, value < Int.max >> 4 else { return nil }
            value = value << 3 | Int(b - 0x30)
            digits += 1
        }
        return value
    }

    static func string(_ header: ByteView, _ offset: Int, _ length: Int) -> String {
        let bytes = header.bytes(offset, length) ?? []
        let cut = bytes.firstIndex(of: 0).map { Array(bytes[..<$0]) } ?? bytes
        return String(decoding: cut, as: UTF8.self)
    }

    /// Reads the archive's headers. Never throws: what cannot be read ends the walk with an observation.
    public static func read(_ view: ByteView) -> TarArchive {
        var archive = TarArchive()
        var sink = ObservationSink()
        var offset = 0
        var longName: String?
        var paxPath: String?
        var paxSize: Int?
        var globalPath: String?
        var headers = 0
        while offset <= view.count - 512 {
            guard let header = view.slice(offset, 512) else { break }
            if header.withUnsafeBytes({ $0.allSatisfy { $0 == 0 } }) { break }  // the end-of-archive block
            headers += 1
            guard headers <= maxHeaders else {
                sink.add(
                    "tar.too-many-members", "only the first \(maxHeaders) headers were read", Evidence(offset: offset))
                break
            }
            guard checksumOK(header), let declared = octal(header, 124, 12) else {
                sink.add(
                    "tar.bad-header",
                    "the header at offset \(offset) has a wrong checksum or size: the walk stops there",
                    Evidence(offset: offset))
                break
            }
            let type = header.byte(at: 156) ?? 0
            let size = (type == 0x30 || type == 0 || type == 0x37) ? (paxSize ?? declared) : declared
            let dataStart = offset + 512
            guard size >= 0, size <= view.count - dataStart else {
                sink.add(
                    "tar.truncated",
                    "the member at offset \(offset) declares \(size) bytes but the archive ends first: it was read up to the end",
                    Evidence(offset: offset, details: [("declared", String(size))]))
                if type == 0x30 || type == 0 || type == 0x37 {
                    archive.members.append(
                        TarMember(
                            name: longName ?? paxPath ?? name(header), offset: dataStart, size: view.count - dataStart))
                }
                break
            }
            let data = view.slice(dataStart, size)!
            switch type {
            case UInt8(ascii: "L"), UInt8(ascii: "K"):
                if type == UInt8(ascii: "L") { longName = string(data, 0, min(size, maxRecordBytes)) }
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                let records = pax(data)
                if type == UInt8(ascii: "g") {
                    globalPath = records.path ?? globalPath
                } else {
                    paxPath = records.path
                    paxSize = records.size
                }
            case 0, 0x30, 0x37, UInt8(ascii: "S"):
                let memberName = paxPath ?? longName ?? globalPath ?? name(header)
                if type == UInt8(ascii: "S") {
                    sink.add(
                        "tar.sparse", "\(memberName) is a GNU sparse file: its data is read as stored",
                        Evidence(offset: offset, member: memberName))
                }
                if memberName.hasPrefix("/") || memberName.split(separator: "/").contains("..") {
                    sink.add(
                        "tar.path-traversal", "\(memberName) would be extracted outside the target folder",
                        Evidence(offset: offset, member: memberName))
                }
                archive.members.append(TarMember(name: memberName, offset: dataStart, size: size))
                longName = nil
                paxPath = nil
                paxSize = nil
            default:
                longName = nil
                paxPath = nil
                paxSize = nil
            }
            let (padded, o) = size.addingReportingOverflow(511)
            guard !o else { break }
            offset = dataStart + padded / 512 * 512
        }
        archive.observations = sink.finished()
        return archive
    }

    /// A ustar name: `prefix/name` when the prefix field is set.
    static func name(_ header: ByteView) -> String {
        let base = string(header, 0, 100)
        let isUstar = header.slice(257, 5)?.array == Array("ustar".utf8)
        let prefix = isUstar ? string(header, 345, 155) : ""
        return prefix.isEmpty ? base : prefix + "/" + base
    }

    /// pax records, `LENGTH key=value\n`: the `path` and `size` keys.
    static func pax(_ data: ByteView) -> (path: String?, size: Int?) {
        var path: String?, size: Int?
        var i = 0
        let end = min(data.count, maxRecordBytes)
        var records = 0
        while i < end, records < 10_000 {
            records += 1
            var length = 0
            var j = i
            while j < end, let b = data.byte(at: j), b >= 0x30 && b <= 0x39, length < 1 << 24 {
                length = length * 10 + Int(b - 0x30)
                j += 1
            }
            guard length > 0, data.byte(at: j) == 0x20, i + length <= end,
                let record = data.bytes(j + 1, i + length - j - 2)
            else { break }
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[..<eq], as: UTF8.self)
                let value = String(decoding: record[(eq + 1)...], as: UTF8.self)
                if key == "path" { path = value }
                if key == "size" { size = Int(value) }
            }
            i += length
        }
        return (path, size)
    }
}
