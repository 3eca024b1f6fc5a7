@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// The verdict of work a deadline or a cancellation stopped: `malicious` when a critical finding was already seen,
/// `error` otherwise, never `suspicious`. The file chooses where the stop falls: a cheap high finding first and the
/// payload behind work that outlasts the deadline would otherwise pass a policy that lets `suspicious` through.
@Suite("Verdicts of stopped scans")
struct StoppedVerdictTests {
    static let target = ReportTarget(path: "m", size: 1, sha256: nil, format: "zip")
    static func finding(_ severity: Severity) -> Finding {
        Finding(rule: "zip.path-traversal", severity: severity, source: .static, message: "m")
    }

    @Test("timeout and cancelled: error unless critical; other errors keep the old rule; add() keeps it")
    func rule() {
        for code in ["timeout", "cancelled"] {
            var report = Report(target: Self.target, findings: [Self.finding(.high)], error: (code, "stopped"))
            #expect(report.verdict == .error, "\(code)")
            report.add([Self.finding(.medium)])
            #expect(report.verdict == .error, "\(code) after add")
            report.add([Self.finding(.critical)])
            #expect(report.verdict == .malicious, "\(code) with a critical finding")
        }
        // An incomplete analysis that no deadline stopped (a truncated file, say) is judged as before.
        let io = Report(target: Self.target, findings: [Self.finding(.high)], error: ("io", "truncated"))
        #expect(io.verdict == .suspicious)
    }

    @Test("a ZIP with a high finding first and its payload last, stopped in between: error or malicious")
    func launderedZip() throws {
        let root = try scratchFolder("stopped-verdict")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/launder.zip"
        // `../readme.txt` (high) first, 256 MiB of deflated zeros, then an os.system pickle, stored.
        let writer = """
            import sys, zipfile
            evil = b"\\x80\\x02cos\\nsystem\\nX\\x04\\x00\\x00\\x00true\\x85R."
            with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr("../readme.txt", b"hello")
                for i in range(8):
                    z.writestr(f"data/f{i}.bin", b"\\0" * (32 << 20))
                z.writestr("zz_model.dat", evil, compress_type=zipfile.ZIP_STORED)
            """
        let made = try runProgram("/usr/bin/python3", ["-c", writer, path])
        try #require(made.status == 0, "\(made.stderr)")
        #expect(StaticScanner.scan(file: path).verdict == .malicious, "the whole file read")
        for seconds in [0.0, 0.02, 0.1] {
            var budget = ScanBudget()
            budget.deadline = ScanDeadline(seconds: seconds)
            let report = StaticScanner.scan(file: path, budget: budget)
            if report.error?.code == "timeout" {
                #expect(report.verdict == .error || report.verdict == .malicious, "\(seconds) s: \(report.verdict)")
                #expect(report.verdict != .malicious || report.findings.contains { $0.severity == .critical })
            } else {
                #expect(report.verdict == .malicious, "\(seconds) s, not stopped: \(report.verdict)")
            }
        }
    }
}
