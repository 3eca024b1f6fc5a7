public import AirlockSystem

/// Why an intake step could not be done. The model stays where it was; the message says why.
public struct IntakeError: AirlockError {
    /// A sentence naming the file or step.
    public let message: String
    /// The errno, when a system call failed (ENOSPC, EACCES, EROFS, …).
    public let errno: Errno?

    /// Creates an error.
    public init(_ message: String, errno: Errno? = nil) {
        self.message = message
        self.errno = errno
    }

    /// An error for a system call that just failed: `"cannot open x: ENOENT (No such file or directory)"`, with the
    /// calling thread's errno (read before anything else can change it).
    static func system(_ what: String, errno: Errno = .current) -> IntakeError {
        IntakeError("\(what): \(errno)", errno: errno)
    }

    /// `"intake"`: the step is named in the message.
    public var code: String { "intake" }
    public var description: String { message }
}
