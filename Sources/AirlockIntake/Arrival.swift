internal import AirlockSystem
import AirlockNames
internal import AirlockFormats

#if canImport(Glibc)
    import Glibc
#endif

/// Whether an entry of `incoming/` has finished arriving.
///
/// - A file has arrived when no process holds it open for writing: a read lease (`F_SETLEASE`) is granted only
///   then. Where leases cannot be taken (an intake without `CAP_LEASE` on files it does not own), it has arrived when
///   it has not changed for the settle time.
/// - A folder has arrived when it holds a `.ready` marker, or when nothing in it changed (ctime of every entry) for
///   the settle time; and in both cases no file in it is open for writing.
/// - Names starting with `.` are never taken (copy tools write there first, then rename); symbolic links, special
///   files and the names `report.json` / `manifest.json` (which the release folder uses) are left alone and reported.
enum Arrival: Equatable {
    case ready
    case waiting(String)
    case ignored(String)

    /// The marker file that says a folder is complete.
    static let marker = ".ready"
    /// Names the release folder uses for its own files.
    static let reserved: Set<FileName> = [FileName("report.json"), FileName("manifest.json")]

    static func check(_ incoming: Int32, _ name: FileName, settleSeconds: Double, now: Double) -> Arrival {
        if name.hasPrefix(".") { return .ignored("a hidden name: still being delivered (rename it when complete)") }
        if reserved.contains(name) {
            return .ignored("\(name) is reserved for the release folder's own files: rename the model")
        }
        var st = stat()
        guard name.withCString({ fstatat(incoming, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
            return .waiting("cannot stat: \(Errno.current.text)")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            let fd = name.withCString {
                openat(incoming, $0, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
            }
            guard fd >= 0 else { return .waiting("cannot open: \(Errno.current.text)") }
            defer { FileDescriptor(fd).close() }
            switch writerCheck(fd) {
            case .free: return .ready
            case .writing: return .waiting("open for writing")
            case .unknown:
                let age = now - seconds(st.st_ctim)
                return age >= settleSeconds
                    ? .ready : .waiting("changed \(Int(age)) s ago (settle time \(Int(settleSeconds)) s)")
            }
        case S_IFDIR:
            let fd = name.withCString { openat(incoming, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else { return .waiting("cannot open: \(Errno.current.text)") }
            defer { FileDescriptor(fd).close() }
            var newest = seconds(st.st_ctim)
            var writing = false
            var unreadable: String? = nil
            var entries = 0
            walk(
                fd, prefix: "", depth: 0, newest: &newest, writing: &writing, unreadable: &unreadable, entries: &entries
            )
            if writing { return .waiting("a file in it is open for writing") }
            // As for a file: what the intake cannot read is a permission to fix, not a model to reject.
            if let unreadable { return .waiting("cannot read \(unreadable) in it (make it readable to the intake)") }
            if IntakeRoot.exists(fd, FileName(marker)) { return .ready }
            let age = now - newest
            return age >= settleSeconds
                ? .ready
                : .waiting("changed \(Int(age)) s ago, no \(marker) marker (settle time \(Int(settleSeconds)) s)")
        case S_IFLNK:
            return .ignored("a symbolic link: only files and folders are taken")
        default:
            return .ignored("not a regular file or folder")
        }
    }

    private enum Writers { case free, writing, unknown }

    private static func writerCheck(_ fd: Int32) -> Writers {
        if FileSystem.takeReadLease(fd) {
            FileSystem.releaseLease(fd)
            return .free
        }
        return errno == EAGAIN ? .writing : .unknown
    }

    private static func seconds(_ t: timespec) -> Double { Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }

    /// Newest ctime in the tree, whether any file is open for writing, and the first entry that cannot be read
    /// (bounded: 32 levels, 100,000 entries).
    private static func walk(
        _ dirfd: Int32, prefix: String, depth: Int, newest: inout Double, writing: inout Bool,
        unreadable: inout String?, entries: inout Int
    ) {
        guard depth < 32 else { return }
        for name in IntakeRoot.list(dirfd) {
            entries += 1
            if entries > 100_000 || writing { return }
            let path = prefix.isEmpty ? name.escaped : prefix + "/" + name.escaped
            var st = stat()
            guard name.withCString({ fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { continue }
            newest = max(newest, seconds(st.st_ctim))
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                let sub = name.withCString { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                guard sub >= 0 else {
                    if errno == EACCES && unreadable == nil { unreadable = path + "/" }
                    continue
                }
                walk(
                    sub, prefix: path, depth: depth + 1, newest: &newest, writing: &writing, unreadable: &unreadable,
                    entries: &entries)
                FileDescriptor(sub).close()
            case S_IFREG:
                let fd = name.withCString {
                    openat(dirfd, $0, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)
                }
                guard fd >= 0 else {
                    if errno == EACCES && unreadable == nil { unreadable = path }
                    continue
                }
                if writerCheck(fd) == .writing { writing = true }
                FileDescriptor(fd).close()
            default:
                break
            }
        }
    }
}
