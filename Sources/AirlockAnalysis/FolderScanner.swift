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
    /// Most files scanned in one folder tree.
    static let maxFiles = 100_000

    /// Scans the folder open as `dirfd`; reports name files `display + "/" + relative path`, the path escaped as
    /// `FileName.escaped` shows names. Two walks: the first only looks at names (is there safetensors? names that
    /// read alike?), the second opens and examines one file at a time.
    static func scan(dirfd: Int32, display: String, examine: (Int32, String) -> Report, report: (Report) -> Void) {
        var hasSafetensors = false
        // Grouped by how the name reads (lossy decoding, `String` equality: Unicode canonical equivalence), on
        // purpose: only to find distinct byte names a reader or another tool would take for one.
        var firstReading: [String: FileName] = [:]
        var readAlike: [String: Set<FileName>] = [:]  // only the readings shared by two names or more
        var walked = 0
        FolderWalk.walk(dirfd) { relative, _ in
            if relative.hasSuffix(".safetensors") { hasSafetensors = true }
            walked += 1
            guard walked <= maxFiles else { return }
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
        var files = 0
        FolderWalk.walk(dirfd) { relative, entry in
            let path = base + "/" + relative.escaped
            let names = NameFindings.findings(relative, lookalikes: lookalikes[relative] ?? [])
            switch entry {
            case .file(let open, _):
                files += 1
                guard files <= maxFiles else { return }
                guard let fd = open() else {
                    let t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
                    report(
                        Report(target: t, findings: names, error: ("io", "cannot open \(path): \(Errno.current.text)")))
                    return
                }
                let examined = FileDescriptor(fd).closeAfter { _ -> Report in
                    var r = examine(fd, path)
                    r.add(
                        names
                            + folderFindings(
                                fd: fd, name: relative, format: r.target.format, hasSafetensors: hasSafetensors))
                    return r
                }
                report(examined)
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

    /// `auto_map` in a config: classes that transformers imports from the repository's own Python files.
    static func remoteCode(fd: Int32, name: String) -> [Finding] {
        guard let view = try? ByteView.map(fd: fd, name: name), view.count < 16 << 20,
            let tree = try? JSON.parse(view.array, maxDepth: 128), case .object(let members) = tree
        else { return [] }
        guard let (_, autoMap) = members.first(where: { $0.0 == "auto_map" }) else { return [] }
        var targets: [String] = []
        if case .object(let entries) = autoMap {
            for (_, v) in entries {
                if case .string(let s) = v { targets.append(s) }
                if case .array(let items) = v { for case .string(let s) in items { targets.append(s) } }
            }
        }
        return [
            Finding(
                rule: "hf.remote-code", severity: .high,
                message:
                    "config maps model classes to code in the repository (auto_map): trust_remote_code=True would run it",
                evidence: Evidence(member: name, args: targets.isEmpty ? nil : targets)
            )
        ]
    }
}
