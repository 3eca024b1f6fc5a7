public import AirlockJSON
internal import CDaemon

#if canImport(Glibc)
import Glibc
#endif

/// What went wrong talking to airlockd: a connection problem (`code` "connect", "io", "protocol") or the daemon's
/// own error reply (`code` from docs/protocol.md: "forbidden", "busy", …).
public struct ClientError: Error, Sendable, CustomStringConvertible {
    /// The error code.
    public let code: String
    /// A sentence for people.
    public let message: String
    /// Creates an error.
    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// A connection to airlockd: one request at a time, each answered by one reply.
public final class DaemonClient {
    /// Largest reply read (reports of a big folder can be large); the daemon fits its replies within it.
    public static let maxReply = Wire.maxReply
    /// The default socket when neither `--socket` nor `$AIRLOCK_SOCKET` names one.
    public static let defaultSocket = "/run/airlock/airlockd.sock"
    private let fd: Int32
    private var nextID = 1

    /// Connects to the socket at `path`.
    public init(path: String) throws(ClientError) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw ClientError("connect", "bad socket path \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError("connect", "socket: \(String(cString: strerror(errno)))") }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw ClientError("connect", "cannot connect to airlockd at \(path): \(String(cString: strerror(e)))")
        }
    }

    deinit { close(fd) }

    /// Sends one request (with `descriptor` attached, if any) and waits up to `timeout` seconds for its reply.
    /// Returns the reply when `ok` is true; throws the daemon's error otherwise.
    public func call(_ method: String, params: [(String, JSON)] = [], descriptor: Int32? = nil, timeout: Double = 600) throws(ClientError) -> [(String, JSON)] {
        let id = nextID
        nextID += 1
        let frame = Wire.frame(.object([
            ("airlock", .int(Wire.version)), ("id", .int(id)), ("method", .string(method)), ("params", .object(params)),
        ]))
        var tv = timeval(tv_sec: Int(timeout.rounded(.up)), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { raw -> Int in
                if sent == 0, let descriptor {
                    var fds = [descriptor]
                    return airlock_send_with_fds(fd, raw.baseAddress, raw.count, &fds, 1)
                }
                return send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else {
                if n < 0 && errno == EINTR { continue }
                // The daemon may have refused us and closed: its reply says why.
                if let reply = try? readReply(), case .object(let m) = reply { return try check(m) }
                throw ClientError("io", "cannot send to airlockd: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
        guard case .object(let m) = try readReply() else { throw ClientError("protocol", "airlockd's reply is not a JSON object") }
        return try check(m)
    }

    private func check(_ m: [(String, JSON)]) throws(ClientError) -> [(String, JSON)] {
        if case .bool(true)? = m.first(where: { $0.0 == "ok" })?.1 { return m }
        if case .object(let e)? = m.first(where: { $0.0 == "error" })?.1,
           case .string(let code)? = e.first(where: { $0.0 == "code" })?.1,
           case .string(let message)? = e.first(where: { $0.0 == "message" })?.1 {
            throw ClientError(code, "airlockd: \(message)")
        }
        throw ClientError("protocol", "airlockd's reply has neither ok nor an error")
    }

    private func readExactly(_ count: Int) throws(ClientError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ClientError("timeout", "airlockd did not answer in time") }
            guard n > 0 else { throw ClientError("io", n == 0 ? "airlockd closed the connection without a reply" : "cannot read from airlockd: \(String(cString: strerror(errno)))") }
            got += n
        }
        return buffer
    }

    private func readReply() throws(ClientError) -> JSON {
        let header = try readExactly(4)
        let n = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard n > 0 && n <= DaemonClient.maxReply else { throw ClientError("protocol", "airlockd sent a message of \(n) bytes") }
        do {
            return try JSON.parse(try readExactly(n), maxDepth: 128)
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError("protocol", "airlockd's reply is not JSON: \(error)")
        }
    }
}
