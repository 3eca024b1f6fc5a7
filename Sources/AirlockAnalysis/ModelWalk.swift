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
    /// `repository` examines each repository with remote code in a folder once (`RepositoryExamination`).
    public static func walk(
        paths: [String], examine: (Int32, String) -> Report, repository: RepositoryExaminer? = nil,
        report: (Report) -> Void
    ) {
        for path in paths {
            // Shown escaped as walked names are: a path (a shell glob's match) with a newline or an escape sequence
            // must not forge a line of the report.
            let shown = FileName(path).escaped
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
            fd.closeAfter {
                walk(
                    fd: $0.rawValue, isDirectory: st.st_mode & S_IFMT == S_IFDIR, path: shown, examine: examine,
                    repository: repository, report: report)
            }
        }
    }

    /// Walks what `fd` is open as: a folder, walked by descriptors, or a file. `path` names it in the reports. The
    /// caller keeps `fd`.
    ///
    /// `hashAhead`: threads hash a folder's files ahead of their examination (`DigestPrefetch`, as many as CPUs). They
    /// open the files with the process's file-system identity, not the calling thread's: airlockd, which walks a
    /// client's folder as the client, passes false.
    public static func walk(
        fd: Int32, isDirectory: Bool, path: String, examine: (Int32, String) -> Report,
        repository: RepositoryExaminer? = nil, hashAhead: Bool = true, report: (Report) -> Void
    ) {
        if isDirectory {
            FolderScanner.scan(
                dirfd: fd, display: path, examine: examine, repository: repository,
                hashThreads: hashAhead ? DigestPrefetch.defaultThreads : 0, report: report)
        } else {
            report(examine(fd, path))
        }
    }
}
