@testable import AirlockAnalysis
@testable import AirlockFormats
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

@Suite("Pickle rules and reports")
struct RulesTests {
    @Test(
        "globals are classified",
        arguments: [
            ("os", "system", "critical"), ("posix", "system", "critical"), ("nt", "system", "critical"),
            ("subprocess", "Popen", "critical"), ("builtins", "eval", "critical"), ("builtins", "getattr", "critical"),
            ("builtins", "getattr.__call__", "critical"), ("__builtin__", "eval", "critical"),
            ("runpy", "_run_code", "critical"), ("timeit", "timeit", "critical"),
            ("importlib", "import_module", "critical"),
            ("marshal", "loads", "critical"), ("types", "FunctionType", "critical"), ("ctypes", "CDLL", "critical"),
            ("socket", "create_connection", "critical"), ("smtplib", "SMTP", "critical"),
            ("urllib.request", "urlopen", "critical"),
            ("logging.config", "dictConfig", "critical"), ("code", "InteractiveConsole", "critical"),
            ("pip", "main", "critical"),
            ("operator", "attrgetter", "critical"), ("functools", "partial", "high"), ("builtins", "print", "high"),
            ("sys", "modules", "critical"), ("pickle", "loads", "critical"),
            ("collections", "OrderedDict", "safe"), ("torch._utils", "_rebuild_tensor_v2", "safe"),
            ("torch", "FloatStorage", "safe"),
            ("torch", "float32", "safe"), ("numpy.core.multiarray", "_reconstruct", "safe"), ("numpy", "dtype", "safe"),
            ("copyreg", "_reconstructor", "safe"), ("_codecs", "encode", "safe"), ("builtins", "set", "safe"),
            ("sklearn.tree._classes", "DecisionTreeClassifier", "unknown"), ("torch", "load_library", "high"),
            ("mymodel", "Net", "unknown"),
        ])
    func classify(module: String, name: String, expected: String) {
        let got: String
        switch PickleRules.classify(module: module, name: name) {
        case .safe: got = "safe"
        case .unknown: got = "unknown"
        case .dangerous(_, let critical): got = critical ? "critical" : "high"
        }
        #expect(got == expected, "\(module).\(name)")
    }

    @Test("verdicts follow the worst severity; an error without findings is an error")
    func verdicts() {
        let target = ReportTarget(path: "m", size: 1, sha256: nil, format: "pickle")
        #expect(Report(target: target, findings: []).verdict == .clean)
        #expect(Report(target: target, findings: [Finding(rule: "r", severity: .low, message: "")]).verdict == .clean)
        #expect(
            Report(target: target, findings: [Finding(rule: "r", severity: .medium, message: "")]).verdict
                == .suspicious)
        #expect(
            Report(
                target: target,
                findings: [
                    Finding(rule: "r", severity: .high, message: ""),
                    Finding(rule: "s", severity: .critical, message: ""),
                ]
            ).verdict == .malicious)
        #expect(Report(target: target, findings: [], error: ("io", "x")).verdict == .error)
        #expect(
            Report(target: target, findings: [Finding(rule: "r", severity: .critical, message: "")], error: ("io", "x"))
                .verdict == .malicious)
    }

    @Test("the report JSON has the contract's fields")
    func reportJSON() throws {
        let target = ReportTarget(path: "/m/x.pt", size: 10, sha256: "ab", format: "pytorch-zip")
        let f = Finding(
            rule: "pickle.dangerous-import", severity: .critical, message: "imports os.system",
            evidence: Evidence(offset: 3, member: "archive/data.pkl", global: "os.system", args: ["'id'"]))
        let r = Report(target: target, findings: [f], timings: [("staticMs", 0.5)])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(r.json.serialized().utf8)) as? [String: Any])
        #expect(object["schemaVersion"] as? Int == 1)
        #expect(object["verdict"] as? String == "malicious")
        #expect((object["target"] as? [String: Any])?["sha256"] as? String == "ab")
        let finding = try #require((object["findings"] as? [[String: Any]])?.first)
        #expect(finding["source"] as? String == "static")
        #expect((finding["evidence"] as? [String: Any])?["member"] as? String == "archive/data.pkl")
        #expect(object["error"] is NSNull)
        #expect(r.text().hasPrefix("MALICIOUS  /m/x.pt"))
    }

    static let sniffCases: [([UInt8], FileFormat)] = {
        var cases: [([UInt8], FileFormat)] = []
        cases.append(([0x80, 0x04, 0x95], .pickle))
        cases.append((FormatDetector.legacyTorchMagic + [0x80, 0x02], .pytorchLegacy))
        cases.append(([0x50, 0x4B, 0x03, 0x04, 0, 0], .zip))
        cases.append(([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0], .numpy))
        cases.append(([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0], .gguf))
        cases.append(([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A], .hdf5))
        cases.append(([2, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x7D], .safetensors))
        cases.append((Array("{\"a\": 1}".utf8), .json))
        cases.append((Array("hello".utf8), .unknown))
        return cases
    }()

    @Test("content decides the format", arguments: sniffCases)
    func sniff(bytes: [UInt8], expected: FileFormat) {
        #expect(FormatDetector.sniff(ByteView(bytes)) == expected)
    }
}
