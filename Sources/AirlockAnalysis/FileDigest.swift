package import AirlockSystem
internal import Crypto
public import AirlockFormats

#if canImport(Glibc)
    import Glibc
#endif

/// SHA-256 of a file's bytes, streamed through swift-crypto in large chunks; the pages of a mapped file are released
/// from the resident set once hashed.
///
/// The descriptor forms (`sha256(_:fd:)`, `sha256(fd:)`) know the file's identity (`fstat` of the descriptor being
/// hashed, never a path looked up again), so they take a digest another thread of a folder scan already computed
/// (`DigestPrefetch`) or the digest cache holds (`DigestCache`), and remember what they hash when the file's identity
/// was the same after hashing as before.
public enum FileDigest {
    /// Lower-case hex SHA-256 of `view`. Never cached: a view has no file identity.
    public static func sha256(_ view: ByteView) -> String {
        sha256(view, deadline: nil)!
    }

    /// `sha256(_:)` that stops at `deadline` (checked every 4 MiB, a few milliseconds of hashing): nil when it
    /// stopped. A digest of part of the file is never returned.
    public static func sha256(_ view: ByteView, deadline: ScanDeadline?) -> String? {
        var hasher = SHA256()
        let chunk = 4 << 20
        var offset = 0
        while offset < view.count {
            if let deadline, deadline.stopped() != nil { return nil }
            let n = min(chunk, view.count - offset)
            view.slice(offset, n)!.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            // Hashed pages leave the resident set: a 1 GiB file no longer costs 1 GiB of RSS.
            view.releasePages(offset, n)
            offset += n
        }
        return DigestRecord.hex(hasher.finalize())
    }

    /// Lower-case hex SHA-256 of `view`, a mapping of the whole regular file open as `fd`, through the digest cache.
    public static func sha256(_ view: ByteView, fd: Int32) -> String {
        sha256(view, fd: fd, cache: DigestCache.shared)
    }

    /// `sha256(_:fd:)` with `cache` (nil: none).
    package static func sha256(_ view: ByteView, fd: Int32, cache: DigestCache?) -> String {
        remembered(fd: fd, size: UInt64(view.count), cache: cache) { sha256(view) } ?? sha256(view)
    }

    /// `sha256(_:fd:)` that stops at `deadline`: nil when it stopped (nothing is remembered then).
    public static func sha256(_ view: ByteView, fd: Int32, deadline: ScanDeadline?) -> String? {
        sha256(view, fd: fd, cache: DigestCache.shared, deadline: deadline)
    }

    /// `sha256(_:fd:deadline:)` with `cache` (nil: none).
    package static func sha256(_ view: ByteView, fd: Int32, cache: DigestCache?, deadline: ScanDeadline?) -> String? {
        guard let deadline else { return sha256(view, fd: fd, cache: cache) }
        var stopped = false
        let digest = remembered(fd: fd, size: UInt64(view.count), cache: cache) {
            let digest = sha256(view, deadline: deadline)
            stopped = digest == nil
            return digest
        }
        if let digest { return digest }
        return stopped ? nil : sha256(view, deadline: deadline)
    }

    /// Lower-case hex SHA-256 of the regular file open as `fd`, read from its start with `pread` through one fixed
    /// buffer (never mapped: memory stays at the buffer whatever the file's size), through the digest cache; nil with
    /// the reason when it cannot be read.
    public static func sha256(fd: Int32) -> Result<(digest: String, size: Int), DigestFailure> {
        sha256(fd: fd, cache: DigestCache.shared)
    }

    /// `sha256(fd:)` with `cache` (nil: none), stopping at `deadline` (a failure then, `DigestFailure.stop`).
    package static func sha256(fd: Int32, cache: DigestCache?, deadline: ScanDeadline? = nil) -> Result<
        (digest: String, size: Int), DigestFailure
    > {
        var failure: DigestFailure? = nil
        var size = 0
        let digest = remembered(fd: fd, size: nil, cache: cache) {
            switch read(fd: fd, deadline: deadline) {
            case .success(let (digest, count)):
                size = count
                return digest
            case .failure(let error):
                failure = error
                return nil
            }
        }
        if let digest {
            if size == 0, let identity = FileSystem.identity(fd) { size = Int(identity.size) }
            return .success((digest, size))
        }
        return .failure(failure ?? DigestFailure("cannot read: \(Errno.current.text)"))
    }

    /// Why a file could not be hashed.
    public struct DigestFailure: Error, CustomStringConvertible, Sendable {
        /// What went wrong.
        public let description: String
        /// Set when hashing stopped at a deadline or a cancellation (`ScanDeadline`).
        public var stop: ScanDeadline.Stop? = nil
        init(_ description: String, stop: ScanDeadline.Stop? = nil) {
            self.description = description
            self.stop = stop
        }
    }

    /// The digest of the file open as `fd` from a folder scan's hashing threads or the cache, else `hash()`'s,
    /// remembered when the file kept its identity while it was hashed. `size`, when given, is the number of bytes
    /// `hash` reads: a file of another size is hashed and nothing is remembered.
    package static func remembered(fd: Int32, size: UInt64?, cache: DigestCache?, hash: () -> String?) -> String? {
        guard let before = FileSystem.identity(fd), before.isRegular, size == nil || size == before.size else {
            return hash()
        }
        if let handed = DigestPrefetch.take(before) { return handed }
        if let cache, let hit = cache.lookup(before) { return hit }
        let started = realtimeNs()
        guard let digest = hash() else { return nil }
        if let cache, let after = FileSystem.identity(fd), after.sameContent(as: before) {
            cache.store(before, digest: digest, startedNs: started)
        }
        return digest
    }

    /// Streams the file open as `fd` from its start to its end through SHA-256: (digest, bytes read).
    /// `deadline` is asked every 8 reads (8 MiB of a regular file): when it says stop, the result is a failure naming why (`stop`), never a
    /// digest of what was read so far.
    static func read(fd: Int32, deadline: ScanDeadline? = nil) -> Result<(String, Int), DigestFailure> {
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let bufferSize = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var offset: off_t = 0
        var reads = 0
        while true {
            if let deadline, reads & 7 == 0, let stop = deadline.stopped() {
                return .failure(DigestFailure(deadline.message(stop, what: "hashing"), stop: stop))
            }
            reads &+= 1
            let n = pread(fd, buffer, bufferSize, offset)
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(DigestFailure("read failed at byte \(offset): \(Errno.current.text)"))
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
            offset += off_t(n)
        }
        return .success((DigestRecord.hex(hasher.finalize()), Int(offset)))
    }

    static func realtimeNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
