public import AirlockFormats
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// ONNX external data checked against the folder the model sits in: `onnx.load(path, load_external_data=True)` and
/// onnxruntime read each `location` relative to the model's folder, following symbolic links. Each location is
/// resolved here one component at a time under the folder's descriptor, links read with `readlinkat` and followed
/// by hand (never by the kernel), so a link that leads out of the folder is seen as such and never opened.
///
/// Only where the caller named the folder itself (`airlock scan|probe PATH`, a folder walk): airlockd never looks up
/// paths on a client's behalf beyond the folder it was handed.
public enum ONNXExternalFiles {
    /// Most symbolic links followed for one location (Linux's own limit).
    static let maxLinks = 40
    /// Most components resolved for one location.
    static let maxComponents = 4_096
    /// Most distinct locations resolved per model.
    static let maxLocations = 10_000

    /// Where a location leads.
    enum Resolution: Equatable {
        case file(size: Int, device: UInt64, inode: UInt64, links: Int)
        case missing
        case escapes(String)
        case notFile(String)
    }

    /// Findings for `references` of a model whose folder is `folder` (components below `dirfd`, as bytes).
    public static func findings(_ references: [ONNXExternalReference], dirfd: Int32, folder: [[UInt8]]) -> [Finding] {
        var out: [Finding] = []
        var ranges: [String: [(offset: Int64, end: Int64, tensor: String)]] = [:]
        var resolved: [String: Resolution] = [:]
        for ref in references where ONNXParser.traversal(ref.location) == nil {
            let resolution: Resolution
            if let known = resolved[ref.location] {
                resolution = known
            } else {
                guard resolved.count < maxLocations else { continue }
                resolution = resolve(ref.location, dirfd: dirfd, folder: folder)
                resolved[ref.location] = resolution
                out += findings(for: resolution, ref)
            }
            guard case .file(let size, let device, let inode, _) = resolution else { continue }
            let offset = ref.offset ?? 0
            let (end, overflow) = offset.addingReportingOverflow(ref.length ?? max(0, Int64(size) - offset))
            if offset > Int64(size) || overflow || end > Int64(size) {
                out.append(
                    finding(
                        "onnx.external-data-out-of-file", .medium,
                        "tensor \(ref.tensor) reads bytes \(offset)..<\(overflow ? "overflow" : String(end)) of \(ref.location), which holds \(size): the loader fails or reads past what was scanned",
                        ref))
            } else if ranges["\(device):\(inode)", default: []].count < 100_000 {
                ranges["\(device):\(inode)", default: []].append((offset, end, ref.tensor))
            }
        }
        for (_, spans) in ranges.sorted(by: { $0.key < $1.key }) {
            let sorted = spans.sorted { $0.offset < $1.offset }
            for (a, b) in zip(sorted, sorted.dropFirst()) where b.offset < a.end && a.end > a.offset {
                out.append(
                    Finding(
                        rule: "onnx.external-data-overlap", severity: .low,
                        message: "tensors \(a.tensor) and \(b.tensor) read overlapping bytes of one external file",
                        evidence: Evidence(details: [("tensor", a.tensor), ("tensor", b.tensor)])))
                break
            }
        }
        return out
    }

