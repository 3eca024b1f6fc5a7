public import AirlockSystem

/// What to run in a sandbox, and how.
public struct SandboxRequest: Sendable {
    /// The command and its arguments; `argv[0]` is looked up in the sandbox's `PATH` unless it holds a `/`.
    public var argv: [String]
    /// The profile that shapes the sandbox.
    public var profile: Profile
    /// Overrides the profile's `limits.timeoutSeconds`.
    public var timeoutSeconds: Double?
    /// Mounts added after the profile's (for example the loader harness, read-only, at `/airlock/harness`; the model itself
    /// is never mounted: it is passed as an open descriptor, `passedFDs`).
    public var extraMounts: [MountSpec]
    /// Phases the command may announce, in order (`startup`, `load`, `probe`); empty for none. See `PhaseMarker`.
    public var phases: [String]
    /// The paths whose opens announce a phase (path → phase name), drawn per run by the caller; empty: the fixed
    /// `PhaseMarker.prefix` paths. With markers, an open below the fixed prefix is an ordinary open.
    public var phaseMarkers: [String: String] = [:]
    /// Open descriptors handed to the command, as `Sandbox.firstPassedFD`, +1, … (at most 8). The command can use
    /// what they are open for, and nothing the mount tree does not show otherwise; reopening one through
    /// `/proc/self/fd/N` is an ordinary open, checked against the sandbox's ids and notified like any other.
    public var passedFDs: [FileDescriptor]
    /// Whether, and how long, to watch what the command leaves running once its work is done (it needs `phases`).
    /// Without it, whatever is left when the command exits is killed at once.
    public var observation: SandboxObservation?
    /// Folders mounted read-only that hold the runtime the command runs with (a Python environment under /home): a
    /// read below one is the runtime reading its own files, so the profile's denying path rules (its `secrets`)
    /// do not match it. Only reads, and only paths that stay below the folder once `.` and `..` are collapsed.
    public var runtimeTrees: [String]
    /// A phase whose allowed calls are counted, not kept in the trace (`SandboxResult.traceQuieted`): the runtime's
    /// start-up. Its refusals are kept.
    public var quietPhase: String? = nil
    /// Starts the sandbox ahead of its work (a warm sandbox): until `SandboxHold.release` the deadline is the hold's
    /// idle bound from the start, and from the release `timeoutSeconds` counts from then. Nothing else about the
    /// sandbox changes. Nil: the deadline counts from the start, set-up included.
    public var hold: SandboxHold?
    /// The host the sandbox pretends to be, applied over the profile's settings (`HostWorld.apply`); nil: the profile
    /// as written.
    public var world: HostWorld? = nil
    /// Where the sandbox's host uid and gid come from (airlockd's allocator): one identity of its own for the
    /// sandbox's life, written over the profile's `hostUid`/`hostGid`. Nil: the profile's (65534 by default).
    public var identities: (any SandboxIdentitySource)? = nil

    /// Creates a request.
    public init(
        argv: [String], profile: Profile, timeoutSeconds: Double? = nil, extraMounts: [MountSpec] = [],
        phases: [String] = [], passedFDs: [FileDescriptor] = [], observation: SandboxObservation? = nil,
        runtimeTrees: [String] = [], hold: SandboxHold? = nil
    ) {
        self.hold = hold
        self.runtimeTrees = runtimeTrees
        self.argv = argv
        self.profile = profile
        self.timeoutSeconds = timeoutSeconds
        self.extraMounts = extraMounts
        self.phases = phases
        self.passedFDs = passedFDs
        self.observation = observation
    }
}
