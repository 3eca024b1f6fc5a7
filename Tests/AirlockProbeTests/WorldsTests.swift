import AirlockAnalysis
import AirlockJSON
import AirlockFormats
import AirlockTrace
@testable import AirlockProbe
@testable import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

/// A probe's worlds (docs/probe.md, "Worlds"): payloads that act only in a later world come out malicious naming it,
/// what every world sees is reported once, the budget cuts worlds and says so, and one world is one detonation.
@Suite("Probe: worlds", .serialized)
struct WorldsTests {
    static func options(worlds: Int, timeout: Double = 20, budget: Double? = nil) throws -> ProbeOptions {
        var options = try ProbeTests.options(timeout: timeout)
        options.worlds = worlds
        options.worldBudgetSeconds = budget
        return options
    }

    static func worldsOf(_ finding: Finding?) -> String? {
        finding?.evidence.details.first { $0.0 == "worlds" }?.1
    }

    static func dynamic(_ report: Report, _ rule: String) -> [Finding] {
        report.findings.filter { $0.rule == rule && $0.source == .dynamic }
    }

    @Test("a payload that acts only on a GPU host is malicious in the GPU world, and the probe stops there")
    func gpuWorld() throws {
        try withSamples("worlds.py") { dir, _ in
            let report = Prober.probe(file: "\(dir)/gpu_gated.pkl", options: try WorldsTests.options(worlds: 3))
            #expect(report.verdict == .malicious)
            let exec = WorldsTests.dynamic(report, "dynamic.exec")
            #expect(exec.count == 1, "\(report.findings.map(\.rule))")
            #expect(WorldsTests.worldsOf(exec.first) == "gpu-next-month")
            ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", "gpu_gated")
            let worlds = try #require(report.detonation?.worlds)
            #expect(worlds.map(\.name) == ["now", "gpu-next-month", "next-year"])
            #expect(worlds.map(\.verdict) == [.clean, .malicious, nil])
            #expect(worlds.map(\.ran) == [true, true, false])
            #expect(worlds[2].cut == .stoppedEarly && !worlds[2].cutByBudget)
            #expect(worlds[1].gpu && !worlds[0].gpu && worlds[1].dateOffsetSeconds > 0 && worlds[1].skipsSleeps)
            #expect(report.detonation?.traceWorld == "gpu-next-month")
            #expect(report.detonation?.stoppedEarly == true)
            // The trace kept is the GPU world's: it holds the refused execve.
            #expect(report.trace.contains { $0.syscall == "execve" && $0.action == .denied })
            let text = report.text()
            #expect(text.contains("dynamic.exec  (world gpu-next-month)"), "\(text)")
            #expect(text.contains("worlds: now clean"), "\(text)")

            // In one world (today's host, no GPU) the gate stays shut: no dynamic evidence.
            let single = Prober.probe(file: "\(dir)/gpu_gated.pkl", options: try WorldsTests.options(worlds: 1))
            #expect(WorldsTests.dynamic(single, "dynamic.exec").isEmpty)
            #expect(single.detonation?.worlds.map(\.name) == ["now"])
            #expect(!single.text().contains("worlds:"))
        }
    }

    @Test("a payload gated on what only the third world has is malicious naming the third world")
    func thirdWorld() throws {
        try withSamples("worlds.py") { dir, _ in
            var options = try WorldsTests.options(worlds: 3)
            var worlds = Array(
                WorldCatalog.candidates(base: WorldCatalog.persona(options.profile), nowSeconds: 1_800_000_000)
                    .prefix(3))
            worlds[2].world.name = "production"
            worlds[2].world.setEnvironment("DEPLOY_STAGE", "production")
            worlds[1].world.setEnvironment("DEPLOY_STAGE", "staging")
            options.worldCandidates = worlds
            let report = Prober.probe(file: "\(dir)/stage_gated.pkl", options: options)
            #expect(report.verdict == .malicious)
            #expect(WorldsTests.worldsOf(WorldsTests.dynamic(report, "dynamic.exec").first) == "production")
            #expect(report.detonation?.worlds.map(\.verdict) == [.clean, .clean, .malicious])
            #expect(report.detonation?.traceWorld == "production")
            #expect(report.detonation?.stoppedEarly == false, "the last world ended the probe by itself")
        }
    }

    @Test("what every world sees is reported once, naming every world; a benign file stays clean in each")
    func sameInEveryWorld() throws {
        try withSamples("worlds.py") { dir, _ in
            let options = try WorldsTests.options(worlds: 3)
            let fails = Prober.probe(file: "\(dir)/fails.pkl", options: options)
            #expect(fails.verdict == .suspicious)
            let failed = WorldsTests.dynamic(fails, "dynamic.load-failed")
            #expect(failed.count == 1, "\(fails.findings.map(\.message))")
            #expect(WorldsTests.worldsOf(failed.first) == "now,gpu-next-month,next-year")
            #expect(fails.detonation?.traceWorld == "now", "a tie keeps the first world")
            for report in [fails, Prober.probe(file: "\(dir)/benign.pkl", options: options)] {
                let keys = report.findings.map { "\($0.rule)|\($0.message)" }
                #expect(Set(keys).count == keys.count, "duplicated: \(keys)")
                #expect(report.detonation?.worlds.allSatisfy(\.ran) == true)
                #expect(report.detonation?.stoppedEarly == false)
            }
            let benign = Prober.probe(file: "\(dir)/benign.pkl", options: options)
            #expect(benign.verdict == .clean, "\(benign.findings.map(\.message))")
            #expect(benign.detonation?.worlds.map(\.verdict) == [.clean, .clean, .clean])
            // detonationMs counts every world's detonation; each world's duration adds its verdict (the honeytoken
            // matching among it), so the worlds' durations together are at least detonationMs.
            let total = benign.timings.first { $0.0 == "detonationMs" }?.1 ?? 0
            let sum = benign.detonation?.worlds.reduce(0) { $0 + $1.durationMs } ?? 0
            let one = benign.detonation?.worlds.map(\.durationMs).max() ?? 0
            #expect(total > one && total <= sum + 1, "detonationMs \(total) for worlds of \(sum) ms")
        }
    }

