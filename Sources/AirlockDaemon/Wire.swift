public import AirlockJSON
public import AirlockSystem

/// The wire format of airlockd's socket (docs/protocol.md): each message is a 4-byte big-endian length, then that
/// many bytes of one UTF-8 JSON object. Descriptors travel as `SCM_RIGHTS` with the message's bytes.
public enum Wire {
    /// The protocol version, `"airlock": 1` in every message.
    public static let version = 1
    /// Default bound on one message's JSON, in bytes.
    public static let defaultMaxMessage = 1 << 20
    /// Bound on one reply's JSON, in bytes: what clients accept, and what the daemon fits its replies into (a folder
    /// whose reports would not fit loses traces first, docs/protocol.md). Far below the 4 GiB the length can say.
    public static let maxReply = 512 << 20

    /// The bytes of one message: the length, then the JSON, serialized once into one buffer. A message over
    /// `maxReply` cannot be sent whole: it becomes an `internal` error reply (with the same `id` when it has one),
    /// so framing never traps and never sends a length the reader refuses. Fit replies first (`Report.fit`).
    /// `limit` is `maxReply` but for tests.
    public static func frame(_ message: JSON, limit: Int = maxReply) -> [UInt8] {
        let size = message.serializedCount
        guard size <= limit else {
            var id = JSON.null
            if case .object(let members) = message, let given = members.first(where: { $0.0 == "id" })?.1 { id = given }
            return frame(
                Reply.error(id: id, .internalError, "the reply (\(size) bytes) is larger than the protocol's \(limit)"))
        }
        var out: [UInt8] = []
        out.reserveCapacity(4 + size)
        let n = UInt32(size)
        out += [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
        message.serialize(into: &out)
        return out
    }

    /// Why bytes on the socket are not a message.
    public enum FrameError: AirlockError, Equatable {
        /// A length of zero or over the bound.
        case badLength(Int)

        /// `"frame"`.
        public var code: String { "frame" }
        public var description: String {
            switch self {
            case .badLength(let n): "a message length of \(n) bytes (zero or over the bound)"
            }
        }
    }

    /// Splits a byte stream into messages, holding at most one partial message. Taking a message out moves an
    /// offset, not the bytes after it: many small messages in one read cost time linear in their size.
    public struct Reader: Sendable {
        private var storage: [UInt8] = []
        private var start = 0
        /// The bound on one message.
        public let maxMessage: Int

        /// A reader with the given bound.
        public init(maxMessage: Int = Wire.defaultMaxMessage) { self.maxMessage = maxMessage }

        /// Bytes received and not yet returned as a message.
        public var buffer: ArraySlice<UInt8> { storage[start...] }

        /// Adds received bytes.
        public mutating func append(_ bytes: ArraySlice<UInt8>) {
            // Drop what was consumed once it is most of the storage: each byte is moved at most once more.
            if start > 0 && start >= storage.count - start {
                storage.removeSubrange(0..<start)
                start = 0
            }
            storage += bytes
        }

        /// The next complete message's JSON bytes, nil when more bytes are needed.
        public mutating func next() throws(FrameError) -> [UInt8]? {
            guard storage.count - start >= 4 else { return nil }
            let n =
                Int(storage[start]) << 24 | Int(storage[start + 1]) << 16 | Int(storage[start + 2]) << 8
                | Int(storage[start + 3])
            guard n > 0 && n <= maxMessage else { throw .badLength(n) }
            guard storage.count - start >= 4 + n else { return nil }
            let body = Array(storage[(start + 4)..<(start + 4 + n)])
            start += 4 + n
            if start == storage.count {
                storage.removeAll(keepingCapacity: storage.capacity <= 1 << 20)
                start = 0
            }
            return body
        }

        /// Whether part of a message has arrived.
        public var hasPartial: Bool { start < storage.count }
    }

    /// Bytes waiting to be sent on one connection. Sending part of them moves an offset, so a reply of any size is
    /// sent in time linear in its size (the bytes after a partial send are never shifted).
    public struct Outbox: Sendable {
        private var storage: [UInt8] = []
        private var sent = 0

        /// An empty outbox.
        public init() {}

        /// Whether everything queued has been sent.
        public var isEmpty: Bool { sent == storage.count }

        /// Bytes queued and not yet sent.
        public var count: Int { storage.count - sent }

        /// Queues `bytes` after what is waiting.
        public mutating func append(_ bytes: [UInt8]) {
            if isEmpty {
                storage = bytes
                sent = 0
            } else {
                storage += bytes
            }
        }

        /// Calls `body` with the bytes not yet sent; it returns how many it sent (or a negative number for none).
        public mutating func send(_ body: (UnsafeRawBufferPointer) -> Int) -> Int {
            let n = storage.withUnsafeBytes { raw in body(UnsafeRawBufferPointer(rebasing: raw[sent...])) }
            if n > 0 {
                sent += min(n, storage.count - sent)
                if sent == storage.count {
                    storage = []
                    sent = 0
                }
            }
            return n
        }
    }
}

/// The error codes of replies (docs/protocol.md).
public enum ReplyCode: String, Sendable {
    case forbidden, busy, badRequest = "bad-request", tooLarge = "too-large", unknownMethod = "unknown-method"
    case noDescriptor = "no-descriptor", timeout, shuttingDown = "shutting-down", fileBusy = "file-busy",
        internalError = "internal", unknownRuntime = "unknown-runtime"
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

    /// A `busy` error, which a client retries (docs/protocol.md, "Errors"): `reason` names the limit that was reached
    /// (`queue-full`, `peer-queue-full`, `connections`, `peer-connections`) and `waiting` the requests waiting in the
    /// lane that refused, when a queue refused.
    public static func busy(id: JSON, _ message: String, reason: String, waiting: Int? = nil) -> JSON {
        var error: [(String, JSON)] = [
            ("code", .string(ReplyCode.busy.rawValue)), ("message", .string(message)), ("reason", .string(reason)),
        ]
        if let waiting { error.append(("waiting", .int(waiting))) }
        return .object([("airlock", .int(Wire.version)), ("id", id), ("ok", .bool(false)), ("error", .object(error))])
    }

    /// `{"airlock": 1, "id": …, "ok": true, KEY: VALUE}`.
    public static func ok(id: JSON, _ key: String, _ value: JSON) -> JSON {
        .object([("airlock", .int(Wire.version)), ("id", id), ("ok", .bool(true)), (key, value)])
    }
}
