import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// One output stream of the command (stdout or stderr), read from its pipe without blocking and kept up to a limit.
struct CapturedOutput {
    /// The supervisor's (non-blocking) read end; not owned.
    let fd: FileDescriptor
    /// What was kept, and how much was not.
    private(set) var buffer: OutputBuffer
    /// False once every writer has closed the pipe.
    private(set) var isOpen = true

    init(fd: FileDescriptor, limit: Int) {
        self.fd = fd
        self.buffer = OutputBuffer(limit: limit)
    }

    /// Reads what is there, at most 1 MiB: processes that write as fast as the supervisor reads must not keep its
    /// loop from the deadline and the notifications (the rest is read next round; the pipe holds the writers back).
    mutating func drain(using chunk: inout [UInt8]) {
        var reads = 0
        while isOpen && reads < 16 {
            reads += 1
            let n = chunk.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer.append(chunk[0..<n])
                continue
            }
            if n == 0 { isOpen = false }
            if n < 0 && errno == EINTR { continue }
            return
        }
    }
}

/// A bounded capture of one output stream: keeps the first `limit` bytes and counts the rest.
struct OutputBuffer {
    let limit: Int
    var bytes: [UInt8] = []
    var dropped = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ chunk: ArraySlice<UInt8>) {
        let room = max(0, limit - bytes.count)
        bytes.append(contentsOf: chunk.prefix(room))
        dropped += max(0, chunk.count - room)
    }
}
