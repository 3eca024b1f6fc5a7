#if canImport(Glibc)
    import Glibc
#endif

/// An `errno` value: its symbolic name (`EACCES`) for traces, profiles and JSON, and the system's text for people.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible, Error {
    /// The number, as the kernel returns it.
    public let rawValue: Int32

    /// Wraps a number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Wraps a number.
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno` now: read it before any other call can change it.
    public static var current: Errno { Errno(errno) }

    private static let table: [(String, Int32)] = [
        ("EPERM", EPERM), ("ENOENT", ENOENT), ("ESRCH", ESRCH), ("EINTR", EINTR), ("EIO", EIO),
        ("E2BIG", E2BIG), ("ENOEXEC", ENOEXEC), ("EBADF", EBADF), ("EAGAIN", EAGAIN), ("ENOMEM", ENOMEM),
        ("EACCES", EACCES), ("EFAULT", EFAULT), ("EBUSY", EBUSY), ("EEXIST", EEXIST), ("EXDEV", EXDEV),
        ("ENOTDIR", ENOTDIR), ("EISDIR", EISDIR), ("EINVAL", EINVAL), ("ENFILE", ENFILE), ("EMFILE", EMFILE),
        ("ENOTTY", ENOTTY), ("EFBIG", EFBIG), ("ENOSPC", ENOSPC), ("EROFS", EROFS), ("EPIPE", EPIPE),
        ("ENOSYS", ENOSYS), ("ENAMETOOLONG", ENAMETOOLONG), ("ELOOP", ELOOP), ("ENOTEMPTY", ENOTEMPTY),
        ("EAFNOSUPPORT", EAFNOSUPPORT), ("EADDRINUSE", EADDRINUSE), ("EADDRNOTAVAIL", EADDRNOTAVAIL),
        ("ENETUNREACH", ENETUNREACH), ("ECONNREFUSED", ECONNREFUSED), ("EHOSTUNREACH", EHOSTUNREACH),
        ("EOPNOTSUPP", EOPNOTSUPP), ("ECANCELED", ECANCELED), ("ETIMEDOUT", ETIMEDOUT),
        ("EPROTONOSUPPORT", EPROTONOSUPPORT), ("ESOCKTNOSUPPORT", ESOCKTNOSUPPORT), ("ECHILD", ECHILD),
        ("EDQUOT", EDQUOT), ("ETXTBSY", ETXTBSY), ("EWOULDBLOCK", EWOULDBLOCK), ("EINPROGRESS", EINPROGRESS),
    ]

    /// The symbolic name (`"EACCES"`), or the number as text when it has none here.
    public var name: String { Errno.table.first { $0.1 == rawValue }?.0 ?? String(rawValue) }

    /// The value of a symbolic name such as `"EACCES"`, or nil when unknown.
    public init?(name: String) {
        guard let value = Errno.table.first(where: { $0.0 == name })?.1 else { return nil }
        self.rawValue = value
    }

    /// The system's sentence for this value (`"Permission denied"`).
    public var text: String { String(cString: strerror(rawValue)) }

    /// `"EACCES (Permission denied)"`.
    public var description: String { "\(name) (\(text))" }
}
