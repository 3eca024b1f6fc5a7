@testable import AirlockJSON
@testable import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

/// The bounded JSON reader profiles go through, and the writer the CLI prints with.
@Suite("JSON reader and writer")
struct JSONReaderTests {
    @Test(
        "hostile or broken documents are refused with the offset",
        arguments: [
            ("", "unexpected end of input"),
            ("{\"a\": 1,}", "expected a string key"),
            ("{\"a\": 1, \"a\": 2}", "duplicate key"),
            ("[1, 2", "unexpected end of input"),
            ("\"abc", "unterminated string"),
            ("\"\\ud800\"", "unpaired surrogate"),
            ("\"\\x\"", "unknown escape"),
            ("01", "unexpected data after the value"),
            ("1.", "expected a digit"),
            ("tru", "truncated literal"),
            ("{} {}", "unexpected data after the value"),
            ("\"a\u{01}b\"", "control character"),
            (String(repeating: "[", count: 100) + String(repeating: "]", count: 100), "nested deeper than 64"),
        ])
    func refused(text: String, reason: String) {
        #expect {
            _ = try JSON.parse(Array(text.utf8))
        } throws: { error in
            (error as? JSON.SyntaxError)?.reason.contains(reason) == true
        }
    }

    @Test("Python's dialect: NaN and infinities, the last duplicate key, lone surrogates, UTF-16 and a BOM")
    func pythonDialect() throws {
        let text = #"{"a": NaN, "b": [Infinity, -Infinity, -1], "a": "\u004c\ud800x", "c": 1}"#
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(Array(text.utf8)) }
        let doc = try JSON.parse(Array(text.utf8), dialect: .python)
        let expected = JSON.object([
            ("a", .string("L\u{FFFD}x")),
            ("b", .array([.number("Infinity"), .number("-Infinity"), .number("-1")])), ("c", .number("1")),
        ])
        #expect(doc == expected)
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(Array("[NaNa]".utf8), dialect: .python) }
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(Array("-NaN".utf8), dialect: .python) }
        let le: [UInt8] = Array(#"{"k": "\u00e9"}"#.utf16).flatMap { u -> [UInt8] in [UInt8(u & 0xFF), UInt8(u >> 8)] }
        let utf16: [UInt8] = [0xFF, 0xFE] + le
        #expect(try JSON.parse(utf16, dialect: .python) == .object([("k", .string("é"))]))
        let be: [UInt8] = Array(#"["x"]"#.utf16).flatMap { u -> [UInt8] in [UInt8(u >> 8), UInt8(u & 0xFF)] }
        #expect(try JSON.parse(be, dialect: .python) == .array([.string("x")]))
        #expect(try JSON.parse([0xEF, 0xBB, 0xBF] + Array("[1]".utf8), dialect: .python) == .array([.number("1")]))
    }

    @Test("values, exact 64-bit integers, escapes and surrogate pairs")
    func values() throws {
        let doc = try JSON.parse(
            Array(
                #"{"n": 18446744073709551615, "s": "a\"\\\/\n\u00e9\ud83d\ude00", "l": [true, false, null, -1.5e3]}"#
                    .utf8))
        let o = try JSONField(value: doc, path: "").object(allowed: ["n", "s", "l"])
        #expect(try o["n"]?.integer(UInt64.self) == UInt64.max)
        #expect(try o["s"]?.string() == "a\"\\/\né😀")
        #expect(o["l"]?.value == .array([.bool(true), .bool(false), .null, .number("-1.5e3")]))
        #expect(throws: SandboxError.self) { try o["n"]?.integer(Int32.self) }
    }

    @Test("the writer's output is valid JSON that reads back the same")
    func roundTrip() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é 😀 </script>"
        let value = JSON.object([("s", .string(tricky)), ("n", .int(-42)), ("a", .array([.null, .bool(true)]))])
        let text = value.serialized()
        #expect(try JSON.parse(Array(text.utf8)) == value)
        let foundation = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(foundation["s"] as? String == tricky)
    }
}
