internal import AirlockFormats
internal import AirlockJSON

#if canImport(Glibc)
import Glibc
#endif

/// A model folder (a Hugging Face snapshot): every file scanned, plus what only the folder shows — code that
/// `trust_remote_code` would run, and pickle weights where safetensors would do.
enum FolderScanner {
    /// Most files scanned in one folder tree.
    static let maxFiles = 100_000

    static func scan(folder: String, examine: (String) -> Report, report: (Report) -> Void) {
        var files: [String] = []
        var symlinks: [(String, String)] = []
        walk(folder, depth: 0, files: &files, symlinks: &symlinks)
        files.sort()
        let hasSafetensors = files.contains { $0.hasSuffix(".safetensors") }
        for path in files {
            var r = examine(path)
            var extra: [Finding] = []
            let base = path.split(separator: "/").last.map(String.init) ?? path
            if base.hasSuffix(".py") {
                extra.append(Finding(
                    rule: "hf.python-module", severity: .high,
                    message: "Python module in the model folder: transformers runs it when the model is loaded with trust_remote_code=True",
                    evidence: Evidence(member: base)
                ))
            }
            if base == "config.json" || base.hasSuffix("_config.json") { extra += remoteCode(path) }
            if ["pickle", "pytorch-zip", "pytorch-legacy", "joblib"].contains(r.target.format) {
                extra.append(Finding(
                    rule: "hf.pickle-weights", severity: .low,
                    message: hasSafetensors
                        ? "pickle-based weights next to safetensors: load the safetensors, which carry no code"
                        : "pickle-based weights: a safetensors copy would carry no code",
                    evidence: Evidence(member: base)
                ))
            }
            if !extra.isEmpty { r.add(extra) }
            report(r)
        }
        for (link, target) in symlinks {
            let t = ReportTarget(path: link, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            report(Report(target: t, findings: [Finding(
                rule: "folder.symlink", severity: .medium,
                message: "symbolic link to \(target): not followed (a loader would read whatever it points to)",
                evidence: Evidence(details: [("target", target)])
            )]))
        }
    }

    static func walk(_ dir: String, depth: Int, files: inout [String], symlinks: inout [(String, String)]) {
        guard depth < 32, files.count < maxFiles, let d = opendir(dir) else { return }
        defer { closedir(d) }
        var entries: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." || name == ".git" { continue }
            entries.append(name)
        }
        for name in entries.sorted() {
            let path = dir.hasSuffix("/") ? dir + name : dir + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: walk(path, depth: depth + 1, files: &files, symlinks: &symlinks)
            case S_IFREG: if files.count < maxFiles { files.append(path) }
            case S_IFLNK:
                var buf = [CChar](repeating: 0, count: 4097)
                let n = readlink(path, &buf, 4096)
                symlinks.append((path, n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"))
            default: break
            }
        }
    }

    /// `auto_map` in a config: classes that transformers imports from the repository's own Python files.
    static func remoteCode(_ path: String) -> [Finding] {
        guard let view = try? ByteView.map(path: path), view.count < 16 << 20,
              let tree = try? JSON.parse(view.array, maxDepth: 128), case .object(let members) = tree else { return [] }
        guard let (_, autoMap) = members.first(where: { $0.0 == "auto_map" }) else { return [] }
        var targets: [String] = []
        if case .object(let entries) = autoMap {
            for (_, v) in entries {
                if case .string(let s) = v { targets.append(s) }
                if case .array(let items) = v { for case .string(let s) in items { targets.append(s) } }
            }
        }
        return [Finding(
            rule: "hf.remote-code", severity: .high,
            message: "config maps model classes to code in the repository (auto_map): trust_remote_code=True would run it",
            evidence: Evidence(member: path.split(separator: "/").last.map(String.init), args: targets.isEmpty ? nil : targets)
        )]
    }
}
