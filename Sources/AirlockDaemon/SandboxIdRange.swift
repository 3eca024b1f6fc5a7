internal import AirlockJSON

#if canImport(Glibc)
    import Glibc
#endif

/// The host uids and gids airlockd hands its sandboxes (`sandboxIds`, docs/daemon.md "Sandbox identities"): `count`
/// uids from `firstUid` and as many gids from `firstGid`, the n-th uid going with the n-th gid.
public struct SandboxIdRange: Sendable, Equatable, CustomStringConvertible {
    /// The first uid.
    public let firstUid: UInt32
    /// The first gid.
    public let firstGid: UInt32
    /// How many identities.
    public let count: UInt32

    /// The default: the last 65536-id block of systemd's container range (524288…1879048191, "Users, Groups, UIDs
    /// and GIDs on systemd Systems"), aligned as systemd-nspawn aligns its blocks, below 2^31, clear of the users,
    /// groups, `nobody` and `DynamicUser=` ids of an ordinary host.
    public static let standard = SandboxIdRange(firstUid: 0x6FFF_0000, firstGid: 0x6FFF_0000, count: 65536)
    /// The most identities one range holds.
    public static let maxCount: UInt32 = 1 << 20
    /// systemd's `DynamicUser=` range.
    public static let dynamicUsers: ClosedRange<UInt32> = 61184...65519
    /// The highest id a range may reach: above it ids are negative to whatever reads them as signed 32-bit.
    public static let highest: UInt32 = 0x7FFF_FFFF

    /// A range; `validate` says whether it can be used.
    public init(firstUid: UInt32, firstGid: UInt32, count: UInt32) {
        self.firstUid = firstUid
        self.firstGid = firstGid
        self.count = count
    }

    /// Whether `uid` is one of the range's.
    public func containsUid(_ uid: UInt32) -> Bool { uid >= firstUid && uid - firstUid < count }
    /// Whether `gid` is one of the range's.
    public func containsGid(_ gid: UInt32) -> Bool { gid >= firstGid && gid - firstGid < count }

    /// `FIRST:COUNT`, or `uid FIRST:COUNT, gid FIRST:COUNT` when they differ.
    public var description: String {
        firstUid == firstGid ? "\(firstUid):\(count)" : "uid \(firstUid):\(count), gid \(firstGid):\(count)"
    }

    /// Parses `FIRST:COUNT` (decimal, as in /etc/subuid).
    public static func parse(_ text: String) -> SandboxIdRange? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = UInt32(parts[0]), let count = UInt32(parts[1]) else { return nil }
        return SandboxIdRange(firstUid: first, firstGid: first, count: count)
    }

    /// What is wrong with the range on a host whose ids are `host`; nil when it can be used. `allowOverlap` lets it
    /// overlap users, groups, other users' subordinate ids and `DynamicUser=` ids (never 0, 65534, 65535, or 2^31 and
    /// above).
    /// `own` names the owners (by name or uid) of subordinate entries that are the range itself (`subuid`).
    public func problem(host: HostIdDatabase, allowOverlap: Bool, own: Set<String> = []) -> String? {
        guard (1...SandboxIdRange.maxCount).contains(count) else {
            return "sandboxIds: the count must be 1 to \(SandboxIdRange.maxCount), not \(count)"
        }
        for (kind, first) in [("uid", firstUid), ("gid", firstGid)] {
            let last = UInt64(first) + UInt64(count) - 1
            if first == 0 { return "sandboxIds: the range holds \(kind) 0 (root)" }
            if last > UInt64(SandboxIdRange.highest) {
                return
                    "sandboxIds: the \(kind)s \(first)…\(last) reach 2^31 and above, which many programs and some kernel interfaces read as negative; keep them at most \(SandboxIdRange.highest)"
            }
            let ids = UInt64(first)...last
            if ids.contains(65534) || ids.contains(65535) {
                return "sandboxIds: the \(kind)s \(first)…\(last) hold 65534 (nobody) or 65535 ((uid_t) -1 in 16 bits)"
            }
            if allowOverlap { continue }
            let dynamic =
                UInt64(SandboxIdRange.dynamicUsers.lowerBound)...UInt64(SandboxIdRange.dynamicUsers.upperBound)
            if ids.overlaps(dynamic) {
                return
                    "sandboxIds: the \(kind)s \(first)…\(last) overlap systemd's DynamicUser= range 61184…65519 (allowOverlap to insist)"
            }
            let named = kind == "uid" ? host.users : host.groups
            if let clash = named.first(where: { ids.contains(UInt64($0.id)) }) {
                return
                    "sandboxIds: \(kind) \(clash.id) of the range belongs to \(kind == "uid" ? "user" : "group") \(clash.name) (allowOverlap to insist)"
            }
            let subordinate = kind == "uid" ? host.subuid : host.subgid
            for entry in subordinate where !own.contains(entry.owner) && entry.count > 0 {
                let theirs = UInt64(entry.first)...(UInt64(entry.first) + UInt64(entry.count) - 1)
                if ids.overlaps(theirs) {
                    return
                        "sandboxIds: the \(kind)s \(first)…\(last) overlap \(entry.owner)'s subordinate ids \(entry.first):\(entry.count) in /etc/sub\(kind) (allowOverlap to insist)"
                }
            }
        }
        return nil
    }

    /// The identities a daemon can hold at once: `workers` detonations, each perhaps beside the warm sandbox it gave
    /// up on (still ending), `warmSandboxes` waiting, and one for good measure.
    public static func need(workers: Int, warmSandboxes: Int) -> Int { 2 * workers + warmSandboxes + 1 }
}

