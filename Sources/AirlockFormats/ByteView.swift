public import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Bytes to parse — a read-only mapping of a file or an in-memory buffer — with reads that check every offset and
/// length against what is there. Nothing here traps on hostile input: a read past the end returns nil.
public struct ByteView: Sendable {
    private let storage: ByteStorage
    private let start: Int
    /// Number of bytes in the view.
    public let count: Int

    /// A view of an in-memory buffer.
    public init(_ bytes: [UInt8]) {
        storage = ByteStorage(copying: bytes)
        start = 0
        count = bytes.count
    }

    /// A view that takes ownership of `count` bytes at `pointer`, allocated with `malloc`/`realloc` (freed with the
    /// last view): decompressed content, kept without a second copy.
    init(adoptingMalloc pointer: UnsafeMutableRawPointer, count: Int) {
        storage = ByteStorage(adoptingMalloc: pointer, count: count)
        start = 0
        self.count = count
    }

    private init(storage: ByteStorage, start: Int, count: Int) {
        self.storage = storage
        self.start = start
        self.count = count
    }

    /// Maps `path` read-only (`mmap`, `PROT_READ`, `MAP_PRIVATE`). The mapping lives as long as any view of it.
    public static func map(path: String) throws(FormatError) -> ByteView {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw FormatError(.io, "cannot open \(path)", errno: .current) }
        defer { FileDescriptor(fd).close() }
        return try map(fd: fd, name: path)
    }

    /// Maps the regular file open as `fd` read-only; `name` is for messages. The descriptor may be closed after.
    public static func map(fd: Int32, name: String) throws(FormatError) -> ByteView {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError(.io, "cannot stat \(name)", errno: .current) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw FormatError(.io, "\(name) is not a regular file") }
        let size = Int(st.st_size)
        if size == 0 { return ByteView([]) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw FormatError(.io, "cannot map \(name)", errno: .current)
        }
        _ = madvise(base, size, MADV_SEQUENTIAL)
        return ByteView(storage: ByteStorage(mapped: UnsafeRawPointer(base), count: size), start: 0, count: size)
    }

    /// The byte at `offset`, or nil past the end.
    @inlinable
    public func byte(at offset: Int) -> UInt8? {
        guard offset >= 0 && offset < count else { return nil }
        return unchecked(offset)
    }

    /// The byte at `offset`; the caller has checked `offset < count`.
    @usableFromInline
    func unchecked(_ offset: Int) -> UInt8 {
        storage.base!.load(fromByteOffset: start + offset, as: UInt8.self)
    }

    /// A sub-view of `length` bytes at `offset`, or nil when it does not fit (overflow-safe).
    public func slice(_ offset: Int, _ length: Int) -> ByteView? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        return ByteView(storage: storage, start: start + offset, count: length)
    }

    /// The view from `offset` to the end, or nil past the end.
    public func suffix(from offset: Int) -> ByteView? { slice(offset, count - offset) }

    /// A copy of `length` bytes at `offset`, or nil when they do not fit.
    public func bytes(_ offset: Int, _ length: Int) -> [UInt8]? {
        guard let s = slice(offset, length) else { return nil }
        return s.withUnsafeBytes { Array($0) }
    }

    /// All the bytes, copied.
    public var array: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Little-endian unsigned integer of `T`'s width at `offset`, or nil when it does not fit.
    public func le<T: FixedWidthInteger & UnsignedInteger>(_ type: T.Type, at offset: Int) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= count - size, count >= size else { return nil }
        return T(littleEndian: storage.base!.loadUnaligned(fromByteOffset: start + offset, as: T.self))
    }

    /// Big-endian unsigned integer of `T`'s width at `offset`, or nil when it does not fit.
    public func be<T: FixedWidthInteger & UnsignedInteger>(_ type: T.Type, at offset: Int) -> T? {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= count - size, count >= size else { return nil }
        return T(bigEndian: storage.base!.loadUnaligned(fromByteOffset: start + offset, as: T.self))
    }

    /// Whether the view starts with `prefix`.
    public func starts(with prefix: [UInt8]) -> Bool {
        guard prefix.count <= count else { return false }
        for (i, b) in prefix.enumerated() where unchecked(i) != b { return false }
        return true
    }

    /// Drops the pages of a file mapping that lie wholly inside `length` bytes at `offset` from the process's
    /// resident set (`madvise(MADV_DONTNEED)`), so reading a file once from end to end does not keep all of it
    /// resident. The mapping is read-only and private, so nothing is lost: a later read of those bytes maps them
    /// again from the page cache. Does nothing for in-memory views, or when the range is invalid.
    public func releasePages(_ offset: Int, _ length: Int) {
        guard storage.isMapped, let base = storage.base, offset >= 0, length > 0, offset <= count,
            length <= count - offset
        else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        let lo = start + offset, hi = lo + length
        let first = (lo + page - 1) / page * page
        let end = hi / page * page
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + first), end - first, MADV_DONTNEED)
    }

    /// Calls `body` with the view's bytes.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        guard let base = storage.base, count > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: base + start, count: count))
    }
}

/// Owns the memory behind views: an `mmap`ed file or a heap copy.
final class ByteStorage: @unchecked Sendable {
    let base: UnsafeRawPointer?
    private let count: Int
    private let mapped: Bool
    /// Whether `base` came from `malloc` (adopted decompressed output) and is released with `free`.
    private let mallocated: Bool
    /// Whether `base` is a file mapping (page-aligned, from `mmap`) rather than a heap copy.
    var isMapped: Bool { mapped }

    init(copying bytes: [UInt8]) {
        count = bytes.count
        mapped = false
        mallocated = false
        if bytes.isEmpty {
            base = nil
        } else {
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
            bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
            base = UnsafeRawPointer(p)
        }
    }

    init(mapped base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
        mapped = true
        mallocated = false
    }

    init(adoptingMalloc base: UnsafeMutableRawPointer, count: Int) {
        self.base = UnsafeRawPointer(base)
        self.count = count
        mapped = false
        mallocated = true
    }

    deinit {
        guard let base else { return }
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        } else if mallocated {
            free(UnsafeMutableRawPointer(mutating: base))
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}

/// Why a file could not be read or analysed at all (as opposed to an `Observation` about what it holds).
public struct FormatError: AirlockError {
    /// What kind of failure.
    public enum Kind: String, Sendable {
        /// The file could not be opened, mapped or read.
        case io
        /// The bytes are not what the format requires, beyond what a finding can describe.
        case malformed
        /// A work, size or nesting bound was reached.
        case budget
    }
    /// What kind of failure.
    public let kind: Kind
    /// A sentence for people.
    public let message: String
    /// The underlying errno, when a system call failed.
    public let errno: Errno?

    /// Creates an error.
    public init(_ kind: Kind, _ message: String, errno: Errno? = nil) {
        self.kind = kind
        self.message = message
        self.errno = errno
    }

    /// `io`, `malformed` or `budget`.
    public var code: String { kind.rawValue }

    /// The message, with the system's text for `errno`.
    public var description: String {
        guard let errno else { return message }
        return "\(message): \(errno.text)"
    }
}
