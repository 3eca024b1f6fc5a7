@testable import AirlockAnalysis
@testable import AirlockFormats
import AirlockJSON
import AirlockNames
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The loops over attacker-sized input that once ran past a request's deadline (GGUF chat templates, the Jinja
/// analysis, JSON configs, safetensors headers, HDF5 byte searches, ZIP central directories, tar headers, the
/// repositories of a folder probe) ask it and stop: with a deadline already past, each gives nothing (the scanner's
/// report is then an error), where without one the same input gives its findings.
@Suite("Scan deadlines: the loops over attacker-sized input", .serialized)
struct ScanDeadlineHogTests {
    static var past: ScanDeadline { ScanDeadline(seconds: 0) }

    /// `body` with a past deadline bound to the thread as `StaticScanner` binds the scan's; asserts it was seen.
    static func pastDeadline<T>(_ body: () throws -> T) rethrows -> T {
        let deadline = past
        let result = try ScanDeadline.$current.withValue(deadline) { try body() }
        #expect(deadline.interrupted == .timeout, "no loop asked the deadline")
        return result
    }

    /// A template that reaches Python's globals: `template.sandbox-escape` when analysed.
    static let escaping = "{% for m in messages %}{{ m.content }}{% endfor %}{{ cycler.__init__.__globals__ }}"

