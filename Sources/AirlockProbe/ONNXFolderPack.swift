public import AirlockAnalysis
public import AirlockFormats
public import AirlockSandbox
public import AirlockSystem
internal import CSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// The model's folder as an ONNX loader sees it, for the detonation: the external-data files the model names that
/// resolve *inside* its folder (`ONNXExternalFiles`), each opened by descriptor along the path the static check
/// resolved (never a link followed by the kernel), copied into one in-memory file passed to the sandbox. The
/// harness (`airlock_onnx.py`) unpacks it into a private folder of the sandbox's own `/tmp`, beside a copy of the
/// model under its original name, and loads the model from there: `onnx.load` and onnxruntime then find the files
/// where the consumer's would.
///
/// Locations that leave the folder (absolute, `..`, links out) are not packed: the loader tries the real path
/// inside the sandbox, where the supervisor sees (and refuses) the read.
///
/// The format: `magic`, then per entry a 2-byte name length, the name (the location's components, `.` and empty
/// ones left out, joined by `/`; a folder's ends in `/` and has no data), an 8-byte data length and the data
/// (little-endian).
public struct ONNXFolderPack: Sendable {
    /// The pack's first bytes (the harness checks them).
    public static let magic = Array("MODEL-DIR-1\n".utf8)
    /// Most files packed.
    public static let maxFiles = 64
    /// Most bytes packed, all files together: the sandbox's `/tmp` holds them and the model's copy.
    public static let maxTotalBytes = 40 << 20
    /// Longest name packed, and most components.
    static let maxNameBytes = 1024
    static let maxComponents = 32
    /// Most distinct locations looked up.
    static let maxLookups = 1_000

    /// The files packed: the names the harness writes, and their sizes.
    public var files: [(name: String, size: Int)] = []
    /// Locations inside the folder left out, and why.
    public var left: [(name: String, reason: String)] = []
    /// Folders made in the sandbox for locations that climb out through them (`climbingFolder`).
    public var folders: [String] = []
    /// The pack, in memory (nil when nothing is packed).
    public var memory: FileDescriptor?

    /// The name a location is written under in the sandbox, or nil when it is not one a loader reads inside the
    /// folder (absolute, `..`, NUL, backslash), too long or too deep.
    static func name(_ location: String) -> String? {
        guard ONNXParser.traversal(location) == nil, location.utf8.count <= maxNameBytes else { return nil }
        let parts = location.split(separator: "/").filter { $0 != "." }
        guard !parts.isEmpty, parts.count <= maxComponents else { return nil }
        return parts.joined(separator: "/")
    }

    /// The folders a relative location with `..` goes through before it climbs (`a/b` of `a/b/../../x`), or nil.
    static func climbingFolder(_ location: String) -> String? {
        guard ONNXParser.traversal(location) == "'..' component", location.utf8.count <= maxNameBytes else {
            return nil
        }
        let parts = location.split(separator: "/").filter { $0 != "." }.prefix { $0 != ".." }
        guard !parts.isEmpty, parts.count <= maxComponents else { return nil }
        return parts.joined(separator: "/")
    }