    /// Findings for `references` of a model that is a file of a Hugging Face cache snapshot (`folder`, components
    /// below `dirfd`). There every file is a link to a blob, which the walk follows and judges itself (`HubCache`);
    /// a location must name such an entry of the snapshot through real folders. A folder reached through a link
    /// is never written by huggingface_hub, and is judged as leading out.
    public static func snapshotFindings(_ references: [ONNXExternalReference], dirfd: Int32, folder: [[UInt8]])
        -> [Finding]
    {
        var out: [Finding] = []
        var seen = Set<String>()
        for ref in references where ONNXParser.traversal(ref.location) == nil {
            guard seen.insert(ref.location).inserted, seen.count <= maxLocations else { continue }
            var parts = folder
            let components = Array(ref.location.utf8).split(separator: UInt8(ascii: "/")).map(Array.init)
                .filter { $0 != [UInt8(ascii: ".")] }
            guard components.count <= maxComponents, !components.isEmpty else { continue }
            var resolution: Resolution? = nil
            for (i, component) in components.enumerated() {
                parts.append(component)
                var st = stat()
                guard fstatat(dirfd, join(parts), &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                    resolution = .missing
                    break
                }
                let kind = st.st_mode & S_IFMT
                if i < components.count - 1 {
                    if kind == S_IFLNK {
                        resolution = .escapes("a symbolic link to a folder in a cache snapshot")
                        break
                    }
                    if kind != S_IFDIR {
                        resolution = .missing
                        break
                    }
                } else if kind == S_IFDIR {
                    resolution = .notFile("a folder")
                } else if kind != S_IFLNK && kind != S_IFREG {
                    resolution = .notFile("a special file")
                }
            }
            if let resolution { out += findings(for: resolution, ref) }
        }
        return out
    }

    static func findings(for resolution: Resolution, _ ref: ONNXExternalReference) -> [Finding] {
        switch resolution {
        case .file(_, _, _, let links) where links > 1:
            // A hard link shares its content with a file elsewhere (a tar can make one to any file of the host's
            // file system the extraction sees); onnx 1.21 refuses such files.
            return [
                finding(
                    "onnx.external-data-hardlink", .medium,
                    "tensor \(ref.tensor) reads \(ref.location), a file with \(links) hard links: its content is shared with a file elsewhere",
                    ref)
            ]
        case .file: return []
        case .missing:
            return [
                finding(
                    "onnx.external-data-missing", .medium,
                    "tensor \(ref.tensor) reads \(ref.location), which is not in the model's folder: whatever is there when the model is loaded is read, and it was not scanned",
                    ref)
            ]
        case .escapes(let why):
            return [
                finding(
                    "onnx.external-data-symlink", .critical,
                    "tensor \(ref.tensor) reads \(ref.location), which leads outside the model's folder (\(why))",
                    ref)
            ]
        case .notFile(let what):
            return [
                finding(
                    "onnx.external-data-not-file", .medium,
                    "tensor \(ref.tensor) reads \(ref.location), which is \(what), not a regular file", ref)
            ]
        }
    }

    static func finding(_ rule: String, _ severity: Severity, _ message: String, _ ref: ONNXExternalReference)
        -> Finding
    {
        var details = [("tensor", ref.tensor), ("location", ref.location)]
        if let o = ref.offset { details.append(("offset", String(o))) }
        if let l = ref.length { details.append(("length", String(l))) }
        return Finding(
            rule: rule, severity: severity, message: message, evidence: Evidence(offset: ref.at, details: details))
    }

    /// Resolves `location` under `folder` below `dirfd` without letting the kernel follow a link.
    static func resolve(_ location: String, dirfd: Int32, folder: [[UInt8]]) -> Resolution {
        resolveComponents(location, dirfd: dirfd, folder: folder).resolution
    }

