internal import AirlockSystem
import AirlockNames
internal import AirlockAnalysis
internal import AirlockFormats

#if canImport(Glibc)
    import Glibc
#endif

/// The intake's custody of a model: what it examines and releases is a tree of fresh inodes that only the intake has
/// ever opened, never the uploader's.
///
/// A delivered inode stays the uploader's whatever the intake does with its name: a hard link kept elsewhere, a
/// descriptor opened for writing, a shared writable mapping, or a descriptor of a delivered folder (through which
/// entries can be created and renamed with `openat`/`renameat`) all survive a `rename` and any link-count check. So
/// the intake copies the bytes: every file into a new file it creates in its private quarantine folder (`O_EXCL`,
/// mode 0600 while written, fsync'd, then 0444), every folder into a new folder (0555 once filled), symbolic links
/// as new links. Nobody else can name those inodes (the quarantine is the intake's alone) and nobody else holds them
/// open, so after the copy no uploader can change a byte, an entry or a mode of what is examined and released.
///
/// Copies are bounded: logical bytes (sparse files count at their full size, as hashing and detonation read them)
/// by the policy's `maxBytes`, entries by `maxEntries`, nesting by `FolderWalk.maxDepth`; only allocated extents are
/// written (`SEEK_DATA`/`SEEK_HOLE`), so a sparse file costs the quarantine what it costs the uploader; memory is one
/// 4 MiB buffer. Names are `FileName`s, the kernel's bytes, from `readdir` to every system call that uses them (never
/// decoded and re-encoded: `w\xff.pkl` cannot lead the copy to `w\xef\xbf\xbd.pkl`); messages show them escaped.
enum Custody {
    /// What one model may hold.
    struct Limits: Sendable {
        /// Sum of the files' sizes (apparent, holes included).
        var maxBytes: Int
        /// Files, folders and links, the model's own folder included.
        var maxEntries = 100_000
        /// Deepest folder nesting.
        var maxDepth = FolderWalk.maxDepth
    }

    /// What a delivery holds.
    struct Size: Sendable, Equatable {
        /// Sum of the files' sizes.
        var bytes = 0
        /// Sum of the files' allocated blocks, in bytes.
        var allocated = 0
        /// Entries (files, folders, links).
        var entries = 0
    }

    private static func failure(_ what: String, _ e: Errno = .current) -> IntakeError {
        IntakeError.system(what, errno: e)
    }

    // MARK: - Survey

    /// Measures the delivery `name` in the folder `dirfd` (stat only, no file opened) and says why it cannot be
    /// taken: more bytes than the budget, too many entries or levels, a FIFO, socket or device in it.
    static func survey(_ dirfd: Int32, _ name: FileName, limits: Limits) throws(IntakeError) -> Size {
        var size = Size()
        try survey(dirfd, name, display: name.escaped, depth: 0, limits: limits, size: &size)
        return size
    }

