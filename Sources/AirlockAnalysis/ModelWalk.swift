import AirlockNames
internal import AirlockFormats
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The paths a scan or probe is given, walked: each file examined once, each folder walked by descriptors
/// (`FolderScanner`, in name order, with the findings only the folder shows). What examines a file is the caller's:
/// `StaticScanner` for `airlock scan`, `Prober` for `airlock probe`, either for airlockd and intake.
public enum ModelWalk {
    /// Walks files and folders (recursively, in name order); calls `examine` once per file, open as the descriptor
    /// given and named by the path given, and `report` with what it returned (plus folder-level findings).
    /// `repository` examines each repository with remote code in a folder once (`RepositoryExamination`). `budget`
    /// bounds each folder given (`FolderBudget`): what it leaves out is reported as not examined.
    public static func walk(
        paths: [String], examine: (Int32, String) -> Report, repository: RepositoryExaminer? = nil,
        budget: FolderBudget = .local, report: (Report) -> Void
    ) {
        for path in paths {
            // Shown escaped as walked names are: a path (a shell glob's match) with a newline or an escape sequence
            // must not forge a line of the report.
            let shown = FileName(path).escaped
            if let cached = cacheFile(path, shown: shown, examine: examine) {
                report(cached)
                continue
            }
            let fd: FileDescriptor
            var st = stat()
            do throws(SystemCallError) {
                fd = try FileDescriptor.open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK)
                guard fstat(fd.rawValue, &st) == 0 else {
                    let error = SystemCallError("stat \(shown)")
                    fd.close()
                    throw error
                }
            } catch {
                let target = ReportTarget(path: shown, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                report(Report(target: target, findings: [], error: ("io", "cannot read \(shown): \(error.errnoValue)")))
                continue
            }
            let isDirectory = st.st_mode & S_IFMT == S_IFDIR
            fd.closeAfter {
                walk(
                    fd: $0.rawValue, isDirectory: isDirectory, path: shown,
                    examine: isDirectory ? examine : { examineNamed($0, $1, path: path, examine: examine) },
                    repository: repository, budget: budget
                ) { r in
                    var r = r
                    // A file named by the caller: its ONNX external data is looked up in its own folder.
                    if !isDirectory && !r.externalData.isEmpty { r.add(externalDataFindings(r.externalData, path)) }
                    report(r)
                }
            }
        }
    }

    /// Walks what `fd` is open as: a folder, walked by descriptors, or a file. `path` names it in the reports. The
    /// caller keeps `fd`.
    ///
    /// `hashAhead`: threads hash a folder's files ahead of their examination (`DigestPrefetch`, as many as CPUs). They
    /// open the files with the process's file-system identity, not the calling thread's: airlockd, which walks a
    /// client's folder as the client, passes false. `budget` bounds a folder's walk (`FolderBudget`).
    public static func walk(
        fd: Int32, isDirectory: Bool, path: String, examine: (Int32, String) -> Report,
        repository: RepositoryExaminer? = nil, hashAhead: Bool = true, budget: FolderBudget = .local,
        report: (Report) -> Void
    ) {
        if isDirectory {
            FolderScanner.scan(
                dirfd: fd, display: path, examine: examine, repository: repository,
                hashThreads: hashAhead ? DigestPrefetch.defaultThreads : 0, budget: budget, report: report)
        } else {
            report(examine(fd, path))
        }
    }

    /// Examines the file the caller named `path` (open as `fd`, shown as `shown`) with its folder as the context
    /// (`ModelFolder.current`): the folder that holds it, opened by the path the caller gave, as
    /// `externalDataFindings` looks it up.
    public static func examineNamed(
        _ fd: Int32, _ shown: String, path: String, examine: (Int32, String) -> Report
    ) -> Report {
        guard let (dirfd, name) = parentFolder(of: path) else { return examine(fd, shown) }
        defer { close(dirfd) }
        guard !name.isEmpty else { return examine(fd, shown) }
        return ModelFolder.$current.withValue(ModelFolder(dirfd: dirfd, components: [], name: name)) {
            examine(fd, shown)
        }
    }

    /// ONNX external data of the file at `path`, resolved in the folder that holds it.
    static func externalDataFindings(_ references: [ONNXExternalReference], _ path: String) -> [Finding] {
        guard let (dirfd, _) = parentFolder(of: path) else { return [] }
        defer { close(dirfd) }
        return ONNXExternalFiles.findings(references, dirfd: dirfd, folder: [])
    }

    /// The folder that holds `path`, opened read-only by the path the caller gave (`/` for `/x`, `.` for a bare
    /// name), and `path`'s last component as bytes; nil when the folder cannot be opened. The caller closes it.
    public static func parentFolder(of path: String) -> (dirfd: Int32, name: [UInt8])? {
        let slash = path.lastIndex(of: "/")
        let parent = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = Array((slash.map { path[path.index(after: $0)...] } ?? Substring(path)).utf8)
        let dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        return dirfd >= 0 ? (dirfd, name) : nil
    }

    /// The report on `path` when it is a link in a Hugging Face cache snapshot (`HubCache`): the blob it names,
    /// examined under the snapshot's name, or why it is not followed; nil for anything else, opened as given.
    static func cacheFile(_ path: String, shown: String, examine: (Int32, String) -> Report) -> Report? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return nil }
        let name = FileName(path).lastComponent
        guard let (dirfd, _) = parentFolder(of: path) else { return nil }
        defer { FileDescriptor(dirfd).close() }
        switch HubCache.entry(linkNamed: name, in: dirfd) {
        case .hubFile(let open, let info, let origin, _)?:
            var shared = SharedBlobs()
            return HubFileScan.examine(
                open: open, info: info, origin: origin, path: shown, shared: &shared, examine: examine)
        case .hubLink(_, let finding)?:
            let t = ReportTarget(path: shown, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(target: t, findings: [finding])
        case .unreadable(let reason)?:
            let t = ReportTarget(path: shown, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(target: t, findings: [], error: ("io", "cannot read \(shown): \(reason)"))
        default:
            return nil
        }
    }
}