/// How airlockd gives its sandboxes host ids (`sandboxIds`).
public enum SandboxIdSetting: Sendable, Equatable, CustomStringConvertible {
    /// Each sandbox its own identity of the range; `allowOverlap` lets the range overlap the host's ids.
    case range(SandboxIdRange, allowOverlap: Bool)
    /// The range of /etc/subuid and /etc/subgid entries of user `airlockd` (or else `airlock`).
    case subuid
    /// Every sandbox the profile's `hostUid`/`hostGid` (65534), as `airlock probe` does: per-uid limits shared.
    case shared

    /// The default: `SandboxIdRange.standard`.
    public static let standard = SandboxIdSetting.range(.standard, allowOverlap: false)

    /// Parses `FIRST:COUNT`, `subuid` or `shared` (the `--sandbox-ids` option, the key as a string).
    public static func parse(_ text: String) -> SandboxIdSetting? {
        switch text {
        case "subuid": return .subuid
        case "shared": return .shared
        default: return SandboxIdRange.parse(text).map { .range($0, allowOverlap: false) }
        }
    }

    public var description: String {
        switch self {
        case .range(let range, let overlap): "\(range)\(overlap ? " (overlap allowed)" : "")"
        case .subuid: "subuid"
        case .shared: "shared"
        }
    }

    /// The syntax, for messages.
    static let syntax =
        "\"FIRST:COUNT\", \"subuid\", \"shared\", or {\"first\": N, \"count\": M, \"allowOverlap\": false}"

    /// The `sandboxIds` key of a configuration file.
    static func parse(
        field: JSONField<ConfigError>, fail: (String) -> ConfigError
    ) throws(ConfigError) -> SandboxIdSetting {
        if case .string(let text) = field.value {
            guard let setting = parse(text) else { throw fail("field sandboxIds: expected \(syntax)") }
            return setting
        }
        let members = try field.object(allowed: ["first", "count", "allowOverlap"])
        guard let first = members["first"], let count = members["count"] else {
            throw fail("field sandboxIds: expected \(syntax)")
        }
        let range = SandboxIdRange(
            firstUid: try first.integer(UInt32.self), firstGid: try first.integer(UInt32.self),
            count: try count.integer(UInt32.self))
        return .range(range, allowOverlap: try members["allowOverlap"]?.bool() ?? false)
    }

    /// The names whose /etc/subuid entries `subuid` uses, in order.
    public static let subordinateOwners = ["airlockd", "airlock"]

