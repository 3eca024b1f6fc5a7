internal import AirlockSystem
public import AirlockNames
internal import AirlockAnalysis
internal import AirlockFormats
internal import Crypto
import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// One regular file of a model, as hashed.
public struct InventoryFile: Sendable, Equatable {
    /// Path relative to the model folder (`/`-separated), as the bytes the folder holds; for a single-file model,
    /// its file name. Files are told apart by these bytes, never by a decoded string.
    public var name: FileName
    /// `name` escaped (`FileName.escaped`): what manifests and reports show. Injective: two files never share it.
    public var path: String { name.escaped }
    /// Bytes hashed.
    public var size: Int
    /// Lower-case hex SHA-256 of the content.
    public var sha256: String
    /// The format identified from the content (`FormatIdentity`), as the report names it.
    public var format: String

    /// Creates an entry.
    public init(name: FileName, size: Int, sha256: String, format: String) {
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.format = format
    }
}

/// Everything a model (one file or a folder) holds, each regular file hashed; what cannot be hashed is listed with
/// the reason instead of being left out.
///
/// Folders are walked by descriptors (`FolderWalk`), and each file is opened again beneath the folder's descriptor
/// with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and checked to be the inode the walk saw, so nothing swapped
/// in during the walk is hashed under another file's name. Files are hashed in parallel, largest first, streamed in
/// 4 MiB reads: memory stays at one buffer per thread whatever the model's size.
public struct ModelInventory: Sendable {
    /// A single file or a folder.
    public enum Kind: String, Sendable { case file, folder }

    /// What was inventoried.
    public var kind: Kind
    /// The path as the caller named it.
    public var display: String
    /// Regular files in path order.
    public var files: [InventoryFile]
    /// Symbolic links (never followed) and where they point (escaped).
    public var symlinks: [(path: FileName, target: String)]
    /// Entries that could not be hashed (unreadable, special files, replaced during the walk) and why.
    public var problems: [(path: FileName, reason: String)]

    /// Sum of the files' sizes.
    public var totalBytes: Int { files.reduce(0) { $0 + $1.size } }

    /// How to take an inventory.
    public struct Options: Sendable {
        /// Threads hashing at once (at least 1).
        public var threads: Int
        /// Paths relative to the folder left out, each with everything beneath it (model-signing's `ignore_paths`).
        public var ignore: [String]
        /// Called now and then with (bytes hashed, bytes to hash), from the hashing threads, one call at a time.
        public var progress: (@Sendable (Int, Int) -> Void)?

        /// Options with every online CPU hashing.
        public init(
            threads: Int = ModelInventory.onlineCPUs, ignore: [String] = [],
            progress: (@Sendable (Int, Int) -> Void)? = nil
        ) {
            self.threads = max(1, threads)
            self.ignore = ignore
            self.progress = progress
        }
    }

    /// Most files in one model.
    public static let maxFiles = 100_000

