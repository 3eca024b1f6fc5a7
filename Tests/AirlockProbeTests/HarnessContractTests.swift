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
        try String(contentsOfFile: "\(repositoryRoot)/Profiles/harness/model_loader.py", encoding: .utf8)
    }

    /// Every match of `pattern`'s groups in `text`.
    static func matches(_ pattern: String, in text: String) throws -> [[String]] {
        let regex = try NSRegularExpression(pattern: pattern)
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).map { m in
            (1..<m.numberOfRanges).map { String(text[Range(m.range(at: $0), in: text)!]) }
        }
    }

    @Test("the harness announces the phases HarnessPhase names, through the markers its settings name")
    func phases() throws {
        let source = try Self.harness()
        #expect(source.contains("open(MARKERS[phase], \"rb\")"))
        #expect(source.contains("MARKERS.update(markers)"))
        let fd = try Self.matches(#"SETTINGS_FD = (\d+)\n"#, in: source)
        #expect(fd.map(\.[0]) == [String(HarnessSettings.descriptor)])
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
        #expect(source.contains("print(f\"{LINE_PREFIX}{kind} "))
        #expect(source.contains("\"{LINE_PREFIX}\(HarnessProtocol.Line.leftBehind.rawValue) threads="))
        #expect(source.contains("\"{LINE_PREFIX}\(HarnessProtocol.Line.loaded.rawValue) "))
        #expect(source.contains("LINE_PREFIX = prefix"))
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

    @Test("the harness takes the arguments HarnessProtocol.arguments builds, from the settings HarnessSettings writes")
    func commandLine() throws {
        let source = try Self.harness()
        let entry = try String(
            contentsOfFile: "\(repositoryRoot)/Profiles/harness/\(HarnessSettings.entryName)", encoding: .utf8)
        #expect(entry.contains("from model_loader import run"))
        #expect(source.contains("\"\(HarnessProtocol.noProbeFlag)\" not in argv[3:]"))
        #expect(source.contains("spec.startswith(\"\(HarnessProtocol.descriptorPrefix)\")"))
        #expect(source.contains("value[\"arguments\"], value[\"markers\"], value[\"prefix\"]"))
        let arguments = HarnessProtocol.arguments(format: .pytorchZip, descriptor: 6, probe: false)
        #expect(arguments == ["pytorch-zip", "fd:6", "--no-probe"])
        let settings = HarnessSettings.draw()
        let json = settings.json(arguments: arguments)
        #expect(json.contains("\"arguments\":[\"pytorch-zip\",\"fd:6\",\"--no-probe\"]"), "\(json)")
        #expect(settings.entryPoint.hasPrefix("/srv/") && settings.entryPoint.hasSuffix("/serve.py"))
    }

    @Test("the ONNX loader takes the folder pack and name HarnessProtocol passes, and imports its libraries")
    func onnxContract() throws {
        let source = try String(
            contentsOfFile: "\(repositoryRoot)/Profiles/harness/model_onnx.py", encoding: .utf8)
        #expect(source.contains("MAGIC = b\"\(String(decoding: ONNXFolderPack.magic.dropLast(), as: UTF8.self))\\n\""))
        #expect(source.contains("MAX_FILES = \(ONNXFolderPack.maxFiles)\n"))
        #expect(source.contains("arg == \"\(HarnessProtocol.folderOption)\""))
        #expect(source.contains("arg == \"\(HarnessProtocol.nameOption)\""))
        let arguments = HarnessProtocol.arguments(
            format: .onnx, descriptor: 6, probe: true, imports: ["onnx"], folder: 7, name: "m.onnx")
        #expect(arguments == ["onnx", "fd:6", "--import", "onnx", "--folder", "fd:7", "--name", "m.onnx"])
        #expect(ConsumerPlan.libraries.isSuperset(of: ["onnx", "onnxruntime"]))
    }

    @Test("the shipped policy's model phases are harness phases")
    func policyPhases() throws {
        let policy = try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: defaultProfile())
        #expect(policy.modelPhases == [.load, .probe, .end])
    }
}
