/// The host uid and gid one sandbox's user maps to (`UserMapping.hostUid`, `hostGid`).
public struct SandboxHostIdentity: Sendable, Hashable {
    /// The host uid.
    public let uid: UInt32
    /// The host gid.
    public let gid: UInt32

    /// An identity.
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

/// Hands each sandbox host ids of its own and takes them back once every process of it is gone (airlockd's
/// `SandboxIdentities`, docs/daemon.md "Sandbox identities"). A `SandboxRequest` with a source maps its user to the
/// identity `acquire` returns instead of the profile's `hostUid`/`hostGid`; without one (the CLI) nothing changes.
public protocol SandboxIdentitySource: AnyObject, Sendable {
    /// An identity no other live sandbox holds; throws (`SandboxError.Code.identities`) rather than share one.
    func acquire() throws(SandboxError) -> SandboxHostIdentity
    /// Gives `identity` back: called only once the sandbox's PID 1 has been reaped, so its PID namespace (every
    /// process that ever ran with the identity) is empty, and its cgroup removed.
    func release(_ identity: SandboxHostIdentity)
    /// Whether `uid` is one the source may hand out: a file it owns could be written by some sandbox.
    func mayHandOut(uid: UInt32) -> Bool
    /// Whether `gid` is one the source may hand out.
    func mayHandOut(gid: UInt32) -> Bool
}

extension Sandbox {
    /// Runs `request` (`Sandbox.run`) with an identity of `request.identities` when it has a source: acquired before
    /// the sandbox is built, written into the profile's user (so `uid_map`, `gid_map` and the call emulator use it),
    /// and released only after the supervisor is gone, PID 1 killed and reaped.
    static func withIdentity(
        _ request: SandboxRequest, _ body: (SandboxRequest) throws(SandboxError) -> SandboxResult
    ) throws(SandboxError) -> SandboxResult {
        guard let source = request.identities else { return try body(request) }
        let identity = try source.acquire()
        defer { source.release(identity) }
        var request = request
        request.profile.sandbox.user.hostUid = identity.uid
        request.profile.sandbox.user.hostGid = identity.gid
        return try body(request)
    }
}
