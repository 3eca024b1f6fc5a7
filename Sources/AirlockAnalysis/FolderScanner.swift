import AirlockNames
internal import AirlockFormats
internal import AirlockJSON
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// A model folder (a Hugging Face snapshot): every file scanned, plus what only the folder shows — code that
/// `trust_remote_code` would run, and pickle weights where safetensors would do.
///
/// The walk goes by descriptors: every directory and file is opened relative to its parent's descriptor with
/// `O_NOFOLLOW`, so nothing swapped for a symbolic link during the walk leads outside the folder. (airlockd walks a
/// folder its client passed with the client's file-system identity, so it opens only what the client could.)
enum FolderScanner {

    /// Scans the folder open as `dirfd`; reports name files `display + "/" + relative path`, the path escaped as
    /// `FileName.escaped` shows names. Two walks: the first only looks at names (is there safetensors? names that
    /// read alike?), the second opens and examines one file at a time.
    ///
    /// `repository`, when given, examines each folder of the tree whose config names remote code (`auto_map`, at most
    /// `maxRepositories`) once, before any of its files is reported, and amends the reports of the files directly in
    /// it (`RepositoryExamination`).
    ///
    /// `hashThreads` threads hash the files ahead of their analysis (`DigestPrefetch`); 0 hashes each file when its
    /// turn comes. They open files with the process's own file-system identity: airlockd, which walks a client's
    /// folder with the client's (a per-thread identity), passes 0.
    ///
    /// `budget` bounds both walks (`FolderBudget`, its time counted from the call): when it runs out, the last
    /// report is the record of what was not examined (`FolderMeter.report`, verdict `error`).
    static func scan(
        dirfd: Int32, display: String, examine: (Int32, String) -> Report, repository: RepositoryExaminer? = nil,
        hashThreads: Int = DigestPrefetch.defaultThreads, budget: FolderBudget = .local, report: (Report) -> Void
    ) {
        let start = monotonicNs()
        var hasSafetensors = false
        var declaring: [FileName: [FileName]] = [:]  // folder (relative) → its configs with an auto_map
        // Grouped by how the name reads (lossy decoding, `String` equality: Unicode canonical equivalence), on
        // purpose: only to find distinct byte names a reader or another tool would take for one.
        var firstReading: [String: FileName] = [:]
        var readAlike: [String: Set<FileName>] = [:]  // only the readings shared by two names or more
        var regular: [FileName] = []
        // The names' walk has a meter of its own (the same budget): what it leaves out, the second leaves out too.
        FolderWalk.walk(dirfd, meter: FolderMeter(budget, start: start)) { relative, entry in
            if relative.hasSuffix(".safetensors") { hasSafetensors = true }
            if case .file = entry { regular.append(relative) }
            if repository != nil, let open = entry.opener, RemoteCodeFolder.isConfig(relative.lastComponent),
                declaring.count < RemoteCodeFolder.maxRepositories || declaring[relative.parent] != nil,
                let fd = open()
            {
                let name = relative.lastComponent
                if FileDescriptor(fd).closeAfter({ AutoMap.read(fd: $0.rawValue, name: name.escaped) }) != nil {
                    declaring[relative.parent, default: []].append(name)
                }
            }
            let key = relative.lookalikeKey
            if let first = firstReading[key] {
                readAlike[key, default: [first]].insert(relative)
            } else {
                firstReading[key] = relative
            }
        }
        let lookalikes = readAlike.values.reduce(into: [FileName: [FileName]]()) { out, group in
            for name in group { out[name] = group.filter { $0 != name }.sorted() }
        }
        let base = display.hasSuffix("/") ? String(display.dropLast()) : display
        var examined: [FileName: RepositoryExamination] = [:]
        // One meter for the repositories and the files: a detonation of a repository is work of the folder's budget.
        let meter = FolderMeter(budget, start: start)
        if let repository {
            let repositories = declaring.sorted(by: { $0.key < $1.key })
            for (i, (folder, configs)) in repositories.enumerated() {
                // Past the folder's time budget, its deadline or its cancellation no repository is started: those
                // left are named in the record of what was not examined (and so is every file after them).
                guard !meter.pastDeadline else {
                    meter.skip(repositories[i...].map { $0.key.bytes.isEmpty ? FileName(".") : $0.key })
                    break
                }
                let shown = folder.bytes.isEmpty ? base : base + "/" + folder.escaped
                guard let sub = FolderWalk.openFolder(dirfd, folder) else { continue }
                let result = FileDescriptor(sub).closeAfter { repository($0.rawValue, shown, configs) }
                // An examiner that saw the cancellation returns nil without detonating: named as not examined.
                if result == nil && meter.pastDeadline {
                    meter.skip(repositories[i...].map { $0.key.bytes.isEmpty ? FileName(".") : $0.key })
                    break
                }
                examined[folder] = result
            }
        }
        let order = Dictionary(regular.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        let prefetch =
            hashThreads > 0 && regular.count > 1
            ? DigestPrefetch(
                dirfd: dirfd, files: regular, threads: hashThreads, deadline: budget.deadline,
                fileSeconds: budget.fileSeconds) : nil
        defer { prefetch?.finish() }
        var shared = SharedBlobs()
        FolderWalk.walk(dirfd, meter: meter) { relative, entry in
            let path = base + "/" + relative.escaped
            let names = NameFindings.findings(relative, lookalikes: lookalikes[relative] ?? [])
            switch entry {
            case .file(let open, _):
                if let prefetch, let index = order[relative] { prefetch.reached(index) }
                guard let fd = open() else {
                    let t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                    report(
                        Report(target: t, findings: names, error: ("io", "cannot open \(path): \(Errno.current.text)")))
                    return
                }
                let examined = FileDescriptor(fd).closeAfter { _ -> Report in
                    let folder = relative.parent.bytes.split(separator: UInt8(ascii: "/")).map(Array.init)
                    let context = ModelFolder(dirfd: dirfd, components: folder, name: relative.lastComponent.bytes)
                    var r = ModelFolder.$current.withValue(context) { examine(fd, path) }
                    if !r.externalData.isEmpty {
                        r.add(ONNXExternalFiles.findings(r.externalData, dirfd: dirfd, folder: folder))
                    }
                    r.add(
                        names
                            + folderFindings(
                                fd: fd, name: relative, format: r.target.format, hasSafetensors: hasSafetensors))
                    examined[relative.parent]?.amend(relative.lastComponent, &r)
                    return r
                }
                report(examined)
            case .hubFile(let open, let info, let origin, _):
                var r = HubFileScan.examine(
                    open: open, info: info, origin: origin, path: path, shared: &shared, examine: examine)
                r.add(names)
                if !r.externalData.isEmpty {
                    // Its external data are the snapshot's other links, each followed and judged by this walk.
                    let folder = relative.parent.bytes.split(separator: UInt8(ascii: "/")).map(Array.init)
                    r.add(ONNXExternalFiles.snapshotFindings(r.externalData, dirfd: dirfd, folder: folder))
                }
                if r.error == nil, origin.revision != nil, let fd = open() {
                    // What the folder says is said of the snapshot's name, as a loader finds it.
                    r.add(
                        FileDescriptor(fd).closeAfter {
                            folderFindings(
                                fd: $0.rawValue, name: relative, format: r.target.format, hasSafetensors: hasSafetensors
                            )
                        })
                }
                examined[relative.parent]?.amend(relative.lastComponent, &r)
                report(r)
            case .hubLink(let target, let finding):
                let t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                _ = target  // in the finding
                report(Report(target: t, findings: names + [finding]))
            case .other(let kind):
                // Sockets, FIFOs and devices: nothing a loader reads as a model; only a name that misleads is said.
                guard !names.isEmpty else { break }
                let t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                report(
                    Report(
                        target: t,
                        findings: names + [
                            Finding(
                                rule: "folder.special-file", severity: .info,
                                message: "a \(kind): not examined")
                        ]))
            case .unreadable(let reason):
                let t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                report(Report(target: t, findings: names, error: ("io", "cannot read \(path): \(reason)")))
            case .symlink(let target):
                let t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                report(
                    Report(
                        target: t,
                        findings: names + [
                            Finding(
                                rule: "folder.symlink", severity: .medium,
                                message:
                                    "symbolic link to \(target): not followed (a loader would read whatever it points to)",
                                evidence: Evidence(details: [("target", target)])
                            )
                        ]))
            }
        }
        // The record of what the budget left out comes last: no report of the folder's stands for it.
        if let notExamined = meter.report(folder: base) { report(notExamined) }
    }

    /// What the folder says about one of its files.
    static func folderFindings(fd: Int32, name relative: FileName, format: String, hasSafetensors: Bool) -> [Finding] {
        let base = relative.lastComponent.escaped
        var extra: [Finding] = []
        if base.hasSuffix(".py") {
            extra.append(
                Finding(
                    rule: "hf.python-module", severity: .high,
                    message:
                        "Python module in the model folder: transformers runs it when the model is loaded with trust_remote_code=True",
                    evidence: Evidence(member: base)
                ))
        }
        if base == "config.json" || base.hasSuffix("_config.json") { extra += remoteCode(fd: fd, name: base) }
        if ["pickle", "pytorch-zip", "pytorch-legacy", "joblib"].contains(format) {
            extra.append(
                Finding(
                    rule: "hf.pickle-weights", severity: .low,
                    message: hasSafetensors
                        ? "pickle-based weights next to safetensors: load the safetensors, which carry no code"
                        : "pickle-based weights: a safetensors copy would carry no code",
                    evidence: Evidence(member: base)
                ))
        }
        return extra
    }

    /// `auto_map` in a config: classes that transformers imports from the repository's own Python files, and the
    /// references that point elsewhere (`AutoMap.findings`).
    static func remoteCode(fd: Int32, name: String) -> [Finding] {
        AutoMap.read(fd: fd, name: name)?.findings(config: name) ?? []
    }
}
