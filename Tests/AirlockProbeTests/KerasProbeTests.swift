import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

/// Keras models detonated with the consumer's keras (`keras.saving.load_model`, safe mode first, then
/// `safe_mode=False`, then `predict`), from the keras venv `make test-venvs` makes (keras 3.3, jax, numpy < 2). The
/// models are saved by the real keras at test time (`Tests/Generators/keras_saved.py`); the payload opens the test's
/// canary for append.
@Suite("Keras detonation", .serialized)
struct KerasProbeTests {
    /// The consumer environment with keras (`make test-venvs`).
    static let kerasVenv = "\(repositoryRoot)/.build-deps/keras"

    /// Writes the models with the keras venv's python against `bait`; returns their folder (the caller removes it).
    static func models(_ bait: Bait) throws -> String {
        let python = "\(kerasVenv)/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestSupportError("no \(kerasVenv): run `make test-venvs` (make test does)")
        }
        let out = NSTemporaryDirectory() + "airlock-keras-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["\(repositoryRoot)/Tests/Generators/keras_saved.py", out, "--canary", bait.canary]
        p.environment = ["KERAS_BACKEND": "numpy", "PATH": "/usr/bin:/bin"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestSupportError("keras_saved.py failed (exit \(p.terminationStatus))")
        }
        return out
    }

    static func rules(_ report: Report) -> [String] { report.findings.map { "\($0.rule) \($0.message.prefix(160))" } }

    static func safeMode(_ report: Report) -> String? {
        report.findings.first { $0.rule == "probe.keras-safe-mode" }?.evidence.details.first { $0.0 == "safeMode" }?.1
    }

    @Test("a Lambda that writes outside /tmp is malicious by detonation in .keras and .h5; benign models are clean")
    func detonate() throws {
        let bait = try Bait()
        let dir = try Self.models(bait)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = try RealRuntimeTests.options(python: Self.kerasVenv, timeout: 120)
        #expect(options.runtime?.distribution(of: "keras") != nil)
        for ext in ["keras", "h5"] {
            let touch = Prober.probe(file: "\(dir)/touch.\(ext)", options: options)
            #expect(touch.verdict == .malicious, "touch.\(ext): \(Self.rules(touch))")
            #expect(touch.detonation != nil, "touch.\(ext) is detonated")
            let f = ProbeTests.dynamicEvidence(touch, rule: "dynamic.write-outside-tmp", phase: "load", "touch.\(ext)")
            #expect(f?.message.contains(bait.canary) == true, "touch.\(ext): \(f?.message ?? "")")
            #expect(touch.detonation?.runtime?.libraries.contains { $0.module == "keras" } == true)
            // keras 3.3's safe mode refuses a Lambda in a .keras archive; its legacy HDF5 reader ignores safe mode and
            // runs the Lambda, whose refused open raises.
            #expect(Self.safeMode(touch) == (ext == "keras" ? "refused" : "raised"), "touch.\(ext)")

            if ext == "keras" {
                // A Lambda that acts on real data only: the probe phase's predict on canary inputs runs it.
                let later = Prober.probe(file: "\(dir)/predict.keras", options: options)
                #expect(later.verdict == .malicious, "predict.keras: \(Self.rules(later))")
                _ = ProbeTests.dynamicEvidence(
                    later, rule: "dynamic.write-outside-tmp", phase: "probe", "predict.keras")
            }
            let benign = Prober.probe(file: "\(dir)/benign.\(ext)", options: options)
            #expect(benign.verdict == .clean, "benign.\(ext): \(Self.rules(benign))")
            #expect(benign.detonation != nil, "benign.\(ext) is detonated")
            #expect(Self.safeMode(benign) == "accepted", "benign.\(ext)")
            #expect(benign.timings.contains { $0.0 == "probeMs" }, "benign.\(ext) reached the probe phase (predict)")
            #expect(!benign.findings.contains { $0.rule.hasPrefix("dynamic.") && $0.severity >= .medium })
        }
        try bait.checkUntouched()
    }

    @Test("an HDF5 model with a Keras archive appended is read both ways, and the archive's reading is detonated")
    func polyglot() throws {
        let bait = try Bait()
        let dir = try Self.models(bait)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scan = StaticScanner.scan(file: "\(dir)/polyglot.keras")
        #expect(scan.target.format == "hdf5")
        #expect(scan.findings.contains { $0.rule == "format.polyglot" }, "\(Self.rules(scan))")
        #expect(scan.findings.contains { $0.rule == "keras.lambda" }, "the appended archive's Lambda is read")
        let options = try RealRuntimeTests.options(python: Self.kerasVenv, timeout: 120)
        let report = Prober.probe(file: "\(dir)/polyglot.keras", options: options)
        #expect(report.verdict == .malicious, "\(Self.rules(report))")
        _ = ProbeTests.dynamicEvidence(report, rule: "dynamic.write-outside-tmp", phase: "load", "polyglot.keras")
        try bait.checkUntouched()
    }

    @Test("without keras in the runtime a Keras model is static only, and the finding says why")
    func staticOnlyWithoutKeras() throws {
        let bait = try Bait()
        let dir = try Self.models(bait)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = try RealRuntimeTests.options()
        #expect(options.runtime?.distribution(of: "keras") == nil, "the system's python has no keras")
        for name in ["touch.keras", "touch.h5", "benign.keras"] {
            let report = Prober.probe(file: "\(dir)/\(name)", options: options)
            #expect(report.detonation == nil, "\(name)")
            let reason = report.findings.first { $0.rule == "probe.static-only" }
            #expect(reason?.message.contains("keras is not installed") == true, "\(name): \(Self.rules(report))")
        }
        // The static side alone still calls a Lambda malicious.
        #expect(Prober.probe(file: "\(dir)/touch.keras", options: options).verdict == .malicious)
        try bait.checkUntouched()
    }

    @Test("the harness format: Keras models only with keras in the runtime, HDF5 only with a Keras model config")
    func harnessFormat() {
        #expect(HarnessFormat(.keras, objectArrays: false, keras: true) == .keras)
        #expect(HarnessFormat(.keras, objectArrays: false, keras: false) == nil)
        #expect(HarnessFormat(.hdf5, objectArrays: false, kerasModel: true, keras: true) == .hdf5)
        #expect(HarnessFormat(.hdf5, objectArrays: false, kerasModel: false, keras: true) == nil)
        #expect(HarnessFormat(.hdf5, objectArrays: false, kerasModel: true, keras: false) == nil)
    }
}
