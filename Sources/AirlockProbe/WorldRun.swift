public import AirlockAnalysis
public import AirlockSandbox
internal import AirlockFormats

#if canImport(Glibc)
    import Glibc
#endif

/// A probe's detonations of one file in several worlds (docs/probe.md, "Worlds"), and the one report they make.
///
/// The worlds run one after the other, in `WorldCatalog` order, each a whole detonation in its own sandbox with its
/// own `HostWorld`. The first always runs with the whole deadline; a later one starts only while the budget left is
/// at least the longest world so far, and its deadline is the budget left when that is shorter than the deadline. A
/// world whose own verdict (`ownVerdict`: its dynamic findings) is `malicious` ends the probe. The report is that of
/// the world with the worst own verdict (`malicious`, then `suspicious`, `error`, `clean`; the first on a tie): its
/// trace, detonation and timings, with the findings of every world, each once, the dynamic ones naming every world
/// they appeared in (`evidence.worlds`). The verdict is decided from them all.
public enum WorldRun {
    /// Runs `detonate` (one detonation with the options it is given) in the worlds `options` plan, over the static
    /// `report`, and returns the probe's report.
    public static func detonate(
        report: Report, options: ProbeOptions,
        detonate: (ProbeOptions) throws(SandboxError) -> (Detonation, [Finding])
    ) -> Report {
        let planned = WorldCatalog.plan(options, nowSeconds: Int64(time(nil)))
        let deadline = options.timeoutSeconds ?? options.profile.sandbox.limits.timeoutSeconds
        let budget = options.worldBudgetSeconds ?? 2 * deadline
        let started = StaticScanner.now()
        var runs: [(world: DetonationWorld, report: Report, detonated: Bool)] = []
        var summaries: [WorldRunSummary] = []
        var longest = 0.0
        var stopped = false
        var failure: String? = nil
        for (i, candidate) in planned.enumerated() {
            var summary = WorldRunSummary(
                name: candidate.name, dateOffsetSeconds: candidate.dateOffsetSeconds, gpu: candidate.gpu,
                credentials: candidate.credentials, skipsSleeps: candidate.skipsSleeps, ran: false, verdict: nil,
                durationMs: 0)
            let remaining = budget - StaticScanner.ms(since: started) / 1000
            if stopped || (i > 0 && (remaining <= 0 || remaining < longest)) {
                summary.cut = stopped ? .stoppedEarly : .budget
                summaries.append(summary)
                continue
            }
            var worldOptions = options
            // A probe told to use the profile as written (`drawsWorld` off) runs in no world at all.
            worldOptions.world = options.drawsWorld ? candidate.world : nil
            // A warm sandbox is started in one of the catalog's worlds (its clock, devices and environment are set at
            // spawn) and is taken only for a world of that name (`WarmSandbox.key`); a caller's own worlds, or a world
            // it fixed, start cold.
            if options.worldCandidates != nil || options.world != nil { worldOptions.warmStart = nil }
            let shortened = i > 0 && remaining < deadline
            if shortened { worldOptions.timeoutSeconds = remaining }
            let began = StaticScanner.now()
            var worldReport = report
            do throws(SandboxError) {
                let (detonation, notes) = try detonate(worldOptions)
                worldReport = Verdict.decide(static: report, dynamic: detonation, policy: options.policy)
                worldReport.add(notes)
                summary.warm = detonation.warm
                if shortened && detonation.result.timedOut {
                    // The budget's deadline ended it, not the model's own: that is no finding about the model.
                    summary.cut = .budget
                    if let timeout = options.policy.outcomes[.timeout]?.finding {
                        worldReport.findings.removeAll { $0.rule == timeout && $0.source == .dynamic }
                        worldReport.add([])
                    }
                }
                runs.append((candidate, worldReport, true))
            } catch {
                worldReport.timings.append(("detonationMs", StaticScanner.ms(since: began)))
                let message = "the sandbox could not run the loader: \(error)"
                worldReport.add([], error: ("detonation", message))
                failure = failure ?? (planned.count > 1 ? "world \(candidate.name): \(message)" : message)
                runs.append((candidate, worldReport, false))
            }
            summary.ran = true
            summary.verdict = ownVerdict(worldReport)
            summary.durationMs = (StaticScanner.ms(since: began) * 1000).rounded() / 1000
            longest = max(longest, summary.durationMs / 1000)
            summaries.append(summary)
            if summary.verdict == .malicious { stopped = true }
        }
        var report = merge(
            runs, summaries: summaries, failure: failure, stopped: stopped && summaries.last?.ran == false)
        let cut = summaries.filter(\.cutByBudget).map(\.name)
        if !cut.isEmpty {
            // Not a verdict on the model (a slow benign model is cut too), but the triggers of these worlds were not
            // all tried: the report says so where a person reads it, not only in `detonation.worlds`.
            let seconds = (budget * 10).rounded() / 10
            report.add([
                Finding(
                    rule: budgetRule, severity: .low, source: .dynamic,
                    message:
                        "the worlds' time budget (\(seconds) s) cut \(cut.count) of \(summaries.count) worlds (\(cut.joined(separator: ", "))): what only they would have triggered was not tried",
                    evidence: Evidence(details: [
                        ("cutWorlds", cut.joined(separator: ",")), ("budgetSeconds", "\(seconds)"),
                    ]))
            ])
        }
        return report
    }