    /// Packs the external files of `references` that resolve inside `folder` (the model `folder.name` excluded).
    public static func read(_ references: [ONNXExternalReference], folder: ModelFolder) throws(SandboxError)
        -> ONNXFolderPack
    {
        var pack = ONNXFolderPack()
        var seen = Set<String>()
        var total = 0
        let modelName = String(decoding: folder.name, as: UTF8.self)
        var chosen: [(name: String, fd: FileDescriptor, size: Int)] = []
        defer { for c in chosen { c.fd.close() } }
        var tried = 0
        for ref in references {
            guard let name = name(ref.location), name != modelName, seen.insert(name).inserted else { continue }
            // Each lookup walks the location's components: as many as the static check resolves, no more.
            tried += 1
            guard tried <= maxLookups else { break }
            guard chosen.count < maxFiles else {
                pack.left.append((name, "more than \(maxFiles) external files"))
                continue
            }
            guard let raw = ONNXExternalFiles.openInside(ref.location, dirfd: folder.dirfd, folder: folder.components)
            else { continue }  // missing, or not a file inside the folder: the static findings say which
            let fd = FileDescriptor(raw)
            var st = stat()
            let size = fstat(raw, &st) == 0 ? Int(st.st_size) : -1
            guard st.st_nlink <= 1 else {
                // Its content is a file's elsewhere (a tar can link any file it can see): never carried in.
                fd.close()
                pack.left.append(
                    (name, "a hard link (\(st.st_nlink) names): its content is shared with a file elsewhere"))
                continue
            }
            guard size >= 0, total + size <= maxTotalBytes else {
                fd.close()
                pack.left.append((name, "\(size) bytes: the pack's \(maxTotalBytes) bytes would be exceeded"))
                continue
            }
            total += size
            chosen.append((name, fd, size))
        }
        // A location that climbs out (`a/../../secret`) goes through folders of the model's folder first: they are
        // made in the sandbox too (a name ending in `/`, no data), so the loader's path resolves there as it does
        // on the consumer's side, up to the read the supervisor sees.
        var folders: [String] = []
        for ref in references where folders.count < maxFiles {
            guard let folder = climbingFolder(ref.location), seen.insert(folder).inserted else { continue }
            folders.append(folder)
        }
        pack.folders = folders
        guard !chosen.isEmpty || !folders.isEmpty else { return pack }
        let memory = FileDescriptor(airlock_memfd("airlock-onnx-folder"))
        guard memory.rawValue >= 0 else {
            throw SandboxError(.mountSource, "cannot create the ONNX folder's pack", errno: .current)
        }
        do throws(SandboxError) {
            try write(memory.rawValue, magic)
            for folder in folders {
                let n = Array((folder + "/").utf8)
                try write(
                    memory.rawValue, [UInt8(n.count & 0xFF), UInt8(n.count >> 8)] + n + [UInt8](repeating: 0, count: 8))
            }
            for c in chosen {
                let n = Array(c.name.utf8)
                try write(memory.rawValue, [UInt8(n.count & 0xFF), UInt8(n.count >> 8)] + n)
                let copied = try copy(from: c.fd.rawValue, to: memory.rawValue, size: c.size)
                pack.files.append((c.name, copied))
            }
        } catch {
            memory.close()
            throw error
        }
        pack.memory = memory
        return pack
    }

    /// Writes `bytes` at `offset` (the end when nil).
    static func write(_ fd: Int32, _ bytes: [UInt8], at offset: off_t? = nil) throws(SandboxError) {
        let start = offset ?? lseek(fd, 0, SEEK_END)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes {
                pwrite(fd, $0.baseAddress! + done, bytes.count - done, start + off_t(done))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw SandboxError(.mountSource, "cannot write the ONNX folder's pack", errno: .current)
            }
            done += n
        }
    }

    /// Appends an 8-byte length, then at most `size` bytes of `from` (what it holds now, if it shrank), then writes
    /// the length copied in its place; returns it.
    static func copy(from: Int32, to: Int32, size: Int) throws(SandboxError) -> Int {
        let lengthAt = lseek(to, 0, SEEK_END)
        try write(to, [UInt8](repeating: 0, count: 8), at: lengthAt)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var got = 0
        while got < size {
            let want = min(buffer.count, size - got)
            let n = buffer.withUnsafeMutableBytes { pread(from, $0.baseAddress!, want, off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SandboxError(.mountSource, "cannot read an external-data file", errno: .current) }
            if n == 0 { break }
            try write(to, Array(buffer[..<n]))
            got += n
        }
        try write(to, (0..<8).map { UInt8((got >> (8 * $0)) & 0xFF) }, at: lengthAt)
        return got
    }
}
