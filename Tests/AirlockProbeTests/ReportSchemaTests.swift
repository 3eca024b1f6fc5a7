import Foundation
import Testing
import AirlockTestSupport

/// The JSON report contract (design.md, "Report (JSON, schema version 1)") against `docs/report.schema.json`:
/// every line `airlock scan` and `airlock probe` print for the generated sample models validates, with Python's
/// jsonschema (Draft 7), and has no duplicate keys.
@Suite("Report JSON schema", .serialized)
struct ReportSchemaTests {
    /// Files detonated by the probe half: benign and malicious, of every format the harness loads, and two it does not.
    static let probed = [
        "benign.pt", "evil.pt", "legacy_evil.pt", "model.safetensors", "objects.npy", "sklearn.pkl",
        "model.joblib", "evil.joblib",
    ]

    /// A GGUF file whose one tensor's data offset (1) is not a multiple of the alignment: its finding carries the
    /// tensor's offset as a detail beside the evidence's own `offset`.
    static func misalignedGGUF() -> Data {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }
        var bytes = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(1)) + le(UInt64(1))
        bytes += str("general.architecture") + le(UInt32(8)) + str("llama")
        bytes += str("w") + le(UInt32(1)) + le(UInt64(4)) + le(UInt32(0)) + le(UInt64(1))
        bytes += [UInt8](repeating: 0, count: (32 - bytes.count % 32) % 32 + 64)
        return Data(bytes)
    }

    @Test(
        "every report of scan and probe validates against docs/report.schema.json; dynamic evidence names trace events")
    func reportsValidate() throws {
        let dir = NSTemporaryDirectory() + "airlock-schema-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let models = "\(dir)/models"
        let generated = try SchemaValidation.python(["\(repositoryRoot)/Tests/Generators/models.py", models])
        try #require(generated.status == 0, "models.py: \(generated.output)")
        try ReportSchemaTests.misalignedGGUF().write(to: URL(fileURLWithPath: "\(models)/misaligned.gguf"))

        // Every generated file (the folder walk includes hf_repo/ and expectations.json), plus paths that fail.
        let scan = try runCLI(["scan", "--format", "json", models, "\(dir)/missing.pt"])
        #expect(scan.status == 2, "\(scan.stderr)")
        let scanLines = scan.stdout.split(separator: "\n")
        let files = try FileManager.default.subpathsOfDirectory(atPath: models).filter { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(models)/\(path)", isDirectory: &isDirectory)
                && !isDirectory.boolValue
        }
        #expect(scanLines.count == files.count + 1, "one report per file")

        let probe = try runCLI(
            ["probe", "--format", "json"] + ReportSchemaTests.probed.map { "\(models)/\($0)" }, timeout: 300)
        #expect(probe.status == 1, "\(probe.stderr)")
        let probeLines = probe.stdout.split(separator: "\n")
        #expect(probeLines.count == ReportSchemaTests.probed.count, "\(probe.stdout)\n\(probe.stderr)")

        try scan.stdout.write(toFile: "\(dir)/scan.jsonl", atomically: true, encoding: .utf8)
        try probe.stdout.write(toFile: "\(dir)/probe.jsonl", atomically: true, encoding: .utf8)
        let validation = try SchemaValidation.python([
            "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json",
            "\(dir)/scan.jsonl", "\(dir)/probe.jsonl",
        ])
        #expect(validation.status == 0, "\(validation.output)")

        // The probe of evil.pt: a dynamic finding whose evidence `seq` lists refused events of the same report's trace.
        var reports: [String: [String: Any]] = [:]
        for line in probeLines {
            let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let target = try #require(report["target"] as? [String: Any])
            reports[((target["path"] as? String) ?? "").split(separator: "/").last.map(String.init) ?? ""] = report
        }
        #expect(Set(reports.keys) == Set(ReportSchemaTests.probed))
        let evil = try #require(reports["evil.pt"])
        #expect(evil["verdict"] as? String == "malicious")
        #expect(evil["detonation"] is [String: Any])
        let trace = try #require(evil["trace"] as? [[String: Any]])
        var events: [Int: [String: Any]] = [:]
        for event in trace { events[try #require(event["seq"] as? Int)] = event }
        let findings = try #require(evil["findings"] as? [[String: Any]])
        let dynamic = findings.filter { $0["source"] as? String == "dynamic" }
        let cited = dynamic.compactMap { ($0["evidence"] as? [String: Any])?["seq"] as? [Int] }
        try #require(!cited.isEmpty, "no dynamic finding names trace events: \(findings)")
        for seqs in cited {
            #expect(!seqs.isEmpty)
            for seq in seqs {
                let event = try #require(events[seq], "seq \(seq) is not in the trace")
                #expect(event["action"] as? String != "allowed", "seq \(seq) was not refused")
            }
        }
        // And the static-only files were not detonated.
        let safetensors = try #require(reports["model.safetensors"])
        #expect(safetensors["detonation"] == nil)
        #expect((safetensors["trace"] as? [Any])?.isEmpty == true)
    }

    @Test("reports with the emulated network's attempts and DNS questions validate")
    func networkValidates() throws {
        try withSamples("network_payloads.py") { dir, _ in
            let files = ["gated_http_post.pkl", "dns_exfil.pkl", "smtp_exfil.pkl"].map { "\(dir)/\($0)" }
            let probe = try runCLI(["probe", "--format", "json"] + files, timeout: 120)
            #expect(probe.status == 1, "\(probe.stderr)")
            #expect(probe.stdout.contains("\"httpRequest\":\"POST /v1/collect HTTP/1.1\""), "\(probe.stdout)")
            #expect(probe.stdout.contains("\"dnsQuestions\":[{"), "\(probe.stdout)")
            try probe.stdout.write(toFile: "\(dir)/probe.jsonl", atomically: true, encoding: .utf8)
            let validation = try SchemaValidation.python([
                "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", "\(dir)/probe.jsonl",
            ])
            #expect(validation.status == 0, "\(validation.output)")
        }
    }

    @Test("a report with what the supervisor saw left running (a forked sleeper, a timer handler) validates")
    func observationValidates() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // protocol 0 (raw-unicode-escape: \\u000a is a newline): builtins.exec(a SIGALRM handler due later, and a child that sleeps past the loader's exit)
        let code =
            "import os, signal, time\\u000asignal.signal(signal.SIGALRM, lambda *a: None)\\u000asignal.alarm(30)\\u000a"
            + "if os.fork() == 0:\\u000a    time.sleep(0.2)\\u000a    os._exit(0)\\u000a"
        _ = FileManager.default.createFile(
            atPath: "\(dir)/late.pkl", contents: Data("cbuiltins\nexec\n(V\(code)\ntR.".utf8))
        let probe = try runCLI(["probe", "--format", "json", "\(dir)/late.pkl"])
        #expect(probe.status == 1, "\(probe.stderr)")
        try probe.stdout.write(toFile: "\(dir)/probe.jsonl", atomically: true, encoding: .utf8)
        #expect(
            probe.stdout.contains("\"kind\":\"process\"") && probe.stdout.contains("SIGALRM handler"), "\(probe.stdout)"
        )
        let validation = try SchemaValidation.python([
            "-c", SchemaValidation.validator,
            "\(repositoryRoot)/docs/report.schema.json", "\(dir)/probe.jsonl",
        ])
        #expect(validation.status == 0, "\(validation.output)")
    }
}