    /// A GGUF v3 file holding only string metadata `pairs`.
    static func gguf(_ pairs: [(String, String)]) -> [UInt8] {
        func u64(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(v).littleEndian) { Array($0) } }
        func str(_ s: String) -> [UInt8] { u64(s.utf8.count) + Array(s.utf8) }
        var out = Array("GGUF".utf8) + withUnsafeBytes(of: UInt32(3).littleEndian) { Array($0) }
        out += u64(0) + u64(pairs.count)
        for (k, v) in pairs { out += str(k) + withUnsafeBytes(of: UInt32(8).littleEndian) { Array($0) } + str(v) }
        return out
    }

    @Test func ggufTemplatesStopAtTheDeadlineAndTheirTotalIsCapped() {
        let pairs = (0..<4).map { i in
            (i == 0 ? "tokenizer.chat_template" : "tokenizer.chat_template.t\(i)", Self.escaping)
        }
        let view = ByteView(Self.gguf(pairs))
        let report = GGUFParser.parse(view)
        #expect(report.chatTemplates.count == 4)
        #expect(TemplateFindings.gguf(view, report).contains { $0.rule == "template.sandbox-escape" })
        #expect(Self.pastDeadline { TemplateFindings.gguf(view, report) }.isEmpty)
        // One template alone: the analyser's own loops ask the deadline too.
        #expect(Self.pastDeadline { JinjaTemplate.analyse(Array(Self.escaping.utf8)) }.isEmpty)
        // Many large templates: past the total, a finding says the rest was not analysed (never clean).
        let big = String(repeating: "hello ", count: (3 << 20) / 6)
        let many = (0..<4).map { i in (i == 0 ? "tokenizer.chat_template" : "tokenizer.chat_template.t\(i)", big) }
        let manyView = ByteView(Self.gguf(many))
        let findings = TemplateFindings.gguf(manyView, GGUFParser.parse(manyView))
        let budget = findings.first { $0.rule == "template.budget" && $0.message.contains("in all") }
        #expect(budget?.severity == .medium, "\(findings.map(\.rule))")
    }

    @Test func jsonConfigStopsAtTheDeadline() throws {
        // A tokenizer_config.json whose template escapes, after 10,000 other values.
        let filler = (0..<10_000).map { "\($0)" }.joined(separator: ",")
        let config = #"{"x":[\#(filler)],"chat_template":"\#(Self.escaping)"}"#
        let view = ByteView(Array(config.utf8))
        #expect(
            TemplateFindings.json(view, name: "tokenizer_config.json").contains { $0.rule == "template.sandbox-escape" }
        )
        #expect(Self.pastDeadline { TemplateFindings.json(view, name: "tokenizer_config.json") }.isEmpty)
        // The parser itself: `stop` is asked before the first value and every few thousand values.
        var asked = 0
        #expect(throws: JSON.SyntaxError.self) {
            try JSON.parse(
                Array(config.utf8),
                stop: {
                    asked += 1
                    return asked > 1
                })
        }
        #expect(asked == 2)
    }

    @Test func oneHugeJSONStringStopsAndTemplateListsAreCapped() {
        // One value of 4 MiB: `stop` is asked inside it (in UTF-8 and transcoded from UTF-16).
        let huge = Array(#"{"chat_template": ""#.utf8) + [UInt8](repeating: 0x61, count: 4 << 20) + Array(#""}"#.utf8)
        var asked = 0
        let stop = {
            asked += 1
            return asked > 1
        }
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(huge, dialect: .python, stop: stop) }
        asked = 0
        let utf16: [UInt8] = [0xFF, 0xFE] + huge.flatMap { [$0, UInt8(0)] }
        #expect(throws: JSON.SyntaxError.self) { try JSON.parse(utf16, dialect: .python, stop: stop) }
        #expect((try? JSON.parse(utf16, dialect: .python)) != nil)
        // A list of templates: past 8 MiB in all, the rest is reported, not analysed.
        let text = String(repeating: "hello ", count: (3 << 20) / 6)
        let items = (0..<4).map { #"{"name": "t\#($0)", "template": "\#(text)"}"# }.joined(separator: ",")
        let view = ByteView(Array(#"{"chat_template": [\#(items)]}"#.utf8))
        let findings = TemplateFindings.json(view, name: "chat_template.json")
        let budget = findings.first { $0.rule == "template.budget" && $0.message.contains("in all") }
        #expect(budget?.severity == .medium, "\(findings.map(\.rule))")
    }

    @Test func jsonConfigScanIsATimeoutNotAVerdict() throws {
        // ~8 MB of values: seconds of parsing in a debug build, far past a 0.3 s deadline.
        let root = try scratchFolder("deadline-json")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/tokenizer_config.json"
        let items = [String](repeating: #"{"a":[1,2,3,{"b":"x"}]}"#, count: 350_000).joined(separator: ",")
        try writeFile(path, Array(#"{"x":[\#(items)],"chat_template":"{{ x }}"}"#.utf8))
        var budget = ScanBudget.standard
        budget.deadline = ScanDeadline(seconds: 0.3)
        let start = Date()
        let report = StaticScanner.scan(file: path, budget: budget)
        #expect(Date().timeIntervalSince(start) < 60)
        #expect(report.error?.code == "timeout", "\(report.verdict) \(report.findings.map(\.rule))")
    }

    @Test func safetensorsHeaderStopsAtTheDeadline() {
        let header = (0..<5000).map {
            #""t\#($0)":{"dtype":"F32","shape":[1],"data_offsets":[\#(4 * $0),\#(4 * $0 + 4)]}"#
        }
        let json = "{" + header.joined(separator: ",") + "}"
        var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { Array($0) }
        bytes += Array(json.utf8) + [UInt8](repeating: 0, count: 4 * 5000)
        let view = ByteView(bytes)
        #expect(SafetensorsParser.parse(view).tensorCount == 5000)
        var budget = ScanBudget.standard
        budget.deadline = Self.past
        let stopped = SafetensorsParser.parse(view, budget: budget)
        #expect(stopped.tensorCount < 5000)
        #expect(budget.deadline?.interrupted == .timeout)
    }

    @Test func hdf5ByteSearchesStopAtTheDeadline() {
        // 4 MiB of zeros, then a Keras config with a Lambda layer.
        let config = #"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {}}]}}"#
        let view = ByteView(
            [UInt8](repeating: 0, count: 4 << 20) + Array("model_config".utf8) + [0] + Array(config.utf8))
        #expect(KerasFindings.contains(view, Array("model_config".utf8)))
        #expect(KerasFindings.hdf5(view).contains { $0.rule == "keras.lambda" })
        #expect(!Self.pastDeadline { KerasFindings.contains(view, Array("model_config".utf8)) })
        #expect(Self.pastDeadline { KerasFindings.hdf5(view) }.isEmpty)
        #expect(Self.pastDeadline { KerasFindings.searchLambda(view) }.isEmpty)
        // A `.keras` archive's config.json: its parse asks the deadline too.
        let member = ByteView(Array(config.utf8))
        #expect(KerasFindings.config(member, member: "config.json").contains { $0.rule == "keras.lambda" })
        #expect(Self.pastDeadline { KerasFindings.config(member, member: "config.json") }.isEmpty)
    }

    /// An archive written by Python's `zipfile` or `tarfile` with `count` small members.
    static func archive(_ kind: String, count: Int, in root: String) throws -> ByteView {
        let path = root + "/a." + kind
        let script =
            kind == "zip"
            ? "import zipfile, sys\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n"
                + "    for i in range(int(sys.argv[2])): z.writestr('m%d.txt' % i, b'x')\n"
            : "import tarfile, io, sys\nwith tarfile.open(sys.argv[1], 'w') as t:\n"
                + "    for i in range(int(sys.argv[2])):\n"
                + "        info = tarfile.TarInfo('m%d.txt' % i); info.size = 1; t.addfile(info, io.BytesIO(b'x'))\n"
        let made = try runProgram("/usr/bin/python3", ["-c", script, path, String(count)])
        #expect(made.status == 0, "\(made.stderr)")
        return try ByteView.map(path: path)
    }

    @Test func zipCentralDirectoryStopsAtTheDeadline() throws {
        let root = try scratchFolder("deadline-zip")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let view = try Self.archive("zip", count: 100, in: root)
        #expect(try ZipArchive.read(view).entries.count == 100)
        var budget = ScanBudget.standard
        budget.deadline = Self.past
        #expect(throws: FormatError.self) { try ZipArchive.read(view, budget: budget) }
        #expect(budget.deadline?.interrupted == .timeout)
    }

    @Test func tarHeadersStopAtTheDeadline() throws {
        let root = try scratchFolder("deadline-tar")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let view = try Self.archive("tar", count: 10_000, in: root)
        #expect(TarArchive.read(view).members.count == 10_000)
        #expect(Self.pastDeadline { TarArchive.read(view) }.members.count < 10_000)
    }

    @Test func torchScriptCodeStopsAtTheDeadline() {
        let code = ByteView(Array("def forward(self, x):\n    while True:\n        x = x + 1\n    return x\n".utf8))
        let whole = TorchScriptCode.scan(code, member: "archive/code/__torch__.py")
        #expect(whole.observations.contains { $0.kind.hasSuffix("endless-loop") }, "\(whole.observations)")
        let stopped = Self.pastDeadline { TorchScriptCode.scan(code, member: "archive/code/__torch__.py") }
        #expect(stopped.observations.isEmpty)
    }

    @Test func repositoriesAreNotStartedOnceCancelledAndAreNamedAsNotExamined() throws {
        let root = try scratchFolder("deadline-repos")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for i in 0..<16 {
            let repo = root + "/r\(i < 10 ? "0" : "")\(i)"
            try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
            try writeFile(repo + "/config.json", Array(#"{"auto_map": {"AutoModel": "modeling.M"}}"#.utf8))
            try writeFile(repo + "/modeling.py", Array("class M: pass\n".utf8))
        }
        let cancellation = Cancellation()
        var budget = FolderBudget.local
        budget.deadline = ScanDeadline(seconds: nil, cancellation: cancellation)
        var started: [String] = []
        let examiner: RepositoryExaminer = { _, display, _ in
            started.append(display)
            cancellation.cancel()  // the client hangs up during the first detonation
            return RepositoryExamination { _, _ in }
        }
        let dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(dirfd) }
        var reports: [Report] = []
        FolderScanner.scan(
            dirfd: dirfd, display: "models", examine: { fd, path in StaticScanner.scan(fd: fd, path: path) },
            repository: examiner, hashThreads: 0, budget: budget
        ) { reports.append($0) }
        #expect(started == ["models/r00"])
        let record = try #require(reports.last)
        #expect(record.error?.code == "not-examined")
        let details = record.findings.first?.evidence.details ?? []
        #expect(details.contains { $0.1 == "r01" }, "\(details)")
        #expect(record.findings.first?.message.contains("cancelled") == true)
        #expect(reports.allSatisfy { $0.verdict != .clean })
    }
}
