internal import AirlockJSON
internal import AirlockNames
internal import AirlockSystem
internal import Crypto

#if canImport(Glibc)
    import Glibc
#endif

/// One digest cache entry: a line of text naming the identity it was taken for (boot, mount, device, inode, size,
/// times, file system), the SHA-256, and a checksum of all that. A torn or corrupt entry fails the checksum; an
/// entry of another boot, mount or state of the file fails the match: both read as a miss.
struct DigestRecord: Equatable {
    /// Longest entry read.
    static let maxBytes = 512
    static let magic = "airlock-digest-1"

    var boot: String
    var mountID: UInt64
    var mountUnique: Bool
    var device: UInt64
    var inode: UInt64
    var size: UInt64
    var modifiedNs: Int64
    var changedNs: Int64
    var fileSystem: UInt64
    var sha256: String

    /// This boot's id (`/proc/sys/kernel/random/boot_id`): mount ids and device numbers are only stable within a
    /// boot. Nil when unreadable, and then nothing is cached.
    static let currentBoot: String? = {
        guard let bytes = try? BoundedFile.read("/proc/sys/kernel/random/boot_id", limit: 64, what: "boot id") else {
            return nil
        }
        let id = bytes.filter { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || $0 == 0x2D }
        return id.count == 36 ? String(decoding: id, as: UTF8.self) : nil
    }()

    init?(identity: FileIdentity, sha256: String) {
        guard let boot = DigestRecord.currentBoot else { return nil }
        self.boot = boot
        mountID = identity.mountID
        mountUnique = identity.mountUnique
        device = identity.device
        inode = identity.inode
        size = identity.size
        modifiedNs = identity.modifiedNs
        changedNs = identity.changedNs
        fileSystem = identity.fileSystem
        self.sha256 = sha256
    }

    private init(fields f: [Substring]) {
        boot = String(f[1])
        mountID = UInt64(f[2])!
        mountUnique = f[3] == "1"
        device = UInt64(f[4])!
        inode = UInt64(f[5])!
        size = UInt64(f[6])!
        modifiedNs = Int64(f[7])!
        changedNs = Int64(f[8])!
        fileSystem = UInt64(f[9])!
        sha256 = String(f[10])
    }

    /// Whether this entry was taken for `identity`, in this boot.
    func matches(_ identity: FileIdentity) -> Bool {
        guard let current = DigestRecord.currentBoot, boot == current else { return false }
        return mountID == identity.mountID && mountUnique == identity.mountUnique && device == identity.device
            && inode == identity.inode && size == identity.size && modifiedNs == identity.modifiedNs
            && changedNs == identity.changedNs && fileSystem == identity.fileSystem
    }

    private var body: String {
        [
            DigestRecord.magic, boot, String(mountID), mountUnique ? "1" : "0", String(device), String(inode),
            String(size), String(modifiedNs), String(changedNs), String(fileSystem), sha256,
        ].joined(separator: " ")
    }

    /// The entry's bytes: the fields, then the first 16 bytes of the SHA-256 of them in hex, then a newline.
    var encoded: [UInt8] { Array((body + " " + DigestRecord.check(body) + "\n").utf8) }

    private static func check(_ text: String) -> String {
        String(hex(SHA256.hash(data: Array(text.utf8))).prefix(32))
    }

    /// The entry whose fields are `body` (space-separated, without the checksum), checksummed afresh.
    static func parseBody(_ body: String) -> DigestRecord? {
        parse(Array((body + " " + check(body) + "\n").utf8))
    }

