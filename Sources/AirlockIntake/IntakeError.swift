/// Why an intake step could not be done. The model stays where it was; the message says why.
public struct IntakeError: Error, Sendable, CustomStringConvertible {
    /// A sentence naming the file or step.
    public let message: String
    /// The errno, when a system call failed (ENOSPC, EACCES, EROFS, …).
    public let errno: Int32?

    /// Creates an error.
    public init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }

    public var description: String { message }
}
