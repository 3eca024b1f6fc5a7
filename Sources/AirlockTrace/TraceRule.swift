/// Which rule decided a traced call: the one vocabulary of `TraceEvent.rule`, written by the supervisor (the notifier
/// and `NotifyPolicy`) and read by the verdict policy, which judges refusals by it.
///
/// In the trace's JSON it is text (`description`: `"launch"`, `"syscalls[3]"`, `"phase-regression"`, a notify rule's
/// id), read back by `init(_:)`: the JSON contract and the profile's own rule ids are strings. Everything that makes
/// or reads one goes through this type, so that no reader matches a prefix or a literal of its own. A profile's notify
/// rule cannot take an id that would read back as another case (`isReserved`; the profile parser refuses it).
public enum TraceRule: Sendable, Hashable, CustomStringConvertible {
    /// The sandbox's own start of the command (the first `execve`, allowed).
    case launch
    /// A phase announcement (`PhaseMarker`), answered `ENOENT`.
    case phase
    /// An announcement of an earlier phase than the current one: a forgery, refused.
    case phaseRegression
    /// An announcement of a phase the request does not have, refused.
    case phaseUnknown
    /// A system call the profile decides nowhere, refused with `ENOSYS`.
    case undecided
    /// A system-call number beyond the machine's table, refused with `ENOSYS`.
    case unknownSyscall
    /// No notify rule matched: the profile's `notifyDefault` answered.
    case notifyDefault
    /// The profile's `syscalls[index]` rule refused the call outright.
    case refused(index: Int)
    /// The profile's notify rule with this id decided.
    case notify(String)
    /// A read of a credential the world planted (a honeytoken, `HostWorld.honeytokens`), allowed by the supervisor so
    /// that the reader goes on to use what it read.
    case honeytoken

    /// The rules the supervisor refuses with on its own, whatever the profile's notify rules say.
    public static let supervisorRefusals: [TraceRule] = [.undecided, .unknownSyscall, .phaseRegression, .phaseUnknown]

    /// Ids a profile's notify rule cannot take: the trace could not tell them from the supervisor's own.
    public static let reservedIDs: Set<String> = [
        "launch", "phase", "phase-regression", "phase-unknown", "undecided", "unknown-syscall", "default",
        "honeytoken",
    ]

    /// Whether a notify rule of a profile cannot take `id`: the trace could not tell it from the supervisor's own rule
    /// or a `syscalls[N]` rule (it would not read back as `.notify(id)`).
    public static func isReserved(_ id: String) -> Bool {
        reservedIDs.contains(id) || TraceRule(id) != .notify(id)
    }

    /// Reads a trace's `rule` text.
    public init(_ text: String) {
        switch text {
        case "launch": self = .launch
        case "phase": self = .phase
        case "phase-regression": self = .phaseRegression
        case "phase-unknown": self = .phaseUnknown
        case "undecided": self = .undecided
        case "unknown-syscall": self = .unknownSyscall
        case "default": self = .notifyDefault
        case "honeytoken": self = .honeytoken
        default:
            if text.hasPrefix("syscalls["), text.hasSuffix("]"),
                let index = Int(text.dropFirst("syscalls[".count).dropLast())
            {
                self = .refused(index: index)
            } else {
                self = .notify(text)
            }
        }
    }

    /// The text the trace carries.
    public var description: String {
        switch self {
        case .launch: "launch"
        case .phase: "phase"
        case .phaseRegression: "phase-regression"
        case .phaseUnknown: "phase-unknown"
        case .undecided: "undecided"
        case .unknownSyscall: "unknown-syscall"
        case .notifyDefault: "default"
        case .refused(let index): "syscalls[\(index)]"
        case .notify(let id): id
        case .honeytoken: "honeytoken"
        }
    }
}
