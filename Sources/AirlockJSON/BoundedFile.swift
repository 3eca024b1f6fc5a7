public import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Whole-file reads with a size bound, for the small documents Airlock reads (profiles, policies, daemon
/// configurations, `/proc` files): a file over the bound is an error, never a large allocation.
public enum BoundedFile {
    /// Why a file could not be read: a sentence, and the errno when there was one.
    public struct Failure: AirlockError {
        /// What went wrong, naming the file.
        public let message: String
        /// The errno, when a system call failed.
        public let errno: Errno?

        /// `io` when a system call failed, `limit` when the file is larger than the bound.
        public var code: String { errno == nil ? "limit" : "io" }
        /// The message, with the errno's text when there is one.
        public var description: String { message + (errno.map { ": " + $0.text } ?? "") }
    }

    /// The bytes of `path`, at most `limit` of them; `what` names the file in messages ("profile", "policy").
    /// Opened without blocking, so a FIFO is read as far as it has data, never waited on.
    public static func read(_ path: String, limit: Int, what: String) throws(Failure) -> [UInt8] {
        let fd: FileDescriptor
        do throws(SystemCallError) {
            fd = try FileDescriptor.open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK)
        } catch {
            throw Failure(message: "cannot open \(what) \(path)", errno: error.errnoValue)
        }
        return try fd.closeAfter { fd throws(Failure) in
            try read(fd: fd.rawValue, limit: limit, name: "\(what) \(path)")
        }
    }

    /// The bytes of the file open as `fd` from its current offset, at most `limit` of them; `name` names it in
    /// messages ("signature model/model.sig"). The caller keeps `fd`.
    public static func read(fd: Int32, limit: Int, name: String) throws(Failure) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(message: "cannot read \(name)", errno: .current)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > limit { throw Failure(message: "\(name) is larger than \(limit) bytes", errno: nil) }
        }
        return bytes
    }
}