    /// CPUs online.
    public static var onlineCPUs: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Inventories the file or folder at `path`. Symbolic links are not followed, not even `path` itself.
    public static func take(path: String, options: Options = Options()) throws(ProvenanceError) -> ModelInventory {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP, let blob = try openSnapshotFile(path) {
                // A snapshot's file in a Hugging Face cache: the blob it names, listed under the snapshot's name.
                defer { FileDescriptor(blob).close() }
                return try take(
                    fd: blob, display: FileName(path).escaped, name: FileName(path).lastComponent, options: options)
            }
            if e == ELOOP { throw ProvenanceError(.io, "\(path) is a symbolic link: name the model itself") }
            throw ProvenanceError(.io, "cannot open \(path): \(Errno(e).text)")
        }
        defer { FileDescriptor(fd).close() }
        return try take(fd: fd, display: FileName(path).escaped, name: FileName(path).lastComponent, options: options)
    }

    /// The blob the link `path` names when it is a file of a Hugging Face cache snapshot (`HubCache`), open (the
    /// caller closes it) and checked against its name; nil when the link is no such file. A snapshot link that is not
    /// followed (it leaves the repository, dangles) and a blob whose content does not match its name throw.
    public static func openSnapshotFile(_ path: String) throws(ProvenanceError) -> Int32? {
        let name = FileName(path).lastComponent
        guard let (dirfd, _) = ModelWalk.parentFolder(of: path) else { return nil }
        defer { FileDescriptor(dirfd).close() }
        switch HubCache.entry(linkNamed: name, in: dirfd) {
        case .hubFile(let open, _, var origin, _)?:
            guard let fd = open() else { throw ProvenanceError(.io, "cannot open the blob of \(path)") }
            return try verified(fd, &origin, display: path)
        case .hubLink(let target, let finding)?:
            throw ProvenanceError(.io, "\(path) is a link to \(target) that is not followed: \(finding.rule)")
        default:
            return nil
        }
    }

    /// `fd`, when the blob it is open as matches its content address; throws (closing it) otherwise.
    private static func verified(_ fd: Int32, _ origin: inout HubOrigin, display: String) throws(ProvenanceError)
        -> Int32
    {
        var st = stat()
        _ = fstat(fd, &st)
        var buffer = HashBuffer()
        let digest: String? =
            if origin.blob.utf8.count == 64,
                case .success(let (sha, _, _)) = hashAndIdentify(
                    fd: fd, name: origin.blob, buffer: &buffer, progress: nil)
            { sha } else { nil }
        let findings = HubCache.verify(&origin, sha256: digest, fd: fd, size: Int(st.st_size))
        guard origin.verified != false else {
            FileDescriptor(fd).close()
            throw ProvenanceError(.io, "\(display): \(findings.first?.message ?? "the blob does not match its name")")
        }
        return fd
    }

    /// Inventories the file or folder open as `fd`; `display` names it in paths and messages. A single file is
    /// listed as `name` (the bytes of its directory entry) when given, else as `display`'s last component.
    public static func take(fd: Int32, display: String, name fileName: FileName? = nil, options: Options = Options())
        throws(ProvenanceError) -> ModelInventory
    {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ProvenanceError(.io, "cannot stat \(display): \(Errno.current.text)") }
        let mode = st.st_mode & S_IFMT
        if mode == S_IFREG {
            let name = fileName ?? FileName(display).lastComponent
            var buffer = HashBuffer()
            let progress = options.progress.map { HashingState(count: 1, total: Int(st.st_size), progress: $0) }
            switch hashAndIdentify(fd: fd, name: name.escaped, buffer: &buffer, progress: progress) {
            case .success(let (digest, size, format)):
                return ModelInventory(
                    kind: .file, display: display,
                    files: [InventoryFile(name: name, size: size, sha256: digest, format: format)], symlinks: [],
                    problems: [])
            case .failure(let reason):
                throw ProvenanceError(.io, "cannot read \(display): \(reason)")
            }
        }
        guard mode == S_IFDIR else { throw ProvenanceError(.io, "\(display) is neither a regular file nor a folder") }
        return try folder(fd: fd, display: display, options: options)
    }

    private struct Job: Sendable {
        let path: FileName
        let info: FolderWalk.FileInfo
        /// For a snapshot's file in a Hugging Face cache: the blob it names, opened in its repository's `blobs`.
        var blob: (folder: HubBlobFolder, origin: HubOrigin)? = nil
    }

    private static func folder(fd: Int32, display: String, options: Options) throws(ProvenanceError) -> ModelInventory {
        let ignored = options.ignore.map(normalise).filter { !$0.bytes.isEmpty }
        func isIgnored(_ path: FileName) -> Bool { ignored.contains { path.isWithin($0) } }
        var jobs: [Job] = []
        var symlinks: [(path: FileName, target: String)] = []
        var problems: [(path: FileName, reason: String)] = []
        var tooMany = false
        FolderWalk.walk(fd) { path, entry in
            guard !isIgnored(path), !tooMany else { return }
            switch entry {
            case .file(_, let info):
                if jobs.count >= maxFiles { tooMany = true } else { jobs.append(Job(path: path, info: info)) }
            case .hubFile(_, let info, let origin, let blobs):
                let job = Job(path: path, info: info, blob: origin.revision == nil ? nil : (blobs, origin))
                if jobs.count >= maxFiles { tooMany = true } else { jobs.append(job) }
            case .hubLink(let target, _): symlinks.append((path, target))
            case .symlink(let target): symlinks.append((path, target))
            case .other(let kind): problems.append((path, "a \(kind), not a regular file"))
            case .unreadable(let reason): problems.append((path, reason))
            }
        }
        if tooMany { throw ProvenanceError(.limit, "\(display) holds more than \(maxFiles) files") }

        let total = jobs.reduce(0) { $0 + $1.info.size }
        let order = jobs.indices.sorted { jobs[$0].info.size > jobs[$1].info.size }
        let shared = HashingState(count: jobs.count, total: total, progress: options.progress)
        let threads = min(options.threads, max(1, jobs.count))
        let work = jobs
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            var buffer = HashBuffer()
            while let next = shared.next() {
                let job = work[order[next]]
                let outcome = hashBeneath(root: fd, job: job, buffer: &buffer, shared: shared)
                shared.store(order[next], outcome)
            }
        }
        var files: [InventoryFile] = []
        for (i, job) in jobs.enumerated() {
            switch shared.outcome(i) {
            case .success(let (digest, size, format)):
                files.append(InventoryFile(name: job.path, size: size, sha256: digest, format: format))
            case .failure(let reason): problems.append((job.path, reason.description))
            case nil: problems.append((job.path, "not hashed"))
            }
        }
        problems.sort { $0.path < $1.path }
        return ModelInventory(kind: .folder, display: display, files: files, symlinks: symlinks, problems: problems)
    }

    /// The inventory without `paths` (relative to the folder) and everything beneath them.
    public func excluding(_ paths: [String]) -> ModelInventory {
        let ignored = paths.map(ModelInventory.normalise).filter { !$0.bytes.isEmpty }
        guard kind == .folder, !ignored.isEmpty else { return self }
        func kept(_ path: FileName) -> Bool { !ignored.contains { path.isWithin($0) } }
        var copy = self
        copy.files = files.filter { kept($0.name) }
        copy.symlinks = symlinks.filter { kept($0.path) }
        copy.problems = problems.filter { kept($0.path) }
        return copy
    }

    /// `./a//b/` → `a/b`, as the bytes of the UTF-8 of a path a person or a signature gave.
    static func normalise(_ path: String) -> FileName {
        FileName(path).components.filter { $0.bytes != [0x2E] }.reduce(FileName(bytes: [])) { $0.appending($1) }
    }

    private static func hashBeneath(root: Int32, job: Job, buffer: inout HashBuffer, shared: HashingState) -> Result<
        (String, Int, String), Reason
    > {
        if let (folder, origin) = job.blob {
            guard let blob = FileName(escaped: origin.blob), let fd = folder.open(blob, expecting: job.info) else {
                return .failure(Reason("cannot open the blob \(origin.blob): \(Errno.current.text)"))
            }
            defer { FileDescriptor(fd).close() }
            let outcome = hashAndIdentify(fd: fd, name: job.path.escaped, buffer: &buffer, progress: shared)
            // The blob must be what its name says: a manifest never records a cache file changed after its download.
            var checked = origin
            let findings = HubCache.verify(
                &checked, sha256: try? outcome.get().0, fd: fd, size: (try? outcome.get().1) ?? 0)
            if checked.verified == false { return .failure(Reason(findings.first?.message ?? "blob mismatch")) }
            return outcome
        }
        guard let opened = job.path.withCString({ FileSystem.openBeneath(root, $0, O_RDONLY | O_NONBLOCK | O_NOCTTY) })
        else { return .failure(Reason("cannot open: \(Errno.current.text)")) }
        defer { opened.close() }
        let fd = opened.rawValue
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_dev) == job.info.device,
            UInt64(st.st_ino) == job.info.inode
        else {
            return .failure(Reason("replaced while the folder was walked"))
        }
        return hashAndIdentify(fd: fd, name: job.path.escaped, buffer: &buffer, progress: shared)
    }

    /// A reason a file could not be hashed.
    struct Reason: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Streams `fd` from its start through SHA-256, then identifies its format from a read-only mapping.
    private static func hashAndIdentify(fd: Int32, name: String, buffer: inout HashBuffer, progress: HashingState?)
        -> Result<(String, Int, String), Reason>
    {
        var size = -1
        var failure: Reason? = nil
        // Through the digest cache and a folder scan's hand-over, by this descriptor's identity (FileDigest).
        let remembered = FileDigest.remembered(fd: fd, size: nil, cache: DigestCache.shared) { () -> String? in
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
            var hasher = SHA256()
            var offset: off_t = 0
            size = 0
            while true {
                let n = pread(fd, buffer.memory.baseAddress, buffer.memory.count, offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = Reason("read failed at byte \(size): \(Errno.current.text)")
                    return nil
                }
                if n == 0 { break }
                hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer.memory[0..<n]))
                size += n
                offset += off_t(n)
                progress?.advance(n)
            }
            return Hex.encode(hasher.finalize())
        }
        guard let digest = remembered else { return .failure(failure ?? Reason("cannot read")) }
        if size < 0 {
            var st = stat()
            guard fstat(fd, &st) == 0 else { return .failure(Reason("cannot stat: \(Errno.current.text)")) }
            size = Int(st.st_size)
            progress?.advance(size)
        }
        let format: FileFormat
        if size == 0 {
            format = FormatIdentity.identify(ByteView([]), name: name)
        } else if let view = try? ByteView.map(fd: fd, name: "") {
            format = FormatIdentity.identify(view, name: name)
        } else {
            return .failure(Reason("cannot map it to identify its format"))
        }
        return .success((digest, size, format.rawValue))
    }
}

