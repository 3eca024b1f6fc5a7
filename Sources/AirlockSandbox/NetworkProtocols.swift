/// Just enough of HTTP/1, the TLS ClientHello and DNS for the emulated network (`NetworkSink`) to name the host a
/// payload asked for, answer it plausibly, and for the report to say what was sent. Every parser takes hostile bytes:
/// each reads at most a bounded prefix, loops instead of recursing, checks every length against what is there, and
/// answers nil rather than guess.
public enum NetworkProtocols {
    /// Most bytes of a flow any parser looks at.
    public static let maxParsedBytes = 16384

    // MARK: HTTP

    /// The head of an HTTP/1 request.
    public struct HTTPRequest: Sendable, Equatable {
        /// `GET`, `POST`, …
        public var method: String
        /// The request target (`/upload?x=1`, or an absolute URL through a proxy).
        public var target: String
        /// `HTTP/1.1` or `HTTP/1.0`.
        public var version: String
        /// The `Host` header, when there is one.
        public var host: String?
        /// Where the body starts: just past the empty line that ends the head (nil: the head is not complete yet).
        public var bodyStart: Int?
        /// The `Content-Length` header, when there is a valid one.
        public var contentLength: Int?

        /// The request line as sent (`POST /collect HTTP/1.1`).
        public var requestLine: String { "\(method) \(target) \(version)" }
    }

