@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

@Suite("Byte views")
struct ByteViewTests {
    @Test("reads past the end or with lying lengths return nil, never trap")
    func bounds() {
        let v = ByteView([1, 2, 3, 4, 5, 6, 7, 8])
        #expect(v.le(UInt32.self, at: 4) == 0x0807_0605)
        #expect(v.le(UInt32.self, at: 5) == nil)
        #expect(v.le(UInt64.self, at: 0) == 0x0807_0605_0403_0201)
        #expect(v.be(UInt16.self, at: 0) == 0x0102)
        #expect(v.slice(2, 6)?.count == 6)
        #expect(v.slice(2, 7) == nil)
        #expect(v.slice(-1, 1) == nil)
        #expect(v.slice(Int.max, 1) == nil)
        #expect(v.slice(1, Int.max) == nil)
        #expect(v.byte(at: 8) == nil)
        #expect(v.slice(3, 2)?.bytes(0, 2) == [4, 5])
        #expect(ByteView([]).le(UInt8.self, at: 0) == nil)
    }

    @Test("a mapped file reads the same bytes; a directory is refused")
    func mapping() throws {
        let path = NSTemporaryDirectory() + "airlock-byteview-\(getpid())"
        try Data([9, 8, 7]).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let v = try ByteView.map(path: path)
        #expect(v.array == [9, 8, 7])
        #expect(throws: FormatError.self) { try ByteView.map(path: "/tmp") }
        #expect(throws: FormatError.self) { try ByteView.map(path: "/nonexistent/airlock") }
    }
}
