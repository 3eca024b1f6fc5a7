internal import AirlockSystem
internal import CDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// Where the optional HTTP metrics endpoint listens (`metricsListen`, `--metrics-listen`): an IPv4 literal or a
/// bracketed IPv6 literal with a port (`127.0.0.1:9464`, `[::1]:9464`), or a port alone for `127.0.0.1:PORT`. Host
/// names are refused: nothing is resolved. Port 0 takes a free port (logged, and in `status` as `metricsListen`).
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    /// The address literal, without brackets.
    public let host: String
    /// The TCP port.
    public let port: UInt16
    /// Whether it is IPv6.
    public let isIPv6: Bool

    /// The accepted forms, for messages.
    public static let syntax = "IPV4:PORT, [IPV6]:PORT or PORT (loopback)"

    /// Parses `text`; nil when it is not `IPV4:PORT`, `[IPV6]:PORT` or `PORT`.
    public init?(_ text: String) {
        if let port = UInt16(text), !text.isEmpty {
            self.init(host: "127.0.0.1", port: port, isIPv6: false)
            return
        }
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            if !host.contains(":") { return nil }  // brackets are for IPv6 literals only
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }  // an IPv6 literal needs brackets
        }
        guard let port = UInt16(portText), portText.allSatisfy(\.isASCII), portText.first?.isNumber == true else {
            return nil
        }
        let v6 = host.contains(":")
        var buffer = [UInt8](repeating: 0, count: 16)
        guard !host.isEmpty, host.utf8.count <= 64, inet_pton(v6 ? AF_INET6 : AF_INET, String(host), &buffer) == 1
        else { return nil }
        self.init(host: String(host), port: port, isIPv6: v6)
    }

    private init(host: String, port: UInt16, isIPv6: Bool) {
        self.host = host
        self.port = port
        self.isIPv6 = isIPv6
    }

    /// Whether it only accepts connections from this host (127.0.0.0/8 or ::1).
    public var isLoopback: Bool { isIPv6 ? host == "::1" || host == "0:0:0:0:0:0:0:1" : host.hasPrefix("127.") }

    /// `127.0.0.1:9464` or `[::1]:9464`.
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A minimal HTTP/1.1 server for Prometheus: `GET /metrics` → 200 with the `metrics` text
/// (`text/plain; version=0.0.4`); another path 404, another method 405, anything unreadable 400, one request per
/// connection (`Connection: close`). It runs on a thread of its own, never on the I/O loop's.
///
/// Bounded against slow or hostile clients: at most `maxConnections` at once (a new one closes the oldest), each
/// closed `deadlineSeconds` after it was accepted whatever it did, a request head of at most `maxRequestBytes`. It
/// serves counts only (no model names, paths or client uids), and checks no credentials: loopback unless an operator
/// names another address.
final class MetricsEndpoint: @unchecked Sendable {
    /// Connections served at once.
    static let maxConnections = 16
    /// A connection's whole life, from accept to the last byte of the answer, seconds.
    static let deadlineSeconds = 5.0
    /// The longest request head (request line and headers), bytes.
    static let maxRequestBytes = 8192

    /// The address actually bound (the port chosen when 0 was asked for).
    let bound: MetricsAddress
    private let fd: FileDescriptor
    private let metrics: Metrics
    private let monitor = Monitor()
    private var stopped = false

    private final class Client {
        let fd: FileDescriptor
        let deadline: UInt64
        var request: [UInt8] = []
        /// How far `request` has been searched for the end of the head.
        var scanned = 0
        var out: [UInt8] = []
        var sent = 0
        init(fd: FileDescriptor, deadline: UInt64) {
            self.fd = fd
            self.deadline = deadline
        }
    }

