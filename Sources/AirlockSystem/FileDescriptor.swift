#if canImport(Glibc)
    import Glibc
#endif

/// An open file descriptor: a typed `Int32`, so a descriptor cannot be mistaken for a count or a PID, with the few
/// operations every module repeats (close once, retry on EINTR, read and write everything).
///
/// It does not own the descriptor: whoever opened it closes it, usually with `closeAfter` or `defer { fd.close() }`.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number the kernel gave.
    public let rawValue: Int32

    /// Wraps a number the kernel gave.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Wraps a number the kernel gave.
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// Wraps the result of a call that returns a descriptor or -1, throwing the errno for `operation` on -1.
    public static func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(SystemCallError)
        -> FileDescriptor
    {
        guard result >= 0 else { throw SystemCallError(operation()) }
        return FileDescriptor(result)
    }

    /// Opens `path` relative to `directory` (or the working directory) with `O_CLOEXEC` added.
    public static func open(
        _ path: String, _ flags: Int32, mode: UInt32 = 0, relativeTo directory: FileDescriptor? = nil
    ) throws(SystemCallError) -> FileDescriptor {
        let fd = path.withCString { openat(directory?.rawValue ?? AT_FDCWD, $0, flags | O_CLOEXEC, mode) }
        return try check(fd, "open \(path)")
    }

    /// Closes the descriptor. Linux releases it even when `close` reports EINTR, so it is never retried.
    public func close() {
        _ = Glibc.close(rawValue)
    }

    /// Runs `body` and closes the descriptor afterwards, whether `body` returned or threw.
    public func closeAfter<T, E: Error>(_ body: (FileDescriptor) throws(E) -> T) throws(E) -> T {
        defer { close() }
        return try body(self)
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    public func writeAll(_ bytes: some Collection<UInt8>) throws(SystemCallError) {
        let array = Array(bytes)
        var done = 0
        while done < array.count {
            let n = array.withUnsafeBytes { Glibc.write(rawValue, $0.baseAddress! + done, array.count - done) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw SystemCallError("write")
            }
            done += n
        }
    }

    /// Reads into `buffer`, retrying EINTR; returns the count (0 at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int {
        while true {
            let n = Glibc.read(rawValue, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if Glibc.errno != EINTR { throw SystemCallError("read") }
        }
    }

    public var description: String { "fd \(rawValue)" }
}
