internal import AirlockJSON
internal import AirlockNames
package import AirlockSystem
internal import Crypto

#if canImport(Glibc)
    import Glibc
#endif

/// Whole-file SHA-256 digests remembered by file identity (`FileIdentity`: device, inode, size, modification and
/// change times in nanoseconds, mount, boot), so a multi-gigabyte checkpoint is read end to end once, not on every
/// scan. Shared by everything that hashes whole files: `airlock scan`/`probe`/`manifest`/`verify`, airlockd and
/// `airlock intake` (docs/formats.md, "Digest cache").
///
/// One small file per identity in a directory only the current effective user (or root) can write: every directory
/// on the path is opened by descriptor with `O_NOFOLLOW`, owned by root or the user and not writable by group or
/// others (a root-owned sticky directory such as `/tmp` excepted, never the cache itself); anything else means the
/// cache is ignored, with one warning on stderr, and the scan goes on hashing. An entry is written to a fresh
/// temporary file and renamed over its name, and carries its identity and a checksum, so a torn, stale or forged
/// entry reads as a miss, never as a wrong digest.
public final class DigestCache: @unchecked Sendable {
    /// The cache of this process, where `location(environment:euid:)` says; resolved on first use.
    public static let shared = DigestCache(location: nil, settleSeconds: nil)

    /// `AIRLOCK_DIGEST_CACHE`: `off` (or `0`, `no`, `false`) turns the cache off; an absolute path puts it there.
    public static let environmentVariable = "AIRLOCK_DIGEST_CACHE"

    /// Most entries kept; beyond it the oldest are removed down to three quarters of it.
    package static let maxEntries = 8192

    private let monitor = Monitor()
    private var state: State = .unresolved
    private let fixedLocation: String?
    private var stores = 0
    private var warned = false
    /// Entries are only written for files unchanged for this long (see `store`).
    let settleNs: Int64

    private enum State {
        case unresolved
        case off
        case open(fd: Int32, path: String)
    }

    /// A cache at `location` (nil: the shared location from the environment); `settleSeconds` nil takes the
    /// kernel's dirty-page expiry plus 10 s (`settleSecondsDefault`).
    package init(location: String?, settleSeconds: Int?) {
        fixedLocation = location
        let settle = settleSeconds ?? DigestCache.settleFromEnvironment() ?? DigestCache.settleSecondsDefault
        settleNs = Int64(settle) * 1_000_000_000
    }

    /// `AIRLOCK_DIGEST_CACHE_SETTLE`: seconds (0 to 600) a file must be unchanged before its digest is remembered,
    /// for tests and benchmarks that hash files they just wrote; only the caller's own cache is concerned.
    static func settleFromEnvironment() -> Int? {
        guard let raw = getenv("AIRLOCK_DIGEST_CACHE_SETTLE"), let value = Int(String(cString: raw)),
            (0...600).contains(value)
        else { return nil }
        return value
    }

    deinit {
        if case .open(let fd, _) = state { FileDescriptor(fd).close() }
    }

    /// Turns this cache off for the rest of the process (`--no-digest-cache`).
    public func disable() {
        monitor.locked {
            if case .open(let fd, _) = state { FileDescriptor(fd).close() }
            state = .off
        }
    }

    /// Whether the cache is in use (resolving it on first call).
    public var isEnabled: Bool { directory() != nil }

