#if canImport(Glibc)
import Glibc
#endif

/// Why a sandbox could not be built or run.
///
/// An open struct rather than an enum, so new cases do not break callers: switch on `code`.
public struct SandboxError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case profile, mountSource, spawn, setup, commandNotFound, commandNotExecutable, supervisor, cgroup
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The profile is invalid or could not be read.
        public static let profile = Code(.profile)
        /// A mount source listed by the profile does not exist on the host.
        public static let mountSource = Code(.mountSource)
        /// The kernel refused to create the sandbox's process or namespaces.
        public static let spawn = Code(.spawn)
        /// A step inside the new namespaces failed; nothing was run.
        public static let setup = Code(.setup)
        /// The command was not found inside the sandbox.
        public static let commandNotFound = Code(.commandNotFound)
        /// The command exists inside the sandbox but could not be executed.
        public static let commandNotExecutable = Code(.commandNotExecutable)
        /// The supervisor lost track of the sandbox (a system call of its own failed).
        public static let supervisor = Code(.supervisor)
        /// The sandbox could have no cgroup of its own, and one is required (`CgroupRequirement.required`).
        public static let cgroup = Code(.cgroup)

        /// A stable identifier, used in JSON output.
        public var description: String { value.rawValue }
    }

    /// What kind of failure this is.
    public let code: Code
    /// A sentence for people, naming the field, path or step at fault.
    public let message: String
    /// The underlying `errno`, when a system call failed.
    public let errno: Int32?

    /// Creates an error.
    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// The message, with the system's text for `errno` when there is one.
    public var description: String {
        guard let errno else { return message }
        return "\(message): \(ErrnoName.describe(errno))"
    }
}

/// Names and texts of `errno` values, as used in traces and profiles.
public enum ErrnoName {
    private static let table: [(String, Int32)] = [
        ("EPERM", EPERM), ("ENOENT", ENOENT), ("ESRCH", ESRCH), ("EINTR", EINTR), ("EIO", EIO),
        ("E2BIG", E2BIG), ("ENOEXEC", ENOEXEC), ("EBADF", EBADF), ("EAGAIN", EAGAIN), ("ENOMEM", ENOMEM),
        ("EACCES", EACCES), ("EFAULT", EFAULT), ("EBUSY", EBUSY), ("EEXIST", EEXIST), ("ENOTDIR", ENOTDIR),
        ("EISDIR", EISDIR), ("EINVAL", EINVAL), ("ENFILE", ENFILE), ("EMFILE", EMFILE), ("ENOTTY", ENOTTY),
        ("EFBIG", EFBIG), ("ENOSPC", ENOSPC), ("EROFS", EROFS), ("EPIPE", EPIPE), ("ENOSYS", ENOSYS),
        ("ENAMETOOLONG", ENAMETOOLONG), ("ELOOP", ELOOP), ("EAFNOSUPPORT", EAFNOSUPPORT),
        ("EADDRNOTAVAIL", EADDRNOTAVAIL), ("ENETUNREACH", ENETUNREACH), ("ECONNREFUSED", ECONNREFUSED),
        ("EHOSTUNREACH", EHOSTUNREACH), ("EOPNOTSUPP", EOPNOTSUPP), ("ECANCELED", ECANCELED),
        ("EPROTONOSUPPORT", EPROTONOSUPPORT), ("ESOCKTNOSUPPORT", ESOCKTNOSUPPORT),
    ]

    /// The symbolic name of `code` (`"EACCES"`), or its number as text.
    public static func name(_ code: Int32) -> String {
        table.first { $0.1 == code }?.0 ?? String(code)
    }

    /// The value of a symbolic name such as `"EACCES"`, or nil when unknown.
    public static func value(_ name: String) -> Int32? {
        table.first { $0.0 == name }?.1
    }

    /// `"EACCES (Permission denied)"`.
    public static func describe(_ code: Int32) -> String {
        "\(name(code)) (\(String(cString: strerror(code))))"
    }
}
