public import AirlockNames
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// What a folder-level examination of one model repository decided (a folder whose config names remote code, see
/// `AutoMap`): made once, before any of the folder's files is reported, then applied to the report of each file
/// directly in that folder. `airlock probe` detonates the repository as transformers loads it
/// (`RemoteCodeDetonation` in AirlockProbe); the static scan has no such examination.
public struct RepositoryExamination {
    /// Amends the report of the file `name` (a name in the repository's folder, no `/`).
    public var amend: (_ name: FileName, _ report: inout Report) -> Void

    /// Creates an examination.
    public init(amend: @escaping (_ name: FileName, _ report: inout Report) -> Void) {
        self.amend = amend
    }
}

/// Examines the repository open as `dirfd` (shown as `display`), whose configs `configs` (names in it) have an
/// `auto_map`; nil when there is nothing to add. The descriptor is the walk's: valid only during the call.
public typealias RepositoryExaminer = (_ dirfd: Int32, _ display: String, _ configs: [FileName]) ->
    RepositoryExamination?

/// Which folders of a walk are repositories with remote code.
enum RemoteCodeFolder {
    /// Most repositories examined in one walk; the static findings stand for the others.
    static let maxRepositories = 16

    /// Whether `name` is a config that transformers reads an `auto_map` from: `config.json`, `tokenizer_config.json`,
    /// a processor's or feature extractor's `*_config.json`.
    static func isConfig(_ name: FileName) -> Bool {
        name == FileName("config.json") || name.hasSuffix("_config.json")
    }
}

extension FileName {
    /// The folder part of a relative path (empty for a name without `/`).
    var parent: FileName {
        guard let slash = bytes.lastIndex(of: 0x2F) else { return FileName(bytes: []) }
        return FileName(bytes: bytes[..<slash])
    }
}

extension FolderWalk {
    /// Opens the folder `relative` below `dirfd` one component at a time with `O_NOFOLLOW`, as the walk entered it;
    /// `dirfd` itself (duplicated) for an empty path. The caller closes it; nil when it cannot be opened.
    public static func openFolder(_ dirfd: Int32, _ relative: FileName) -> Int32? {
        var current = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard current >= 0 else { return nil }
        for component in relative.components {
            let next = component.withCString {
                openat(current, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            FileDescriptor(current).close()
            guard next >= 0 else { return nil }
            current = next
        }
        return current
    }
}
