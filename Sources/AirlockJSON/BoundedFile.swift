#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads with a size bound, for the small documents Airlock reads (profiles, policies, daemon
/// configurations, `/proc` files): a file over the bound is an error, never a large allocation.
public enum BoundedFile {
    /// Why a file could not be read: a sentence, and the errno when there was one.
    public struct Failure: Error, Sendable {
        /// What went wrong, naming the file.
        public let message: String
        /// The errno, when a system call failed.
        public let errno: Int32?
    }

    /// The bytes of `path`, at most `limit` of them; `what` names the file in messages ("profile", "policy").
    /// Opened without blocking, so a FIFO is read as far as it has data, never waited on.
    public static func read(_ path: String, limit: Int, what: String) throws(Failure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw Failure(message: "cannot open \(what) \(path)", errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(message: "cannot read \(what) \(path)", errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > limit { throw Failure(message: "\(what) \(path) is larger than \(limit) bytes", errno: nil) }
        }
        return bytes
    }
}