    /// The request whose head `bytes` start with; nil when they do not start like an HTTP/1 request line.
    public static func httpRequest(_ bytes: [UInt8]) -> HTTPRequest? {
        let view = bytes.prefix(maxParsedBytes)
        // The request line: METHOD SP target SP HTTP/1.x CRLF, the method in capitals.
        guard let lineEnd = firstCRLF(view, from: view.startIndex) else { return nil }
        let fields = view[view.startIndex..<lineEnd].split(
            separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard fields.count == 3, (1...16).contains(fields[0].count),
            fields[0].allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }), !fields[1].isEmpty,
            fields[2].elementsEqual("HTTP/1.1".utf8) || fields[2].elementsEqual("HTTP/1.0".utf8)
        else {
            return nil
        }
        var request = HTTPRequest(
            method: String(decoding: fields[0], as: UTF8.self), target: printable(fields[1], limit: 2048),
            version: String(decoding: fields[2], as: UTF8.self))
        var at = lineEnd + 2
        var headers = 0
        while at < view.endIndex, headers < 200, let end = firstCRLF(view, from: at) {
            if end == at {
                request.bodyStart = end + 2
                break
            }
            headers += 1
            let line = view[at..<end]
            if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                let key = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
                let value = line[(colon + 1)...].drop { $0 == 32 || $0 == 9 }
                if key == "host", request.host == nil {
                    request.host = printable(value, limit: 255)
                } else if key == "content-length", let n = Int(String(decoding: value, as: UTF8.self)), n >= 0 {
                    request.contentLength = n
                }
            }
            at = end + 2
        }
        return request
    }

    /// What the sink answers an HTTP request with: a small JSON success, as an API endpoint would.
    public static func httpResponse(date: String) -> [UInt8] {
        let body = "{\"status\":\"ok\"}"
        return Array(
            ("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: \(date)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)").utf8)
    }

    private static func firstCRLF(_ bytes: ArraySlice<UInt8>, from: Int) -> Int? {
        var i = from
        while i + 1 < bytes.endIndex {
            if bytes[i] == 13 && bytes[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// Bytes as text for a report: printable ASCII kept, everything else as `\xNN`, at most `limit` bytes read.
    static func printable(_ bytes: some Collection<UInt8>, limit: Int) -> String {
        var out = ""
        for b in bytes.prefix(limit) {
            if b >= 32 && b < 127 {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out += "\\x" + String(b, radix: 16).leftPadded(2)
            }
        }
        return out
    }

    // MARK: Server-first protocols

    /// What a server on `port` says first, for protocols where the client waits for it (FTP, SSH, SMTP, POP3,
    /// IMAP); nil where the client speaks first.
    public static func banner(port: UInt16) -> [UInt8]? {
        let text: String? =
            switch port {
            case 21: "220 (vsFTPd 3.0.5)\r\n"
            case 22: "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10\r\n"
            case 25, 587: "220 mail.internal ESMTP Postfix (Ubuntu)\r\n"
            case 110: "+OK Dovecot (Ubuntu) ready.\r\n"
            case 143:
                "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=PLAIN] Dovecot ready.\r\n"
            default: nil
            }
        return text.map { Array($0.utf8) }
    }

    /// A mail server's reply to one SMTP command line (without its CRLF), and whether the message body follows.
    /// In the body (`inData`), only the line `.` is answered (it ends the body).
    public static func smtpReply(_ line: ArraySlice<UInt8>, inData: Bool) -> (reply: [UInt8]?, inData: Bool) {
        if inData {
            return line.elementsEqual([UInt8(ascii: ".")])
                ? (Array("250 2.0.0 Ok: queued as 4F1A2B3C4D\r\n".utf8), false) : (nil, true)
        }
        let verb = String(decoding: line.prefix(4), as: UTF8.self).uppercased()
        switch verb {
        case "EHLO":
            return (Array("250-mail.internal\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n".utf8), false)
        case "HELO": return (Array("250 mail.internal\r\n".utf8), false)
        case "DATA": return (Array("354 End data with <CR><LF>.<CR><LF>\r\n".utf8), true)
        case "QUIT": return (Array("221 2.0.0 Bye\r\n".utf8), false)
        case "AUTH": return (Array("235 2.7.0 Authentication successful\r\n".utf8), false)
        default: return (Array("250 2.0.0 Ok\r\n".utf8), false)
        }
    }

    // MARK: TLS

    /// A TLS ClientHello's record, when `bytes` start with one.
    public struct TLSHello: Sendable, Equatable {
        /// The server name (SNI) asked for, when the hello carries one.
        public var serverName: String?
        /// Whether the whole first record has arrived.
        public var complete: Bool
    }

    /// The ClientHello `bytes` start with (a handshake record holding a client hello); nil for anything else.
    public static func tlsClientHello(_ bytes: [UInt8]) -> TLSHello? {
        let b = Array(bytes.prefix(maxParsedBytes))
        guard b.count >= 6, b[0] == 0x16, b[1] == 3, b[2] <= 4, b[5] == 1 else { return nil }
        let recordLength = Int(b[3]) << 8 | Int(b[4])
        let recordEnd = min(5 + recordLength, b.count)
        var hello = TLSHello(serverName: nil, complete: b.count >= 5 + recordLength)
        // Handshake header (4), client version (2), random (32).
        var at = 5 + 4 + 2 + 32
        func u8() -> Int? {
            guard at < recordEnd else { return nil }
            defer { at += 1 }
            return Int(b[at])
        }
        func u16() -> Int? {
            guard at + 1 < recordEnd else { return nil }
            defer { at += 2 }
            return Int(b[at]) << 8 | Int(b[at + 1])
        }
        guard let session = u8() else { return hello }
        at += session
        guard let suites = u16() else { return hello }
        at += suites
        guard let compression = u8() else { return hello }
        at += compression
        guard let extensionsLength = u16() else { return hello }
        let extensionsEnd = min(at + extensionsLength, recordEnd)
        var count = 0
        while at + 4 <= extensionsEnd, count < 128 {
            count += 1
            guard let type = u16(), let length = u16() else { break }
            let end = at + length
            guard end <= extensionsEnd else { break }
            if type == 0, length >= 5 {
                // server_name: list length (2), name type (1) = host_name (0), name length (2), name.
                let nameType = b[at + 2]
                let nameLength = Int(b[at + 3]) << 8 | Int(b[at + 4])
                if nameType == 0, at + 5 + nameLength <= end, nameLength <= 255 {
                    hello.serverName = printable(b[(at + 5)..<(at + 5 + nameLength)], limit: 255)
                }
                break
            }
            at = end
        }
        return hello
    }

    /// A fatal `handshake_failure` alert: what a server that will not negotiate sends back to a ClientHello.
    public static let tlsHandshakeFailure: [UInt8] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]

    // MARK: DNS

    /// The first question of a DNS query.
    public struct DNSQuery: Sendable, Equatable {
        /// The query's id.
        public var id: UInt16
        /// Its flags word.
        public var flags: UInt16
        /// The name asked for as the query spelled it (case kept: a payload's encoded data may be in it), without the
        /// final dot (labels joined with `.`; unprintable bytes `\xNN`).
        public var name: String
        /// The record type (1 A, 28 AAAA, …).
        public var type: UInt16
        /// Where the first question ends (the question is echoed in the answer).
        public var questionEnd: Int
        /// Whether the query carries additional records (an EDNS OPT record).
        public var hasAdditional: Bool
    }

    /// The query `bytes` hold (its first question); nil when they are not a well-formed query.
    public static func dnsQuery(_ bytes: [UInt8]) -> DNSQuery? {
        let b = Array(bytes.prefix(4096))
        guard b.count >= 12 else { return nil }
        let flags = UInt16(b[2]) << 8 | UInt16(b[3])
        let questions = Int(b[4]) << 8 | Int(b[5])
        guard flags & 0x8000 == 0, questions >= 1 else { return nil }
        var labels: [String] = []
        var at = 12
        var total = 0
        // A query's name is not compressed; a pointer in one is refused rather than followed.
        while true {
            guard at < b.count else { return nil }
            let length = Int(b[at])
            at += 1
            if length == 0 { break }
            guard length <= 63, at + length <= b.count else { return nil }
            total += length + 1
            guard total <= 255 else { return nil }
            labels.append(printable(b[at..<(at + length)], limit: 63))
            at += length
        }
        guard at + 4 <= b.count else { return nil }
        let type = UInt16(b[at]) << 8 | UInt16(b[at + 1])
        let additional = Int(b[10]) << 8 | Int(b[11])
        return DNSQuery(
            id: UInt16(b[0]) << 8 | UInt16(b[1]), flags: flags, name: labels.joined(separator: "."), type: type,
            questionEnd: at + 4, hasAdditional: additional > 0)
    }

    /// The answer to `query` (whose bytes are `bytes`): `addresses` (4 or 16 bytes each, matching the type) with a
    /// five-minute TTL, an empty NOERROR for other types, NOTIMP for other opcodes.
    public static func dnsAnswer(_ query: DNSQuery, _ bytes: [UInt8], addresses: [[UInt8]]) -> [UInt8] {
        let opcode = (query.flags >> 11) & 0xF
        let rd = query.flags & 0x0100
        var flags: UInt16 = 0x8000 | rd | 0x0080 | (query.flags & 0x7800)
        if opcode != 0 { flags |= 4 }
        let answers = opcode == 0 ? addresses : []
        var out: [UInt8] = [
            UInt8(query.id >> 8), UInt8(query.id & 0xFF), UInt8(flags >> 8), UInt8(flags & 0xFF), 0, 1,
            0, UInt8(answers.count), 0, 0, 0, query.hasAdditional ? 1 : 0,
        ]
        out += bytes[12..<query.questionEnd]
        for address in answers {
            out += [0xC0, 0x0C, UInt8(query.type >> 8), UInt8(query.type & 0xFF), 0, 1, 0, 0, 0x01, 0x2C]
            out += [0, UInt8(address.count)] + address
        }
        // EDNS: an OPT record (1232-byte payload), as a resolver answering an EDNS query does.
        if query.hasAdditional { out += [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0] }
        return out
    }

    /// A record type's name (`A`, `AAAA`, …) or its number.
    public static func dnsTypeName(_ type: UInt16) -> String {
        switch type {
        case 1: "A"
        case 2: "NS"
        case 5: "CNAME"
        case 6: "SOA"
        case 12: "PTR"
        case 15: "MX"
        case 16: "TXT"
        case 28: "AAAA"
        case 33: "SRV"
        case 65: "HTTPS"
        case 255: "ANY"
        default: String(type)
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