    /// The rule of the finding that says the budget cut worlds.
    public static let budgetRule = "probe.worlds-cut"

    /// A world's own verdict: what its detonation found (its dynamic findings, or its error), without the static
    /// analysis every world shares, so a file the static analysis already calls malicious still runs in the worlds
    /// until one shows the behaviour.
    static func ownVerdict(_ report: Report) -> Verdict {
        Verdict.decide(findings: report.findings.filter { $0.source == .dynamic }, analysed: report.error == nil)
    }

    /// How bad a world's verdict is when choosing the world whose trace the report keeps.
    static func rank(_ verdict: Verdict) -> Int {
        switch verdict {
        case .clean: 0
        case .error: 1
        case .suspicious: 2
        case .malicious: 3
        }
    }

    /// The probe's report from the worlds' own: the worst detonated world's, with every world's findings once.
    static func merge(
        _ runs: [(world: DetonationWorld, report: Report, detonated: Bool)], summaries: [WorldRunSummary],
        failure: String?, stopped: Bool
    ) -> Report {
        let detonated = runs.filter(\.detonated)
        guard
            let worst = detonated.indices.max(by: { a, b in
                // max(by:) keeps the last of equals: compare so that the first worst world wins.
                let ra = rank(ownVerdict(detonated[a].report)), rb = rank(ownVerdict(detonated[b].report))
                return ra != rb ? ra < rb : a > b
            })
        else { return runs[0].report }
        var report = detonated[worst].report
        var order: [String] = []
        var found: [String: (finding: Finding, worlds: [String])] = [:]
        for run in [detonated[worst]] + detonated.enumerated().filter({ $0.offset != worst }).map(\.element) {
            for finding in run.report.findings where finding.rule != Report.omittedRule {
                let key = identity(finding)
                if found[key] == nil {
                    order.append(key)
                    found[key] = (finding, [])
                }
                if found[key]?.worlds.contains(run.world.name) == false { found[key]?.worlds.append(run.world.name) }
            }
        }
        let names = detonated.map(\.world.name)
        report.findings = order.compactMap { key in
            guard var entry = found[key] else { return nil }
            if entry.finding.source == .dynamic {
                let worlds = names.filter { entry.worlds.contains($0) }
                entry.finding.evidence.details.append(("worlds", worlds.joined(separator: ",")))
            }
            return entry.finding
        }
        let total = runs.reduce(0.0) { sum, run in sum + (run.report.timings.first { $0.0 == "detonationMs" }?.1 ?? 0) }
        if let i = report.timings.firstIndex(where: { $0.0 == "detonationMs" }) { report.timings[i].1 = total }
        report.add([], error: failure.map { ("detonation", $0) })
        report.detonation?.worlds = summaries
        report.detonation?.traceWorld = detonated[worst].world.name
        report.detonation?.stoppedEarly = stopped
        return report
    }

    /// What makes two findings of different worlds the same: rule, severity, source and evidence, without what
    /// differs from run to run (trace positions, counts, the world itself).
    static func identity(_ finding: Finding) -> String {
        let volatile: Set<String> = ["lastSeq", "events", "worlds"]
        var parts = [finding.rule, finding.severity.rawValue, finding.source.rawValue]
        parts.append(finding.evidence.member ?? "")
        parts.append(finding.evidence.offset.map(String.init) ?? "")
        parts.append(finding.evidence.global ?? "")
        parts += finding.evidence.args ?? []
        for (k, v) in finding.evidence.details where !volatile.contains(k) { parts.append("\(k)=\(v)") }
        return parts.joined(separator: "\u{0}")
    }
}
