public import AirlockAnalysis
internal import AirlockSandbox

extension Verdict {
    /// The report of a probe: the static report with the detonation's findings, judged by `policy` (`DynamicRules`),
    /// its trace, timings and the `detonation` member. The verdict is decided once, from the static and dynamic
    /// findings together (`Verdict.decide(findings:analysed:)`), or is `error` with the static findings alone when
    /// the loader stopped before the model's phases: then nothing was observed about the model.
    public static func decide(static report: Report, dynamic detonation: Detonation, policy: VerdictPolicy) -> Report {
        let judged = StaticScanner.now()
        var report = report
        report.trace = detonation.trace
        report.traceLines = detonation.traceLines(policy: policy)
        report.detonation = detonation.summary
        if detonation.stoppedBeforeModel(policy) {
            let stderr = Detonation.tail(detonation.result.stderr, 300)
            report.add(
                [],
                error: (
                    "detonation",
                    "the loader stopped before loading the model (\(detonation.outcome.detail ?? "unknown")): \(stderr)"
                ))
        } else {
            let dynamic = DynamicRules.findings(detonation, policy: policy)
            report.findings = ObservedHarmless.resolve(
                report.findings, detonation: detonation, dynamic: dynamic, policy: policy,
                probePhase: detonation.phases.contains(.probe))
            report.add(dynamic + TemplateSandbox.findings(detonation) + KerasSafeMode.findings(detonation))
        }
        report.timings += [("detonationMs", detonation.durationMs)] + detonation.phaseTimings
        report.timings.append(("verdictMs", StaticScanner.ms(since: judged)))
        return report
    }
}
