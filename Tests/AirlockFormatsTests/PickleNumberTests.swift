@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// Protocol-0 number lines (`INT`, `LONG`, `FLOAT`, `GET`, `PUT`): Airlock accepts exactly the lines the real C
/// unpickler accepts, with the same value (`Tests/Generators/pickle_numbers.py` runs `pickle.loads` over a table of
/// spellings: hex, octal, `0o`/`0b`, signs, spaces, underscores, NULs, long digit runs, inf/nan).
@Suite("Pickle number lines")
struct PickleNumberTests {
    struct Row: Decodable {
        var op: String
        var line: String
        var ok: Bool
        var value: String?
    }

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.utf8.makeIterator()
        while let h = it.next(), let l = it.next() {
            out.append(UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16)!)
        }
        return out
    }

    @Test("every spelling is accepted, rejected and valued as pickle.loads does; the pre-check agrees")
    func table() throws {
        let dir = try generateSamples("pickle_numbers.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rows = try JSONDecoder().decode(
            [Row].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/numbers.json")))
        #expect(rows.count > 10_000)
        #expect(rows.filter(\.ok).count > 500)
        var mismatches: [String] = []
        for row in rows {
            let line = PickleNumberTests.bytes(hex: row.line) + [0x0A]
            let op = UInt8(ascii: row.op.unicodeScalars.first!)
            let (ok, value) = line.withUnsafeBytes { p -> (Bool, String?) in
                let b = line.count - 1
                switch op {
                case Op.INT, Op.LONG:
                    switch op == Op.INT ? PickleNumbers.int(p, 0, b) : PickleNumbers.long(p, 0, b) {
                    case .invalid: return (false, nil)
                    case .value(let v): return (true, String(v))
                    case .big: return (true, "big")
                    case .bool(let v): return (true, v ? "True" : "False")
                    }
                case Op.FLOAT:
                    guard let v = PickleNumbers.float(p, 0, b) else { return (false, nil) }
                    if v.isNaN { return (true, "nan") }
                    let bits = v.bitPattern.littleEndian
                    return (true, withUnsafeBytes(of: bits) { $0.map { String(format: "%02x", $0) }.joined() })
                default:
                    // GET is read after a PUT of the same line.
                    return (PickleNumbers.lineOK(p, 0, b, Op.PUT) && PickleNumbers.lineOK(p, 0, b, op), nil)
                }
            }
            if ok != row.ok || (ok && value != row.value && op != Op.GET && op != Op.PUT) {
                mismatches.append(
                    "\(row.op) \(row.line.prefix(40)): python \(row.ok) \(row.value ?? "-"), airlock \(ok) \(value ?? "-")"
                )
            }
            // The pre-check reads a one-number pickle as the unpickler does.
            if op == Op.INT || op == Op.LONG || op == Op.FLOAT {
                let pickle = [op] + line + [Op.STOP]
                let plausible = pickle.withUnsafeBytes { PickleLint.plausible($0) }
                if plausible != row.ok { mismatches.append("plausible \(row.op) \(row.line.prefix(40)): \(plausible)") }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count): \(mismatches.prefix(20).joined(separator: "\n"))")
    }

    @Test("every byte that can open a valid protocol 0/1 pickle is sniffed as a pickle")
    func starts() {
        let starts: [[UInt8]] = [
            Array("I0x1\n.".utf8), Array("I017\n.".utf8), Array("I 5\n.".utf8), Array("I1_0\n.".utf8),
            Array("L0b11L\n.".utf8), Array("Finf\n.".utf8), Array("F.5\n.".utf8), Array("N.".utf8), Array("].".utf8),
            Array("}.".utf8), Array(").".utf8), Array("(t.".utf8), Array("S'a'\n.".utf8), Array("Va\n.".utf8),
            Array("cos\nsystem\n.".utf8), Array("(ios\nsystem\n.".utf8), Array("Pa\n.".utf8),
            Array("I0x1\n0cos\nsystem\n(S'x'\ntR.".utf8), [0x80, 0x02, 0x4E, 0x2E], [0x4B, 0x01, 0x2E],
            Array("c".utf8) + Array(repeating: UInt8(ascii: "a"), count: 400) + Array("\nb\n.".utf8),
            Array("I".utf8) + Array(repeating: UInt8(ascii: "9"), count: 200) + Array("\n.".utf8),
        ]
        for s in starts {
            #expect(PickleDetector.looksLikePickle(ByteView(s)), "\(String(decoding: s, as: UTF8.self))")
        }
    }
}