    @Test("--worlds 1 is a single detonation in today's world: the drawn persona, the host's clock, no GPU")
    func oneWorld() throws {
        let profile = try defaultProfile()
        let persona = WorldCatalog.persona(profile)
        var applied = profile.sandbox
        persona.apply(to: &applied)
        #expect(
            applied.hostname == persona.hostname && applied.hostname != "airlock" && applied.cwd == persona.user.home)
        let first = WorldCatalog.candidates(base: persona, nowSeconds: 1_800_000_000)[0]
        #expect(first.world.clock == nil && !first.gpu && first.world.hostname == persona.hostname)
        #expect(first.credentials && !first.world.honeytokens.isEmpty)
        try withSamples("worlds.py") { dir, bait in
            let report = Prober.probe(file: "\(dir)/always.pkl", options: try WorldsTests.options(worlds: 1))
            #expect(report.verdict == .malicious)
            ProbeTests.dynamicEvidence(report, rule: "dynamic.network", phase: "load", "always")
            #expect(WorldsTests.worldsOf(WorldsTests.dynamic(report, "dynamic.network").first) == "now")
            #expect(report.detonation?.worlds.count == 1 && report.detonation?.stoppedEarly == false)
            #expect(!bait.listener.sawConnection())
        }
    }

    @Test("the budget: worlds it leaves no time for are not run, a deadline it shortened is no timeout finding")
    func budget() throws {
        try withSamples("worlds.py") { dir, _ in
            let cut = Prober.probe(
                file: "\(dir)/benign.pkl", options: try WorldsTests.options(worlds: 3, budget: 0.001))
            #expect(cut.verdict == .clean)
            let worlds = try #require(cut.detonation?.worlds)
            #expect(worlds.map(\.ran) == [true, false, false])
            #expect(worlds.map(\.cutByBudget) == [false, true, true])
            let said = try #require(cut.findings.first { $0.rule == WorldRun.budgetRule })
            #expect(said.severity == .low && said.message.contains("gpu-next-month, next-year"))

            // The GPU world spins: with the whole deadline that is a timeout in that world…
            let slow = Prober.probe(
                file: "\(dir)/gpu_spin.pkl", options: try WorldsTests.options(worlds: 2, timeout: 3, budget: 60))
            #expect(WorldsTests.worldsOf(WorldsTests.dynamic(slow, "dynamic.timeout").first) == "gpu-next-month")
            #expect(slow.detonation?.worlds.map(\.cut) == [nil, nil])
            // …and when the budget shortened its deadline, the budget ended it: no timeout finding, the cut said.
            let shortened = Prober.probe(
                file: "\(dir)/gpu_spin.pkl", options: try WorldsTests.options(worlds: 2, timeout: 20, budget: 3))
            #expect(WorldsTests.dynamic(shortened, "dynamic.timeout").isEmpty, "\(shortened.findings.map(\.rule))")
            let second = try #require(shortened.detonation?.worlds.last)
            #expect(second.ran && second.cutByBudget && second.durationMs < 10_000)
            #expect(shortened.findings.contains { $0.rule == WorldRun.budgetRule })
        }
    }

    @Test("the worlds survive the report's JSON, and later dates fall on the first of a month at 09:00 UTC")
    func jsonAndDates() throws {
        try withSamples("worlds.py") { dir, _ in
            let report = Prober.probe(file: "\(dir)/gpu_gated.pkl", options: try WorldsTests.options(worlds: 3))
            let read = try #require(Report(json: report.json))
            #expect(read.detonation?.worlds == report.detonation?.worlds)
            #expect(read.detonation?.traceWorld == "gpu-next-month" && read.detonation?.stoppedEarly == true)
            #expect(WorldsTests.worldsOf(read.findings.first { $0.rule == "dynamic.exec" }) == "gpu-next-month")
        }
        // 2026-12-05 03:57:29 UTC → 2027-01-01 09:00 and 2028-01-01 09:00.
        let now: Int64 = 1_796_443_049
        #expect(WorldCatalog.firstOfMonth(monthsAhead: 1, from: now) == 1_798_794_000)
        #expect(WorldCatalog.firstOfMonth(monthsAhead: 13, from: now) == 1_830_330_000)
        let worlds = WorldCatalog.candidates(base: WorldCatalog.persona(try defaultProfile()), nowSeconds: now)
        #expect(worlds.count == WorldCatalog.maximum)
        #expect(Set(worlds.map(\.name)).count == worlds.count)
        #expect(worlds.filter { !$0.credentials }.count >= 1 && worlds.filter(\.gpu).count >= 1)
        #expect(worlds.allSatisfy { $0.name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" } })
    }
}
