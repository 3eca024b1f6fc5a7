@testable import AirlockProbe
import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

/// The loader harness is Python and the supervisor Swift: each contract between them is written once on each side.
/// These tests read `Profiles/harness/*.py` and fail when the two disagree (a renamed phase, format, line or exit
/// code would otherwise only show as a detonation misjudged).
@Suite struct HarnessContractTests {
    static func harness() throws -> String {
        try String(contentsOfFile: "\(repositoryRoot)/Profiles/harness/airlock_harness.py", encoding: .utf8)
    }

    /// Every match of `pattern`'s groups in `text`.
    static func matches(_ pattern: String, in text: String) throws -> [[String]] {
        let regex = try NSRegularExpression(pattern: pattern)
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).map { m in
            (1..<m.numberOfRanges).map { String(text[Range(m.range(at: $0), in: text)!]) }
        }
    }

    @Test("the harness announces the phases HarnessPhase names, through PhaseMarker's prefix")
    func phases() throws {
        let source = try Self.harness()
        let prefix = try Self.matches(#"PHASE_PREFIX = "([^"]*)""#, in: source)
        #expect(prefix.map(\.[0]) == [PhaseMarker.prefix])
        let announced = try Self.matches(#"announce\("([a-z]+)"\)"#, in: source).map(\.[0])
        // `startup` is where the harness begins: never announced.
        #expect(announced == HarnessPhase.allCases.dropFirst().map(\.rawValue), "\(announced)")
    }

    @Test("the harness loads exactly the formats HarnessFormat names")
    func formats() throws {
        let source = try Self.harness()
        let table = try #require(source.range(of: "LOADERS = {").map { source[$0.upperBound...] })
        let body = try #require(table.range(of: "}").map { String(table[..<$0.lowerBound]) })
        let names = try Self.matches(#""([a-z0-9-]+)":"#, in: body).map(\.[0])
        #expect(Set(names) == Set(HarnessFormat.allCases.map(\.rawValue)), "\(names)")
        #expect(names.count == HarnessFormat.allCases.count)
    }

    @Test("the harness prints the lines HarnessProtocol reads, and ends with their exit codes")
    func linesAndExitCodes() throws {
        let source = try Self.harness()
        #expect(source.contains("print(f\"\(HarnessProtocol.linePrefix){kind} "))
        #expect(source.contains("\"\(HarnessProtocol.linePrefix)\(HarnessProtocol.Line.leftBehind.rawValue) threads="))
        #expect(source.contains("\"\(HarnessProtocol.linePrefix)\(HarnessProtocol.Line.loaded.rawValue) "))
        let failures = try Self.matches(#"fail\((\d+), "([a-z-]+)""#, in: source)
        #expect(!failures.isEmpty)
        for failure in failures {
            let line = try #require(HarnessProtocol.Line(rawValue: failure[1]), "the harness prints \(failure[1])")
            #expect(String(line.exitCode.rawValue) == failure[0], "\(failure[1]) ends with \(failure[0])")
        }
        let printed = Set(failures.map(\.[1]))
        let expected = HarnessProtocol.Line.allCases.filter { $0.exitCode != .loaded }.map(\.rawValue)
        #expect(printed == Set(expected), "\(printed)")
        // The usage error, and the success path.
        #expect(source.contains("file=sys.stderr)\n        return \(HarnessProtocol.ExitCode.usage.rawValue)"))
        #expect(source.contains("return \(HarnessProtocol.ExitCode.loaded.rawValue)\n"))
    }

    @Test("the harness takes the command line HarnessProtocol.argv builds")
    func commandLine() throws {
        let source = try Self.harness()
        let entry = try String(contentsOfFile: "\(repositoryRoot)/Profiles/harness/load.py", encoding: .utf8)
        #expect(entry.contains("from airlock_harness import main"))
        #expect(HarnessProtocol.entryPoint.hasSuffix("/load.py"))
        #expect(source.contains("\"\(HarnessProtocol.noProbeFlag)\" not in argv[3:]"))
        #expect(source.contains("spec.startswith(\"\(HarnessProtocol.descriptorPrefix)\")"))
        let argv = HarnessProtocol.argv(interpreter: ["python3"], format: .pytorchZip, descriptor: 3, probe: false)
        #expect(argv == ["python3", "/airlock/harness/load.py", "pytorch-zip", "fd:3", "--no-probe"])
    }

    @Test("the ONNX loader takes the folder pack and name HarnessProtocol passes, and imports its libraries")
    func onnxContract() throws {
        let source = try String(
            contentsOfFile: "\(repositoryRoot)/Profiles/harness/airlock_onnx.py", encoding: .utf8)
        #expect(source.contains("MAGIC = b\"\(String(decoding: ONNXFolderPack.magic.dropLast(), as: UTF8.self))\\n\""))
        #expect(source.contains("MAX_FILES = \(ONNXFolderPack.maxFiles)\n"))
        #expect(source.contains("arg == \"\(HarnessProtocol.folderOption)\""))
        #expect(source.contains("arg == \"\(HarnessProtocol.nameOption)\""))
        let argv = HarnessProtocol.argv(
            interpreter: ["python3"], format: .onnx, descriptor: 3, probe: true, imports: ["onnx"], folder: 4,
            name: "m.onnx")
        #expect(
            argv == [
                "python3", "/airlock/harness/load.py", "onnx", "fd:3", "--import", "onnx", "--folder", "fd:4", "--name",
                "m.onnx",
            ])
        #expect(ConsumerPlan.libraries.isSuperset(of: ["onnx", "onnxruntime"]))
    }

    @Test("the shipped policy's model phases are harness phases")
    func policyPhases() throws {
        let policy = try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: defaultProfile())
        #expect(policy.modelPhases == [.load, .probe, .end])
    }
}
