public import AirlockNames
internal import AirlockSystem
public import AirlockJSON

#if canImport(Glibc)
    import Glibc
#endif

/// Where a file of a Hugging Face cache came from: the repository, the revision whose snapshot names it, and the
/// content-addressed blob that holds its bytes. In the report as `target.huggingface`.
public struct HubOrigin: Sendable, Equatable {
    /// `ORG/NAME` (`NAME` alone for a repository without an owner), read from the repository folder's name
    /// (`models--ORG--NAME`); nil when the folder is not named that way.
    public var repo: String?
    /// `model`, `dataset` or `space`, from the same name; nil when it does not say.
    public var kind: String?
    /// The snapshot folder's name (a commit hash); nil for a blob no snapshot of the walk names.
    public var revision: String?
    /// The names in `refs/` that hold `revision` (`main`), in name order.
    public var refs: [String]
    /// The blob's name in `blobs/`: a SHA-256 (LFS) or a git blob SHA-1.
    public var blob: String
    /// Whether the blob's content matches its name; nil when it was not checked (`HubCache.verify`).
    public var verified: Bool?
    /// For a blob reported under its own path: whether a snapshot names it all the same (the walk started at
    /// `blobs/`). Not part of the JSON.
    var namedBySnapshot = false

    /// Creates an origin.
    public init(
        repo: String?, kind: String?, revision: String?, refs: [String], blob: String, verified: Bool? = nil
    ) {
        self.repo = repo
        self.kind = kind
        self.revision = revision
        self.refs = refs
        self.blob = blob
        self.verified = verified
    }
}

/// The `blobs` folder of one cache repository, open by descriptor (`O_DIRECTORY|O_NOFOLLOW` relative to the
/// repository's descriptor) for as long as anything holds it: blobs are opened relative to it, never by a path.
public final class HubBlobFolder: Sendable {
    /// The descriptor, closed when the last holder lets go.
    public let fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { FileDescriptor(fd).close() }

