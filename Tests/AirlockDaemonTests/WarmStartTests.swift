import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Warm start through airlockd (docs/sandbox.md, "Warm start"): pre-started single-use sandboxes give the verdicts and
/// findings of cold ones, never carry one model's state to the next, are replaced when they die while waiting, and
/// count the deadline from the handoff. The models come from Tests/Generators/warm.py, the benign one from the real
/// torch of /usr/bin/python3.
@Suite("Warm start", .serialized)
struct WarmStartTests {
    /// One report of a probe through the daemon, as Foundation objects.
    struct Probed {
        let report: [String: Any]
        var verdict: String { report["verdict"] as? String ?? "?" }
        var rules: [String] { (report["findings"] as? [[String: Any]] ?? []).map { $0["rule"] as? String ?? "?" } }
        var detonation: [String: Any] { report["detonation"] as? [String: Any] ?? [:] }
        var warm: Bool { detonation["warm"] as? Bool == true }
        var timings: [String: Double] { report["timings"] as? [String: Double] ?? [:] }
    }

    static func probe(_ socket: String, _ path: String, timeout: Double? = nil) throws -> Probed {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DaemonTestError("cannot open \(path)") }
        defer { close(fd) }
        // One world, warm in the pool's one world (`warmWorlds` 1): what these tests compare is warm and cold.
        var params: [(String, JSON)] = [("name", .string(path)), ("worlds", .int(1))]
        if let timeout { params.append(("timeout", .double(timeout))) }
        let client = try DaemonClient(path: socket)
        let reply = foundation(try client.call("probe", params: params, descriptor: fd, timeout: 120))
        guard let report = (reply["reports"] as? [[String: Any]])?.first else {
            throw DaemonTestError("no report: \(reply)")
        }
        return Probed(report: report)
    }

    /// The daemon's `warm` status.
    static func warmStatus(_ daemon: TestDaemon) throws -> [String: Int] {
        (try daemonStatus(daemon.socket)["warm"] as? [String: Any] ?? [:]).compactMapValues { $0 as? Int }
    }

    /// Waits until `ready` warm sandboxes are ready (each runtime start-up the host has: torch; numpy, joblib and
    /// scikit-learn).
    static func waitReady(_ daemon: TestDaemon, _ ready: Int = 2, timeout: Double = 120) throws {
        let ok = waitFor(timeout) { ((try? warmStatus(daemon))?["ready"] ?? 0) >= ready }
        if !ok { throw DaemonTestError("warm sandboxes not ready: \((try? warmStatus(daemon)) ?? [:]); \(daemon.log)") }
    }

    /// A benign state_dict saved by the real torch.
    static func benignStateDict(in dir: String) throws -> String {
        let path = "\(dir)/linear.pt"
        let run = try runProgram(
            "/usr/bin/python3",
            ["-c", "import torch, sys; torch.save(torch.nn.Linear(4, 2).state_dict(), sys.argv[1])", path])
        guard run.status == 0 else { throw DaemonTestError("torch.save failed: \(run.stderr)") }
        return path
    }

    /// The harness processes of warm sandboxes waiting under the daemon, by the libraries they import (the
    /// library's files mapped: nothing on their command line says what they import).
    static func waiting(_ daemon: TestDaemon, importing library: String) -> [Int32] {
        descendants(of: daemon.pid).filter {
            guard isLoader($0), isWaitingLoader($0.pid) else { return false }
            // Read to the end: /proc files report no size.
            let handle = FileHandle(forReadingAtPath: "/proc/\($0.pid)/maps")
            let maps = String(decoding: (try? handle?.readToEnd()) ?? Data(), as: UTF8.self)
            try? handle?.close()
            return maps.contains("/\(library)/") || maps.contains("lib\(library)")
        }.map(\.pid)
    }

    @Test("a warm probe gives the cold one's verdict and findings: a benign state_dict and an os.system payload")
    func sameAsCold() throws {
        try withSamples("warm.py") { dir, _ in
            let benign = try WarmStartTests.benignStateDict(in: dir)
            var cold: [Probed] = []
            do {
                let daemon = try TestDaemon(config: ["warm": 0, "warmWorlds": 1])
                defer { daemon.stop() }
                cold = try [benign, "\(dir)/system.pt"].map { try WarmStartTests.probe(daemon.socket, $0) }
            }
            let daemon = try TestDaemon(config: ["warmWorlds": 1])
            defer { daemon.stop() }
            try WarmStartTests.waitReady(daemon)
            let warmBenign = try WarmStartTests.probe(daemon.socket, benign)
            try WarmStartTests.waitReady(daemon)
            let warmSystem = try WarmStartTests.probe(daemon.socket, "\(dir)/system.pt")
            #expect(cold.allSatisfy { !$0.warm } && warmBenign.warm && warmSystem.warm)
            #expect(warmBenign.verdict == "clean" && cold[0].verdict == "clean", "\(warmBenign.report)")
            #expect(warmSystem.verdict == "malicious" && cold[1].verdict == "malicious")
            #expect(warmBenign.rules.sorted() == cold[0].rules.sorted(), "\(warmBenign.rules) vs \(cold[0].rules)")
            #expect(warmSystem.rules.sorted() == cold[1].rules.sorted(), "\(warmSystem.rules) vs \(cold[1].rules)")
            #expect(warmSystem.rules.contains("dynamic.exec"))
            // The same command line, outcome and start-up libraries; only the timings differ.
            for (w, c) in [(warmBenign, cold[0]), (warmSystem, cold[1])] {
                // The service folder is drawn per sandbox, and a cold start places the model at a path: the
                // interpreter, the format and the options are the same.
                let same = { (p: Probed) -> [String] in
                    var argv = p.detonation["argv"] as? [String] ?? []
                    if argv.count > 3 {
                        argv[1] = "SCRIPT"
                        argv[3] = "MODEL"
                    }
                    return argv
                }
                #expect(same(w) == same(c))
                #expect(w.detonation["outcome"] as? String == c.detonation["outcome"] as? String)
                let libraries = { (p: Probed) in
                    ((p.detonation["runtime"] as? [String: Any])?["libraries"] as? [[String: Any]] ?? [])
                        .compactMap { $0["module"] as? String }
                }
                #expect(libraries(w) == libraries(c))
                #expect(w.timings["warmWaitMs"] != nil && c.timings["warmWaitMs"] == nil)
                // Start-up is counted, not listed, warm as cold: the traces hold the same kinds of event.
                #expect((w.detonation["startupAllowed"] as? Int ?? 0) > 100, "\(w.detonation["startupAllowed"] ?? "-")")
                let startupListed = { (p: Probed) in
                    (p.report["trace"] as? [[String: Any]] ?? []).filter { $0["phase"] as? String == "startup" }.count
                }
                #expect(startupListed(w) <= startupListed(c) + 2, "warm \(startupListed(w)), cold \(startupListed(c))")
            }
        }
    }

    @Test("one model cannot influence the next: state left by one is not seen by the model probed after it")
    func noStateCarriesOver() throws {
        try withSamples("warm.py") { dir, _ in
            let daemon = try TestDaemon(config: ["warmWorlds": 1])
            defer { daemon.stop() }
            // The check fires when the state is there: both payloads in one load.
            let control = try WarmStartTests.probe(daemon.socket, "\(dir)/leave_then_check.pt")
            #expect(control.rules.contains("dynamic.exec"), "the check must see state left in its own process")
            try WarmStartTests.waitReady(daemon)
            let leave = try WarmStartTests.probe(daemon.socket, "\(dir)/leave_state.pt")
            #expect(leave.warm && leave.rules.contains("dynamic.left-behind"), "\(leave.rules)")
            for _ in 0..<2 {
                try WarmStartTests.waitReady(daemon)
                let check = try WarmStartTests.probe(daemon.socket, "\(dir)/check_state.pt")
                #expect(check.warm)
                #expect(
                    !check.rules.contains("dynamic.exec"),
                    "the next model saw what the one before left: \(check.detonation["stderrTail"] ?? "")")
                #expect(check.detonation["outcome"] as? String == "loaded")
            }
        }
    }

    @Test("a warm sandbox killed while it waits is replaced, never handed a model, and the next probe works")
    func killedWhileWaiting() throws {
        try withSamples("warm.py") { dir, _ in
            let benign = try WarmStartTests.benignStateDict(in: dir)
            let daemon = try TestDaemon(config: ["warmWorlds": 1])
            defer { daemon.stop() }
            try WarmStartTests.waitReady(daemon)
            let before = try WarmStartTests.warmStatus(daemon)
            // Ready says a sandbox waits; its libraries show in its mappings once its imports are done.
            _ = waitFor(20) { WarmStartTests.waiting(daemon, importing: "torch").count == 1 }
            let victims = WarmStartTests.waiting(daemon, importing: "torch")
            #expect(victims.count == 1, "\(descendants(of: daemon.pid).map(\.cmdline))")
            for pid in victims { kill(pid, SIGKILL) }
            // At once: a cold start (or a replacement already ready), and a right answer either way.
            let next = try WarmStartTests.probe(daemon.socket, benign)
            #expect(next.verdict == "clean" && next.detonation["outcome"] as? String == "loaded", "\(next.report)")
            try WarmStartTests.waitReady(daemon)
            let after = try WarmStartTests.warmStatus(daemon)
            #expect((after["failed"] ?? 0) >= (before["failed"] ?? 0) + 1, "\(after)")
            #expect((after["served"] ?? 0) <= (before["served"] ?? 0) + 1, "the killed sandbox got no model")
            let replaced = try WarmStartTests.probe(daemon.socket, benign)
            #expect(replaced.warm && replaced.verdict == "clean", "\(replaced.report)")
            #expect(running(daemon.pid))
            #expect(!WarmStartTests.waiting(daemon, importing: "torch").contains { victims.contains($0) })
        }
    }

    @Test("the deadline counts from the handoff, not from the warm sandbox's start; idle sandboxes are recycled")
    func deadlineFromHandoff() throws {
        try withSamples("warm.py") { dir, _ in
            let daemon = try TestDaemon(config: ["warmIdleSeconds": 20, "warmWorlds": 1])
            defer { daemon.stop() }
            try WarmStartTests.waitReady(daemon)
            // The sandbox has lived longer than the 3 s deadline before its model arrives.
            Thread.sleep(forTimeInterval: 3.5)
            try WarmStartTests.waitReady(daemon)
            let short = try WarmStartTests.probe(daemon.socket, "\(dir)/sleep_short.pt", timeout: 3)
            #expect(short.warm, "\(short.report)")
            #expect(
                short.detonation["timedOut"] as? Bool == false && short.detonation["outcome"] as? String == "loaded")
            #expect((short.timings["warmWaitMs"] ?? 0) > 3000, "\(short.timings)")
            try WarmStartTests.waitReady(daemon)
            let started = Date()
            let long = try WarmStartTests.probe(daemon.socket, "\(dir)/sleep_long.pt", timeout: 2)
            #expect(long.warm && long.detonation["timedOut"] as? Bool == true, "\(long.report)")
            #expect(Date().timeIntervalSince(started) < 8, "killed 2 s after the handoff, not at 30 s")
            let duration = long.detonation["durationMs"] as? Double ?? 0
            #expect(duration >= 1900 && duration < 4000, "durationMs counts from the handoff: \(duration)")
            // Past warmIdleSeconds a waiting sandbox is replaced by a fresh one.
            let recycled = waitFor(60) { ((try? WarmStartTests.warmStatus(daemon))?["replaced"] ?? 0) >= 1 }
            #expect(recycled, "\((try? WarmStartTests.warmStatus(daemon)) ?? [:])")
            try WarmStartTests.waitReady(daemon)
            #expect(try WarmStartTests.probe(daemon.socket, "\(dir)/check_state.pt").warm)
        }
    }

    @Test("with warm sandboxes of every default world, each world of a benign torch probe runs warm, in its own world")
    func everyWorldWarm() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let benign = try WarmStartTests.benignStateDict(in: dir)
        let daemon = try TestDaemon(config: ["warmWorlds": 3])
        defer { daemon.stop() }
        // A torch and a numpy/joblib/sklearn start-up for each of the three default worlds, all ready.
        let ok = waitFor(180) {
            let status = (try? WarmStartTests.warmStatus(daemon)) ?? [:]
            return (status["ready"] ?? 0) >= 6 && status["starting"] == 0
        }
        try #require(ok, "\((try? WarmStartTests.warmStatus(daemon)) ?? [:])")
        let fd = open(benign, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let client = try DaemonClient(path: daemon.socket)
        let reply = foundation(
            try client.call("probe", params: [("name", .string(benign))], descriptor: fd, timeout: 300))
        let report = try #require((reply["reports"] as? [[String: Any]])?.first, "\(reply)")
        #expect(report["verdict"] as? String == "clean", "\(report["findings"] ?? [])")
        let worlds = try #require((report["detonation"] as? [String: Any])?["worlds"] as? [[String: Any]])
        #expect(worlds.map { $0["name"] as? String ?? "?" } == ["now", "gpu-next-month", "next-year"])
        #expect(worlds.allSatisfy { $0["warm"] as? Bool == true && $0["ran"] as? Bool == true }, "\(worlds)")
    }
}