/// One thread's read buffer.
private struct HashBuffer: ~Copyable {
    let memory: UnsafeMutableRawBufferPointer
    init() { memory = .allocate(byteCount: 4 << 20, alignment: 4096) }
    deinit { memory.deallocate() }
}

/// The work list, results and progress shared by the hashing threads.
private final class HashingState: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var nextIndex = 0
    private let count: Int
    private var outcomes: [Result<(String, Int, String), ModelInventory.Reason>?]
    private let total: Int
    private var done = 0
    private var reported = 0
    private let progress: (@Sendable (Int, Int) -> Void)?

    init(count: Int, total: Int, progress: (@Sendable (Int, Int) -> Void)?) {
        self.count = count
        self.total = total
        self.progress = progress
        outcomes = Array(repeating: nil, count: count)
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    func next() -> Int? {
        locked {
            guard nextIndex < count else { return nil }
            nextIndex += 1
            return nextIndex - 1
        }
    }

    func store(_ index: Int, _ outcome: Result<(String, Int, String), ModelInventory.Reason>) {
        locked { outcomes[index] = outcome }
    }

    func outcome(_ index: Int) -> Result<(String, Int, String), ModelInventory.Reason>? { locked { outcomes[index] } }

    /// Counts hashed bytes; calls `progress` every 64 MiB and at the end.
    func advance(_ bytes: Int) {
        guard let progress else { return }
        locked {
            done += bytes
            if done - reported >= 64 << 20 || done >= total {
                reported = done
                progress(done, total)
            }
        }
    }
}
