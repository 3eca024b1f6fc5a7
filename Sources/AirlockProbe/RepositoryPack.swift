public import AirlockNames
public import AirlockSandbox
internal import AirlockAnalysis
public import AirlockSystem
internal import CSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// The files of a repository with remote code that its detonation needs, read once on the host and passed into the
/// sandbox as one sealed in-memory file: the sandbox never opens a host path. The harness unpacks it into its own
/// `/tmp` (a private tmpfs), as the repository a consumer downloaded, and transformers (or the harness's stand-in
/// mechanics) copies the modules from there into its module cache.
///
/// Only regular files directly in the repository's folder are taken (transformers resolves `auto_map` modules
/// there): Python modules, JSON configs, the text and `.model` files tokenizers read, and the weights when they fit
/// (`from_pretrained` loads them in the probe phase; bigger ones are left out and said). Names are checked (`eligible`) here and again by the
/// harness. The format: `magic`, then per file a 2-byte name length, the name, a 4-byte data length and the data
/// (little-endian).
public struct RepositoryPack: Sendable {
    /// The pack's first bytes (the harness checks them).
    public static let magic = Array("MODEL-REPO-1\n".utf8)
    /// Most files packed.
    public static let maxFiles = 256
    /// Largest file packed; a bigger one is left out (and named in `left`).
    public static let maxFileBytes = 4 << 20
    /// Most bytes of all files together.
    public static let maxTotalBytes = 40 << 20
    /// The kinds of file packed.
    public static let suffixes = [".py", ".json", ".txt", ".model"] + weightSuffixes
    /// Weights: packed when they fit (`from_pretrained` in the probe phase then loads them, as the consumer's does,
    /// and code that reads them is exercised); a bigger one is left out, and the detonation then says so.
    public static let weightSuffixes = [".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5"]
    /// Largest weights file packed.
    public static let maxWeightBytes = 32 << 20

    /// Whether `name` is a weights file.
    public static func isWeights(_ name: String) -> Bool { weightSuffixes.contains(where: name.hasSuffix) }

    /// Weights files of the repository left out of the pack (too big for it).
    public var withheldWeights: [String] { left.map(\.name).filter(RepositoryPack.isWeights) }

    /// The files packed, by name, in name order.
    public var files: [(name: String, bytes: [UInt8])] = []
    /// Eligible files left out, and why.
    public var left: [(name: String, reason: String)] = []

    /// Whether a name may be packed: ASCII letters, digits, `_`, `-` and `.` (not first, no `..`), at most 128 bytes,
    /// with one of `suffixes`. Nothing else becomes a file name in the sandbox.
    public static func eligible(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 128, first != UInt8(ascii: "."), first != UInt8(ascii: "-"),
            !name.contains(".."), suffixes.contains(where: name.hasSuffix)
        else { return false }
        return bytes.allSatisfy { b in
            (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
                || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
        }
    }

    /// Reads the eligible regular files of the folder open as `dirfd` (symbolic links are not followed).
    public static func read(dirfd: Int32) -> RepositoryPack {
        var pack = RepositoryPack()
        var total = 0
        let openFile = HubCache.fileOpener(in: dirfd)
        for name in FolderWalk.names(dirfd) ?? [] {
            let text = name.escaped
            guard name.isValidUTF8, eligible(text) else { continue }
            guard pack.files.count < maxFiles else {
                pack.left.append((text, "more than \(maxFiles) files"))
                continue
            }
            // A snapshot of a Hugging Face cache: its links are resolved by descriptor to the blobs of the same
            // repository (`HubCache`), as the walk resolves them; any other link is not followed (the walk reports it).
            guard let fd = openFile(name) else { continue }
            let file = FileDescriptor(fd)
            defer { file.close() }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            let size = Int(st.st_size)
            let limit = isWeights(text) ? maxWeightBytes : maxFileBytes
            guard size <= limit else {
                pack.left.append((text, "\(size) bytes, over \(limit)"))
                continue
            }
            guard total + size <= maxTotalBytes else {
                pack.left.append((text, "the pack's \(maxTotalBytes) bytes are used up"))
                continue
            }
            guard let bytes = FileSystem.readPrefix(fd, upTo: size) else {
                pack.left.append((text, "cannot be read: \(Errno.current.text)"))
                continue
            }
            total += bytes.count
            pack.files.append((text, bytes))
        }
        return pack
    }

    /// The bytes of the file `name`, when packed.
    public func file(_ name: String) -> [UInt8]? { files.first { $0.name == name }?.bytes }

    /// The pack as the harness reads it.
    public var bytes: [UInt8] {
        var out = RepositoryPack.magic
        for (name, data) in files {
            let n = Array(name.utf8)
            out += [UInt8(n.count & 0xFF), UInt8(n.count >> 8)] + n
            out += (0..<4).map { UInt8((data.count >> (8 * $0)) & 0xFF) } + data
        }
        return out
    }

    /// The pack in an in-memory file (the caller closes it); `ModelSeal` seals a copy of it for the sandbox.
    public func memoryFile() throws(SandboxError) -> FileDescriptor {
        let fd = airlock_memfd("airlock-repository")
        guard fd >= 0 else { throw SandboxError(.mountSource, "cannot create the repository's pack", errno: .current) }
        let file = FileDescriptor(fd)
        let data = bytes
        var written = 0
        while written < data.count {
            let n = data.withUnsafeBytes { write(fd, $0.baseAddress! + written, data.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let failure = Errno.current
                file.close()
                throw SandboxError(.mountSource, "cannot write the repository's pack", errno: failure)
            }
            written += n
        }
        return file
    }

    /// The modules transformers copies into its module cache for `roots` (module names): each one, then the modules
    /// it imports relatively, recursively (`get_relative_imports`: `from .x import …` and `import .x` lines), as
    /// far as they are packed and named by identifiers.
    public func modulesNeeded(_ roots: [String]) -> [String] {
        var needed: [String] = []
        var queue = roots
        while let module = queue.first {
            queue.removeFirst()
            guard !needed.contains(module), needed.count < RepositoryPack.maxFiles else { continue }
            needed.append(module)
            guard let source = file(module + ".py") else { continue }
            queue += RepositoryPack.relativeImports(String(decoding: source, as: UTF8.self))
        }
        return needed
    }

    /// What transformers' `get_relative_imports` finds in a module's source: `^\s*import\s+\.(\S+)\s*$` and
    /// `^\s*from\s+\.(\S+)\s+import`, line by line; only identifiers are kept.
    static func relativeImports(_ source: String) -> [String] {
        var found: [String] = []
        for line in source.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.count >= 2, words[1].hasPrefix("."), words[1].count > 1 else { continue }
            let name = String(words[1].dropFirst())
            if words[0] == "from" && words.count >= 3 && words[2] == "import"
                || words[0] == "import" && words.count == 2
            {
                if AutoMap.isIdentifier(name), !found.contains(name) { found.append(name) }
            }
        }
        return found
    }
}
