/// The one protocol every Airlock error conforms to.
///
/// Each module keeps its own error type (a sandbox failure and a bad manifest are different things to a caller), but all
/// of them answer the same three questions the same way: a stable identifier for programs (`code`, used in JSON
/// output and exit-code tables), a sentence for people (`description`, naming the file, field or step at fault), and
/// the system call's `errno` when one failed.
public protocol AirlockError: Error, Sendable, CustomStringConvertible {
    /// A stable identifier for programs (`"profile"`, `"io"`, `"malformed"`): switch on this, not on the text.
    var code: String { get }
    /// The `errno` of the system call that failed, when one did.
    var errno: Errno? { get }
}

extension AirlockError {
    public var errno: Errno? { nil }
}

/// A system call that failed, with what it was doing: `"open /etc/airlock/policy.json: ENOENT (No such file or
/// directory)"`. The text is written once, here, not at each call site.
public struct SystemCallError: AirlockError, Equatable {
    /// What was being done, naming its object (`"open /etc/airlock/policy.json"`).
    public let operation: String
    /// What the kernel answered.
    public let errnoValue: Errno

    /// Captures the current `errno` for `operation`. Call it right after the failing call.
    public init(_ operation: String, errno: Errno = .current) {
        self.operation = operation
        self.errnoValue = errno
    }

    public var code: String { "system" }
    public var errno: Errno? { errnoValue }
    public var description: String { "\(operation): \(errnoValue)" }
}