    /// The digest remembered for `identity`, or nil.
    package func lookup(_ identity: FileIdentity) -> String? {
        guard DigestCache.cacheable(identity), let (dir, _) = directory() else { return nil }
        let name = DigestCache.entryName(identity)
        let fd = name.withCString { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else { return nil }
        defer { FileDescriptor(fd).close() }
        var st = stat()
        // Ours, a regular file, not writable by others, small: anything else is not an entry this process wrote.
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(), st.st_mode & 0o022 == 0,
            st.st_size > 0, st.st_size <= DigestRecord.maxBytes
        else { return nil }
        guard let bytes = FileSystem.readPrefix(fd, upTo: DigestRecord.maxBytes + 1),
            let record = DigestRecord.parse(bytes), record.matches(identity)
        else { return nil }
        return record.sha256
    }

    /// Remembers `digest` for the file whose identity was `identity` when hashing began at `startedNs` (realtime) and
    /// still is. Files changed less than the settle time before the hash began are not remembered: a page written
    /// through a shared mapping changes the times only when it is first dirtied, and later writes to it go unseen
    /// until writeback cleans it (`vm.dirty_expire_centisecs`), so a recently changed file may change again
    /// without a new identity.
    package func store(_ identity: FileIdentity, digest: String, startedNs: Int64) {
        guard DigestCache.cacheable(identity), identity.changedNs <= startedNs - settleNs,
            identity.modifiedNs <= startedNs, let record = DigestRecord(identity: identity, sha256: digest),
            let (dir, _) = directory()
        else { return }
        let text = record.encoded
        let count = monitor.locked {
            stores += 1
            return stores
        }
        var random: UInt64 = 0
        arc4random_buf(&random, 8)
        let temporary = ".tmp-\(getpid())-\(count)-\(String(random, radix: 16))"
        let fd = temporary.withCString { openat(dir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { return }
        var written = 0
        var failed = false
        while written < text.count {
            let n = text.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                failed = true
                break
            }
            written += n
        }
        FileDescriptor(fd).close()
        let name = DigestCache.entryName(identity)
        if failed || temporary.withCString({ t in name.withCString { renameat(dir, t, dir, $0) } }) != 0 {
            _ = temporary.withCString { unlinkat(dir, $0, 0) }
        }
        if count % 128 == 1 { prune(dir) }
    }

    /// Removes the oldest entries when there are more than `maxEntries`, and temporary files left by a crash.
    private func prune(_ dir: Int32) {
        guard let names = FolderWalk.names(dir) else { return }
        var entries: [(name: [UInt8], modified: Int)] = []
        let now = time(nil)
        for name in names.prefix(4 * DigestCache.maxEntries) {
            var st = stat()
            guard name.withCString({ fstatat(dir, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0, st.st_uid == geteuid(),
                st.st_mode & S_IFMT == S_IFREG
            else { continue }
            if name.hasPrefix(".tmp-") {
                if now - st.st_mtim.tv_sec > 600 { _ = name.withCString { unlinkat(dir, $0, 0) } }
            } else if DigestRecord.isEntryName(name.bytes) {
                entries.append((name.bytes, st.st_mtim.tv_sec))
            }
        }
        guard entries.count > DigestCache.maxEntries else { return }
        entries.sort { $0.modified < $1.modified }
        for entry in entries.prefix(entries.count - DigestCache.maxEntries * 3 / 4) {
            _ = (entry.name + [0]).withUnsafeBufferPointer {
                $0.withMemoryRebound(to: CChar.self) { unlinkat(dir, $0.baseAddress!, 0) }
            }
        }
    }

    /// The open cache directory, resolving it on first use.
    private func directory() -> (Int32, String)? {
        monitor.locked {
            switch state {
            case .off: return nil
            case .open(let fd, let path): return (fd, path)
            case .unresolved:
                guard
                    let path = fixedLocation
                        ?? DigestCache.location(environment: DigestCache.environment(), euid: geteuid())
                else {
                    state = .off
                    return nil
                }
                switch DigestCache.openTrusted(path, euid: geteuid()) {
                case .success(let fd):
                    state = .open(fd: fd, path: path)
                    return (fd, path)
                case .failure(let reason):
                    state = .off
                    if !warned && reason.suspicious {
                        warned = true
                        // A line of its own on stderr: the scan's output (stdout) stays what it was.
                        let line =
                            "airlock: digest cache \(FileName(path).escaped) not used: \(reason); hashing every file\n"
                        try? FileDescriptor(2).writeAll(Array(line.utf8))
                    }
                    return nil
                }
            }
        }
    }

    /// Where the cache lives: `$AIRLOCK_DIGEST_CACHE` (an absolute path, or `off`), else the first of systemd's
    /// `$CACHE_DIRECTORY` (airlockd's and the intake's `CacheDirectory=`), else `/var/cache/airlock/digests` for
    /// root, else `$XDG_CACHE_HOME/airlock/digests`, else `$HOME/.cache/airlock/digests`; nil when off or nowhere.
    package static func location(environment: [String: String], euid: UInt32) -> String? {
        if let value = environment[environmentVariable], !value.isEmpty {
            if ["off", "0", "no", "false"].contains(value.lowercased()) { return nil }
            return value.hasPrefix("/") ? value : nil
        }
        if let systemd = environment["CACHE_DIRECTORY"]?.split(separator: ":").first, systemd.hasPrefix("/") {
            return String(systemd)
        }
        if euid == 0 { return "/var/cache/airlock/digests" }
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return xdg + "/airlock/digests" }
        if let home = environment["HOME"], home.hasPrefix("/") { return home + "/.cache/airlock/digests" }
        return nil
    }

    /// The variables `location` reads, from this process's environment.
    static func environment() -> [String: String] {
        var out: [String: String] = [:]
        for key in [environmentVariable, "CACHE_DIRECTORY", "XDG_CACHE_HOME", "HOME"] {
            if let value = getenv(key) { out[key] = String(cString: value) }
        }
        return out
    }

    /// File systems whose identities are trusted: local ones with stable inode numbers and kernel-set change times
    /// with writeback (ext2/3/4, XFS, Btrfs, ZFS, F2FS, bcachefs). Network file systems (NFS, SMB, Ceph, 9p), FUSE,
    /// overlayfs (copy-up changes the inode), FAT and the like are hashed every time, and so is tmpfs: it never writes
    /// pages back, so a page kept dirty in a shared writable mapping takes writes without new times however long the
    /// file has settled (the settle time rests on writeback cleaning the page).
    static let trustedFileSystems: Set<UInt64> = [
        0xEF53, 0x5846_5342, 0x9123_683E, 0x2FC1_2FC1, 0xF2F5_2010, 0xCA45_1A4E,
    ]

    /// Whether a digest may be remembered for a file of this identity.
    static func cacheable(_ identity: FileIdentity) -> Bool {
        identity.isRegular && trustedFileSystems.contains(identity.fileSystem)
    }

    /// The entry's file name: device and inode, which hard links share (same inode, same content).
    static func entryName(_ identity: FileIdentity) -> String {
        String(identity.device, radix: 16) + "-" + String(identity.inode, radix: 16)
    }

    /// The kernel's dirty-page expiry (`vm.dirty_expire_centisecs`, 30 s by default) plus 10 s, at least 2 s (file
    /// systems with coarse timestamps) and at most 10 minutes.
    static let settleSecondsDefault: Int = {
        guard let bytes = try? BoundedFile.read("/proc/sys/vm/dirty_expire_centisecs", limit: 64, what: "sysctl"),
            let centis = Int(String(decoding: bytes.filter { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self))
        else { return 40 }
        return min(600, max(2, centis / 100 + 10))
    }()
}