    /// The range this setting hands out on a host whose ids are `host`, checked; nil for `shared`. Throws what makes
    /// it unusable.
    public func resolve(host: HostIdDatabase) throws(ConfigError) -> SandboxIdRange? {
        switch self {
        case .shared:
            return nil
        case .range(let range, let overlap):
            if let problem = range.problem(host: host, allowOverlap: overlap) { throw ConfigError(problem) }
            return range
        case .subuid:
            for owner in SandboxIdSetting.subordinateOwners {
                let uid = host.users.first { $0.name == owner }.map { String($0.id) }
                let mine = { (e: HostIdDatabase.Subordinate) in e.owner == owner || e.owner == uid }
                guard let u = host.subuid.first(where: mine) else { continue }
                guard let g = host.subgid.first(where: mine) else {
                    throw ConfigError("sandboxIds subuid: \(owner) has an /etc/subuid entry and no /etc/subgid one")
                }
                let count = min(u.count, g.count, SandboxIdRange.maxCount)
                let range = SandboxIdRange(firstUid: u.first, firstGid: g.first, count: count)
                let own = Set([owner] + (uid.map { [$0] } ?? []))
                if let problem = range.problem(host: host, allowOverlap: false, own: own) {
                    throw ConfigError("\(problem) (from /etc/subuid and /etc/subgid, user \(owner))")
                }
                return range
            }
            throw ConfigError(
                "sandboxIds subuid: neither airlockd nor airlock has entries in /etc/subuid and /etc/subgid")
        }
    }
}

/// The host's own ids that a range must stay clear of: users, groups and subordinate ids.
public struct HostIdDatabase: Sendable {
    /// A named id.
    public struct Named: Sendable {
        public let name: String
        public let id: UInt32
        public init(name: String, id: UInt32) {
            self.name = name
            self.id = id
        }
    }
    /// An /etc/subuid or /etc/subgid entry.
    public struct Subordinate: Sendable {
        public let owner: String
        public let first: UInt32
        public let count: UInt32
        public init(owner: String, first: UInt32, count: UInt32) {
            self.owner = owner
            self.first = first
            self.count = count
        }
    }
    public var users: [Named] = []
    public var groups: [Named] = []
    public var subuid: [Subordinate] = []
    public var subgid: [Subordinate] = []

    /// A database of these entries.
    public init(users: [Named] = [], groups: [Named] = [], subuid: [Subordinate] = [], subgid: [Subordinate] = []) {
        self.users = users
        self.groups = groups
        self.subuid = subuid
        self.subgid = subgid
    }

    /// The most entries of each kind read.
    static let maxEntries = 1 << 20

    /// This host's: getpwent, getgrent (every NSS source), /etc/subuid and /etc/subgid.
    public static func load() -> HostIdDatabase {
        var db = HostIdDatabase()
        setpwent()
        while db.users.count < maxEntries, let p = getpwent() {
            db.users.append(Named(name: String(cString: p.pointee.pw_name), id: p.pointee.pw_uid))
        }
        endpwent()
        setgrent()
        while db.groups.count < maxEntries, let g = getgrent() {
            db.groups.append(Named(name: String(cString: g.pointee.gr_name), id: g.pointee.gr_gid))
        }
        endgrent()
        db.subuid = subordinates(text("/etc/subuid"))
        db.subgid = subordinates(text("/etc/subgid"))
        return db
    }

    /// A file's text, at most 1 MiB of it; empty when it cannot be read (no such file: no entries).
    private static func text(_ path: String) -> String {
        guard let bytes = try? BoundedFile.read(path, limit: 1 << 20, what: path) else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The entries of an /etc/subuid-style text (`OWNER:FIRST:COUNT` lines; others skipped).
    public static func subordinates(_ text: String) -> [Subordinate] {
        text.split(separator: "\n").prefix(maxEntries).compactMap { line in
            let parts = line.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, let first = UInt32(parts[1]), let count = UInt32(parts[2]) else { return nil }
            return Subordinate(owner: String(parts[0]), first: first, count: count)
        }
    }
}
