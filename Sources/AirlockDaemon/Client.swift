public import AirlockJSON
public import AirlockSystem
internal import CDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// What went wrong talking to airlockd: a connection problem (`code` "connect", "io", "protocol", "timeout") or the
/// daemon's own error reply (`code` from docs/protocol.md: "forbidden", "busy", …).
public struct ClientError: AirlockError {
    /// The error code.
    public let code: String
    /// A sentence for people.
    public let message: String
    /// The errno, when a system call on the connection failed.
    public let errno: Errno?
    /// For `busy`: the limit that was reached (`queue-full`, `peer-queue-full`, `connections`, `peer-connections`),
    /// when the daemon says.
    public var reason: String? = nil
    /// For `busy` from a queue: the requests waiting in it.
    public var waiting: Int? = nil
    /// Whether the daemon closed the connection after this error (an error with `"id": null`): a retry connects
    /// again.
    public var closed = false
    /// Creates an error.
    public init(_ code: String, _ message: String, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }
    /// Whether the request was certainly not started, so sending it again cannot examine the file twice: the
    /// daemon's `busy` (docs/protocol.md, "Errors"), and a connect that found the socket's backlog full.
    public var isRetryable: Bool { code == "busy" || (code == "connect" && errno?.rawValue == EAGAIN) }
    public var description: String { message }
}

/// A connection to airlockd: one request at a time, each answered by one reply.
public final class DaemonClient {
    /// Largest reply read (reports of a big folder can be large); the daemon fits its replies within it.
    public static let maxReply = Wire.maxReply
    /// The default socket when neither `--socket` nor `$AIRLOCK_SOCKET` names one.
    public static let defaultSocket = "/run/airlock/airlockd.sock"
    private let fd: FileDescriptor
    private var nextID = 1

    /// Connects to the socket at `path`.
    public init(path: String) throws(ClientError) {
        guard let address = UnixSocketAddress(path) else { throw ClientError("connect", "bad socket path \(path)") }
        do {
            fd = try UnixSocketAddress.streamSocket()
        } catch {
            throw ClientError("connect", error.description, errno: error.errno)
        }
        guard address.connect(fd) else {
            let e = Errno.current
            // Not closed here: the object is whole, so deinit closes it (a second close could hit another thread's
            // new descriptor of the same number).
            throw ClientError("connect", "cannot connect to airlockd at \(path): \(e.text)", errno: e)
        }
    }

    deinit { fd.close() }

    /// Sends `request` (with `descriptor` attached, if any) and waits up to `timeout` seconds for its reply. Returns
    /// the reply when `ok` is true; throws the daemon's error otherwise. The request's id is this connection's.
    public func call(_ request: DaemonRequest, descriptor: Int32? = nil, timeout: Double = 600) throws(ClientError)
        -> [(String, JSON)]
    {
        var request = request
        request.id = .int(nextID)
        nextID += 1
        return try send(Wire.frame(request.json), descriptor: descriptor, timeout: timeout)
    }

    /// Sends a request built by hand (any method and `params`, as a test or a newer client may) and waits for its
    /// reply, as `call(_:descriptor:timeout:)` does.
    public func call(
        _ method: String, params: [(String, JSON)] = [], descriptor: Int32? = nil, timeout: Double = 600
    ) throws(ClientError) -> [(String, JSON)] {
        let id = nextID
        nextID += 1
        let frame = Wire.frame(
            .object([
                ("airlock", .int(Wire.version)), ("id", .int(id)), ("method", .string(method)),
                ("params", .object(params)),
            ]))
        return try send(frame, descriptor: descriptor, timeout: timeout)
    }

    private func send(_ frame: [UInt8], descriptor: Int32?, timeout: Double) throws(ClientError) -> [(String, JSON)] {
        var tv = timeval(tv_sec: Int(timeout.rounded(.up)), tv_usec: 0)
        setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { raw -> Int in
                if sent == 0, let descriptor {
                    var fds = [descriptor]
                    return airlock_send_with_fds(fd.rawValue, raw.baseAddress, raw.count, &fds, 1)
                }
                return Glibc.send(fd.rawValue, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else {
                let e = Errno.current
                if n < 0 && e.rawValue == EINTR { continue }
                // The daemon may have refused us and closed: its reply says why.
                if let reply = try? readReply(), case .object(let m) = reply { return try check(m) }
                throw ClientError("io", "cannot send to airlockd: \(e.text)", errno: e)
            }
            sent += n
        }
        guard case .object(let m) = try readReply() else {
            throw ClientError("protocol", "airlockd's reply is not a JSON object")
        }
        return try check(m)
    }

    private func check(_ m: [(String, JSON)]) throws(ClientError) -> [(String, JSON)] {
        if case .bool(true)? = m.first(where: { $0.0 == "ok" })?.1 { return m }
        if case .object(let e)? = m.first(where: { $0.0 == "error" })?.1,
            case .string(let code)? = e.first(where: { $0.0 == "code" })?.1,
            case .string(let message)? = e.first(where: { $0.0 == "message" })?.1
        {
            var error = ClientError(code, "airlockd: \(message)")
            if case .string(let reason)? = e.first(where: { $0.0 == "reason" })?.1 { error.reason = reason }
            if case .number(let n)? = e.first(where: { $0.0 == "waiting" })?.1 { error.waiting = Int(n) }
            error.closed = m.first(where: { $0.0 == "id" })?.1 == .null
            throw error
        }
        throw ClientError("protocol", "airlockd's reply has neither ok nor an error")
    }

    private func readExactly(_ count: Int) throws(ClientError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer[got...].withUnsafeMutableBytes { recv(fd.rawValue, $0.baseAddress, $0.count, 0) }
            let e = Errno.current
            if n < 0 && e.rawValue == EINTR { continue }
            if n < 0 && (e.rawValue == EAGAIN || e.rawValue == EWOULDBLOCK) {
                throw ClientError("timeout", "airlockd did not answer in time")
            }
            guard n > 0 else {
                if n == 0 { throw ClientError("io", "airlockd closed the connection without a reply") }
                throw ClientError("io", "cannot read from airlockd: \(e.text)", errno: e)
            }
            got += n
        }
        return buffer
    }

    private func readReply() throws(ClientError) -> JSON {
        let header = try readExactly(4)
        let n = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard n > 0 && n <= DaemonClient.maxReply else {
            throw ClientError("protocol", "airlockd sent a message of \(n) bytes")
        }
        let body = try readExactly(n)
        do {
            return try JSON.parse(body, maxDepth: 128)
        } catch {
            throw ClientError("protocol", "airlockd's reply is not JSON: \(error)")
        }
    }
}
