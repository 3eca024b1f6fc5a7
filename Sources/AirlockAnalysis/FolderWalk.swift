#if canImport(Glibc)
import Glibc
#endif

/// A walk through a model folder by descriptors: every directory and file is opened relative to its parent's
/// descriptor with `O_NOFOLLOW`, so nothing swapped for a symbolic link during the walk leads outside the folder.
///
/// Used by folder scans and by provenance (manifests, signatures), so both see the same files.
public enum FolderWalk {
    /// Deepest directory nesting walked.
    public static let maxDepth = 32

    /// What `stat` said about a regular file when the walk met it.
    public struct FileInfo: Sendable, Equatable {
        /// Size in bytes.
        public var size: Int
        /// Device and inode: a file opened later is the one walked only if both match.
        public var device: UInt64
        public var inode: UInt64
        /// Last modification, nanoseconds since the epoch.
        public var modifiedNs: Int64
    }

    /// One entry of the walk.
    public enum Entry {
        /// A regular file; `open` opens it read-only relative to its directory (the caller closes it), or says why not
        /// (`errno`). It works only during the visit, while its directory is open.
        case file(open: () -> Int32?, info: FileInfo)
        /// A symbolic link (never followed) and what it points to.
        case symlink(target: String)
        /// A socket, FIFO or device, named by its kind.
        case other(kind: String)
        /// An entry that could not be examined, a folder that could not be entered or one nested too deep, and why.
        case unreadable(reason: String)
    }

    /// Names the walk leaves out at every level: version-control metadata, never part of a model.
    public static let skippedNames: Set<String> = [".git"]

    /// Walks the folder open as `dirfd` in name order (byte order of the UTF-8 names), depth first, calling `visit`
    /// with each entry's path relative to the folder. Directories themselves are not visited.
    public static func walk(_ dirfd: Int32, visit: (String, Entry) -> Void) {
        walk(dirfd, prefix: "", depth: 0, visit: visit)
    }

    private static func walk(_ dirfd: Int32, prefix: String, depth: Int, visit: (String, Entry) -> Void) {
        // fdopendir takes the descriptor: give it a duplicate, the caller keeps `dirfd`.
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let d = fdopendir(dup) else {
            if dup >= 0 { close(dup) }
            visit(prefix.isEmpty ? "." : prefix, .unreadable(reason: "cannot list the folder: \(String(cString: strerror(errno)))"))
            return
        }
        defer { closedir(d) }
        rewinddir(d)  // the duplicate shares its offset with `dirfd`, which an earlier walk left at the end
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." || skippedNames.contains(name) { continue }
            names.append(name)
        }
        names.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        for name in names {
            let relative = prefix.isEmpty ? name : prefix + "/" + name
            var st = stat()
            guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                visit(relative, .unreadable(reason: String(cString: strerror(errno))))
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                guard depth < maxDepth else {
                    visit(relative, .unreadable(reason: "nested deeper than \(maxDepth) folders: not walked"))
                    continue
                }
                let sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard sub >= 0 else {
                    visit(relative, .unreadable(reason: "cannot enter the folder: \(String(cString: strerror(errno)))"))
                    continue
                }
                walk(sub, prefix: relative, depth: depth + 1, visit: visit)
                close(sub)
            case S_IFREG:
                let info = FileInfo(
                    size: Int(st.st_size), device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
                    modifiedNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
                )
                // O_NOFOLLOW and O_NONBLOCK: a name swapped for a link or a FIFO since the stat is not followed or
                // waited on; what was opened is checked again.
                visit(relative, .file(open: {
                    let fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
                    guard fd >= 0 else { return nil }
                    var now = stat()
                    guard fstat(fd, &now) == 0, now.st_mode & S_IFMT == S_IFREG else {
                        close(fd)
                        errno = EINVAL
                        return nil
                    }
                    return fd
                }, info: info))
            case S_IFLNK:
                var buf = [CChar](repeating: 0, count: 4097)
                let n = readlinkat(dirfd, name, &buf, 4096)
                let target = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
                visit(relative, .symlink(target: target))
            case S_IFIFO:
                visit(relative, .other(kind: "FIFO"))
            case S_IFSOCK:
                visit(relative, .other(kind: "socket"))
            default:
                visit(relative, .other(kind: "device"))
            }
        }
    }
}
