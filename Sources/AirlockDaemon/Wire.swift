public import AirlockJSON

/// The wire format of airlockd's socket (docs/protocol.md): each message is a 4-byte big-endian length, then that
/// many bytes of one UTF-8 JSON object. Descriptors travel as `SCM_RIGHTS` with the message's bytes.
public enum Wire {
    /// The protocol version, `"airlock": 1` in every message.
    public static let version = 1
    /// Default bound on one message's JSON, in bytes.
    public static let defaultMaxMessage = 1 << 20

    /// The bytes of one message.
    public static func frame(_ message: JSON) -> [UInt8] {
        let body = Array(message.serialized().utf8)
        let n = UInt32(body.count)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body
    }

    /// Why bytes on the socket are not a message.
    public enum FrameError: Error, Sendable, Equatable {
        /// A length of zero or over the bound.
        case badLength(Int)
    }

    /// Splits a byte stream into messages, holding at most one partial message.
    public struct Reader: Sendable {
        /// Bytes received and not yet returned as a message.
        public private(set) var buffer: [UInt8] = []
        /// The bound on one message.
        public let maxMessage: Int

        /// A reader with the given bound.
        public init(maxMessage: Int = Wire.defaultMaxMessage) { self.maxMessage = maxMessage }

        /// Adds received bytes.
        public mutating func append(_ bytes: ArraySlice<UInt8>) { buffer += bytes }

        /// The next complete message's JSON bytes, nil when more bytes are needed.
        public mutating func next() throws(FrameError) -> [UInt8]? {
            guard buffer.count >= 4 else { return nil }
            let n = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
            guard n > 0 && n <= maxMessage else { throw .badLength(n) }
            guard buffer.count >= 4 + n else { return nil }
            let body = Array(buffer[4..<(4 + n)])
            buffer.removeFirst(4 + n)
            return body
        }

        /// Whether part of a message has arrived.
        public var hasPartial: Bool { !buffer.isEmpty }
    }
}

/// The error codes of replies (docs/protocol.md).
public enum ReplyCode: String, Sendable {
    case forbidden, busy, badRequest = "bad-request", tooLarge = "too-large", unknownMethod = "unknown-method"
    case noDescriptor = "no-descriptor", timeout, shuttingDown = "shutting-down", fileBusy = "file-busy", internalError = "internal"
}

/// Builders of reply messages.
public enum Reply {
    /// `{"airlock": 1, "id": …, "ok": false, "error": {"code": …, "message": …}}`.
    public static func error(id: JSON, _ code: ReplyCode, _ message: String) -> JSON {
        .object([
            ("airlock", .int(Wire.version)), ("id", id), ("ok", .bool(false)),
            ("error", .object([("code", .string(code.rawValue)), ("message", .string(message))])),
        ])
    }

    /// `{"airlock": 1, "id": …, "ok": true, KEY: VALUE}`.
    public static func ok(id: JSON, _ key: String, _ value: JSON) -> JSON {
        .object([("airlock", .int(Wire.version)), ("id", id), ("ok", .bool(true)), (key, value)])
    }
}
