@testable import AirlockAnalysis
import AirlockFormats
import AirlockSystem
import Foundation
import Testing
import AirlockTestSupport

/// A scratch folder on the test's file system (ext4 here, which the cache trusts), removed by the caller.
func scratchFolder(_ label: String) throws -> String {
    let path = "/var/tmp/airlock-digest-\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    chmod(path, 0o755)
    return path
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Sets a file's modification (and access) time, as `touch -d` does.
func setModified(_ path: String, seconds: Int, nanoseconds: Int) {
    var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
    _ = utimensat(AT_FDCWD, path, &times, 0)
}

func modifiedTime(_ path: String) -> (Int, Int) {
    var st = stat()
    _ = stat(path, &st)
    return (st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
}

/// The digest of the file at `path` through `cache`, by descriptor.
func cachedDigest(_ path: String, _ cache: DigestCache?) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw POSIXError(.ENOENT) }
    defer { close(fd) }
    switch FileDigest.sha256(fd: fd, cache: cache) {
    case .success(let (digest, _)): return digest
    case .failure(let failure): throw failure
    }
}

func identity(_ path: String) throws -> FileIdentity {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw POSIXError(.ENOENT) }
    defer { close(fd) }
    guard let id = FileSystem.identity(fd) else { throw POSIXError(.EIO) }
    return id
}

func digestOf(_ bytes: [UInt8]) -> String { FileDigest.sha256(ByteView(bytes)) }

func cacheEntries(_ folder: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
}

/// A correctly checksummed entry for `path`'s identity that names `digest`: what a forger would write.
func forgeEntry(in folder: String, for path: String, digest: String) throws -> String {
    let id = try identity(path)
    let record = try #require(DigestRecord(identity: id, sha256: digest))
    let entry = folder + "/" + DigestCache.entryName(id)
    try Data(record.encoded).write(to: URL(fileURLWithPath: entry))
    chmod(entry, 0o600)
    return entry
}

/// The digest cache: hits only for the same state of the same file, misses on every change of identity, and a
/// directory or entry anyone but the current user could have written is never believed.
@Suite("Digest cache", .serialized)
struct DigestCacheTests {
    let root: String
    let folder: String
    let cache: DigestCache
    let forged = String(repeating: "ab", count: 32)

