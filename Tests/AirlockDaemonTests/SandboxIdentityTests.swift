import AirlockDaemon
import AirlockSandbox
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd's allocator of sandbox identities and its configuration (`sandboxIds`, docs/daemon.md "Sandbox
/// identities"), without sandboxes: SandboxIdentityDaemonTests runs them.
@Suite("Sandbox identities: allocator and configuration")
struct SandboxIdentityTests {
    /// What the fake host runs: changed by the tests.
    final class FakeHost: @unchecked Sendable {
        let lock = NSLock()
        var usage = HostIdUsage()
        var scans = 0
        func read() -> HostIdUsage {
            lock.lock()
            defer { lock.unlock() }
            scans += 1
            return usage
        }
    }

    static let range = SandboxIdRange(firstUid: 1_800_000_000, firstGid: 1_800_000_000, count: 4)

    @Test("never hands out an id a live sandbox or a host process holds; refuses rather than share")
    func neverInUse() throws {
        let host = FakeHost()
        // A leftover process runs as uid first+1, another with gid first+2.
        host.usage = HostIdUsage(uids: [1_800_000_001, 0, 65534], gids: [1_800_000_002])
        let ids = SandboxIdentities(range: SandboxIdentityTests.range, usage: { host.read() }, rescanInterval: 0)
        #expect(ids.quarantinedCount == 2)
        let a = try ids.acquire()
        let b = try ids.acquire()
        #expect(a == SandboxHostIdentity(uid: 1_800_000_000, gid: 1_800_000_000))
        #expect(b == SandboxHostIdentity(uid: 1_800_000_003, gid: 1_800_000_003))
        #expect(ids.inUse == 2)
        #expect {
            _ = try ids.acquire()
        } throws: { error in
            let e = error as? SandboxError
            return e?.kind == .identities && e?.message.hasPrefix("uid-range-exhausted") == true
        }
        #expect(ids.status.refusals == 1)
        // The refusal looked at the host again (the quarantine might have cleared): still in use.
        #expect(host.scans == 2)
        // Given back: handed out again, and never two at once.
        ids.release(a)
        #expect(try ids.acquire() == a)
        #expect(throws: SandboxError.self) { _ = try ids.acquire() }
        // The leftover process ends: its ids are free once everything else is held.
        host.lock.lock()
        host.usage = HostIdUsage(uids: [], gids: [1_800_000_002])
        host.lock.unlock()
        let c = try ids.acquire()
        #expect(c.uid == 1_800_000_001)
        #expect(throws: SandboxError.self) { _ = try ids.acquire() }
        #expect(Set([a, b, c]).count == 3)
        // Refusals do not read /proc more than once a second by default.
        let slow = SandboxIdentities(range: SandboxIdentityTests.range, usage: { host.read() })
        let before = host.scans
        for _ in 0..<3 { _ = try? slow.acquire() }
        for _ in 0..<20 { _ = try? slow.acquire() }
        #expect(host.scans - before <= 2, "\(host.scans - before) passes over /proc")
    }

    @Test("identities go round the range: the one just given back is the last reused")
    func roundRobin() throws {
        let ids = SandboxIdentities(range: SandboxIdentityTests.range, usage: { HostIdUsage() })
        var seen: [UInt32] = []
        for _ in 0..<10 {
            let identity = try ids.acquire()
            seen.append(identity.uid - 1_800_000_000)
            ids.release(identity)
        }
        #expect(seen == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
        #expect(ids.inUse == 0)
        // An identity that is not the range's is ignored.
        ids.release(SandboxHostIdentity(uid: 65534, gid: 65534))
        ids.release(SandboxHostIdentity(uid: 1_800_000_001, gid: 5))
        #expect(ids.inUse == 0)
    }

    /// What the threads of `concurrent` share.
    final class Holding: @unchecked Sendable {
        let lock = NSLock()
        var now = Set<UInt32>()
        var clashes = 0
        func take(_ uid: UInt32) {
            lock.lock()
            if !now.insert(uid).inserted { clashes += 1 }
            lock.unlock()
        }
        func drop(_ uid: UInt32) {
            lock.lock()
            now.remove(uid)
            lock.unlock()
        }
    }

    @Test("many threads at once: no identity is ever held twice")
    func concurrent() throws {
        let ids = SandboxIdentities(range: SandboxIdentityTests.range, usage: { HostIdUsage() })
        let holding = Holding()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<500 {
                guard let identity = try? ids.acquire() else { continue }
                holding.take(identity.uid)
                usleep(10)
                holding.drop(identity.uid)
                ids.release(identity)
            }
        }
        #expect(holding.clashes == 0)
        #expect(ids.inUse == 0)
        #expect(ids.status.peak <= 4 && ids.status.peak >= 1)
    }

    @Test("a refusal is noticed by the request whose thread asked, and by no other")
    func exhaustionNoticed() throws {
        let ids = SandboxIdentities(
            range: SandboxIdRange(firstUid: 1_800_000_100, firstGid: 1_800_000_100, count: 1), usage: { HostIdUsage() })
        let held = try ids.acquire()
        let (_, noticed) = SandboxIdentities.noticingExhaustion { try? ids.acquire() }
        #expect(noticed)
        ids.release(held)
        let (_, fine) = SandboxIdentities.noticingExhaustion { try? ids.acquire() }
        #expect(!fine)
    }

    @Test("/proc/*/status is read for every uid and gid column")
    func scan() throws {
        let root = NSTemporaryDirectory() + "fake-proc-\(getpid())-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (pid, uid, gid) in [("12", "5\t6\t7\t8", "9\t9\t9\t9"), ("40", "0\t0\t0\t0", "0\t0\t0\t1800000002")] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(pid)", withIntermediateDirectories: true)
            try "Name:\tx\nUid:\t\(uid)\nGid:\t\(gid)\nGroups:\t4\n".write(
                toFile: "\(root)/\(pid)/status", atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: "\(root)/self", withIntermediateDirectories: true)
        let usage = HostIdUsage.scan(root: root)
        #expect(usage.uids == [0, 5, 6, 7, 8])
        #expect(usage.gids == [0, 9, 1_800_000_002])
        // The real one: this process's own ids at least.
        #expect(HostIdUsage.scan().uids.contains(geteuid()))
    }

    static func config(_ json: String) throws -> DaemonConfig {
        try DaemonConfig(json: Array(json.utf8), name: "test")
    }

    @Test("sandboxIds: FIRST:COUNT, an object, subuid or shared; the default range per-sandbox")
    func parsing() throws {
        #expect(DaemonConfig().sandboxIds == nil)
        #expect(SandboxIdSetting.standard == .range(.standard, allowOverlap: false))
        #expect(SandboxIdRange.standard.firstUid == 1_878_982_656 && SandboxIdRange.standard.count == 65536)
        let plain = try SandboxIdentityTests.config(#"{"sandboxIds": "600000:100"}"#)
        #expect(
            plain.sandboxIds
                == .range(SandboxIdRange(firstUid: 600_000, firstGid: 600_000, count: 100), allowOverlap: false))
        let object = try SandboxIdentityTests.config(
            #"{"sandboxIds": {"first": 70000, "count": 8, "allowOverlap": true}}"#)
        #expect(
            object.sandboxIds == .range(SandboxIdRange(firstUid: 70000, firstGid: 70000, count: 8), allowOverlap: true))
        #expect(try SandboxIdentityTests.config(#"{"sandboxIds": "subuid"}"#).sandboxIds == .subuid)
        #expect(try SandboxIdentityTests.config(#"{"sandboxIds": "shared"}"#).sandboxIds == .shared)
        for bad in [
            #"{"sandboxIds": "600000"}"#, #"{"sandboxIds": "a:b"}"#, #"{"sandboxIds": "-1:5"}"#,
            #"{"sandboxIds": "600000:5:1"}"#, #"{"sandboxIds": 5}"#, #"{"sandboxIds": {"first": 1}}"#,
            #"{"sandboxIds": {"first": 70000, "count": 8, "other": 1}}"#, #"{"sandboxIds": "99999999999:1"}"#,
        ] {
            #expect(throws: ConfigError.self, "\(bad)") { try SandboxIdentityTests.config(bad) }
        }
        #expect(
            SandboxIdSetting.parse("1000:10")
                == .range(SandboxIdRange(firstUid: 1000, firstGid: 1000, count: 10), allowOverlap: false))
        #expect(SandboxIdSetting.parse("10:") == nil)
    }

    static let host = HostIdDatabase(
        users: [.init(name: "root", id: 0), .init(name: "alice", id: 1000), .init(name: "big", id: 700_010)],
        groups: [.init(name: "root", id: 0), .init(name: "staff", id: 800_005)],
        subuid: [
            .init(owner: "alice", first: 100_000, count: 65536), .init(owner: "airlockd", first: 900_000, count: 1000),
        ],
        subgid: [
            .init(owner: "alice", first: 100_000, count: 65536), .init(owner: "airlockd", first: 950_000, count: 500),
        ])

    static func problem(_ first: UInt32, _ count: UInt32, overlap: Bool = false) -> String? {
        SandboxIdRange(firstUid: first, firstGid: first, count: count).problem(host: host, allowOverlap: overlap)
    }

    @Test(
        "a range is refused when it holds root, nobody, ids of 2^31 and above, users, groups, others' subordinate ids or DynamicUser ids"
    )
    func rangeChecks() throws {
        #expect(SandboxIdentityTests.problem(1_878_982_656, 65536) == nil)
        #expect(SandboxIdentityTests.problem(600_000, 100) == nil)
        #expect(SandboxIdentityTests.problem(0, 10)?.contains("root") == true)
        #expect(SandboxIdentityTests.problem(600_000, 0)?.contains("count") == true)
        #expect(SandboxIdentityTests.problem(600_000, SandboxIdRange.maxCount + 1)?.contains("count") == true)
        #expect(SandboxIdentityTests.problem(0x7FFF_FFF0, 16) == nil)
        #expect(SandboxIdentityTests.problem(0x7FFF_FFF0, 17)?.contains("2^31") == true)
        #expect(SandboxIdentityTests.problem(0xFFFF_FF00, 16)?.contains("2^31") == true)
        #expect(SandboxIdentityTests.problem(65530, 10, overlap: true)?.contains("65534") == true)
        #expect(SandboxIdentityTests.problem(61000, 200)?.contains("DynamicUser") == true)
        #expect(SandboxIdentityTests.problem(61000, 200, overlap: true) == nil)
        #expect(SandboxIdentityTests.problem(700_000, 100)?.contains("user big") == true)
        #expect(SandboxIdentityTests.problem(800_000, 100)?.contains("group staff") == true)
        #expect(SandboxIdentityTests.problem(150_000, 100)?.contains("alice's subordinate") == true)
        #expect(SandboxIdentityTests.problem(900_500, 100)?.contains("airlockd's subordinate") == true)
        #expect(SandboxIdentityTests.problem(700_000, 100, overlap: true) == nil)
        // The gids are checked as the uids are.
        let gids = SandboxIdRange(firstUid: 600_000, firstGid: 800_000, count: 100)
        #expect(gids.problem(host: SandboxIdentityTests.host, allowOverlap: false)?.contains("group staff") == true)
    }

    @Test("subuid: the /etc/subuid and /etc/subgid entries of airlockd (or airlock), checked like any range")
    func subordinate() throws {
        let range = try #require(try SandboxIdSetting.subuid.resolve(host: SandboxIdentityTests.host))
        #expect(range == SandboxIdRange(firstUid: 900_000, firstGid: 950_000, count: 500))
        var none = SandboxIdentityTests.host
        none.subuid.removeAll { $0.owner == "airlockd" }
        #expect(throws: ConfigError.self) { try SandboxIdSetting.subuid.resolve(host: none) }
        var noGid = SandboxIdentityTests.host
        noGid.subgid.removeAll { $0.owner == "airlockd" }
        #expect(throws: ConfigError.self) { try SandboxIdSetting.subuid.resolve(host: noGid) }
        // Entries by uid count too; airlock when airlockd has none.
        let byUid = HostIdDatabase(
            users: [.init(name: "airlock", id: 990)],
            subuid: [.init(owner: "990", first: 300_000, count: 64)],
            subgid: [.init(owner: "airlock", first: 300_000, count: 64)])
        #expect(
            try SandboxIdSetting.subuid.resolve(host: byUid)
                == SandboxIdRange(firstUid: 300_000, firstGid: 300_000, count: 64))
        // A huge entry is used up to the most one range holds.
        let huge = HostIdDatabase(
            subuid: [.init(owner: "airlockd", first: 1_000_000_000, count: 500_000_000)],
            subgid: [.init(owner: "airlockd", first: 1_000_000_000, count: 500_000_000)])
        #expect(try SandboxIdSetting.subuid.resolve(host: huge)?.count == SandboxIdRange.maxCount)
        #expect(
            HostIdDatabase.subordinates("alice:100000:65536\n# comment\nbad\nbob:1:x\n").map(\.owner) == ["alice"])
        #expect(try SandboxIdSetting.shared.resolve(host: SandboxIdentityTests.host) == nil)
    }

    @Test("a daemon that is not root is refused any range, and told about shared")
    func nonRoot() throws {
        var config = DaemonConfig()
        config.sandboxIds = .range(SandboxIdRange(firstUid: 600_000, firstGid: 600_000, count: 10), allowOverlap: false)
        #expect {
            _ = try SandboxIdentities.start(config, host: HostIdDatabase(), euid: 1000)
        } throws: { error in
            "\(error)".contains("not root") && "\(error)".contains("shared")
        }
        config.sandboxIds = .shared
        #expect(try SandboxIdentities.start(config, host: HostIdDatabase(), euid: 1000) == nil)
        // Not configured: shared when not root, the standard range as root.
        config.sandboxIds = nil
        #expect(try SandboxIdentities.start(config, host: HostIdDatabase(), euid: 1000) == nil)
        #expect(try SandboxIdentities.start(config, host: HostIdDatabase(), euid: 0)?.range == .standard)
        config.sandboxIds = .range(SandboxIdRange(firstUid: 600_000, firstGid: 600_000, count: 10), allowOverlap: false)
        let started = try #require(try SandboxIdentities.start(config, host: HostIdDatabase(), euid: 0))
        #expect(started.range.count == 10)
        // A range the host's ids clash with stops the start.
        config.sandboxIds = .range(SandboxIdRange(firstUid: 1000, firstGid: 1000, count: 10), allowOverlap: false)
        #expect(throws: ConfigError.self) {
            _ = try SandboxIdentities.start(config, host: SandboxIdentityTests.host, euid: 0)
        }
    }

    @Test("the size needed: two per worker, the warm sandboxes, one more")
    func need() {
        #expect(SandboxIdRange.need(workers: 2, warmSandboxes: 3) == 8)
        #expect(SandboxIdRange.need(workers: 1, warmSandboxes: 0) == 3)
    }
}
