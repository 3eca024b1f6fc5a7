internal import AirlockFormats
internal import AirlockNames
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Examining one file of a Hugging Face cache in a folder walk: the blob, opened by descriptor, examined under the
/// snapshot's name, its content checked against its name, and its origin put in the report.
enum HubFileScan {
    /// Examines the blob `open` opens as the file `path` (a snapshot's name, or the blob's own path for a blob no
    /// snapshot names). A blob already examined under the same name in this walk is not examined again.
    static func examine(
        open: () -> Int32?, info: FolderWalk.FileInfo, origin: HubOrigin, path: String, shared: inout SharedBlobs,
        examine: (Int32, String) -> Report
    ) -> Report {
        let key = SharedBlobs.Key(
            device: info.device, inode: info.inode, size: info.size, modifiedNs: info.modifiedNs,
            name: FileName(path).lastComponent)
        if var again = shared.reports[key] {
            again.target.path = path
            var mine = origin
            mine.verified = again.target.huggingface?.verified
            again.target.huggingface = mine
            return again
        }
        guard let fd = open() else {
            var t = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            t.huggingface = origin
            return Report(
                target: t, findings: [], error: ("io", "cannot open the blob \(origin.blob): \(Errno.current.text)"))
        }
        return FileDescriptor(fd).closeAfter { _ -> Report in
            var r = examine(fd, path)
            var checked = origin
            var extra = HubCache.verify(&checked, sha256: r.target.sha256, fd: fd, size: r.target.size)
            if origin.revision == nil && !origin.namedBySnapshot {
                extra.append(
                    Finding(
                        rule: "hfcache.unreferenced-blob", severity: .low,
                        message:
                            "a blob no snapshot names: from_pretrained does not load it, but it is a file on disk, examined under its blob name",
                        evidence: Evidence(details: [("blob", origin.blob)])))
            }
            r.add(extra)
            r.target.huggingface = checked
            // Kept only while small: the cache saves work, it must not hold a walk's worth of traces.
            if r.error == nil, shared.reports.count < SharedBlobs.maxReports,
                r.findings.count <= SharedBlobs.maxFindings,
                r.trace.count <= SharedBlobs.maxTrace
            {
                shared.reports[key] = r
            }
            return r
        }
    }
}

/// Reports of blobs already examined in one walk, by the blob's identity and the name it was examined under.
struct SharedBlobs {
    struct Key: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int
        var modifiedNs: Int64
        var name: FileName
    }
    /// Most reports kept, and the largest kept (findings, trace events).
    static let maxReports = 1024
    static let maxFindings = 256
    static let maxTrace = 512
    var reports: [Key: Report] = [:]
}

extension FolderWalk.Entry {
    /// How to open the file the entry is (a regular file, or a cache blob); nil for anything else.
    var opener: (() -> Int32?)? {
        switch self {
        case .file(let open, _): open
        case .hubFile(let open, _, _, _): open
        default: nil
        }
    }
}