    init() throws {
        root = try scratchFolder("cache")
        folder = root + "/cache"
        cache = DigestCache(location: folder, settleSeconds: 0)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: root) }

    @Test func storesOneEntryAndHitsIt() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        let bytes = Array("weights".utf8)
        try writeFile(file, bytes)
        #expect(try cachedDigest(file, cache) == digestOf(bytes))
        #expect(cacheEntries(folder).count == 1)
        #expect(cache.lookup(try identity(file)) == digestOf(bytes))
        // A checksummed entry of this identity is believed: the hit is what the cache says, not a new hash. (The
        // poisoning tests below rely on this to fail when a forged entry is used.)
        _ = try forgeEntry(in: folder, for: file, digest: forged)
        #expect(try cachedDigest(file, cache) == forged)
    }

    @Test func rewriteInPlaceWithTheSameSizeAndTimeMisses() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("aaaaaaaa".utf8))
        let (s, ns) = modifiedTime(file)
        #expect(try cachedDigest(file, cache) == digestOf(Array("aaaaaaaa".utf8)))
        // Same inode, same size, modification time put back: only the change time tells.
        let fd = open(file, O_WRONLY)
        _ = "bbbbbbbb".withCString { write(fd, $0, 8) }
        close(fd)
        setModified(file, seconds: s, nanoseconds: ns)
        #expect(try cachedDigest(file, cache) == digestOf(Array("bbbbbbbb".utf8)))
    }

    @Test func truncateAndRestoreMisses() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("original".utf8))
        let (s, ns) = modifiedTime(file)
        #expect(try cachedDigest(file, cache) == digestOf(Array("original".utf8)))
        _ = truncate(file, 0)
        let fd = open(file, O_WRONLY)
        _ = "replaced".withCString { write(fd, $0, 8) }
        close(fd)
        setModified(file, seconds: s, nanoseconds: ns)
        #expect(try cachedDigest(file, cache) == digestOf(Array("replaced".utf8)))
    }

    @Test func renameOverMissesAndHardLinkHits() throws {
        defer { cleanup() }
        let file = root + "/model.bin", other = root + "/other.bin", link = root + "/link.bin"
        try writeFile(file, Array("first".utf8))
        #expect(try cachedDigest(file, cache) == digestOf(Array("first".utf8)))
        try writeFile(other, Array("other".utf8))
        rename(other, file)
        #expect(try cachedDigest(file, cache) == digestOf(Array("other".utf8)))
        // A hard link is the same inode: the same content, and the same entry (the link count changed the change
        // time, so it is hashed once more, then hit).
        Glibc.link(file, link)
        #expect(try cachedDigest(link, cache) == digestOf(Array("other".utf8)))
        #expect(cache.lookup(try identity(file)) == digestOf(Array("other".utf8)))
    }

    @Test func recentlyChangedFilesAreNotRemembered() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("fresh".utf8))
        let settled = DigestCache(location: folder, settleSeconds: 30)
        #expect(try cachedDigest(file, settled) == digestOf(Array("fresh".utf8)))
        #expect(cacheEntries(folder).isEmpty)
    }

    @Test func untrustedFileSystemsAreNotCached() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("x".utf8))
        var id = try identity(file)
        #expect(DigestCache.cacheable(id))
        // overlay, NFS, FUSE, CIFS, FAT, and tmpfs: no writeback, so a page kept dirty in a shared mapping takes
        // writes without new times however long the file has settled.
        for magic: UInt64 in [0x794C_7630, 0x6969, 0x6573_5546, 0xFF53_4D42, 0x4D44, 0x0102_1994] {
            id.fileSystem = magic
            #expect(!DigestCache.cacheable(id))
            cache.store(id, digest: forged, startedNs: Int64.max / 2)
            #expect(cache.lookup(id) == nil)
        }
        #expect(cacheEntries(folder).isEmpty)
    }

    @Test(arguments: ["owner", "group-writable", "symlink", "symlinked-parent"])
    func untrustedDirectoryIsIgnored(_ how: String) throws {
        defer { cleanup() }
        let real = root + "/real"
        try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: true)
        chmod(real, 0o700)
        var location = real
        switch how {
        case "owner": chown(real, 65534, 65534)
        case "group-writable": chmod(real, 0o770)
        case "symlink":
            symlink(real, root + "/link")
            location = root + "/link"
        default:
            try FileManager.default.createDirectory(atPath: real + "/digests", withIntermediateDirectories: true)
            chmod(real + "/digests", 0o700)
            symlink(real, root + "/parent")
            location = root + "/parent/digests"
        }
        let file = root + "/model.bin"
        try writeFile(file, Array("true content".utf8))
        let target = how == "symlinked-parent" ? real + "/digests" : real
        _ = try forgeEntry(in: target, for: file, digest: forged)
        let untrusted = DigestCache(location: location, settleSeconds: 0)
        #expect(!untrusted.isEnabled)
        #expect(try cachedDigest(file, untrusted) == digestOf(Array("true content".utf8)))
    }

    @Test(arguments: ["other-owner", "group-writable", "symlink", "torn", "corrupt", "other-boot", "directory"])
    func untrustedEntryIsAMiss(_ how: String) throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("true content".utf8))
        #expect(cache.isEnabled)
        let entry = try forgeEntry(in: folder, for: file, digest: forged)
        switch how {
        case "other-owner": chown(entry, 65534, 65534)
        case "group-writable": chmod(entry, 0o620)
        case "symlink":
            rename(entry, root + "/forged")
            symlink(root + "/forged", entry)
        case "torn":
            let bytes = try Data(contentsOf: URL(fileURLWithPath: entry))
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: entry))
        case "corrupt":
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: entry)))
            let at = bytes.count - 40  // inside the digest
            bytes[at] = bytes[at] == 0x61 ? 0x62 : 0x61
            try Data(bytes).write(to: URL(fileURLWithPath: entry))
        case "other-boot":
            var text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: entry)), as: UTF8.self)
            let boot = try #require(DigestRecord.currentBoot)
            text = text.replacingOccurrences(of: boot, with: "00000000-0000-0000-0000-000000000000")
            // Re-checksummed: a well-formed entry of another boot, whose device and mount numbers mean nothing now.
            let fields = text.dropLast().split(separator: " ")
            let body = fields.dropLast().joined(separator: " ")
            let record = try #require(DigestRecord.parseBody(body))
            try Data(record.encoded).write(to: URL(fileURLWithPath: entry))
        default:
            try FileManager.default.removeItem(atPath: entry)
            try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: false)
        }
        #expect(try cachedDigest(file, cache) == digestOf(Array("true content".utf8)))
    }

    @Test func recordsRoundTripAndRejectVariants() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("z".utf8))
        let record = try #require(DigestRecord(identity: try identity(file), sha256: digestOf(Array("z".utf8))))
        #expect(DigestRecord.parse(record.encoded) == record)
        #expect(DigestRecord.parse(record.encoded + [0x0A]) == nil)
        #expect(DigestRecord.parse(Array(record.encoded.dropLast())) == nil)
        #expect(DigestRecord.parse([]) == nil)
        #expect(DigestRecord.parse(Array(repeating: 0x41, count: 600)) == nil)
        #expect(DigestRecord.isEntryName(Array("803-1a2b".utf8)))
        #expect(!DigestRecord.isEntryName(Array(".tmp-1-2-3".utf8)))
    }

    @Test func locationFollowsTheEnvironment() {
        defer { cleanup() }
        #expect(DigestCache.location(environment: ["AIRLOCK_DIGEST_CACHE": "off", "HOME": "/h"], euid: 1000) == nil)
        #expect(DigestCache.location(environment: ["AIRLOCK_DIGEST_CACHE": "/c"], euid: 0) == "/c")
        #expect(DigestCache.location(environment: ["AIRLOCK_DIGEST_CACHE": "rel"], euid: 0) == nil)
        #expect(
            DigestCache.location(environment: ["CACHE_DIRECTORY": "/var/cache/airlock/digests:/x"], euid: 0)
                == "/var/cache/airlock/digests")
        #expect(DigestCache.location(environment: ["HOME": "/root"], euid: 0) == "/var/cache/airlock/digests")
        #expect(
            DigestCache.location(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"], euid: 7) == "/x/airlock/digests")
        #expect(DigestCache.location(environment: ["HOME": "/h"], euid: 7) == "/h/.cache/airlock/digests")
        #expect(DigestCache.location(environment: [:], euid: 7) == nil)
    }

    @Test func evictsBeyondTheBound() throws {
        defer { cleanup() }
        #expect(cache.isEnabled)
        // Entries for identities that exist nowhere: only their count matters here.
        let file = root + "/model.bin"
        try writeFile(file, Array("e".utf8))
        var id = try identity(file)
        for i in 0..<(DigestCache.maxEntries + 200) {
            id.inode = UInt64(1_000_000 + i)
            cache.store(id, digest: forged, startedNs: Int64.max / 2)
        }
        #expect(cacheEntries(folder).count <= DigestCache.maxEntries)
    }
}
