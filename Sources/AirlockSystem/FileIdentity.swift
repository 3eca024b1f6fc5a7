#if canImport(Glibc)
    import Glibc
#endif

/// What tells one state of a file's content from another without reading it: device, inode, size, modification and
/// change times in nanoseconds, and the mount the file was seen through. The change time (`ctime`) is set by the
/// kernel on every write, truncation, rename or attribute change and cannot be set by users, so content rewritten
/// under the same name (even with the modification time put back by `touch -d`) gets another identity.
package struct FileIdentity: Hashable, Sendable {
    /// `st_dev`.
    package var device: UInt64
    /// `st_ino`.
    package var inode: UInt64
    /// `st_size`.
    package var size: UInt64
    /// Modification time, nanoseconds since the epoch.
    package var modifiedNs: Int64
    /// Change time, nanoseconds since the epoch.
    package var changedNs: Int64
    /// The mount the file was seen through (`statx` `stx_mnt_id`); `mountUnique` when it is the 64-bit id the
    /// kernel never reuses before a reboot (`STATX_MNT_ID_UNIQUE`, Linux 6.8).
    package var mountID: UInt64
    /// Whether `mountID` is never reused before a reboot.
    package var mountUnique: Bool
    /// The file system's magic number (`statfs` `f_type`).
    package var fileSystem: UInt64
    /// `st_mode`, `st_uid` and `st_nlink`.
    package var mode: UInt32
    package var owner: UInt32
    package var links: UInt32

    /// Whether it is a regular file.
    package var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }

    /// Whether `other` is the same content state of the same file: every field but the link count.
    package func sameContent(as other: FileIdentity) -> Bool {
        device == other.device && inode == other.inode && size == other.size && modifiedNs == other.modifiedNs
            && changedNs == other.changedNs && mountID == other.mountID && mountUnique == other.mountUnique
            && fileSystem == other.fileSystem && isRegular && other.isRegular
    }

    package init(
        device: UInt64, inode: UInt64, size: UInt64, modifiedNs: Int64, changedNs: Int64, mountID: UInt64,
        mountUnique: Bool, fileSystem: UInt64, mode: UInt32, owner: UInt32, links: UInt32
    ) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modifiedNs = modifiedNs
        self.changedNs = changedNs
        self.mountID = mountID
        self.mountUnique = mountUnique
        self.fileSystem = fileSystem
        self.mode = mode
        self.owner = owner
        self.links = links
    }
}
