public import AirlockSandbox
internal import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// The loader harness's files, written into the sandbox's root at the service's folder (`HarnessSettings`) instead
/// of bind-mounted there: a bind shows its host source in `/proc/self/mountinfo` (`… /usr/share/airlock/profiles/
/// harness /srv/NAME ro …`), a file in the root shows nothing but itself.
///
/// Only the modules a detonation imports are copied, with their bytecode from `__pycache__` (compiled with
/// `--invalidation-mode checked-hash` by `make harness`, so it is valid wherever the sources are and whatever their
/// times); stale bytecode of other names stays behind. The root is read-only once set up, so nothing on `sys.path`
/// is writable.
public enum HarnessFiles {
    /// The modules a detonation imports (without `.py`), the entry point first.
    public static let modules = [
        "serve", "model_loader", "model_consumers", "model_keras", "model_onnx", "model_remote", "model_templates",
    ]
    /// Bytes one file may hold.
    static let maxFileBytes = 1 << 20
    /// Bytecode files taken per module (one per interpreter version compiled for).
    static let maxBytecodePerModule = 4

    /// The file mounts that place the harness of host folder `directory` at `appDirectory` in the sandbox.
    public static func mounts(from directory: String, at appDirectory: String) throws(SandboxError) -> [MountSpec] {
        var out: [MountSpec] = []
        for module in modules {
            guard let source = read("\(directory)/\(module).py") else {
                throw SandboxError(
                    .mountSource, "the loader harness has no \(module).py in \(directory)", errno: .current)
            }
            out.append(try MountSpec.file(sandbox: "\(appDirectory)/\(module).py", bytes: source))
        }
        let cache = "\(directory)/__pycache__"
        for name in bytecode(in: cache) {
            if let bytes = read("\(cache)/\(name)") {
                out.append(try MountSpec.file(sandbox: "\(appDirectory)/__pycache__/\(name)", bytes: bytes))
            }
        }
        return out
    }

    /// The bytecode files of `modules` in `cache` (`NAME.cpython-311.pyc`), at most `maxBytecodePerModule` each.
    static func bytecode(in cache: String) -> [String] {
        guard let dir = opendir(cache) else { return [] }
        defer { closedir(dir) }
        var taken: [String: Int] = [:]
        var out: [String] = []
        var scanned = 0
        while scanned < 1000, let entry = readdir(dir) {
            scanned += 1
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            let parts = name.split(separator: ".")
            guard parts.count == 3, parts[2] == "pyc", modules.contains(String(parts[0])),
                parts[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
            else { continue }
            let count = taken[String(parts[0]), default: 0]
            guard count < maxBytecodePerModule else { continue }
            taken[String(parts[0])] = count + 1
            out.append(name)
        }
        return out.sorted()
    }

    /// A regular file's bytes (at most `maxFileBytes`), or nil.
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= maxFileBytes else { return nil }
        return FileSystem.readPrefix(fd, upTo: maxFileBytes)
    }
}
