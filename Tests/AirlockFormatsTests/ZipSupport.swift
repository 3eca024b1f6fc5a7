@testable import AirlockFormats
import Foundation
import AirlockTestSupport

/// Archives built byte by byte, so that every field can lie.
struct ZipBuilder {
    struct Member {
        var name: [UInt8]
        /// The bytes as stored (already compressed for method 8).
        var data: [UInt8]
        var plain: [UInt8]
        var method: UInt16 = 0
        var flags: UInt16 = 0
        var crc: UInt32? = nil
        var declaredUncompressed: UInt32? = nil
        var localName: [UInt8]? = nil
        var localFlags: UInt16? = nil
        var localMethod: UInt16? = nil
        var localCompressed: UInt32? = nil
        var localUncompressed: UInt32? = nil
        var localCRC: UInt32? = nil
        var localHeaderOffset: UInt32? = nil
        /// Written as a central record only (points at another member's local header via `localHeaderOffset`).
        var centralOnly = false

        init(_ name: String, _ plain: [UInt8], deflate: Bool = false) {
            self.name = Array(name.utf8)
            self.plain = plain
            if deflate {
                data = ZipBuilder.storedDeflate(plain)
                method = 8
            } else {
                data = plain
            }
        }

        init(nameBytes: [UInt8], _ plain: [UInt8]) {
            name = nameBytes
            self.plain = plain
            data = plain
        }
    }

    var members: [Member]
    var prefix: [UInt8] = []
    /// Whether offsets count the prefix (as `zip -A` leaves them) or not (as `cat prefix a.zip` does).
    var offsetsIncludePrefix = true
    var trailing: [UInt8] = []
    var comment: [UInt8] = []
    var count: UInt16? = nil
    var zip64 = false
    var zip64Count: UInt64? = nil
    /// Extra bytes between the central directory and the end record.
    var gapBeforeEnd: [UInt8] = []

    init(_ members: [Member]) { self.members = members }

    /// A raw deflate stream made of one stored block: valid input for inflate, no compressor needed.
    static func storedDeflate(_ plain: [UInt8]) -> [UInt8] {
        precondition(plain.count <= 0xFFFF)
        let n = UInt16(plain.count)
        return [0x01] + le(n) + le(~n) + plain
    }

    static func le(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    static func le(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xFF) } }

    func build() -> [UInt8] {
        var out = prefix
        let shift = offsetsIncludePrefix ? 0 : prefix.count
        var offsets: [UInt32] = []
        for m in members {
            offsets.append(UInt32(out.count - shift))
            if m.centralOnly { continue }
            let crc = m.crc ?? ZipCRC.crc32(ByteView(m.plain))
            out +=
                Self.le(ZipFormat.localSignature) + Self.le(UInt16(zip64 ? 45 : 20)) + Self.le(m.localFlags ?? m.flags)
            out += Self.le(m.localMethod ?? m.method) + Self.le(UInt16(0)) + Self.le(UInt16(0))
            out += Self.le(m.localCRC ?? crc)
            let name = m.localName ?? m.name
            if zip64 {
                out += Self.le(UInt32.max) + Self.le(UInt32.max)
                out += Self.le(UInt16(name.count)) + Self.le(UInt16(20)) + name
                out += Self.le(UInt16(1)) + Self.le(UInt16(16))
                out += Self.le(UInt64(m.localUncompressed ?? m.declaredUncompressed ?? UInt32(m.plain.count)))
                out += Self.le(UInt64(m.localCompressed ?? UInt32(m.data.count)))
            } else {
                out += Self.le(m.localCompressed ?? UInt32(m.data.count))
                out += Self.le(m.localUncompressed ?? m.declaredUncompressed ?? UInt32(m.plain.count))
                out += Self.le(UInt16(name.count)) + Self.le(UInt16(0)) + name
            }
            out += m.data
        }
        let cdStart = out.count
        for (i, m) in members.enumerated() {
            let crc = m.crc ?? ZipCRC.crc32(ByteView(m.plain))
            let lho = m.localHeaderOffset ?? offsets[i]
            let uncompressed = m.declaredUncompressed ?? UInt32(m.plain.count)
            out +=
                Self.le(ZipFormat.centralSignature) + Self.le(UInt16(zip64 ? 45 : 20))
                + Self.le(UInt16(zip64 ? 45 : 20))
            out += Self.le(m.flags) + Self.le(m.method) + Self.le(UInt16(0)) + Self.le(UInt16(0)) + Self.le(crc)
            if zip64 {
                out += Self.le(UInt32.max) + Self.le(UInt32.max)
                out += Self.le(UInt16(m.name.count)) + Self.le(UInt16(28)) + Self.le(UInt16(0)) + Self.le(UInt16(0))
                out += Self.le(UInt16(0)) + Self.le(UInt32(0)) + Self.le(UInt32.max) + m.name
                out += Self.le(UInt16(1)) + Self.le(UInt16(24)) + Self.le(UInt64(uncompressed))
                out += Self.le(UInt64(m.data.count)) + Self.le(UInt64(lho))
            } else {
                out += Self.le(UInt32(m.data.count)) + Self.le(uncompressed)
                out += Self.le(UInt16(m.name.count)) + Self.le(UInt16(0)) + Self.le(UInt16(0)) + Self.le(UInt16(0))
                out += Self.le(UInt16(0)) + Self.le(UInt32(0)) + Self.le(lho) + m.name
            }
        }
        let cdSize = out.count - cdStart
        let n = count ?? UInt16(members.count)
        if zip64 {
            let end64 = out.count
            out += Self.le(ZipFormat.end64Signature) + Self.le(UInt64(44)) + Self.le(UInt16(45)) + Self.le(UInt16(45))
            out += Self.le(UInt32(0)) + Self.le(UInt32(0))
            let c = zip64Count ?? UInt64(n)
            out += Self.le(c) + Self.le(c) + Self.le(UInt64(cdSize)) + Self.le(UInt64(cdStart - shift))
            out +=
                Self.le(ZipFormat.locatorSignature) + Self.le(UInt32(0)) + Self.le(UInt64(end64 - shift))
                + Self.le(UInt32(1))
        }
        out += gapBeforeEnd
        out += Self.le(ZipFormat.endSignature) + Self.le(UInt16(0)) + Self.le(UInt16(0))
        out +=
            zip64
            ? Self.le(UInt16.max) + Self.le(UInt16.max) + Self.le(UInt32.max) + Self.le(UInt32.max)
            : Self.le(n) + Self.le(n) + Self.le(UInt32(cdSize)) + Self.le(UInt32(cdStart - shift))
        out += Self.le(UInt16(comment.count)) + comment
        out += trailing
        return out
    }
}

/// Samples written once by `Tests/Generators/zips.py`.
enum ZipSamples {
    static let directory: String? = {
        let dir = NSTemporaryDirectory() + "airlock-zip-samples-\(getpid())"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Generators/zips.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script, dir]
        do { try p.run() } catch { return nil }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? dir : nil
    }()

    static func load(_ name: String) throws -> ByteView {
        guard let dir = directory else { throw FormatError(.io, "sample generator failed") }
        return try ByteView.map(path: dir + "/" + name)
    }
}

extension ZipArchive {
    var kinds: Set<String> { Set(observations.map(\.kind)) }
    func observations(_ kind: String) -> [Observation] { observations.filter { $0.kind == kind } }
}
