import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

/// Compressed models detonated with the real libraries: joblib.load decompresses every compression joblib writes by
/// itself, pandas.read_pickle is told the compression a pickle of pandas objects (or a zstd one) is in, and the
/// static hints (the modules the pickle imports) come from the decompressed content.
@Suite("Probe of compressed models", .serialized)
struct PackedProbeTests {
    @Test("a malicious joblib in every compression, and a pandas pickle in gzip and zstd, are malicious by detonation")
    func malicious() throws {
        try withSamples("packed.py") { dir, _ in
            let options = try RealRuntimeTests.options()
            let files = [
                "evil_joblib.z", "evil_joblib.gz", "evil_joblib.bz2", "evil_joblib.xz", "evil_joblib.lzma",
                "evil_joblib.lz4", "evil_frame.pkl.gz", "evil_frame.pkl.zst", "evil_frame.pkl.xz",
            ]
            for name in files {
                let report = Prober.probe(file: "\(dir)/\(name)", options: options)
                #expect(report.verdict == .malicious, "\(name)")
                #expect(report.target.compression != nil, "\(name)")
                let detonation = try #require(report.detonation, "\(name) was not detonated")
                #expect(detonation.runtime?.standIns.isEmpty == true, "\(name)")
                // pandas is told the compression (zstd: only pandas reads it); joblib sniffs its own.
                #expect(detonation.argv.contains("--compression") == name.hasSuffix(".zst"), "\(detonation.argv)")
                ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", name)
            }
        }
    }

    @Test("a benign compressed model loads: its library's imports resolved by the detonation, nothing refused")
    func benign() throws {
        try withSamples("packed.py") { dir, _ in
            let options = try RealRuntimeTests.options()
            for name in ["benign_frame.pkl.bz2", "benign_joblib.gz", "benign_frame.pkl.zst"] {
                let report = Prober.probe(file: "\(dir)/\(name)", options: options)
                let summary = report.findings.map { "\($0.rule) \($0.severity) \($0.message.prefix(120))" }
                #expect(report.detonation?.outcome == "loaded", "\(name): \(summary)")
                #expect(!report.findings.contains { $0.source == .dynamic && $0.severity >= .high }, "\(name)")
            }
        }
    }

    @Test("the harness is told the compression only for pandas; joblib sniffs its own")
    func plan() {
        var report = Report(
            target: ReportTarget(path: "m.pkl.zst", size: 1, sha256: nil, format: "pickle"), findings: [])
        report.target.compression = "zstd"
        #expect(Prober.harnessFormat(report)! == (.pickle, "zstd"))
        report.target.compression = "gzip"
        #expect(Prober.harnessFormat(report)! == (.joblib, nil))
        report.modules = ["pandas.core.frame"]
        #expect(Prober.harnessFormat(report)! == (.pickle, "gzip"))
        report.target.compression = "gzip+xz"
        #expect(Prober.harnessFormat(report) == nil)
        report.target.compression = "zstd"
        report.target.format = "joblib"
        #expect(Prober.harnessFormat(report)! == (.pickle, "zstd"))
        report.target.format = "numpy"
        report.objectArrays = true
        #expect(Prober.harnessFormat(report) == nil, "numpy.load does not decompress")
        let plan = ConsumerPlan(format: .pickle, modules: [], runtime: nil, compression: "bz2")
        #expect(plan.consumer == .pandas && plan.compression == "bz2")
        let argv = HarnessProtocol.arguments(
            format: .pickle, descriptor: 6, probe: true, consumer: plan.consumer, compression: plan.compression)
        #expect(argv.suffix(4) == ["--consumer", "pandas", "--compression", "bz2"])
    }
}
