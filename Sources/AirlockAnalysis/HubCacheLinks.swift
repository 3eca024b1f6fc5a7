internal import Crypto
internal import AirlockFormats
public import AirlockNames
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Where a folder of a walk stands in a Hugging Face cache: the repository it belongs to and its place there.
struct HubPlace {
    let repository: HubRepository
    var position: Position

    enum Position {
        /// The repository's own folder.
        case repository
        /// `snapshots/`.
        case snapshots
        /// A folder `depth` levels below the snapshot `revision` (0: the snapshot's own folder).
        case snapshot(revision: FileName, depth: Int)
        /// `blobs/`; `skipReferenced` when the walk covers the snapshots too, which report those blobs by their names.
        case blobs(skipReferenced: Bool)
        /// `.no_exist/` or a folder in it: empty files that say a revision lacks a file (transformers asks for
        /// `model.safetensors`, `pytorch_model.bin`… and records each miss), left out; anything else is walked.
        case missingMarkers
    }

    /// The place of the sub-folder `name` (which is `identity`); nil when it is outside the cache's layout.
    func child(_ name: FileName, _ identity: NodeIdentity) -> HubPlace? {
        switch position {
        case .repository:
            if identity == repository.snapshotsIdentity {
                return HubPlace(repository: repository, position: .snapshots)
            }
            if identity == repository.blobsIdentity {
                return HubPlace(repository: repository, position: .blobs(skipReferenced: true))
            }
            if name == FileName(".no_exist") { return HubPlace(repository: repository, position: .missingMarkers) }
            return nil
        case .missingMarkers:
            return self
        case .snapshots:
            return HubPlace(repository: repository, position: .snapshot(revision: name, depth: 0))
        case .snapshot(let revision, let depth):
            return HubPlace(repository: repository, position: .snapshot(revision: revision, depth: depth + 1))
        case .blobs:
            return nil
        }
    }
}

/// The Hugging Face cache layout: recognising it around a folder, and resolving a snapshot's links to the blobs of
/// the same repository by descriptor — never by following a path (docs/formats.md, "Hugging Face cache").
public enum HubCache {
    /// Largest blob named by a git SHA-1 that is hashed to check it: the Hub keeps files over 10 MiB (and binary
    /// files) in LFS, named by their SHA-256, so a bigger git blob is itself a finding.
    public static let maxGitBlobBytes = 10 << 20
    /// Most folders climbed to find the repository around a folder.
    static let maxClimb = FolderWalk.maxDepth + 3
    /// Most entries of `snapshots/` looked at to name a revision.
    static let maxSnapshots = 100_000

    /// What a snapshot link's text says, read lexically from where the link sits.
    enum LinkForm: Equatable {
        /// Exactly `../` × (depth + 2), `blobs/` and a plain name: a blob of the same repository.
        case blob(FileName)
        /// Leaves the repository (absolute, or more `..` than the folders above it in the repository).
        case escapes
        /// Stays in the repository but is not in the form above (another snapshot's file, `refs/`, a `./` detour).
        case inside
    }

