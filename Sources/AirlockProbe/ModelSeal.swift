public import AirlockSandbox
public import AirlockSystem
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// Hands a model to a sandbox as a descriptor the command cannot write through: the probe's concern, not the
/// sandbox's, which runs whatever descriptors it is given (`SandboxRequest.passedFDs`).
public enum ModelSeal {
    /// Files up to this size are always handed to the sandbox as a sealed in-memory copy (within
    /// `Limits.modelCopyBytes`).
    public static let sealedCopyLimit: UInt64 = 64 << 20

    /// A descriptor of the file open as `fd` that is safe to pass to a sandbox run with `profile`
    /// (`SandboxRequest.passedFDs`): the very file, never a path looked up again, and one the command cannot write
    /// through. A file the sandbox's host user could write (which a reopen through `/proc/self/fd/N` would then
    /// allow) becomes a sealed in-memory copy; so does any small file, whatever its mode bits say, because an ACL
    /// could still grant that user write access and a copy of up to `sealedCopyLimit` costs little. Other files get a
    /// fresh read-only open of the same file. The caller closes it.
    ///
    /// A copy holds the file's data extents only (holes stay holes, so a sparse file costs what it stores), and at
    /// most `profile.sandbox.limits.modelCopyBytes` of them: a writable file with more data is refused.
    ///
    /// With `identities` (airlockd's allocator) the sandbox's host ids are not the profile's but some of the range's:
    /// a file that any of them could write (owner or group in the range, with the write bit) counts as writable. So
    /// does a file with an extended POSIX ACL whose mask allows writing: a named entry may give the sandbox's ids
    /// write access that the mode bits do not show.
    public static func passableDescriptor(
        _ fd: FileDescriptor, profile: Profile, identities: (any SandboxIdentitySource)? = nil
    ) throws(SandboxError) -> FileDescriptor {
        let reopened: FileDescriptor
        do throws(SystemCallError) {
            reopened = try FileDescriptor.open("/proc/self/fd/\(fd.rawValue)", O_RDONLY | O_NOCTTY | O_NONBLOCK)
        } catch {
            throw SandboxError(.mountSource, "cannot reopen the model read-only", error)
        }
        var st = stat()
        guard fstat(reopened.rawValue, &st) == 0 else {
            let failure = SystemCallError("fstat")
            reopened.close()
            throw SandboxError(.mountSource, "cannot stat the model", failure)
        }
        let size = UInt64(max(0, st.st_size))
        let budget = profile.sandbox.limits.modelCopyBytes
        let ids = profile.sandbox.user.hostIDs
        let ownerIsSandbox = st.st_uid == ids.uid || identities?.mayHandOut(uid: st.st_uid) == true
        let groupIsSandbox = st.st_gid == ids.gid || identities?.mayHandOut(gid: st.st_gid) == true
        // An extended POSIX ACL can grant write to a named user or group (the sandbox's ids among them) whatever the
        // owner's and group's bits say; its mask, shown as the group bits, caps every such entry.
        let aclMayWrite =
            st.st_mode & 0o020 != 0
            && airlock_getxattr("/proc/self/fd/\(reopened.rawValue)", "system.posix_acl_access", nil, 0) > 0
        let writable =
            st.st_mode & 0o002 != 0 || (ownerIsSandbox && st.st_mode & 0o200 != 0)
            || (groupIsSandbox && st.st_mode & 0o020 != 0) || aclMayWrite
        guard (size <= sealedCopyLimit && size <= budget) || writable else { return reopened }
        defer { reopened.close() }
        let copy = airlock_sealed_copy(reopened.rawValue, size, budget)
        guard copy >= 0 else {
            let failure = Errno.current
            if failure.rawValue == EFBIG {
                throw SandboxError(
                    .mountSource,
                    "the model is writable by the sandbox's user \(ids.uid) and holds more than \(budget) bytes "
                        + "of data, the budget of its sealed copy (airlock.limits.modelCopyBytes): make it read-only for "
                        + "that user, or raise the budget",
                    errno: failure
                )
            }
            throw SandboxError(.mountSource, "cannot copy the model into sealed memory", errno: failure)
        }
        return FileDescriptor(copy)
    }
}
