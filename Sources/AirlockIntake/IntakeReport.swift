internal import AirlockAnalysis
internal import AirlockJSON
internal import AirlockProvenance

/// What the intake found and decided about one model: the document written beside it as report.json
/// (docs/intake-report.schema.json), with the manifest.json of the files examined.
struct IntakeReport {
    /// The provenance check: whether the model is the one meant.
    struct Provenance {
        /// Clean only when nothing contradicts the pinned manifest or the signature.
        let verdict: Verdict
        /// What was checked (`manifest`, `signature`, …).
        let checked: [String]
        /// Findings with source "provenance".
        let findings: [Finding]
    }

    /// The quarantine id.
    let id: String
    /// The model's name, escaped (`FileName.escaped`).
    let name: String
    /// A folder of files, or one file.
    let isFolder: Bool
    /// Provenance clean and the probe verdict one the policy passes.
    let approved: Bool
    /// Why, in a sentence.
    let reason: String
    /// The worst verdict of the probe reports.
    let probeVerdict: Verdict
    /// The probe verdicts the policy passes.
    let pass: Set<Verdict>
    /// When the examination began and the decision was made (UTC, `2026-11-22T04:30:00Z`).
    let examinedAt: String
    let decidedAt: String
    /// The worst of the provenance and probe verdicts.
    let verdict: Verdict
    let provenance: Provenance
    /// The probe reports, one per file, fitted within `Intake.maxReportBytes`.
    let reports: [Report]
    /// The hashes of the files examined.
    let manifest: Manifest

    /// `approved` or `rejected`.
    var decision: String { approved ? "approved" : "rejected" }

    /// report.json's document.
    var json: JSON {
        .object([
            ("schemaVersion", .int(1)),
            (
                "intake",
                .object([
                    ("id", .string(id)),
                    ("name", .string(name)),
                    ("kind", .string(isFolder ? "folder" : "file")),
                    ("decision", .string(decision)),
                    ("reason", .string(reason)),
                    ("probeVerdict", .string(probeVerdict.rawValue)),
                    ("pass", .array(pass.sorted().map { .string($0.rawValue) })),
                    ("examinedAt", .string(examinedAt)),
                    ("decidedAt", .string(decidedAt)),
                ])
            ),
            ("verdict", .string(verdict.rawValue)),
            (
                "provenance",
                .object([
                    ("verdict", .string(provenance.verdict.rawValue)),
                    ("checked", .array(provenance.checked.map(JSON.string))),
                    ("findings", .array(provenance.findings.map(\.json))),
                ])
            ),
            ("reports", .array(reports.map(\.json))),
        ])
    }

    /// The decision in a sentence: what passed, or the findings that decided against the model (the worst first,
    /// at most five).
    static func reason(
        approved: Bool, provenance: Report, probeVerdict: Verdict, reports: [Report], pass: Set<Verdict>
    ) -> String {
        func worst(_ findings: [(String, Finding)]) -> String {
            let shown = findings.filter { $0.1.severity >= .medium }.sorted { $0.1.severity > $1.1.severity }.prefix(5)
            return shown.map {
                "\($0.0.isEmpty ? "" : $0.0 + ": ")\($0.1.rule) (\($0.1.severity.rawValue)): \($0.1.message)"
            }.joined(separator: "; ")
        }
        let passing = pass.sorted().map(\.rawValue).joined(separator: ", ")
        if approved {
            return "approved: provenance clean, probe verdict \(probeVerdict.rawValue) (the policy passes \(passing))"
        }
        if provenance.verdict != .clean {
            return "rejected: not the model that was meant (provenance \(provenance.verdict.rawValue)): "
                + worst(provenance.findings.map { ("", $0) })
        }
        let errors = reports.compactMap { r in r.error.map { "\(r.target.path): \($0.message)" } }
        let detail = worst(reports.flatMap { r in r.findings.map { (r.target.path, $0) } })
        return "rejected: probe verdict \(probeVerdict.rawValue) (the policy passes \(passing))"
            + (detail.isEmpty ? "" : ": " + detail)
            + (errors.isEmpty ? "" : "; " + errors.prefix(3).joined(separator: "; "))
    }
}
