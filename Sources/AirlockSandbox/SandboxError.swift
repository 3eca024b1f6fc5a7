public import AirlockSystem

/// Why a sandbox could not be built or run.
///
/// An open struct rather than an enum, so new cases do not break callers: switch on `kind`.
public struct SandboxError: AirlockError, Equatable {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case profile, mountSource, spawn, setup, commandNotFound, commandNotExecutable, supervisor, cgroup,
                identities
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
        /// No host identity could be had for the sandbox: every id of airlockd's range is held by a live sandbox
        /// (`SandboxIdentitySource`), and ids are never shared.
        public static let identities = Code(.identities)

        /// A stable identifier, used in JSON output.
        public var description: String { value.rawValue }
    }

    /// What kind of failure this is.
    public let kind: Code
    /// A sentence for people, naming the field, path or step at fault.
    public let message: String
    /// The underlying `errno`, when a system call failed.
    public let errno: Errno?

    /// Creates an error.
    public init(_ kind: Code, _ message: String, errno: Errno? = nil) {
        self.kind = kind
        self.message = message
        self.errno = errno
    }

    /// Creates an error from a failed system call, keeping its `errno`; `message` says what it was for.
    public init(_ kind: Code, _ message: String, _ failure: SystemCallError) {
        self.init(kind, message, errno: failure.errnoValue)
    }

    /// The stable identifier of `kind` (`"setup"`, `"commandNotFound"`), used in JSON output.
    public var code: String { kind.description }

    /// The message, with the system's text for `errno` when there is one.
    public var description: String {
        guard let errno else { return message }
        return "\(message): \(errno)"
    }
}
