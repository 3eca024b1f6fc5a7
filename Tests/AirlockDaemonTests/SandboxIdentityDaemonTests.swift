import AirlockDaemon
import AirlockTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Per-sandbox host identities through airlockd (docs/daemon.md, "Sandbox identities"): concurrent sandboxes run
/// under different host uids, seen from outside in /proc; what the kernel counts per host uid (pipe buffers,
/// processes) spent by one model does not reach another; identities come back after use; a range too small refuses.
/// Each test has a range of its own, so tests running at once do not see each other's sandboxes.
@Suite("airlockd: sandbox identities", .serialized)
struct SandboxIdentityDaemonTests {
    /// The uids of host processes inside `first..<first+count`, each with how many processes run under it.
    static func uids(from first: UInt32, count: UInt32) -> [UInt32: Int] {
        var found: [UInt32: Int] = [:]
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        where pid.allSatisfy(\.isNumber) {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }),
                let uid = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap({
                    UInt32($0)
                })
            else { continue }
            if uid >= first && uid - first < count { found[uid, default: 0] += 1 }
        }
        return found
    }

    /// Watches /proc every 50 ms until stopped: the most distinct uids of the range seen at once, and every uid seen.
    final class Watcher: @unchecked Sendable {
        let lock = NSLock()
        var most = 0
        var seen = Set<UInt32>()
        var stopped = false
        init(first: UInt32, count: UInt32) {
            let thread = Thread { [self] in
                while true {
                    let now = SandboxIdentityDaemonTests.uids(from: first, count: count)
                    lock.lock()
                    most = max(most, now.count)
                    seen.formUnion(now.keys)
                    let done = stopped
                    lock.unlock()
                    if done { return }
                    usleep(50_000)
                }
            }
            thread.start()
        }
        func stop() -> (most: Int, seen: Set<UInt32>) {
            lock.lock()
            defer { lock.unlock() }
            stopped = true
            return (most, seen)
        }
    }

    static func config(_ ids: String, workers: Int = 2) -> [String: Any] {
        ["maxConcurrent": workers, "warm": 0, "worlds": 1, "sandboxIds": ids]
    }

    /// Probes `models` at once through `daemon`; the outcomes in the order of `models`.
    static func probeAtOnce(_ daemon: TestDaemon, _ models: [String], timeout: Double = 30) -> [ProbeOutcome] {
        let results = Collector<(Int, ProbeOutcome)>()
        onThreads(models.count, into: results) { i in
            (i, probeThroughDaemon(daemon.socket, models[i], timeout: timeout, client: 120))
        }
        return results.wait(count: models.count, timeout: 150).sorted { $0.0 < $1.0 }.map(\.1)
    }

    @Test("two concurrent sandboxes run under two host uids of the range; one's spent pipe budget leaves the other's")
    func pipesNotShared() throws {
        let dir = try generateSamples("identities.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first: UInt32 = 1_800_001_000
        let daemon = try TestDaemon(config: SandboxIdentityDaemonTests.config("\(first):8"))
        defer { daemon.stop() }
        let watcher = Watcher(first: first, count: 8)
        let outcomes = SandboxIdentityDaemonTests.probeAtOnce(
            daemon, ["\(dir)/pipe_hog.pkl", "\(dir)/pipe_check.pkl"])
        let (most, seen) = watcher.stop()
        try #require(outcomes.count == 2)
        #expect(outcomes.allSatisfy { $0.code == nil }, "\(outcomes)")
        #expect(most >= 2, "never saw both sandboxes under uids of their own at once (saw \(seen))")
        #expect(seen.count >= 2 && seen.allSatisfy { $0 >= first && $0 < first + 8 }, "\(seen)")
        // The checker found full-size pipes all along: the hog spent its own uid's budget only.
        #expect(!outcomes[1].rules.contains("dynamic.exec"), "the checker's pipes shrank: \(outcomes[1])")
        // Everything is gone once the replies are in.
        #expect(waitFor(5) { SandboxIdentityDaemonTests.uids(from: first, count: 8).isEmpty })
    }

    @Test("the control: with sandboxIds shared, the same hog does shrink the checker's pipes")
    func pipesSharedControl() throws {
        let dir = try generateSamples("identities.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemon = try TestDaemon(config: SandboxIdentityDaemonTests.config("shared"))
        defer { daemon.stop() }
        let outcomes = SandboxIdentityDaemonTests.probeAtOnce(
            daemon, ["\(dir)/pipe_hog.pkl", "\(dir)/pipe_check.pkl"])
        try #require(outcomes.count == 2)
        #expect(outcomes.allSatisfy { $0.code == nil }, "\(outcomes)")
        #expect(outcomes[1].rules.contains("dynamic.exec"), "the shared uid's budget was not spent: \(outcomes[1])")
    }

    @Test("a model forking all it can does not stop a concurrent detonation from forking")
    func forkBombBeside() throws {
        let dir = try generateSamples("identities.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first: UInt32 = 1_800_002_000
        let daemon = try TestDaemon(config: SandboxIdentityDaemonTests.config("\(first):8"))
        defer { daemon.stop() }
        let watcher = Watcher(first: first, count: 8)
        let outcomes = SandboxIdentityDaemonTests.probeAtOnce(
            daemon, ["\(dir)/fork_hog.pkl", "\(dir)/fork_check.pkl"])
        let (most, seen) = watcher.stop()
        try #require(outcomes.count == 2)
        #expect(outcomes.allSatisfy { $0.code == nil }, "\(outcomes)")
        #expect(most >= 2, "never saw both sandboxes under uids of their own at once (saw \(seen))")
        #expect(
            outcomes[0].rules.contains("dynamic.resource-exhausted"), "the hog did not reach its limit: \(outcomes[0])")
        #expect(!outcomes[1].rules.contains("dynamic.exec"), "the checker could not fork: \(outcomes[1])")
        #expect(waitFor(5) { SandboxIdentityDaemonTests.uids(from: first, count: 8).isEmpty })
    }

    @Test("identities come back: more sandboxes than the range holds, one after another, all run")
    func reused() throws {
        let dir = try generateSamples("identities.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first: UInt32 = 1_800_003_000
        let daemon = try TestDaemon(config: SandboxIdentityDaemonTests.config("\(first):2", workers: 1))
        defer { daemon.stop() }
        let watcher = Watcher(first: first, count: 2)
        for round in 0..<5 {
            let outcome = probeThroughDaemon(daemon.socket, "\(dir)/noop.pkl", timeout: 30, client: 120)
            #expect(outcome.code == nil, "round \(round): \(outcome)")
        }
        let (_, seen) = watcher.stop()
        #expect(seen.isSubset(of: [first, first + 1]) && !seen.isEmpty, "\(seen)")
    }

    @Test("a range too small for the load refuses the request as busy, reason uid-range-exhausted, and recovers")
    func exhausted() throws {
        let dir = try generateSamples("identities.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first: UInt32 = 1_800_004_000
        let daemon = try TestDaemon(config: SandboxIdentityDaemonTests.config("\(first):1"))
        defer { daemon.stop() }
        #expect(daemon.log.contains("uid-range-exhausted"), "no warning at start: \(daemon.log)")
        let outcomes = SandboxIdentityDaemonTests.probeAtOnce(daemon, ["\(dir)/spin.pkl", "\(dir)/spin.pkl"])
        try #require(outcomes.count == 2)
        let refused = outcomes.filter { $0.code == "busy" }
        #expect(refused.count == 1 && outcomes.filter { $0.code == nil }.count == 1, "\(outcomes)")
        #expect(refused.first?.message.contains("uid-range-exhausted") == true, "\(outcomes)")
        // The identity came back: the next request runs.
        let next = probeThroughDaemon(daemon.socket, "\(dir)/noop.pkl", timeout: 30, client: 120)
        #expect(next.code == nil, "\(next)")
        // status says so: the range, the peak, the refusal; none held once the sandboxes ended.
        let ids = try #require(try daemonStatus(daemon.socket)["sandboxIds"] as? [String: Any])
        #expect(ids["firstUid"] as? Int == Int(first) && ids["count"] as? Int == 1, "\(ids)")
        #expect(ids["peak"] as? Int == 1 && (ids["refused"] as? Int ?? 0) >= 1, "\(ids)")
        #expect(
            waitFor(10) { (try? daemonStatus(daemon.socket)["sandboxIds"] as? [String: Any])?["held"] as? Int == 0 })
        let text = try runCLI(["status"], socketVariable: daemon.socket)
        #expect(text.stdout.contains("sandbox ids  \(first):1 (gids from \(first)): 0 held (peak 1)"), "\(text.stdout)")
    }
    @Test("warm sandboxes waiting for their model hold identities of their own, and a probe's sandbox another")
    func warm() throws {
        let dir = try generateSamples("identities.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first: UInt32 = 1_800_005_000
        var config = SandboxIdentityDaemonTests.config("\(first):16", workers: 1)
        config["warm"] = 1
        let daemon = try TestDaemon(config: config)
        defer { daemon.stop() }
        // The system runtime's start-ups (torch; numpy, joblib, sklearn): one warm sandbox each, each its own uid.
        let warmed = waitFor(90) { SandboxIdentityDaemonTests.uids(from: first, count: 16).count >= 2 }
        #expect(warmed, "warm sandboxes: \(SandboxIdentityDaemonTests.uids(from: first, count: 16))")
        let watcher = Watcher(first: first, count: 16)
        let outcome = probeThroughDaemon(daemon.socket, "\(dir)/spin.pkl", timeout: 30, client: 120)
        let (most, seen) = watcher.stop()
        #expect(outcome.code == nil, "\(outcome)")
        // The probe ran beside the other warm sandbox (warm or cold, under an identity neither holds).
        #expect(most >= 2 && seen.count >= 3, "most \(most) at once, seen \(seen)")
        #expect(!daemon.log.contains("uid-range-exhausted"), "\(daemon.log)")
    }
}
