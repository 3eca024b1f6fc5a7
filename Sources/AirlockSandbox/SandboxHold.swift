public import AirlockSystem
internal import CSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// A sandbox started ahead of its work: a warm sandbox (docs/sandbox.md, "Warm start").
///
/// A held sandbox is built exactly like any other (`SandboxRequest.hold` changes nothing about its namespaces,
/// mounts, filter or limits); only its clock differs. Until `release` its deadline is `idleSeconds` from its start, a
/// bound on how long it may wait. `release` hands it its work: from that moment the deadline is the work's own
/// timeout (`SandboxRequest.timeoutSeconds` or the profile's), counted from the release, and the run's phases may be
/// set for the work. What the work is and how it reaches the command is the caller's business (airlockd passes the
/// model through a socket given to the command as a passed descriptor).
///
/// Shared by the thread that supervises the sandbox (`Sandbox.run`) and the one that hands the work over; every
/// transition happens once, under a lock, and wakes the supervisor through a pipe it polls.
public final class SandboxHold: @unchecked Sendable {
    /// What the work runs with once handed over.
    public struct Release: Sendable, Equatable {
        /// The deadline from the release, seconds; the request's `timeoutSeconds` (or the profile's) when nil.
        public var timeoutSeconds: Double?
        /// The phases the command may announce from now on, replacing the request's (the work decides whether it
        /// has a probe phase); the request's when nil. Phases already announced stay announced.
        public var phases: [String]?

        /// Creates a release.
        public init(timeoutSeconds: Double? = nil, phases: [String]? = nil) {
            self.timeoutSeconds = timeoutSeconds
            self.phases = phases
        }
    }

    /// Where the sandbox is in its life, as the supervisor learns it.
    enum State: Equatable {
        /// Waiting for its work.
        case waiting
        /// Handed its work at this monotonic time (ns).
        case released(at: UInt64, Release)
        /// Given up before any work was handed over: the supervisor kills it.
        case discarded
        /// The sandbox is over (or never started); nothing can be handed to it any more.
        case ended
    }

    /// Longest time the sandbox may wait for its work, seconds from its start; it is killed (`timedOut`) then.
    public let idleSeconds: Double
    private let monitor = Monitor()
    private var current = State.waiting
    private let readEnd: FileDescriptor
    private let writeEnd: FileDescriptor

    /// A hold whose sandbox may wait `idleSeconds` (more than 0, at most a day).
    public init(idleSeconds: Double) throws(SandboxError) {
        guard idleSeconds > 0, idleSeconds <= 86_400 else {
            throw SandboxError(.profile, "a held sandbox's idle bound must be in (0, 86400] seconds")
        }
        var ends: [Int32] = [0, 0]
        guard airlock_pipe(&ends) == 0 else {
            throw SandboxError(.supervisor, "pipe for a held sandbox", errno: .current)
        }
        _ = fcntl(ends[0], F_SETFL, O_NONBLOCK)
        _ = fcntl(ends[1], F_SETFL, O_NONBLOCK)
        self.idleSeconds = idleSeconds
        readEnd = FileDescriptor(ends[0])
        writeEnd = FileDescriptor(ends[1])
    }

    deinit {
        readEnd.close()
        writeEnd.close()
    }

    /// Hands the work over: the deadline now counts from this moment. Returns false, and changes nothing, when the
    /// sandbox was released or discarded before or is already over: then nothing may be handed to it.
    public func release(_ release: Release = Release()) -> Bool {
        let now = monotonicNow()
        let done = monitor.locked { () -> Bool in
            guard current == .waiting else { return false }
            current = .released(at: now, release)
            return true
        }
        if done { wake() }
        return done
    }

    /// Gives the sandbox up while it waits: its supervisor kills it. Nothing once it was released (its work then
    /// runs to its own end) or is over.
    public func discard() {
        let done = monitor.locked { () -> Bool in
            guard current == .waiting else { return false }
            current = .discarded
            return true
        }
        if done { wake() }
    }

    /// Whether the sandbox still waits for its work: neither released, discarded nor over.
    public var isWaiting: Bool { monitor.locked { current == .waiting } }

    /// Whether the sandbox is over.
    public var hasEnded: Bool { monitor.locked { current == .ended } }

    // MARK: The supervisor's side

    /// Readable when the state changed; the supervisor polls it.
    var fd: FileDescriptor { readEnd }

    /// The state, emptying the pipe (each transition writes one byte, and there are at most two).
    func take() -> State {
        var bytes: (UInt64, UInt64) = (0, 0)
        _ = read(readEnd.rawValue, &bytes, 16)
        return monitor.locked { current }
    }

    /// The sandbox is over: nothing can be released or discarded any more.
    func end() { monitor.locked { current = .ended } }

    private func wake() {
        var one: UInt8 = 1
        _ = write(writeEnd.rawValue, &one, 1)
    }
}