    /// Binds and listens at `address`; `start` serves.
    init(address: MetricsAddress, metrics: Metrics) throws(ConfigError) {
        self.metrics = metrics
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let raw = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard raw >= 0 else { throw ConfigError("metricsListen \(address): socket: \(Errno.current.text)") }
        fd = FileDescriptor(raw)
        var one: Int32 = 1
        setsockopt(raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = sockaddr_storage()
        var length: socklen_t
        if address.isIPv6 {
            setsockopt(raw, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = address.port.bigEndian
            _ = inet_pton(AF_INET6, address.host, &a.sin6_addr)
            withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = address.port.bigEndian
            _ = inet_pton(AF_INET, address.host, &a.sin_addr)
            withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(raw, $0, length) == 0 && listen(raw, 64) == 0 }
        }
        guard ok else {
            let e = Errno.current
            fd.close()
            throw ConfigError("metricsListen \(address): cannot listen: \(e.text)", errno: e)
        }
        // The port the kernel chose, when 0 was asked for.
        var port = address.port
        if port == 0 {
            var got = sockaddr_storage()
            var gotLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &got) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(raw, $0, &gotLength) }
            }
            port = withUnsafeBytes(of: got) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
        }
        bound = MetricsAddress(address.isIPv6 ? "[\(address.host)]:\(port)" : "\(address.host):\(port)") ?? address
    }

    /// Starts the serving thread.
    func start() {
        startThread(stackBytes: 1 << 20) { [self] in serve() }
    }

    /// Stops serving (within a poll interval) and closes the listening socket.
    func stop() { monitor.locked { stopped = true } }

    private func serve() {
        var clients: [Client] = []
        var pausedUntil: UInt64 = 0
        while !monitor.locked({ stopped }) {
            let now = monotonicNs()
            for c in clients where now >= c.deadline { c.fd.close() }
            clients.removeAll { now >= $0.deadline }
            var pfds = [pollfd(fd: now < pausedUntil ? -1 : fd.rawValue, events: Int16(POLLIN), revents: 0)]
            for c in clients {
                let events = c.out.isEmpty ? Int16(POLLIN) : Int16(POLLOUT)
                pfds.append(pollfd(fd: c.fd.rawValue, events: events, revents: 0))
            }
            let nextDeadline = clients.map(\.deadline).min().map {
                $0 > now ? Int32(min(250, ($0 - now) / 1_000_000 + 1)) : 0
            }
            _ = poll(&pfds, nfds_t(pfds.count), nextDeadline ?? 250)
            var done = Set<ObjectIdentifier>()
            for (i, c) in clients.enumerated() where pfds[i + 1].revents != 0 {
                if !step(c, pfds[i + 1].revents) { done.insert(ObjectIdentifier(c)) }
            }
            for c in clients where done.contains(ObjectIdentifier(c)) { c.fd.close() }
            clients.removeAll { done.contains(ObjectIdentifier($0)) }
            if pfds[0].revents & Int16(POLLIN) != 0 {
                while true {
                    let raw = airlock_accept(fd.rawValue)
                    if raw < 0 {
                        if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) {
                            pausedUntil = monotonicNs() + 100_000_000
                        }
                        break
                    }
                    if clients.count >= MetricsEndpoint.maxConnections {
                        // The oldest goes: a scraper answers in milliseconds, a slow client holds its place longest.
                        clients.removeFirst().fd.close()
                    }
                    clients.append(
                        Client(
                            fd: FileDescriptor(raw),
                            deadline: monotonicNs() + UInt64(MetricsEndpoint.deadlineSeconds * 1e9)))
                }
            }
        }
        for c in clients { c.fd.close() }
        fd.close()
    }

    /// Reads or writes what the client is ready for; false once it is done with (answered, gone, or broken).
    private func step(_ c: Client, _ revents: Int16) -> Bool {
        if !c.out.isEmpty {
            while c.sent < c.out.count {
                let n = c.out[c.sent...].withUnsafeBytes {
                    send(c.fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 {
                    c.sent += n
                } else {
                    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                }
            }
            shutdown(c.fd.rawValue, Int32(SHUT_WR))
            return false
        }
        guard revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { return true }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(c.fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR }
        if n == 0 { return false }
        c.request += buffer[0..<n]
        // Only the bytes new since the last search (and the three before them) are searched again.
        let from = max(0, c.scanned - 3)
        c.scanned = c.request.count
        if let answer = MetricsEndpoint.answer(
            c.request, from: from, loopbackOnly: bound.isLoopback,
            metrics: { self.metrics.prometheus(maxAge: Metrics.renderSeconds) })
        {
            c.out = answer
            return step(c, 0)
        }
        if c.request.count >= MetricsEndpoint.maxRequestBytes {
            c.out = MetricsEndpoint.response(431, "Request Header Fields Too Large", "request head too large\n")
            return step(c, 0)
        }
        return true
    }

    /// The answer to a request head, or nil while it is incomplete.
    ///
    /// `loopbackOnly`: the endpoint listens on loopback, so a `Host` header naming anything but a loopback address or
    /// `localhost` is refused (403): a web page the host's browser loads cannot read the endpoint by DNS rebinding.
    static func answer(
        _ request: [UInt8], from: Int = 0, loopbackOnly: Bool = true, metrics: () -> String
    ) -> [UInt8]? {
        // The head ends at an empty line (CRLF CRLF, or LF LF from lenient clients).
        guard let end = headEnd(request, from: from) else { return nil }
        let head = request[..<end]
        let lineEnd = head.firstIndex(of: UInt8(ascii: "\n")) ?? head.endIndex
        var line = Array(head[..<lineEnd])
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].starts(with: Array("HTTP/1.".utf8)), parts[2].count == 8 else {
            return response(400, "Bad Request", "not an HTTP/1.x request\n")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = parts[1].split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(decoding: target.first ?? [], as: UTF8.self)
        guard path == "/metrics" else { return response(404, "Not Found", "only /metrics is served\n") }
        guard method == "GET" else {
            return response(405, "Method Not Allowed", "only GET is allowed\n", extra: "Allow: GET\r\n")
        }
        if loopbackOnly {
            for header in head[lineEnd...].split(separator: UInt8(ascii: "\n")) {
                let text = String(decoding: header, as: UTF8.self)
                guard let colon = text.firstIndex(of: ":"),
                    text[..<colon].lowercased() == "host"
                else { continue }
                let value = String(
                    text[text.index(after: colon)...].drop { $0 == " " || $0 == "\t" }.reversed()
                        .drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
                if !isLoopbackHost(value) {
                    return response(403, "Forbidden", "this endpoint answers requests for a loopback host only\n")
                }
            }
        }
        return response(200, "OK", metrics(), type: "text/plain; version=0.0.4; charset=utf-8")
    }

    /// Whether a `Host` header's value names this host by loopback: `localhost`, `127.x.x.x` or `[::1]`, with or
    /// without a port.
    static func isLoopbackHost(_ value: String) -> Bool {
        var host = Substring(value.lowercased())
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            let rest = host[host.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return false }
            return MetricsAddress("[\(host[host.index(after: host.startIndex)..<close])]:0")?.isLoopback == true
        }
        if let colon = host.lastIndex(of: ":") {
            guard host[host.index(after: colon)...].allSatisfy(\.isNumber) else { return false }
            host = host[..<colon]
        }
        if host == "localhost" { return true }
        return MetricsAddress("\(host):0")?.isLoopback == true
    }

    private static func headEnd(_ bytes: [UInt8], from: Int) -> Int? {
        var i = from
        while i + 1 < bytes.count {
            if bytes[i] == 10 {
                if bytes[i + 1] == 10 { return i }
                if bytes[i + 1] == 13 && i + 2 < bytes.count && bytes[i + 2] == 10 { return i }
            }
            i += 1
        }
        return nil
    }

    static func response(
        _ code: Int, _ reason: String, _ body: String, type: String = "text/plain; charset=utf-8", extra: String = ""
    ) -> [UInt8] {
        let bytes = Array(body.utf8)
        let head =
            "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\n\(extra)Connection: close\r\n\r\n"
        return Array(head.utf8) + bytes
    }
}