    /// Opens the file `location` leads to inside the folder (`folder` below `dirfd`), read-only, one component at a
    /// time with `O_NOFOLLOW` along the path `resolve` found, so a component swapped for a link since is refused,
    /// never followed. Nil when the location is not a regular file inside the folder (or is `..`/absolute).
    public static func openInside(_ location: String, dirfd: Int32, folder: [[UInt8]]) -> Int32? {
        guard ONNXParser.traversal(location) == nil else { return nil }
        let (resolution, path) = resolveComponents(location, dirfd: dirfd, folder: folder)
        guard case .file = resolution, !path.isEmpty else { return nil }
        var at = dirfd
        defer { if at != dirfd { close(at) } }
        for (i, component) in path.enumerated() {
            let last = i == path.count - 1
            let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (last ? 0 : O_DIRECTORY)
            let next = openat(at, component.map { CChar(bitPattern: $0) } + [0], flags)
            guard next >= 0 else { return nil }
            if at != dirfd { close(at) }
            at = next
        }
        var st = stat()
        guard fstat(at, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        let fd = at
        at = dirfd
        return fd
    }

    /// `resolve`, with the components (below `dirfd`) of the file it leads to.
    static func resolveComponents(
        _ location: String, dirfd: Int32, folder: [[UInt8]]
    ) -> (resolution: Resolution, path: [[UInt8]]) {
        let root = rootPath(dirfd)
        var resolved: [[UInt8]] = folder
        var pending: [[UInt8]] = Array(location.utf8).split(
            separator: UInt8(ascii: "/"), omittingEmptySubsequences: true
        )
        .map(Array.init).reversed()
        var links = 0
        var steps = 0
        while let component = pending.popLast() {
            steps += 1
            guard steps <= maxComponents else { return (.escapes("more than \(maxComponents) path components"), []) }
            if component == [UInt8(ascii: ".")] { continue }
            if component == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                guard !resolved.isEmpty else { return (.escapes("'..' above the folder"), []) }
                resolved.removeLast()
                continue
            }
            let path = join(resolved + [component])
            var st = stat()
            guard fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                let e = errno
                return (
                    e == ENOENT || e == ENOTDIR ? .missing : .notFile("unreadable (\(Errno(rawValue: e).text))"), []
                )
            }
            if st.st_mode & S_IFMT == S_IFLNK {
                links += 1
                guard links <= maxLinks else { return (.escapes("more than \(maxLinks) symbolic links"), []) }
                guard let target = readLink(dirfd, path) else { return (.notFile("an unreadable symbolic link"), []) }
                let shown = text(path.dropLast().map { UInt8(bitPattern: $0) }) + " -> " + text(target)
                var rest = target
                if target.first == UInt8(ascii: "/") {
                    // An absolute link stays inside only when it names the folder's own absolute path, as written
                    // or once the host's own links on the way (a /home that is a link) are resolved.
                    guard let root,
                        let inside = [target, realPath(target)].compactMap({ $0 }).first(where: {
                            $0 == root || $0.starts(with: root + [UInt8(ascii: "/")])
                        })
                    else {
                        return (.escapes("symbolic link \(shown)"), [])
                    }
                    rest = Array(inside.dropFirst(root.count))
                    resolved = []
                }
                pending += rest.split(separator: UInt8(ascii: "/")).map(Array.init).reversed()
                continue
            }
            resolved.append(component)
        }
        guard !resolved.isEmpty else { return (.notFile("the folder itself"), []) }
        var st = stat()
        guard fstatat(dirfd, join(resolved), &st, AT_SYMLINK_NOFOLLOW) == 0 else { return (.missing, []) }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            return (
                .file(
                    size: Int(st.st_size), device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
                    links: Int(st.st_nlink)), resolved
            )
        case S_IFDIR: return (.notFile("a folder"), [])
        default: return (.notFile("a special file"), [])
        }
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    static func join(_ parts: [[UInt8]]) -> [CChar] {
        var out: [CChar] = []
        for (i, p) in parts.enumerated() {
            if i > 0 { out.append(CChar(bitPattern: UInt8(ascii: "/"))) }
            out += p.map { CChar(bitPattern: $0) }
        }
        return out + [0]
    }

    static func readLink(_ dirfd: Int32, _ path: [CChar]) -> [UInt8]? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlinkat(dirfd, path, &buffer, 4096)
        guard n > 0 else { return nil }
        return buffer[..<n].map { UInt8(bitPattern: $0) }
    }

    /// `path` with every link resolved (`realpath`), or nil when it does not exist.
    static func realPath(_ path: [UInt8]) -> [UInt8]? {
        guard let resolved = realpath(path.map { CChar(bitPattern: $0) } + [0], nil) else { return nil }
        defer { free(resolved) }
        return Array(String(cString: resolved).utf8)
    }

    /// The folder's absolute path, as the kernel names the descriptor.
    static func rootPath(_ dirfd: Int32) -> [UInt8]? {
        readLink(AT_FDCWD, Array("/proc/self/fd/\(dirfd)".utf8CString))
    }
}