    private static func survey(
        _ dirfd: Int32, _ name: FileName, display: String, depth: Int, limits: Limits, size: inout Size
    ) throws(IntakeError) {
        var st = stat()
        guard name.withCString({ fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            throw failure("cannot stat \(display)")
        }
        size.entries += 1
        guard size.entries <= limits.maxEntries else {
            throw IntakeError("it holds more than \(limits.maxEntries) entries")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            size.bytes += Int(st.st_size)
            size.allocated += Int(st.st_blocks) * 512
            guard size.bytes <= limits.maxBytes else { throw budget(size.bytes, limits) }
        case S_IFDIR:
            guard depth < limits.maxDepth else {
                throw IntakeError("\(display) is nested deeper than \(limits.maxDepth) folders")
            }
            let fd = name.withCString { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { throw failure("cannot open \(display)") }
            defer { FileDescriptor(fd).close() }
            for entry in try entries(fd, display: display) {
                try survey(
                    fd, entry, display: display + "/" + entry.escaped, depth: depth + 1, limits: limits,
                    size: &size)
            }
        case S_IFLNK:
            break
        default:
            throw IntakeError("\(display) is a \(kind(st.st_mode)): only files, folders and symbolic links are taken")
        }
    }

    private static func budget(_ bytes: Int, _ limits: Limits) -> IntakeError {
        IntakeError(
            "\(bytes) bytes (a sparse file counts at its full size: hashing and detonation read all of it) are more than the intake's byte budget (maxBytes \(limits.maxBytes))"
        )
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "FIFO"
        case S_IFSOCK: return "socket"
        case S_IFCHR, S_IFBLK: return "device"
        default: return "special file"
        }
    }

    /// The entries of the folder open as `dirfd` without `.` and `..`, in byte order, as `FolderWalk.names` lists them
    /// but bounded (an uploader holding a descriptor of a delivered folder can keep adding entries to it while it is
    /// listed); without `FolderWalk.skippedNames` too when `skipping` (no walk examines them, so no copy carries them).
    static func entries(_ dirfd: Int32, display: String, skipping: Bool = true) throws(IntakeError) -> [FileName] {
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let d = fdopendir(dup) else {
            let e = Errno.current
            if dup >= 0 { FileDescriptor(dup).close() }
            throw failure("cannot list \(display)", e)
        }
        defer { closedir(d) }
        rewinddir(d)
        let skipped = skipping ? FolderWalk.skippedNames : []
        var names: [FileName] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in FileName(bytes: raw.prefix { $0 != 0 }) }
            if name.bytes == [0x2E] || name.bytes == [0x2E, 0x2E] || skipped.contains(name) { continue }
            names.append(name)
            // The survey bounds what it counts; this bounds what one listing may hold in memory meanwhile.
            guard names.count <= 1_000_000 else { throw IntakeError("\(display) holds more than a million entries") }
        }
        return names.sorted()
    }

    // MARK: - Copy

    /// Copies the delivery `name` in the folder `from` to the new entry `target` in `into` (the intake's private
    /// quarantine folder), every inode fresh, fsync'd and read-only (files 0444, folders 0555), owned by this
    /// process's euid and egid. Refuses before writing anything when the delivery is over the limits or the file
    /// system lacks the room; refuses a file open for writing (when a lease can tell) or one that changed while it
    /// was copied. On failure, what was copied is left for the caller to remove.
    ///
    /// `leaveOut` names entries at the top of a folder that are not copied (the `.ready` marker: how a folder was
    /// delivered, not part of the model, and never examined).
    static func copy(
        from: Int32, _ name: FileName, into: Int32, as target: FileName, leaveOut: Set<FileName> = [], limits: Limits
    ) throws(IntakeError) -> Size {
        // A link only inside a folder: at the top, the name itself must be a file or a folder (a link there was
        // swapped in after the arrival check, and is neither followed nor copied).
        var top = stat()
        guard name.withCString({ fstatat(from, $0, &top, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            throw failure("cannot stat \(name.escaped)")
        }
        let kind = top.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFDIR else {
            throw IntakeError("\(name.escaped) is \(Custody.kindText(kind)), not a regular file or folder: not copied")
        }
        let needed = try survey(from, name, limits: limits)
        var vfs = statvfs()
        if fstatvfs(into, &vfs) == 0 {
            let free = Int(vfs.f_bavail) &* Int(vfs.f_frsize)
            guard needed.allocated <= free else {
                throw IntakeError(
                    "not enough room for the intake's copy: \(needed.allocated) bytes needed, \(free) free",
                    errno: Errno(ENOSPC))
            }
        }
        let state = CopyState(limits: limits)
        state.leaveOut = leaveOut
        // Every file and folder of the copy is fsync'd; `into` is synced by the caller once the copy has its name.
        try copyEntry(from, name, display: name.escaped, into: into, target, depth: 0, state: state)
        return state.size
    }

    /// What a file type (`st_mode & S_IFMT`) is, in words ("a symbolic link", "a FIFO"…).
    static func kindText(_ type: mode_t) -> String {
        switch type {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a folder"
        case S_IFLNK: return "a symbolic link"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case 0: return "nothing (it is gone)"
        default: return "an unknown kind of file"
        }
    }

    /// Linux's `lseek` whences for allocated extents (glibc declares them only with `_GNU_SOURCE`).
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    private final class CopyState {
        let limits: Limits
        var size = Size()
        var leaveOut: Set<FileName> = []
        let buffer: UnsafeMutableRawBufferPointer = .allocate(byteCount: 4 << 20, alignment: 4096)
        let uid = geteuid()
        let gid = getegid()

        init(limits: Limits) { self.limits = limits }
        deinit { buffer.deallocate() }
    }

    private static func copyEntry(
        _ srcDir: Int32, _ name: FileName, display: String, into dstDir: Int32, _ target: FileName, depth: Int,
        state: CopyState
    ) throws(IntakeError) {
        var st = stat()
        guard name.withCString({ fstatat(srcDir, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            throw failure("cannot stat \(display)")
        }
        state.size.entries += 1
        guard state.size.entries <= state.limits.maxEntries else {
            throw IntakeError("it holds more than \(state.limits.maxEntries) entries")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            // O_NONBLOCK and O_NOFOLLOW: a name swapped for a FIFO or a link since the stat is neither waited on nor
            // followed; what was opened is checked again.
            let src = name.withCString { openat(srcDir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
            guard src >= 0 else { throw failure("cannot open \(display)") }
            defer { FileDescriptor(src).close() }
            try copyFile(src, display: display, into: dstDir, target, state: state)
        case S_IFDIR:
            guard depth < state.limits.maxDepth else {
                throw IntakeError("\(display) is nested deeper than \(state.limits.maxDepth) folders")
            }
            let src = name.withCString { openat(srcDir, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard src >= 0 else { throw failure("cannot open \(display)") }
            defer { FileDescriptor(src).close() }
            guard target.withCString({ mkdirat(dstDir, $0, 0o700) }) == 0 else {
                throw failure("cannot create the copy of \(display)")
            }
            let dst = target.withCString { openat(dstDir, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard dst >= 0 else { throw failure("cannot open the copy of \(display)") }
            defer { FileDescriptor(dst).close() }
            for entry in try entries(src, display: display) where depth > 0 || !state.leaveOut.contains(entry) {
                try copyEntry(
                    src, entry, display: display + "/" + entry.escaped, into: dst, entry, depth: depth + 1,
                    state: state)
            }
            try own(dst, mode: 0o555, state: state, display: display)
            guard fsync(dst) == 0 else { throw failure("cannot sync the copy of \(display)") }
        case S_IFLNK:
            var buf = [CChar](repeating: 0, count: 4097)
            let n = name.withCString { readlinkat(srcDir, $0, &buf, 4096) }
            guard n >= 0 else { throw failure("cannot read the link \(display)") }
            buf[n] = 0
            // The target's bytes as read (a C string already, never decoded), the link's name as listed.
            guard target.withCString({ symlinkat(buf, dstDir, $0) }) == 0 else {
                throw failure("cannot create the copy of the link \(display)")
            }
            var made = stat()
            let statted = target.withCString { fstatat(dstDir, $0, &made, AT_SYMLINK_NOFOLLOW) }
            if statted == 0 && made.st_gid != state.gid {
                _ = target.withCString { fchownat(dstDir, $0, uid_t.max, state.gid, AT_SYMLINK_NOFOLLOW) }
            }
        default:
            throw IntakeError("\(display) is a \(kind(st.st_mode)): only files, folders and symbolic links are taken")
        }
    }

    /// Gives the inode open as `fd` (the intake's own) this process's group (a set-group-id folder above would have
    /// given its own) and exactly `mode` (which clears the set-group-id bit such a parent passes on to new folders).
    static func seal(_ fd: Int32, mode: mode_t, display: String) throws(IntakeError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure("cannot stat \(display)") }
        let gid = getegid()
        if st.st_gid != gid {
            guard fchown(fd, uid_t.max, gid) == 0 else { throw failure("cannot set the group of \(display)") }
        }
        guard fchmod(fd, mode) == 0 else { throw failure("cannot make \(display) read-only") }
    }

    private static func own(_ fd: Int32, mode: mode_t, state: CopyState, display: String) throws(IntakeError) {
        try seal(fd, mode: mode, display: "the copy of " + display)
    }

    private static func copyFile(
        _ src: Int32, display: String, into dstDir: Int32, _ target: FileName, state: CopyState
    )
        throws(IntakeError)
    {
        var before = stat()
        guard fstat(src, &before) == 0, before.st_mode & S_IFMT == S_IFREG else {
            throw IntakeError("\(display) was replaced while it was copied")
        }
        // A writer that opened the file after it was seen arrive would tear the copy: refuse now rather than
        // examine half a model. (Where no lease can be taken, the ctime check below still catches most writes.)
        if FileSystem.takeReadLease(src) {
            FileSystem.releaseLease(src)
        } else if errno == EAGAIN {
            throw IntakeError("\(display) is open for writing again")
        }
        let size = Int(before.st_size)
        state.size.bytes += size
        state.size.allocated += Int(before.st_blocks) * 512
        guard state.size.bytes <= state.limits.maxBytes else { throw budget(state.size.bytes, state.limits) }
        let dst = target.withCString { openat(dstDir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard dst >= 0 else { throw failure("cannot create the copy of \(display)") }
        defer { FileDescriptor(dst).close() }
        _ = posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL)
        var position = 0
        while position < size {
            // Only the allocated extents: a hole stays a hole. Where SEEK_DATA is not known, all is data.
            var start = Int(lseek(src, off_t(position), seekData))
            if start < 0 {
                if errno == ENXIO { break }
                guard errno == EINVAL else { throw failure("cannot read \(display)") }
                start = position
            }
            if start >= size { break }
            var end = Int(lseek(src, off_t(start), seekHole))
            if end < 0 || end > size { end = size }
            var offset = start
            while offset < end {
                let want = min(state.buffer.count, end - offset)
                let n = pread(src, state.buffer.baseAddress, want, off_t(offset))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw failure("cannot read \(display)")
                }
                guard n > 0 else { throw IntakeError("\(display) was shortened while it was copied") }
                var written = 0
                while written < n {
                    let w = pwrite(dst, state.buffer.baseAddress! + written, n - written, off_t(offset + written))
                    if w < 0 {
                        if errno == EINTR { continue }
                        throw failure("cannot write the copy of \(display)")
                    }
                    written += w
                }
                offset += n
            }
            position = end
        }
        guard ftruncate(dst, off_t(size)) == 0 else { throw failure("cannot write the copy of \(display)") }
        try own(dst, mode: 0o444, state: state, display: display)
        guard fsync(dst) == 0 else { throw failure("cannot sync the copy of \(display)") }
        var after = stat()
        guard fstat(src, &after) == 0, after.st_size == before.st_size, after.st_ctim.tv_sec == before.st_ctim.tv_sec,
            after.st_ctim.tv_nsec == before.st_ctim.tv_nsec
        else {
            throw IntakeError("\(display) changed while it was copied")
        }
    }

    // MARK: - Checks and removal

    /// Checks that `name` in the folder `dirfd` is the intake's own read-only tree: every entry owned by this
    /// process's euid and egid, files 0444 with one link, folders 0555, links, nothing else. Throws the first entry
    /// that is not.
    static func checkOwned(_ dirfd: Int32, _ name: FileName, limits: Limits) throws(IntakeError) {
        var count = 0
        try checkOwned(
            dirfd, name, display: name.escaped, depth: 0, limits: limits, count: &count, uid: geteuid(),
            gid: getegid())
    }

    private static func checkOwned(
        _ dirfd: Int32, _ name: FileName, display: String, depth: Int, limits: Limits, count: inout Int, uid: uid_t,
        gid: gid_t
    ) throws(IntakeError) {
        var st = stat()
        guard name.withCString({ fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            throw failure("cannot stat \(display)")
        }
        count += 1
        guard count <= limits.maxEntries + 1 else {
            throw IntakeError("it holds more than \(limits.maxEntries) entries")
        }
        guard st.st_uid == uid && st.st_gid == gid else {
            throw IntakeError(
                "\(display) is owned by \(st.st_uid):\(st.st_gid), not by the intake (\(uid):\(gid)): not the intake's own copy"
            )
        }
        let mode = st.st_mode & 0o7777
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            guard mode == 0o444 else { throw IntakeError("\(display) has mode \(String(mode, radix: 8)), not 0444") }
            guard st.st_nlink == 1 else {
                throw IntakeError("\(display) has \(st.st_nlink) hard links: another name could change it")
            }
        case S_IFDIR:
            guard mode == 0o555 else { throw IntakeError("\(display)/ has mode \(String(mode, radix: 8)), not 0555") }
            guard depth < limits.maxDepth else {
                throw IntakeError("\(display) is nested deeper than \(limits.maxDepth) folders")
            }
            let fd = name.withCString { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { throw failure("cannot open \(display)") }
            defer { FileDescriptor(fd).close() }
            for entry in try entries(fd, display: display, skipping: false) {
                try checkOwned(
                    fd, entry, display: display + "/" + entry.escaped, depth: depth + 1, limits: limits,
                    count: &count, uid: uid, gid: gid)
            }
        case S_IFLNK:
            break
        default:
            throw IntakeError("\(display) is a \(kind(st.st_mode))")
        }
    }

    /// Removes `name` (a file, or a folder and everything in it) from `dirfd` without following links: the intake's
    /// own copies (made writable first: they are read-only) or an original delivery. Bounded, because a delivery's
    /// uploader may still hold a descriptor of one of its folders and keep adding to it: returns whether it is gone.
    @discardableResult
    static func remove(_ dirfd: Int32, _ name: FileName, limits: Limits) -> Bool {
        var budget = limits.maxEntries * 2
        return remove(dirfd, name, depth: 0, maxDepth: limits.maxDepth + 2, budget: &budget)
    }

    private static func remove(_ dirfd: Int32, _ name: FileName, depth: Int, maxDepth: Int, budget: inout Int) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        var st = stat()
        guard name.withCString({ fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { return errno == ENOENT }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            return name.withCString { unlinkat(dirfd, $0, 0) } == 0 || errno == ENOENT
        }
        guard depth < maxDepth else { return false }
        let fd = name.withCString { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if fd >= 0 {
            if st.st_uid == geteuid() && st.st_mode & 0o700 != 0o700 { _ = fchmod(fd, 0o700) }
            for entry in (try? entries(fd, display: "", skipping: false)) ?? [] {
                _ = remove(fd, entry, depth: depth + 1, maxDepth: maxDepth, budget: &budget)
            }
            FileDescriptor(fd).close()
        }
        return name.withCString { unlinkat(dirfd, $0, AT_REMOVEDIR) } == 0 || errno == ENOENT
    }
}
