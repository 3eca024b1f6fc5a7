public import AirlockNames
internal import AirlockFormats
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// A walk through a model folder by descriptors: every directory and file is opened relative to its parent's
/// descriptor with `O_NOFOLLOW`, so nothing swapped for a symbolic link during the walk leads outside the folder.
///
/// Used by folder scans and by provenance (manifests, signatures), so both see the same files. Names stay bytes
/// (`FileName`) from `readdir` to the `fstatat`/`openat`/`readlinkat` that use them: a name that is not UTF-8 is
/// never decoded and encoded again into another entry's name.
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
        /// A symbolic link (never followed) and what it points to (escaped as `FileName` escapes names).
        case symlink(target: String)
        /// A socket, FIFO or device, named by its kind.
        case other(kind: String)
        /// An entry that could not be examined, a folder that could not be entered or one nested too deep, and why.
        case unreadable(reason: String)
        /// A file of a Hugging Face cache (`HubCache`): a snapshot's link resolved by descriptor to a blob of the same
        /// repository, or a blob no snapshot names (`origin.revision` nil). `open` opens the blob in `blobs` (the
        /// caller closes it); `info` is the blob's.
        case hubFile(open: () -> Int32?, info: FileInfo, origin: HubOrigin, blobs: HubBlobFolder)
        /// A snapshot's link that is not followed (it leaves the repository, names no blob, or dangles): its target
        /// (escaped) and the finding that says why.
        case hubLink(target: String, finding: Finding)
    }

    /// Names the walk leaves out at every level: version-control metadata, never part of a model.
    public static let skippedNames: Set<FileName> = [FileName(".git")]

    /// Walks the folder open as `dirfd` in name order (byte order), depth first, calling `visit` with each entry's
    /// path relative to the folder, as the bytes the directory holds. Directories themselves are not visited.
    ///
    /// Inside a Hugging Face cache (`HubCache`: `hub/`, a repository, its `snapshots/` or `blobs/`, a snapshot or a
    /// folder in one), a snapshot's links are resolved by descriptor to the blobs of the same repository
    /// (`.hubFile`, or `.hubLink` when not followed), and the blobs a snapshot names are not visited a second time.
    ///
    /// `meter`, when given, is asked before every entry (folders included): the walk stops at the first one its budget
    /// does not cover, and the names left at every level are recorded in it as not examined. Each folder's listing
    /// then keeps only as many names (the first in byte order) as the budget has left, so memory stays bounded by the
    /// budget whatever a folder holds.
    public static func walk(_ dirfd: Int32, meter: FolderMeter? = nil, visit: (FileName, Entry) -> Void) {
        _ = walk(
            dirfd, prefix: FileName(bytes: []), depth: 0, hub: HubCache.locate(dirfd), aware: true, meter: meter,
            visit: visit)
    }

    /// Walks as `walk(_:visit:)` without looking for a cache (`hub` nil): links are only reported.
    static func walk(_ dirfd: Int32, hub: HubPlace?, visit: (FileName, Entry) -> Void) {
        _ = walk(dirfd, prefix: FileName(bytes: []), depth: 0, hub: hub, aware: hub != nil, meter: nil, visit: visit)
    }

    /// The names in the folder open as `dirfd`, without `.` and `..`, in byte order; nil (with `errno`) when it
    /// cannot be listed. The caller keeps `dirfd`.
    public static func names(_ dirfd: Int32) -> [FileName]? {
        // fdopendir takes the descriptor: give it a duplicate, the caller keeps `dirfd`.
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let d = fdopendir(dup) else {
            let e = errno
            if dup >= 0 { FileDescriptor(dup).close() }
            errno = e
            return nil
        }
        defer { closedir(d) }
        rewinddir(d)  // the duplicate shares its offset with `dirfd`, which an earlier walk left at the end
        var names: [FileName] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in FileName(bytes: raw.prefix { $0 != 0 }) }
            if name.bytes == [0x2E] || name.bytes == [0x2E, 0x2E] { continue }
            names.append(name)
        }
        return names.sorted()
    }

    /// The first `keep` names in the folder open as `dirfd` (byte order, without `.` and `..`), and how many more it
    /// listed; nil (with `errno`) when it cannot be listed. At most `2 × keep` names are held at once, whatever the
    /// folder holds; the listing stops early (the rest uncounted) when `meter`'s time runs out, so a folder that
    /// keeps growing cannot hold the walk. The caller keeps `dirfd`.
    static func names(_ dirfd: Int32, keep: Int, meter: FolderMeter?) -> (names: [FileName], more: Int, cut: Bool)? {
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let d = fdopendir(dup) else {
            let e = errno
            if dup >= 0 { FileDescriptor(dup).close() }
            errno = e
            return nil
        }
        defer { closedir(d) }
        rewinddir(d)
        var names: [FileName] = []
        var more = 0
        var read = 0
        var cut = false
        var cutAt: FileName? = nil
        let keep = max(1, keep)
        while let e = readdir(d) {
            read += 1
            if read & 1023 == 0, meter?.pastDeadline == true {
                cut = true
                break
            }
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in FileName(bytes: raw.prefix { $0 != 0 }) }
            if name.bytes == [0x2E] || name.bytes == [0x2E, 0x2E] { continue }
            // Once names have been cut, one that sorts after the last kept can never be kept: counted, not held.
            if let last = cutAt, !(name < last) {
                more += 1
                continue
            }
            names.append(name)
            if names.count >= 2 * keep {
                names.sort()
                more += names.count - keep
                names.removeSubrange(keep...)
                cutAt = names.last
            }
        }
        names.sort()
        if names.count > keep {
            more += names.count - keep
            names.removeSubrange(keep...)
        }
        // A buffer of the names' size: the one filled holds room for twice as many.
        return (Array(names[...]), more, cut)
    }

    /// Walks one folder; returns false when `meter` stopped the walk (the names left here are recorded in it).
    private static func walk(
        _ dirfd: Int32, prefix: FileName, depth: Int, hub: HubPlace?, aware: Bool, meter: FolderMeter?,
        visit: (FileName, Entry) -> Void
    ) -> Bool {
        let listed: (names: [FileName], more: Int, cut: Bool)?
        if let meter {
            // More than the budget has left: enough to know it runs out here, and to name what it leaves out.
            listed = names(dirfd, keep: meter.budget.maxEntries - meter.taken + FolderBudget.maxSample, meter: meter)
        } else {
            listed = names(dirfd).map { ($0, 0, false) }
        }
        guard let (all, more, cut) = listed else {
            visit(
                prefix.bytes.isEmpty ? FileName(".") : prefix,
                .unreadable(reason: "cannot list the folder: \(Errno.current.text)"))
            return true
        }
        // Held where the meter can trim it: a listing further down the path may leave names here out of reach.
        let level = FolderMeter.Listing(names: all, more: more)
        meter?.listings.append(level)
        defer { _ = meter?.listings.popLast() }
        meter?.trimListings()
        /// What is left here, from `index`, as paths relative to the walked folder.
        func left(_ index: Int) -> some Sequence<FileName> {
            level.names[index...].lazy.filter { !skippedNames.contains($0) }.map { prefix.appending($0) }
        }
        while level.next < level.names.count {
            let index = level.next
            let name = level.names[index]
            level.next += 1
            if skippedNames.contains(name) { continue }
            let relative = prefix.appending(name)
            if let meter, !meter.take() {
                meter.skip(left(index), uncounted: level.more)
                return false
            }
            var st = stat()
            guard name.withCString({ fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                visit(relative, .unreadable(reason: Errno.current.text))
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                guard depth < maxDepth else {
                    visit(relative, .unreadable(reason: "nested deeper than \(maxDepth) folders: not walked"))
                    continue
                }
                let sub = name.withCString { openat(dirfd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                guard sub >= 0 else {
                    visit(relative, .unreadable(reason: "cannot enter the folder: \(Errno.current.text)"))
                    continue
                }
                var place: HubPlace? = nil
                if aware {
                    if let hub {
                        place = hub.child(name, NodeIdentity(st))
                    } else if let repository = HubRepository.open(sub, name: name) {
                        place = HubPlace(repository: repository, position: .repository)
                    }
                }
                let complete = walk(
                    sub, prefix: relative, depth: depth + 1, hub: place, aware: aware, meter: meter, visit: visit)
                FileDescriptor(sub).close()
                if !complete, let meter {
                    meter.skip(left(index + 1), uncounted: level.more)
                    return false
                }
            case S_IFREG:
                let info = FileInfo(st)
                if info.size == 0, let hub, case .missingMarkers = hub.position { continue }
                if let hub, case .blobs(let skipReferenced) = hub.position, let blobs = hub.repository.blobs {
                    // Reported under the snapshot names that name it; a blob no snapshot names is still a file here.
                    let referenced = hub.repository.isReferenced(name)
                    if skipReferenced && referenced { continue }
                    var origin = HubOrigin(
                        repo: hub.repository.repo, kind: hub.repository.kind, revision: nil, refs: [],
                        blob: name.escaped)
                    origin.namedBySnapshot = referenced
                    visit(
                        relative,
                        .hubFile(open: { blobs.open(name, expecting: info) }, info: info, origin: origin, blobs: blobs))
                    continue
                }
                // O_NOFOLLOW and O_NONBLOCK: a name swapped for a link or a FIFO since the stat is not followed or
                // waited on; what was opened is checked again.
                visit(
                    relative,
                    .file(
                        open: {
                            let fd = name.withCString {
                                openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
                            }
                            guard fd >= 0 else { return nil }
                            var now = stat()
                            guard fstat(fd, &now) == 0, now.st_mode & S_IFMT == S_IFREG else {
                                FileDescriptor(fd).close()
                                errno = EINVAL
                                return nil
                            }
                            return fd
                        }, info: info))
            case S_IFLNK:
                if let hub, case .snapshot(let revision, let level) = hub.position {
                    visit(relative, HubCache.resolve(hub.repository, dirfd, name, revision: revision, depth: level))
                    continue
                }
                var buf = [CChar](repeating: 0, count: 4097)
                let n = name.withCString { readlinkat(dirfd, $0, &buf, 4096) }
                // A target is shown, never followed: escaped like a name, so it cannot forge report lines either.
                let target = n > 0 ? FileName(bytes: buf[0..<n].map { UInt8(bitPattern: $0) }).escaped : "?"
                visit(relative, .symlink(target: target))
            case S_IFIFO:
                visit(relative, .other(kind: "FIFO"))
            case S_IFSOCK:
                visit(relative, .other(kind: "socket"))
            default:
                visit(relative, .other(kind: "device"))
            }
        }
        if level.more > 0 || cut, let meter {
            // Names past the listing's cut with budget to spare (skipped names made room), or a listing the time
            // budget cut short: what it did not list is not examined, uncounted.
            meter.skip([FileName](), uncounted: level.more)
            return false
        }
        return true
    }
}