    /// Opens the regular file `name` in the folder read-only, without following a link or waiting on a FIFO, and
    /// only when it is still the file `info` describes; nil (with `errno`) otherwise. The caller closes it.
    public func open(_ name: FileName, expecting info: FolderWalk.FileInfo? = nil) -> Int32? {
        let fd = name.withCString { openat(self.fd, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG,
            info.map({ UInt64(st.st_dev) == $0.device && UInt64(st.st_ino) == $0.inode }) ?? true
        else {
            FileDescriptor(fd).close()
            errno = EINVAL
            return nil
        }
        return fd
    }
}

/// One repository of a Hugging Face cache (`models--ORG--NAME/` with `blobs/`, `refs/` and `snapshots/`),
/// recognised by its structure: a `snapshots` folder and a `blobs` entry (a folder, or anything else, which is then
/// reported, never followed). Its name gives the repository id when it has the cache's form.
final class HubRepository {
    /// The repository's folder.
    let fd: Int32
    /// Its `blobs` folder, when that is a real folder (not a link).
    let blobs: HubBlobFolder?
    /// Why `blobs` is not usable, when it is not.
    let blobsProblem: String?
    let repo: String?
    let kind: String?
    let snapshotsIdentity: NodeIdentity
    let blobsIdentity: NodeIdentity?
    private var refsByRevision: [String: [String]]?
    private var referencedBlobs: Set<FileName>?

    /// Most names read in `refs/`, and most bytes of one ref.
    static let maxRefs = 1024
    static let maxRefBytes = 256
    /// Most snapshot links read to learn which blobs the snapshots name.
    static let maxLinks = 100_000

    private init(fd: Int32, name: FileName?, snapshots: NodeIdentity) {
        self.fd = fd
        snapshotsIdentity = snapshots
        let blobsFd = openat(fd, "blobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if blobsFd >= 0 {
            blobs = HubBlobFolder(fd: blobsFd)
            blobsIdentity = NodeIdentity(fd: blobsFd)
            blobsProblem = nil
        } else {
            blobs = nil
            blobsIdentity = nil
            var st = stat()
            if fstatat(fd, "blobs", &st, AT_SYMLINK_NOFOLLOW) != 0 {
                blobsProblem = "the repository has no blobs folder"
            } else if st.st_mode & S_IFMT == S_IFLNK {
                blobsProblem = "the repository's blobs folder is a symbolic link"
            } else {
                blobsProblem = "the repository's blobs entry is not a folder"
            }
        }
        (repo, kind) = HubRepository.parse(name)
    }

    deinit { FileDescriptor(fd).close() }

    /// The repository whose folder is open as `dirfd` (named `name` in its parent, when known); nil when the folder
    /// is not one. Keeps a duplicate of `dirfd`.
    static func open(_ dirfd: Int32, name: FileName?) -> HubRepository? {
        var st = stat()
        guard fstatat(dirfd, "snapshots", &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            return nil
        }
        let snapshots = NodeIdentity(st)
        var blobs = stat()
        guard fstatat(dirfd, "blobs", &blobs, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0 else { return nil }
        return HubRepository(fd: dup, name: name, snapshots: snapshots)
    }

    /// `models--ORG--NAME` → (`ORG/NAME`, `model`); `datasets--…` and `spaces--…` likewise.
    static func parse(_ name: FileName?) -> (String?, String?) {
        guard let name, name.isValidUTF8 else { return (nil, nil) }
        let text = name.escaped
        for kind in ["model", "dataset", "space"] where text.hasPrefix(kind + "s--") {
            let id = text.dropFirst(kind.count + 3).split(separator: "--", omittingEmptySubsequences: false).map(
                String.init)
            guard !id.contains(where: \.isEmpty), (1...2).contains(id.count) else { return (nil, kind) }
            return (id.joined(separator: "/"), kind)
        }
        return (nil, nil)
    }

    /// The names in `refs/` (nested ones such as `refs/pr/1` too) that hold `revision`.
    func refs(of revision: String) -> [String] {
        if refsByRevision == nil { refsByRevision = readRefs() }
        return refsByRevision?[revision] ?? []
    }

    private func readRefs() -> [String: [String]] {
        let refsFd = openat(fd, "refs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard refsFd >= 0 else { return [:] }
        defer { FileDescriptor(refsFd).close() }
        var out: [String: [String]] = [:]
        var count = 0
        FolderWalk.walk(refsFd, hub: nil) { name, entry in
            count += 1
            guard count <= HubRepository.maxRefs, case .file(let open, let info) = entry,
                info.size <= HubRepository.maxRefBytes, let ref = open()
            else { return }
            let bytes = FileDescriptor(ref).closeAfter { FileSystem.readPrefix($0.rawValue, upTo: info.size) ?? [] }
            let text = String(decoding: bytes.prefix { $0 != 0x0A && $0 != 0x0D && $0 != 0x20 }, as: UTF8.self)
            guard !text.isEmpty else { return }
            out[text, default: []].append(name.escaped)
        }
        return out
    }

    /// Whether a snapshot of the repository links to the blob `name` in the form huggingface_hub writes.
    func isReferenced(_ name: FileName) -> Bool {
        if referencedBlobs == nil { referencedBlobs = readReferences() }
        return referencedBlobs?.contains(name) ?? false
    }

    private func readReferences() -> Set<FileName> {
        let snapshotsFd = openat(fd, "snapshots", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard snapshotsFd >= 0 else { return [] }
        defer { FileDescriptor(snapshotsFd).close() }
        var out = Set<FileName>()
        var count = 0
        FolderWalk.walk(snapshotsFd, hub: nil) { relative, entry in
            count += 1
            guard count <= HubRepository.maxLinks, case .symlink = entry else { return }
            // `relative` is REV/…/name: the link sits `components - 2` folders below its snapshot.
            let depth = relative.components.count - 2
            guard depth >= 0, let folder = FolderWalk.openFolder(snapshotsFd, relative.parent) else { return }
            defer { FileDescriptor(folder).close() }
            if let text = HubCache.readLink(folder, relative.lastComponent),
                case .blob(let blob) = HubCache.classify(text, depth: depth)
            {
                out.insert(blob)
            }
        }
        return out
    }
}

/// Device and inode: which file a descriptor or a `stat` is.
struct NodeIdentity: Equatable, Hashable {
    var device: UInt64
    var inode: UInt64

    init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }

    init?(fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        self.init(st)
    }

    init?(_ dirfd: Int32, _ name: String) {
        var st = stat()
        guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        self.init(st)
    }
}

extension HubOrigin {
    /// Equal when the JSON is.
    public static func == (a: HubOrigin, b: HubOrigin) -> Bool {
        a.repo == b.repo && a.kind == b.kind && a.revision == b.revision && a.refs == b.refs && a.blob == b.blob
            && a.verified == b.verified
    }

    /// One line for the text report: `hugging face: model acme/bert @ 1f0c2a3b4d5e (main), blob 9b34cae308ce…,
    /// verified`.
    public var line: String {
        var text = "hugging face: \(kind ?? "repository") \(repo ?? "(unnamed)")"
        if let revision {
            text += " @ \(revision.prefix(12))" + (refs.isEmpty ? "" : " (\(refs.joined(separator: ", ")))")
        }
        text += revision == nil ? ", a blob no snapshot names" : ""
        text += ", blob \(blob.prefix(12))…, "
        switch verified {
        case true?: text += "verified"
        case false?: text += "DOES NOT MATCH ITS CONTENT"
        case nil: text += "not verified"
        }
        return text
    }

    /// The origin as the report's JSON writes it (`target.huggingface`).
    public var json: JSON {
        .object([
            ("repo", .optional(repo)), ("kind", .optional(kind)), ("revision", .optional(revision)),
            ("refs", .array(refs.map(JSON.string))), ("blob", .string(blob)),
            ("verified", verified.map(JSON.bool) ?? .null),
        ])
    }

    /// An origin read back from its JSON; nil when `value` is not one.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func text(_ key: String) -> String?? {
            switch field(key) {
            case .string(let s)?: return .some(s)
            case .null?, nil: return .some(nil)
            default: return nil
            }
        }
        guard let repo = text("repo"), let kind = text("kind"), let revision = text("revision"),
            case .string(let blob)? = field("blob"), case .array(let refValues)? = field("refs")
        else { return nil }
        var refs: [String] = []
        for r in refValues {
            guard case .string(let s) = r else { return nil }
            refs.append(s)
        }
        var verified: Bool? = nil
        switch field("verified") {
        case .bool(let b)?: verified = b
        case .null?, nil: break
        default: return nil
        }
        self.init(repo: repo, kind: kind, revision: revision, refs: refs, blob: blob, verified: verified)
    }
}