    /// The entry in `bytes`, or nil when it is not exactly one well-formed, checksummed entry.
    static func parse(_ bytes: [UInt8]) -> DigestRecord? {
        guard bytes.count <= maxBytes, bytes.last == 0x0A,
            bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F || $0 == 0x0A }), bytes.filter({ $0 == 0x0A }).count == 1
        else { return nil }
        let text = String(decoding: bytes.dropLast(), as: UTF8.self)
        let fields = text.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 12, fields[0] == magic, fields[3] == "0" || fields[3] == "1",
            fields[2...9].allSatisfy({ f in
                !f.isEmpty && (f.first != "-" || f.count > 1)
                    && f.dropFirst(f.first == "-" ? 1 : 0).allSatisfy(\.isNumber)
            }),
            UInt64(fields[2]) != nil, UInt64(fields[4]) != nil, UInt64(fields[5]) != nil, UInt64(fields[6]) != nil,
            Int64(fields[7]) != nil, Int64(fields[8]) != nil, UInt64(fields[9]) != nil,
            fields[10].count == 64, fields[10].allSatisfy({ $0.isHexDigit && !$0.isUppercase })
        else { return nil }
        let body = fields[0...10].joined(separator: " ")
        guard fields[11] == check(body) else { return nil }
        return DigestRecord(fields: Array(fields))
    }

    /// Whether `name` is an entry's name (`<device hex>-<inode hex>`).
    static func isEntryName(_ name: [UInt8]) -> Bool {
        let parts = name.split(separator: 0x2D, omittingEmptySubsequences: false)
        return parts.count == 2
            && parts.allSatisfy { p in
                !p.isEmpty && p.count <= 16 && p.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
            }
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Why a cache directory is not trusted.
struct UntrustedCache: Error, CustomStringConvertible {
    let description: String
    /// False when the folder merely cannot be opened or made (no home, a read-only file system, no permission):
    /// the cache is off without a warning. True for what someone else could have arranged (an owner, a mode, a link).
    let suspicious: Bool
    init(_ description: String, suspicious: Bool = true) {
        self.description = description
        self.suspicious = suspicious
    }
}

extension DigestCache {
    /// Opens the directory at `path` (absolute) if only `euid` or root can change it: each component opened from `/`
    /// by descriptor with `O_NOFOLLOW` (a symbolic link anywhere refuses it), each owned by root or `euid` and not
    /// writable by group or others — except a root-owned sticky directory on the way (`/tmp`), whose entries only
    /// their owners can rename — and the cache itself owned by `euid`. Missing components are created (mode 0700).
    static func openTrusted(_ path: String, euid: uid_t) -> Result<Int32, UntrustedCache> {
        guard path.hasPrefix("/") else { return .failure(UntrustedCache("not an absolute path")) }
        let components = FileName(path).components
        guard !components.contains(where: { $0.bytes == [0x2E, 0x2E] }) else {
            return .failure(UntrustedCache("the path holds .."))
        }
        var current = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard current >= 0 else { return .failure(UntrustedCache("cannot open /: \(Errno.current.text)")) }
        var walked = ""
        let named = components.filter { !$0.bytes.isEmpty && $0.bytes != [0x2E] }
        for (i, component) in ([nil] + named.map { Optional($0) }).enumerated() {
            let last = i == named.count
            if let component {
                walked += "/" + component.escaped
                let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
                var next = component.withCString { openat(current, $0, flags) }
                if next < 0 && errno == ENOENT {
                    _ = component.withCString { mkdirat(current, $0, 0o700) }
                    next = component.withCString { openat(current, $0, flags) }
                }
                let failure = Errno.current
                FileDescriptor(current).close()
                guard next >= 0 else {
                    let link = failure.rawValue == ELOOP || failure.rawValue == ENOTDIR
                    let why = link ? "is a symbolic link or not a folder" : "cannot be opened (\(failure.text))"
                    return .failure(UntrustedCache("\(walked) \(why)", suspicious: link))
                }
                current = next
            }
            var st = stat()
            guard fstat(current, &st) == 0 else {
                FileDescriptor(current).close()
                return .failure(UntrustedCache("cannot stat \(walked.isEmpty ? "/" : walked)"))
            }
            let shown = walked.isEmpty ? "/" : walked
            let sticky = st.st_mode & S_ISVTX != 0
            var problem: String? = nil
            if last && st.st_uid != euid {
                problem = "\(shown) is owned by uid \(st.st_uid), not by uid \(euid)"
            } else if st.st_uid != 0 && st.st_uid != euid {
                problem = "\(shown) is owned by uid \(st.st_uid)"
            } else if st.st_mode & 0o022 != 0 && (last || !sticky || st.st_uid != 0) {
                problem = "\(shown) is writable by its group or others"
            }
            if let problem {
                FileDescriptor(current).close()
                return .failure(UntrustedCache(problem))
            }
        }
        return .success(current)
    }
}
