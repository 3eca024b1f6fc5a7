@testable import AirlockSandbox
import Foundation
import Testing

#if canImport(Glibc)
    import AirlockTestSupport
#endif

/// The emulated network's parsers (HTTP request head, TLS ClientHello SNI, DNS query) on real and hostile bytes:
/// real messages parsed, every prefix and thousands of mutations of them never crash, and what they return stays
/// within their bounds.
@Suite("Network protocol parsers")
struct NetworkProtocolsTests {
    /// A ClientHello for `name`, made by Python's `ssl` through memory BIOs (no socket).
    static func clientHello(_ name: String) throws -> [UInt8] {
        let script = """
            import ssl, sys
            ctx = ssl.create_default_context()
            i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
            s = ctx.wrap_bio(i, o, server_hostname=sys.argv[1])
            try:
                s.do_handshake()
            except ssl.SSLWantReadError:
                pass
            sys.stdout.buffer.write(o.read())
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", script, name]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Array(data)
    }

    static let httpSample = Array(
        "POST /v1/upload HTTP/1.1\r\nHost: collector.example.invalid:8080\r\nContent-Length: 5\r\n\r\nhello".utf8)

    static let dnsSample: [UInt8] =
        [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1] + [3] + Array("www".utf8) + [7] + Array("example".utf8)
        + [7] + Array("invalid".utf8) + [0, 0, 28, 0, 1] + [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]

    @Test("HTTP: request line, Host, body start and Content-Length")
    func http() {
        let r = NetworkProtocols.httpRequest(NetworkProtocolsTests.httpSample)
        #expect(r?.requestLine == "POST /v1/upload HTTP/1.1")
        #expect(r?.host == "collector.example.invalid:8080")
        #expect(r?.contentLength == 5)
        #expect(r?.bodyStart == NetworkProtocolsTests.httpSample.count - 5)
        #expect(NetworkProtocols.httpRequest(Array("GET / HTTP/2\r\n\r\n".utf8)) == nil)
        #expect(NetworkProtocols.httpRequest(Array("get / HTTP/1.1\r\n\r\n".utf8)) == nil)
        #expect(NetworkProtocols.httpRequest(Array("GET /\u{01}x HTTP/1.1\r\n\r\n".utf8))?.target == "/\\x01x")
        let incomplete = NetworkProtocols.httpRequest(Array("GET / HTTP/1.1\r\nHost: a\r\n".utf8))
        #expect(incomplete?.host == "a" && incomplete?.bodyStart == nil)
    }

    @Test("TLS: the SNI of a real ClientHello (Python ssl); not a hello, no answer")
    func tls() throws {
        let hello = try NetworkProtocolsTests.clientHello("secure.example.invalid")
        #expect(hello.count > 100)
        let parsed = NetworkProtocols.tlsClientHello(hello)
        #expect(parsed?.serverName == "secure.example.invalid")
        #expect(parsed?.complete == true)
        #expect(NetworkProtocols.tlsClientHello(Array(hello.prefix(60)))?.complete == false)
        #expect(NetworkProtocols.tlsClientHello(NetworkProtocolsTests.httpSample) == nil)
    }

    @Test("DNS: the question, and an answer that echoes it with one address and EDNS")
    func dns() throws {
        // The name as the query spelled it: data a payload encodes in it keeps its case.
        var mixed = NetworkProtocolsTests.dnsSample
        mixed[13] = UInt8(ascii: "W")
        #expect(NetworkProtocols.dnsQuery(mixed)?.name == "Www.example.invalid")
        let q = try #require(NetworkProtocols.dnsQuery(NetworkProtocolsTests.dnsSample))
        #expect(q.name == "www.example.invalid" && q.type == 28 && q.id == 0xABCD && q.hasAdditional)
        let address: [UInt8] = [0x26, 0x06, 0x47, 0] + [UInt8](repeating: 7, count: 12)
        let a = NetworkProtocols.dnsAnswer(q, NetworkProtocolsTests.dnsSample, addresses: [address])
        #expect(a[0] == 0xAB && a[1] == 0xCD && a[2] & 0x80 != 0 && a[7] == 1 && a[11] == 1)
        #expect(a.count == 12 + (q.questionEnd - 12) + 12 + 16 + 11)
        // A compression pointer in a query's name is refused, not followed.
        var looped = Array(NetworkProtocolsTests.dnsSample.prefix(12)) + [0xC0, 0x0C, 0, 1, 0, 1]
        #expect(NetworkProtocols.dnsQuery(looped) == nil)
        looped[2] = 0x81  // a response, not a query
        #expect(NetworkProtocols.dnsQuery(looped) == nil)
    }

    @Test("every prefix and 20,000 mutations of each message: no crash, bounded results")
    func fuzz() throws {
        let hello = try NetworkProtocolsTests.clientHello("fuzz.example.invalid")
        var generator = SystemRandomNumberGenerator()
        for sample in [NetworkProtocolsTests.httpSample, hello, NetworkProtocolsTests.dnsSample] {
            for n in 0...sample.count {
                let prefix = Array(sample.prefix(n))
                _ = NetworkProtocols.httpRequest(prefix)
                _ = NetworkProtocols.tlsClientHello(prefix)
                _ = NetworkProtocols.dnsQuery(prefix)
            }
            for _ in 0..<20_000 {
                var m = sample
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    let i = Int.random(in: 0..<m.count, using: &generator)
                    m[i] = UInt8.random(in: 0...255, using: &generator)
                }
                if Bool.random(using: &generator) { m = Array(m.prefix(Int.random(in: 0...m.count))) }
                if let r = NetworkProtocols.httpRequest(m) {
                    #expect(r.target.utf8.count <= 2048 * 4 && (r.host?.utf8.count ?? 0) <= 255 * 4)
                }
                if let t = NetworkProtocols.tlsClientHello(m) { #expect((t.serverName?.utf8.count ?? 0) <= 255 * 4) }
                if let q = NetworkProtocols.dnsQuery(m) {
                    #expect(q.questionEnd <= m.count)
                    _ = NetworkProtocols.dnsAnswer(q, m, addresses: [[1, 2, 3, 4]])
                }
            }
        }
        // Huge and adversarial inputs: lengths that claim more than there is, a megabyte of header lines.
        let many = Array(("GET / HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 200_000)).utf8)
        #expect(NetworkProtocols.httpRequest(many)?.bodyStart == nil)
        #expect(
            NetworkProtocols.tlsClientHello([0x16, 3, 3, 0xFF, 0xFF, 1] + [UInt8](repeating: 0xFF, count: 100)) != nil)
    }

    @Test("SMTP: a client gets to its message body; banners for server-first protocols")
    func smtp() {
        #expect(NetworkProtocols.banner(port: 25) != nil && NetworkProtocols.banner(port: 80) == nil)
        let data = NetworkProtocols.smtpReply(Array("DATA".utf8)[...], inData: false)
        #expect(data.inData && String(decoding: data.reply ?? [], as: UTF8.self).hasPrefix("354"))
        #expect(NetworkProtocols.smtpReply(Array("secret".utf8)[...], inData: true).reply == nil)
        #expect(NetworkProtocols.smtpReply([UInt8(ascii: ".")][...], inData: true).inData == false)
    }

    @Test("a notify rule may emulate only inet socket calls, and the default may not")
    func emulateOnlyForSockets() throws {
        for (syscalls, families) in [(["openat"], ["inet"]), (["connect"], ["unix"]), (["connect"], [String]())] {
            #expect(throws: SandboxError.self) {
                try editedProfile { object in
                    editSection(&object) { section in
                        var rules = section["notify"] as! [[String: Any]]
                        rules.insert(
                            ["id": "odd", "syscalls": syscalls, "families": families, "action": "emulate"], at: 0)
                        section["notify"] = rules
                    }
                }
            }
        }
        #expect(throws: SandboxError.self) {
            try editedProfile { object in editSection(&object) { $0["notifyDefault"] = "emulate" } }
        }
        #expect(try defaultProfile().sandbox.notify.contains { $0.id == "network" && $0.action == .emulate })
    }

    @Test("DNS names: stable per name, distinct between names, mapped back")
    func names() {
        var names = DNSNames()
        let a = names.address(for: "a.example.invalid", v6: false)
        #expect(names.address(for: "a.example.invalid", v6: false) == a)
        #expect(names.address(for: "b.example.invalid", v6: false) != a)
        #expect(names.address(for: "a.example.invalid", v6: true).count == 16)
        #expect(names.byAddress[a] == "a.example.invalid")
        #expect(names.address(for: "A.Example.INVALID", v6: false) == a, "one address for every spelling")
    }
}
