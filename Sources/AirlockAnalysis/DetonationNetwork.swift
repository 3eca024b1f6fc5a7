public import AirlockJSON

/// One connection attempt (or the datagrams to one address and port) a detonation made into the emulated network,
/// as a report carries it (`detonation.network[]`, docs/report.schema.json). The probe fills it from the sandbox's
/// `NetworkExchange`, with the HTTP request line and Host or the TLS SNI its parsers found in the captured bytes.
public struct NetworkAttempt: Sendable, Equatable {
    /// Most captured bytes a report shows of one attempt.
    public static let shownBytes = 4096

    /// `tcp` or `udp`.
    public var transport: String
    /// The name the emulated DNS answered with this address, when one did.
    public var name: String?
    /// The address asked for.
    public var address: String
    /// The port.
    public var port: Int
    /// The phase the attempt was made in.
    public var phase: String?
    /// The trace event of the call that opened it.
    public var seq: Int?
    /// Bytes the command sent (captured and dropped alike).
    public var sentBytes: Int
    /// The first captured bytes, as text when they are printable UTF-8, else nil (see `base64`); at most `shownBytes`.
    public var text: String?
    /// The first captured bytes, base64, when they are not text.
    public var base64: String?
    /// The HTTP request line (`POST /collect HTTP/1.1`), when the bytes start with one.
    public var httpRequest: String?
    /// The HTTP `Host` header.
    public var httpHost: String?
    /// The server name of a TLS ClientHello (SNI).
    public var tlsServerName: String?

    /// Creates an attempt from the bytes the sink captured (`captured`) and the count it dropped.
    public init(
        transport: String, name: String?, address: String, port: Int, phase: String?, seq: Int?, captured: [UInt8],
        dropped: Int, httpRequest: String? = nil, httpHost: String? = nil, tlsServerName: String? = nil
    ) {
        self.transport = transport
        self.name = name
        self.address = address
        self.port = port
        self.phase = phase
        self.seq = seq
        sentBytes = captured.count + dropped
        let shown = Array(captured.prefix(NetworkAttempt.shownBytes))
        if NetworkAttempt.isText(shown) {
            text = String(decoding: shown, as: UTF8.self)
        } else {
            base64 = NetworkAttempt.base64(shown)
        }
        self.httpRequest = httpRequest
        self.httpHost = httpHost
        self.tlsServerName = tlsServerName
    }

    /// Where it went: `name (address):port`, or `address:port`.
    public var destination: String {
        let at = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
        return name.map { "\($0) (\(at))" } ?? at
    }

    /// What was sent, in one line: the request line and Host, the SNI, or the first bytes.
    public var sentSummary: String {
        if let httpRequest { return httpRequest + (httpHost.map { ", Host \($0)" } ?? "") }
        if let tlsServerName { return "TLS ClientHello, SNI \(tlsServerName)" }
        if sentBytes == 0 { return "nothing sent" }
        if let text {
            let line = text.prefix(120).map { $0 == "\n" || $0 == "\r" ? " " : $0 }
            return "\(sentBytes) bytes: " + String(line)
        }
        return "\(sentBytes) bytes (binary)"
    }

    /// The member of `detonation.network`.
    public var json: JSON {
        .object([
            ("transport", .string(transport)), ("name", .optional(name)), ("address", .string(address)),
            ("port", .int(port)), ("phase", .optional(phase)), ("seq", seq.map(JSON.int) ?? .null),
            ("sentBytes", .int(sentBytes)), ("text", .optional(text)), ("base64", .optional(base64)),
            ("httpRequest", .optional(httpRequest)), ("httpHost", .optional(httpHost)),
            ("tlsServerName", .optional(tlsServerName)),
        ])
    }

    /// An attempt read back from its JSON; nil when `value` is not one.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func string(_ key: String) -> String? { if case .string(let s)? = field(key) { s } else { nil } }
        func int(_ key: String) -> Int? { if case .number(let n)? = field(key) { Int(n) } else { nil } }
        guard let transport = string("transport"), let address = string("address"), let port = int("port") else {
            return nil
        }
        self.transport = transport
        self.address = address
        self.port = port
        name = string("name")
        phase = string("phase")
        seq = int("seq")
        sentBytes = int("sentBytes") ?? 0
        text = string("text")
        base64 = string("base64")
        httpRequest = string("httpRequest")
        httpHost = string("httpHost")
        tlsServerName = string("tlsServerName")
    }

    /// Valid UTF-8 with no control character but tab, CR and LF.
    static func isText(_ bytes: [UInt8]) -> Bool {
        guard String(validating: bytes, as: UTF8.self) != nil else { return false }
        return !bytes.contains { ($0 < 32 && $0 != 9 && $0 != 10 && $0 != 13) || $0 == 127 }
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let b0 = Int(bytes[i]), b1 = n > 1 ? Int(bytes[i + 1]) : 0, b2 = n > 2 ? Int(bytes[i + 2]) : 0
            out.append(table[b0 >> 2])
            out.append(table[(b0 & 3) << 4 | b1 >> 4])
            out.append(n > 1 ? table[(b1 & 15) << 2 | b2 >> 6] : UInt8(ascii: "="))
            out.append(n > 2 ? table[b2 & 63] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One name a detonation asked the emulated DNS for (`detonation.dnsQuestions[]`).
public struct DNSAsked: Sendable, Equatable {
    /// The name.
    public var name: String
    /// The record type (`A`, `AAAA`, …).
    public var type: String
    /// The phase it was asked in.
    public var phase: String?

    /// Creates one.
    public init(name: String, type: String, phase: String?) {
        self.name = name
        self.type = type
        self.phase = phase
    }

    /// The member of `detonation.dnsQuestions`.
    public var json: JSON { .object([("name", .string(name)), ("type", .string(type)), ("phase", .optional(phase))]) }

    /// One read back from its JSON.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func string(_ key: String) -> String? {
            if case .string(let s)? = m.first(where: { $0.0 == key })?.1 { s } else { nil }
        }
        guard let name = string("name"), let type = string("type") else { return nil }
        self.init(name: name, type: type, phase: string("phase"))
    }
}