    /// Reads the text of the link `name` in `dirfd`; nil when it cannot be read.
    static func readLink(_ dirfd: Int32, _ name: FileName) -> [UInt8]? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = name.withCString { readlinkat(dirfd, $0, &buffer, 4096) }
        guard n > 0 else { return nil }
        return buffer[0..<n].map { UInt8(bitPattern: $0) }
    }

    /// The form of a link's text, for a link `depth` folders below its snapshot's folder.
    static func classify(_ text: [UInt8], depth: Int) -> LinkForm {
        let up = Array(repeating: Array("../".utf8), count: depth + 2).flatMap { $0 }
        let prefix = up + Array("blobs/".utf8)
        if text.count > prefix.count, text.starts(with: prefix) {
            let name = Array(text[prefix.count...])
            if !name.contains(0x2F), name != [0x2E], name != [0x2E, 0x2E] { return .blob(FileName(bytes: name)) }
        }
        if text.first == 0x2F { return .escapes }
        // Lexically, from the link's folder: `snapshots`, the revision, then `depth` sub-folders.
        var level = depth + 2
        for part in text.split(separator: 0x2F, omittingEmptySubsequences: true) {
            if part.elementsEqual([0x2E]) { continue }
            if part.elementsEqual([0x2E, 0x2E]) {
                level -= 1
                if level < 0 { return .escapes }
            } else {
                level += 1
            }
        }
        return .inside
    }

    /// Whether `name` is a content address: 40 (git SHA-1) or 64 (SHA-256) lower-case hex digits.
    public static func isContentAddress(_ name: String) -> Bool {
        (name.utf8.count == 40 || name.utf8.count == 64)
            && name.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The entry a walk gives for the link `name` in the folder `dirfd`, which is `depth` folders below the snapshot
    /// `revision` of `repository`: the blob it names, opened by descriptor, or a finding that says why not.
    static func resolve(
        _ repository: HubRepository, _ dirfd: Int32, _ name: FileName, revision: FileName, depth: Int
    ) -> FolderWalk.Entry {
        guard let text = readLink(dirfd, name) else {
            return .unreadable(reason: "cannot read the link: \(Errno.current.text)")
        }
        let shown = FileName(bytes: text).escaped
        func problem(_ rule: String, _ severity: Severity, _ why: String) -> FolderWalk.Entry {
            .hubLink(
                target: shown,
                finding: Finding(
                    rule: rule, severity: severity, message: "symbolic link to \(shown): \(why)",
                    evidence: Evidence(details: [("target", shown)])))
        }
        switch classify(text, depth: depth) {
        case .escapes:
            return problem(
                "hfcache.link-escapes", .high,
                "leaves the cache repository, so it is no blob the Hub served; not followed (a loader would read whatever it points to)"
            )
        case .inside:
            return problem(
                "hfcache.link-not-blob", .high,
                "not the link huggingface_hub writes (\(depth + 2) × ../ then blobs/NAME); not followed")
        case .blob(let blob):
            guard let blobs = repository.blobs else {
                let why = repository.blobsProblem ?? "no blobs folder"
                return problem("hfcache.link-escapes", .high, "\(why); not followed")
            }
            var st = stat()
            guard blob.withCString({ fstatat(blobs.fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                if errno == ENOENT {
                    return problem("hfcache.link-dangling", .medium, "the blob is missing (a loader fails on it)")
                }
                return .unreadable(reason: "cannot stat the blob \(blob.escaped): \(Errno.current.text)")
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                let info = FolderWalk.FileInfo(st)
                let origin = HubOrigin(
                    repo: repository.repo, kind: repository.kind, revision: revision.escaped,
                    refs: repository.refs(of: revision.escaped), blob: blob.escaped)
                return .hubFile(open: { blobs.open(blob, expecting: info) }, info: info, origin: origin, blobs: blobs)
            case S_IFLNK:
                return problem("hfcache.link-not-blob", .high, "the blob is itself a symbolic link; not followed")
            case S_IFDIR:
                return problem("hfcache.link-not-blob", .high, "the blob is a folder; not followed")
            default:
                return problem("hfcache.link-not-blob", .high, "the blob is no regular file; not followed")
            }
        }
    }

    /// The place of the folder open as `dirfd` in a cache, found by climbing its parents (`..`, by descriptor, as
    /// the kernel resolves a link's `../`); nil when it is in no repository's snapshots or blobs, nor a repository.
    static func locate(_ dirfd: Int32) -> HubPlace? {
        guard let start = NodeIdentity(fd: dirfd) else { return nil }
        if let repository = HubRepository.open(dirfd, name: name(of: start, in: dirfd, climbing: true)) {
            return HubPlace(repository: repository, position: .repository)
        }
        var chain: [NodeIdentity] = []
        chain.append(start)
        var current = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard current >= 0 else { return nil }
        defer { FileDescriptor(current).close() }
        for level in 1...maxClimb {
            let parent = openat(current, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard parent >= 0, let identity = NodeIdentity(fd: parent), identity != chain.last else {
                if parent >= 0 { FileDescriptor(parent).close() }
                return nil
            }
            FileDescriptor(current).close()
            current = parent
            chain.append(identity)
            var st = stat()
            // A repository is recognised here only through its snapshots or blobs folder.
            guard fstatat(current, "snapshots", &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                continue
            }
            let below = chain[level - 1]
            let inSnapshots = NodeIdentity(st) == below
            let inBlobs = NodeIdentity(current, "blobs") == below && level == 1
            guard inSnapshots || inBlobs else { continue }
            guard
                let repository = HubRepository.open(current, name: name(of: chain[level], in: current, climbing: true))
            else { return nil }
            if inBlobs { return HubPlace(repository: repository, position: .blobs(skipReferenced: false)) }
            if level == 1 { return HubPlace(repository: repository, position: .snapshots) }
            let snapshotsFd = openat(current, "snapshots", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard snapshotsFd >= 0 else { return nil }
            defer { FileDescriptor(snapshotsFd).close() }
            guard let revision = name(of: chain[level - 2], in: snapshotsFd, climbing: false) else { return nil }
            return HubPlace(repository: repository, position: .snapshot(revision: revision, depth: level - 2))
        }
        return nil
    }

    /// The name under which the folder `identity` is in `dirfd` (its parent's, when `climbing`: `identity` is the
    /// folder `dirfd` itself, named in its own parent).
    private static func name(of identity: NodeIdentity, in dirfd: Int32, climbing: Bool) -> FileName? {
        var container = dirfd
        var opened: Int32 = -1
        if climbing {
            opened = openat(dirfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard opened >= 0 else { return nil }
            container = opened
        }
        defer { if opened >= 0 { FileDescriptor(opened).close() } }
        for name in (FolderWalk.names(container) ?? []).prefix(maxSnapshots) {
            var st = stat()
            if name.withCString({ fstatat(container, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0,
                st.st_mode & S_IFMT == S_IFDIR, NodeIdentity(st) == identity
            {
                return name
            }
        }
        return nil
    }

    /// The entry for the link `name` in the folder `dirfd` when that folder is in a cache snapshot (the link a
    /// person named on the command line); nil when it is not, and the link is an ordinary one.
    public static func entry(linkNamed name: FileName, in dirfd: Int32) -> FolderWalk.Entry? {
        guard let place = locate(dirfd), case .snapshot(let revision, let depth) = place.position else { return nil }
        return resolve(place.repository, dirfd, name, revision: revision, depth: depth)
    }

    /// An opener for the entries of the folder `dirfd` (the folder is placed in the cache once, not per entry): it
    /// opens what an entry holds — the file itself, or, for a link in a cache snapshot, the blob it names (by
    /// descriptor, as a walk resolves it); the caller closes what it returns; nil when neither. Valid while `dirfd` is
    /// open.
    public static func fileOpener(in dirfd: Int32) -> (FileName) -> Int32? {
        var place: HubPlace?? = nil
        return { name in
            let fd = name.withCString { openat(dirfd, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
            if fd >= 0 || errno != ELOOP { return fd >= 0 ? fd : nil }
            if place == nil { place = .some(locate(dirfd)) }
            guard let found = place ?? nil, case .snapshot(let revision, let depth) = found.position,
                case .hubFile(let open, _, _, _) = resolve(
                    found.repository, dirfd, name, revision: revision, depth: depth)
            else { return nil }
            return open()
        }
    }

    /// Checks the blob's content against its name: the SHA-256 the report computed (`sha256`) for a 64-hex name, a
    /// git blob SHA-1 (`blob SIZE\0` + content, read from `fd`) for a 40-hex one. Sets `origin.verified` and says what
    /// does not match.
    public static func verify(_ origin: inout HubOrigin, sha256: String?, fd: Int32, size: Int) -> [Finding] {
        let blob = origin.blob
        let evidence = Evidence(details: [("blob", blob)])
        guard isContentAddress(blob) else {
            origin.verified = nil
            let partial = blob.hasSuffix(".incomplete")
            return [
                Finding(
                    rule: partial ? "hfcache.incomplete-blob" : "hfcache.blob-name", severity: partial ? .low : .medium,
                    message: partial
                        ? "an unfinished download (\(blob)): no snapshot names it yet, and its content cannot be checked"
                        : "the blob's name \(blob) is no content address (a SHA-256 or git SHA-1): its content cannot be checked",
                    evidence: evidence)
            ]
        }
        let actual: String?
        if blob.utf8.count == 64 {
            actual = sha256
        } else {
            guard size <= maxGitBlobBytes else {
                origin.verified = nil
                return [
                    Finding(
                        rule: "hfcache.blob-unverified", severity: .medium,
                        message:
                            "a \(size)-byte blob named by a git SHA-1: the Hub serves files this large through LFS, by SHA-256; not checked",
                        evidence: evidence)
                ]
            }
            actual = gitBlobSHA1(fd: fd, size: size)
        }
        guard let actual else {
            origin.verified = nil
            return []
        }
        origin.verified = actual == blob
        guard actual != blob else { return [] }
        return [
            Finding(
                rule: "hfcache.blob-mismatch", severity: .high,
                message:
                    "the blob's content does not match its name (\(actual)): it is not the file the Hub served, it was changed after the download",
                evidence: Evidence(details: [("blob", blob), ("content", actual)]))
        ]
    }

    /// `git hash-object` of the first `size` bytes of `fd`; nil when they cannot all be read.
    static func gitBlobSHA1(fd: Int32, size: Int) -> String? {
        var hasher = Insecure.SHA1()
        hasher.update(data: Array("blob \(size)\0".utf8))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset = 0
        while offset < size {
            let want = min(buffer.count, size - offset)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, want, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += n
        }
        return hasher.finalize().map { String($0, radix: 16).leftPadded }.joined()
    }
}

extension String {
    fileprivate var leftPadded: String { count == 1 ? "0" + self : self }
}

extension FolderWalk.FileInfo {
    init(_ st: stat) {
        self.init(
            size: Int(st.st_size), device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
            modifiedNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}
