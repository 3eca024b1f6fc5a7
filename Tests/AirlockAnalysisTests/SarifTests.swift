@testable import AirlockAnalysis
@testable import AirlockFormats
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The SARIF log GitHub code scanning and other tools read (`Sarif.log`): structure, fingerprints that survive runs
/// and machines, rule metadata, regions and base URIs.
@Suite("SARIF")
struct SarifTests {
    static let options = SarifOptions(sourceRoot: "/work/checkout", rulesURL: SarifRules.defaultRulesURL)

    static func object(_ log: JSON) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(log.serialized().utf8)) as? [String: Any])
    }

    static func run(_ log: JSON) throws -> [String: Any] {
        try #require((try object(log)["runs"] as? [[String: Any]])?.first)
    }

    static func results(_ log: JSON) throws -> [[String: Any]] {
        try #require(try run(log)["results"] as? [[String: Any]])
    }

    static func rules(_ log: JSON) throws -> [[String: Any]] {
        let driver = try #require((try run(log)["tool"] as? [String: Any])?["driver"] as? [String: Any])
        return try #require(driver["rules"] as? [[String: Any]])
    }

    static func fingerprints(_ log: JSON) throws -> [String] {
        try results(log).map { try #require(($0["partialFingerprints"] as? [String: String])?[Sarif.fingerprintKey]) }
    }

    static func artifactLocation(_ result: [String: Any]) throws -> [String: Any] {
        let physical = try #require(
            (result["locations"] as? [[String: Any]])?.first?["physicalLocation"] as? [String: Any])
        return try #require(physical["artifactLocation"] as? [String: Any])
    }

    static func region(_ result: [String: Any]) -> [String: Any]? {
        ((result["locations"] as? [[String: Any]])?.first?["physicalLocation"] as? [String: Any])?["region"]
            as? [String: Any]
    }

    /// A pickle report at `path` with two dangerous imports and a trailing-data anomaly.
    static func pickleReport(_ path: String, count: Int = 7, sha: String = String(repeating: "b", count: 64)) -> Report
    {
        Report(
            target: ReportTarget(path: path, size: 40, sha256: sha, format: "pickle"),
            findings: [
                Finding(
                    rule: "pickle.dangerous-import", severity: .critical, message: "imports os.system (\(count) calls)",
                    evidence: Evidence(offset: 2, global: "os.system", args: ["'true'"])),
                Finding(
                    rule: "pickle.dangerous-import", severity: .critical, message: "imports posix.system",
                    evidence: Evidence(offset: 30, global: "posix.system")),
                Finding(rule: "pickle.trailing-data", severity: .medium, message: "\(count) bytes after STOP"),
            ])
    }

    @Test("the log has SARIF 2.1.0's required structure, and every result names a declared rule")
    func structure() throws {
        let a = Report(
            target: ReportTarget(
                path: "/models/a b.pt", size: 10, sha256: String(repeating: "a", count: 64), format: "pytorch-zip"),
            findings: [
                Finding(
                    rule: "pickle.dangerous-import", severity: .critical, message: "imports os.system",
                    evidence: Evidence(offset: 5, global: "os.system")),
                Finding(rule: "zip.trailing-data", severity: .low, message: "trailing"),
            ])
        let b = Report(
            target: ReportTarget(path: "rel/x.pkl", size: 0, sha256: nil, format: "unknown"), findings: [],
            error: ("io", "cannot open"))
        let log = Sarif.log([a, b], version: "0.1.0")
        #expect(try Self.object(log)["version"] as? String == "2.1.0")
        let run = try Self.run(log)
        let driver = try #require((run["tool"] as? [String: Any])?["driver"] as? [String: Any])
        #expect(driver["name"] as? String == "airlock")
        let rules = try Self.rules(log)
        let results = try Self.results(log)
        #expect(results.count == 2)
        for r in results {
            let id = try #require(r["ruleId"] as? String)
            let index = try #require(r["ruleIndex"] as? Int)
            #expect(rules[index]["id"] as? String == id)
            #expect(["none", "note", "warning", "error"].contains(r["level"] as? String ?? ""))
            #expect(((r["message"] as? [String: Any])?["text"] as? String)?.isEmpty == false)
            #expect(try Self.artifactLocation(r)["uri"] as? String == "file:///models/a%20b.pt")
        }
        let artifacts = try #require(run["artifacts"] as? [[String: Any]])
        #expect(((artifacts[0]["hashes"] as? [String: Any])?["sha-256"] as? String)?.count == 64)
        #expect((artifacts[1]["location"] as? [String: Any])?["uri"] as? String == "rel/x.pkl")
        let invocation = try #require((run["invocations"] as? [[String: Any]])?.first)
        #expect(invocation["executionSuccessful"] as? Bool == false)
    }

    @Test("fingerprints are the same in two runs and from another checkout, and differ between findings")
    func stableFingerprints() throws {
        let first = try Self.fingerprints(
            Sarif.log([Self.pickleReport("models/evil.pkl")], version: "1", options: Self.options))
        let again = try Self.fingerprints(
            Sarif.log([Self.pickleReport("models/evil.pkl", count: 9)], version: "2", options: Self.options))
        #expect(first.count == 3)
        #expect(first == again, "a new run (other counts in the messages, another version) keeps the fingerprints")
        // The same tree scanned by absolute path from another machine's checkout, and relative from another cwd.
        let elsewhere = SarifOptions(sourceRoot: "/home/ci/build/", rulesURL: SarifRules.defaultRulesURL)
        let absolute = try Self.fingerprints(
            Sarif.log([Self.pickleReport("/home/ci/build/models/evil.pkl")], version: "1", options: elsewhere))
        #expect(first == absolute)
        let dotted = try Self.fingerprints(
            Sarif.log([Self.pickleReport("./models/../models/evil.pkl")], version: "1", options: elsewhere))
        #expect(first == dotted)
        #expect(Set(first).count == 3, "two imports and an anomaly in one file are three findings")
        for f in first {
            #expect(f.wholeMatch(of: /[0-9a-f]{32}:[0-9]+/) != nil, "\(f)")
        }
        // Another file, or an identical finding twice, is told apart.
        let other = try Self.fingerprints(
            Sarif.log([Self.pickleReport("models/other.pkl")], version: "1", options: Self.options))
        #expect(Set(other).isDisjoint(with: first))
        var twice = Self.pickleReport("models/evil.pkl")
        twice.findings.append(twice.findings[0])
        let doubled = try Self.fingerprints(Sarif.log([twice], version: "1", options: Self.options))
        #expect(Set(doubled).count == 4 && doubled[0].hasSuffix(":1") && doubled[3].hasSuffix(":2"))
        // Other bytes at the same path are another file: a dismissed alert does not carry over to them (evidence is
        // capped, so a changed payload can look the same).
        let changed = try Self.fingerprints(
            Sarif.log(
                [Self.pickleReport("models/evil.pkl", sha: String(repeating: "d", count: 64))], version: "1",
                options: Self.options))
        #expect(Set(changed).isDisjoint(with: first))
        // In a text file, a finding placed by line keeps its fingerprint when lines are added above it.
        func config(_ line: String, _ sha: Character) -> Report {
            Report(
                target: ReportTarget(
                    path: "repo/config.json", size: 9, sha256: String(repeating: sha, count: 64), format: "json"),
                findings: [
                    Finding(
                        rule: "hf.auto-map-traversal", severity: .critical, message: "outside",
                        evidence: Evidence(
                            member: "config.json", args: ["/tmp/x.E"],
                            details: [("fileLine", line), ("fileColumn", "3")]))
                ])
        }
        // Template findings of one rule are told apart by what they reach, not by order: a new one above a dismissed
        // one does not take its fingerprint.
        func template(_ names: [(String, Int)]) -> Report {
            Report(
                target: ReportTarget(path: "t/chat_template.jinja", size: 9, sha256: nil, format: "template"),
                findings: names.map { name, line in
                    Finding(
                        rule: "template.dunder-access", severity: .medium, message: "reaches \(name)",
                        evidence: Evidence(
                            offset: line * 10,
                            details: [
                                ("templateOffset", String(line * 10)), ("name", name), ("fileLine", String(line)),
                                ("fileColumn", "4"),
                            ]))
                })
        }
        let old = try Self.fingerprints(Sarif.log([template([("__class__", 3)])], version: "1", options: Self.options))
        let new = try Self.fingerprints(
            Sarif.log([template([("__globals__", 2), ("__class__", 4)])], version: "1", options: Self.options))
        #expect(new.count == 2 && new[1] == old[0] && new[0] != old[0])
        let before = try Self.fingerprints(Sarif.log([config("4", "1")], version: "1", options: Self.options))
        let after = try Self.fingerprints(Sarif.log([config("9", "2")], version: "1", options: Self.options))
        #expect(before == after)
        // A relative path never shares a fingerprint with an absolute file of the same name outside the root.
        let outside = try Self.fingerprints(
            Sarif.log([Self.pickleReport("/models/evil.pkl")], version: "1", options: Self.options))
        #expect(Set(outside).isDisjoint(with: first))
    }

    @Test("a dynamic finding's fingerprint leaves out what changes between detonations")
    func dynamicFingerprints() throws {
        func report(_ argv: String, _ seq: Int, _ pid: String) -> Report {
            var evidence = Evidence(args: ["/bin/sh", "-c", argv], details: [("pid", pid)])
            evidence.seq = [seq]
            return Report(
                target: ReportTarget(path: "m.pt", size: 1, sha256: nil, format: "pytorch-zip"),
                findings: [
                    Finding(
                        rule: "dynamic.exec", severity: .critical, source: .dynamic, message: "started \(argv)",
                        evidence: evidence)
                ])
        }
        let a = try Self.fingerprints(
            Sarif.log([report("touch /tmp/x1", 10, "41")], version: "1", options: Self.options))
        let b = try Self.fingerprints(
            Sarif.log([report("touch /tmp/x2", 12, "77")], version: "1", options: Self.options))
        #expect(a == b)
    }

    @Test("rules carry descriptions, help, an absolute helpUri, security-severity, tags and precision")
    func ruleMetadata() throws {
        let report = Report(
            target: ReportTarget(path: "m/model.pkl", size: 1, sha256: nil, format: "pickle"),
            findings: [
                Finding(rule: "pickle.dangerous-import", severity: .critical, message: "imports os.system"),
                Finding(rule: "zip.path-traversal", severity: .high, message: "../x"),
                Finding(rule: "template.dunder-text", severity: .medium, message: "__class__"),
                Finding(rule: "zip.trailing-data", severity: .low, message: "3 bytes"),
                Finding(rule: "pickle.nested", severity: .info, message: "nested"),
                Finding(rule: "custom.policy-rule", severity: .high, message: "a policy's own rule"),
            ])
        let rules = try Self.rules(Sarif.log([report], version: "1", options: Self.options))
        #expect(rules.count == 6)
        // Reports list findings most severe first, and rules come in the order of their first result.
        let want: [String: String?] = [
            "pickle.dangerous-import": "9.5", "zip.path-traversal": "8.0", "template.dunder-text": "5.5",
            "zip.trailing-data": "2.0", "pickle.nested": nil, "custom.policy-rule": "8.0",
        ]
        func rule(_ id: String) throws -> [String: Any] { try #require(rules.first { $0["id"] as? String == id }) }
        for rule in rules {
            let id = try #require(rule["id"] as? String)
            let severity = try #require(want[id])
            #expect(((rule["shortDescription"] as? [String: Any])?["text"] as? String)?.isEmpty == false)
            #expect((((rule["fullDescription"] as? [String: Any])?["text"] as? String)?.count ?? 0) > 40)
            let help = try #require(rule["help"] as? [String: String])
            #expect((help["text"]?.count ?? 0) > 40 && (help["markdown"]?.contains("`\(id)`") ?? false))
            let uri = try #require(rule["helpUri"] as? String)
            #expect(uri == "\(SarifRules.defaultRulesURL)#\(id)")
            // The default is the checkout's docs/rules.md (the tests run from .build/), a file that exists.
            #expect(URL(string: uri)?.scheme == "file")
            #expect(SarifRules.defaultRulesURL.hasSuffix("/docs/rules.md"))
            #expect(FileManager.default.fileExists(atPath: URL(string: uri)?.path ?? ""), "\(uri)")
            let properties = try #require(rule["properties"] as? [String: Any])
            #expect(properties["security-severity"] as? String == severity, "\(id)")
            let tags = try #require(properties["tags"] as? [String])
            #expect(tags.starts(with: ["security", "model-file"]) && Set(tags).count == tags.count, "\(id)")
            #expect(["very-high", "high", "medium", "low"].contains(properties["precision"] as? String ?? ""))
        }
        let pickleTags = try #require(
            (try rule("pickle.dangerous-import")["properties"] as? [String: Any])?["tags"] as? [String])
        #expect(pickleTags.contains("CWE-502") && pickleTags.contains("external/cwe/cwe-502"))
        let traversalTags = try #require(
            (try rule("zip.path-traversal")["properties"] as? [String: Any])?["tags"] as? [String])
        #expect(traversalTags.contains("CWE-22"))
        #expect((try rule("pickle.nested")["defaultConfiguration"] as? [String: String])?["level"] == "note")
        // The rules reference can be another copy; a value that is no absolute URL is not used.
        let local = SarifOptions(sourceRoot: nil, rulesURL: "file:///usr/share/doc/airlock/rules.md")
        let localRules = try Self.rules(Sarif.log([report], version: "1", options: local))
        #expect(
            localRules.contains {
                $0["helpUri"] as? String == "file:///usr/share/doc/airlock/rules.md#pickle.dangerous-import"
            })
        for bad in ["docs/rules.md", "javascript:alert(1)", "https://x/rules.md#frag", "https://x/a b", "", "https://"]
        {
            #expect(
                SarifRules.rulesURL(environment: ["AIRLOCK_RULES_URL": bad]) == SarifRules.defaultRulesURL, "\(bad)")
        }
        #expect(
            SarifRules.rulesURL(environment: ["AIRLOCK_RULES_URL": "https://d.example/r.md"])
                == "https://d.example/r.md")
    }

    @Test("relative paths are relative to %SRCROOT%, which originalUriBaseIds names; others stay file:// URIs")
    func baseURIs() throws {
        let reports = ["models/a.pt", "/work/checkout/models/b.pt", "/srv/c.pt", "../up/d.pt", "odd:name #1.pt"].map {
            Report(
                target: ReportTarget(path: $0, size: 1, sha256: nil, format: "pickle"),
                findings: [
                    Finding(rule: "pickle.nested", severity: .info, message: "x")
                ])
        }
        let log = Sarif.log(reports, version: "1", options: Self.options)
        let locations = try Self.results(log).map(Self.artifactLocation)
        let uris = locations.map { $0["uri"] as? String ?? "" }
        #expect(
            uris == ["models/a.pt", "models/b.pt", "file:///srv/c.pt", "file:///work/up/d.pt", "odd%3Aname%20%231.pt"])
        let bases = locations.map { $0["uriBaseId"] as? String }
        #expect(bases == ["%SRCROOT%", "%SRCROOT%", nil, nil, "%SRCROOT%"])
        let run = try Self.run(log)
        let root = try #require((run["originalUriBaseIds"] as? [String: Any])?["%SRCROOT%"] as? [String: Any])
        #expect(root["uri"] as? String == "file:///work/checkout/")
        let artifacts = try #require(run["artifacts"] as? [[String: Any]])
        #expect((artifacts[1]["location"] as? [String: Any])?["uriBaseId"] as? String == "%SRCROOT%")
        // The same file twice is one artifact (SARIF's artifacts are unique).
        let twice = Sarif.log([reports[0], reports[0]], version: "1", options: Self.options)
        #expect((try Self.run(twice)["artifacts"] as? [[String: Any]])?.count == 1)
        // Without a root, absolute paths stay absolute and no base is named.
        let rootless = Sarif.log(reports, version: "1", options: SarifOptions(sourceRoot: nil, rulesURL: "https://x/r"))
        #expect(try Self.run(rootless)["originalUriBaseIds"] == nil)
        #expect(
            try Self.artifactLocation(Self.results(rootless)[1])["uri"] as? String
                == "file:///work/checkout/models/b.pt")
    }

    @Test("a line in the reported text file becomes startLine; offsets in members do not become regions")
    func regions() throws {
        let report = Report(
            target: ReportTarget(path: "repo/config.json", size: 1, sha256: nil, format: "json"),
            findings: [
                Finding(
                    rule: "hf.auto-map-traversal", severity: .critical, message: "outside",
                    evidence: Evidence(
                        member: "config.json", args: ["/tmp/x.Evil"],
                        details: [("fileLine", "7"), ("fileColumn", "18")])),
                Finding(
                    rule: "torchscript.dangerous-op", severity: .critical, message: "op",
                    evidence: Evidence(offset: 9, member: "archive/code/m.py", details: [("line", "12")])),
                Finding(rule: "zip.trailing-data", severity: .low, message: "t", evidence: Evidence(offset: 300)),
                Finding(
                    rule: "template.dunder-text", severity: .medium, message: "bad line detail",
                    evidence: Evidence(details: [("fileLine", "0"), ("fileColumn", "x")])),
            ])
        let results = try Self.results(Sarif.log([report], version: "1", options: Self.options))
        #expect(results.map { $0["ruleId"] as? String } == report.findings.map(\.rule))
        let regions = report.findings.map { f in
            results.first { $0["ruleId"] as? String == f.rule }.flatMap(Self.region)
        }
        let byRule = Dictionary(uniqueKeysWithValues: zip(report.findings.map(\.rule), regions))
        let line = byRule["hf.auto-map-traversal"] ?? nil
        #expect(line?["startLine"] as? Int == 7 && line?["startColumn"] as? Int == 18)
        #expect(
            (byRule["torchscript.dangerous-op"] ?? nil) == nil, "a line or offset in an archive member is no region")
        let offset = byRule["zip.trailing-data"] ?? nil
        #expect(offset?["byteOffset"] as? Int == 300 && offset?["startLine"] == nil)
        #expect((byRule["template.dunder-text"] ?? nil) == nil)
    }

    @Test("auto_map findings of a config carry the line of their reference, Python's last duplicate key winning")
    func autoMapLines() throws {
        let config = """
            {
              "model_type": "x",
              "nested": {"auto_map": {"AutoModel": "decoy.Decoy"}},
              "note": "\\"auto_map\\": {}",
              "auto_map": {"AutoModel": "first.First"},
              "auto_map": {
                "AutoConfig": "configuration.Config",
                "AutoModel": "/tmp/evil.Evil",
                "AutoTokenizer": ["other--repo.Tok", null]
              }
            }
            """
        let findings = try Self.configFindings(config)
        func line(_ rule: String) -> String? {
            findings.first { $0.rule == rule }?.evidence.details.first { $0.0 == "fileLine" }?.1
        }
        #expect(line("hf.remote-code") == "6")
        #expect(line("hf.auto-map-traversal") == "8")
        #expect(line("hf.remote-code-external") == "9")
        let column = findings.first { $0.rule == "hf.auto-map-traversal" }?.evidence.details.first {
            $0.0 == "fileColumn"
        }
        #expect(column?.1 == "18")
        // A key written with escapes is auto_map to Python, and the last one wins: the line is the escaped member's,
        // not a benign plain one's above it. Its reference, written with escapes too, gets the member's line.
        let escaped = try Self.configFindings(
            "{\"auto_map\": {\"AutoModel\": \"a.B\"},\n\"x\": 1,\n \"auto_\\u006dap\": {\"AutoModel\": \"\\/x.E\"}}")
        let traversal = try #require(escaped.first { $0.rule == "hf.auto-map-traversal" })
        #expect(traversal.evidence.details.first { $0.0 == "fileLine" }?.1 == "3")
        #expect(traversal.evidence.details.first { $0.0 == "fileColumn" }?.1 == "2")
        // A UTF-8 byte-order mark is not a column.
        let marked = try Self.configFindings(
            bytes: [0xEF, 0xBB, 0xBF] + Array("{\"auto_map\": {\"AutoModel\": \"/x.E\"}}".utf8))
        #expect(marked.first { $0.rule == "hf.remote-code" }?.evidence.details.first { $0.0 == "fileColumn" }?.1 == "2")
        // UTF-16 configs are read by Python's json; no line is given for them.
        var utf16: [UInt8] = [0xFF, 0xFE]
        for unit in "{\"auto_map\": {\"AutoModel\": \"/x.E\"}}".utf16 {
            utf16 += [UInt8(unit & 0xFF), UInt8(unit >> 8)]
        }
        let wide = try Self.configFindings(bytes: utf16)
        #expect(wide.contains { $0.rule == "hf.auto-map-traversal" })
        #expect(wide.allSatisfy { f in !f.evidence.details.contains { $0.0 == "fileLine" } })
    }

    static func configFindings(_ text: String) throws -> [Finding] { try configFindings(bytes: Array(text.utf8)) }

    static func configFindings(bytes: [UInt8]) throws -> [Finding] {
        let path = NSTemporaryDirectory() + "airlock-sarif-\(UUID().uuidString.prefix(8))-config.json"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        return FolderScanner.remoteCode(fd: fd, name: "config.json")
    }

    @Test("template findings carry their line: in a template file, and the chat_template member's in a JSON config")
    func templateLines() throws {
        let file = Array(
            "{# a chat template #}\n{% for m in messages %}\n  héllo {{ m.__class__.__mro__ }}\n{% endfor %}\n".utf8)
        let fromFile = TemplateFindings.file(ByteView(file))
        let dunder = try #require(fromFile.first { $0.evidence.offset != nil })
        #expect(dunder.evidence.details.first { $0.0 == "fileLine" }?.1 == "3", "\(fromFile)")
        let config = Array("{\n  \"bos_token\": \"<s>\",\n  \"chat_template\": \"{{ x.__class__.__mro__ }}\"\n}\n".utf8)
        let fromJSON = TemplateFindings.json(ByteView(config), name: "tokenizer_config.json")
        #expect(!fromJSON.isEmpty)
        for f in fromJSON {
            #expect(f.evidence.details.first { $0.0 == "fileLine" }?.1 == "3", "\(f)")
            #expect(f.evidence.details.first { $0.0 == "fileColumn" }?.1 == "3", "\(f)")
        }
    }

    @Test("a URI encodes the file's bytes, not its escaped name: a newline is %0A, a literal \\x0A stays apart")
    func urisFromBytes() throws {
        // Report paths are escaped (FileName): `x\x0Ay` is the name holding a newline, `x\\x0Ay` the one holding a
        // backslash, `p\\q` a single backslash.
        let paths = ["m/x\\x0Ay.jinja", "m/x\\\\x0Ay.jinja", "m/p\\\\q.jinja", "/srv/\\xFF\\x1B.pt", "m/plain-é.pt"]
        let reports = paths.map {
            Report(
                target: ReportTarget(path: $0, size: 1, sha256: nil, format: "template"),
                findings: [Finding(rule: "template.dunder-access", severity: .high, message: "x")])
        }
        let log = Sarif.log(reports, version: "1", options: Self.options)
        let uris = try Self.results(log).map { try Self.artifactLocation($0)["uri"] as? String ?? "" }
        #expect(
            uris == [
                "m/x%0Ay.jinja", "m/x%5Cx0Ay.jinja", "m/p%5Cq.jinja", "file:///srv/%FF%1B.pt", "m/plain-%C3%A9.pt",
            ], "\(uris)")
        #expect(Set(try Self.fingerprints(log)).count == paths.count)
        // A root with a backslash, escaped as the paths are: the paths below it are still relative to it.
        let root = SarifOptions(sourceRoot: "/work/a\\\\b", rulesURL: SarifRules.defaultRulesURL)
        let below = Sarif.log([Self.pickleReport("/work/a\\\\b/m.pkl")], version: "1", options: root)
        #expect(try Self.artifactLocation(Self.results(below)[0])["uri"] as? String == "m.pkl")
        let base = (try Self.run(below)["originalUriBaseIds"] as? [String: [String: Any]])?["%SRCROOT%"]
        #expect(base?["uri"] as? String == "file:///work/a%5Cb/")
    }

    @Test("a lone CR ends a line as LF and CR LF do; CR LF counts once")
    func carriageReturns() {
        let cr = Array("l1\rl2\rl3\r{{ x }}".utf8)
        #expect(TextPosition.point(cr, offset: 9) == TextPoint(line: 4, column: 1))
        let crlf = Array("l1\r\nl2\r\n{{ x }}".utf8)
        #expect(TextPosition.point(crlf, offset: 8) == TextPoint(line: 3, column: 1))
        #expect(TextPosition.point(crlf, offset: 2) == TextPoint(line: 1, column: 3))
        let mixed = Array("a\r\rb\n\r\nc\r".utf8)
        #expect(TextPosition.point(mixed, offset: 7) == TextPoint(line: 5, column: 1))
        #expect(TextPosition.point(mixed, offset: 8) == TextPoint(line: 5, column: 2))
        #expect(TextPosition.point(mixed, offset: 9) == TextPoint(line: 6, column: 1))
    }

    @Test("AIRLOCK_RULES_URL with characters that end or add markdown in rule help is not used")
    func rulesURLMarkdown() throws {
        let hostile = [
            "https://ok.example/r)**[click-me](https://evil.example/x", "https://x/a(b", "https://x/[a]",
            "https://x/*a*",
            "https://x/<script>", "https://x/`a`", "https://x/a\\b", "https://x/a\"b", "https://x/a{b}",
            "https://x/a|b",
            "https://x/a^b", "https://x/\u{00E9}",
        ]
        for bad in hostile {
            #expect(
                SarifRules.rulesURL(environment: ["AIRLOCK_RULES_URL": bad]) == SarifRules.defaultRulesURL, "\(bad)")
        }
        let fine = "https://d.example/docs/rules.md?ref=v1.2&x=%29;a=b,c+d@e!f$g'h~i_j-k"
        #expect(SarifRules.rulesURL(environment: ["AIRLOCK_RULES_URL": fine]) == fine)
    }

    @Test("positions stay bounded on hostile text: long lines, unterminated strings, deep nesting")
    func hostileText() {
        let deep = Array(repeating: UInt8(ascii: "["), count: 200_000) + Array("\"auto_map\": 1".utf8)
        #expect(TextPosition.scanJSON(deep, key: "auto_map").keyOffset == nil)
        let open = Array("{\"auto_map\": {\"AutoModel\": \"never ends".utf8)
        let scan = TextPosition.scanJSON(open, key: "auto_map")
        #expect(scan.keyOffset == 1 && scan.strings.isEmpty)
        #expect(TextPosition.point(Array("ab".utf8), offset: 3) == nil)
        #expect(TextPosition.point(Array("a\nb".utf8), offset: 2) == TextPoint(line: 2, column: 1))
        let text = Array("ab\ncé\n\nd".utf8)
        let all = TextPosition.points(text, offsets: Array(-1...(text.count + 1)) + [3, 3])
        for offset in 0...text.count { #expect(all[offset] == TextPosition.point(text, offset: offset)) }
        #expect(all[6] == TextPoint(line: 2, column: 3) && all[text.count] == TextPoint(line: 4, column: 2))
        #expect(all[-1] == nil && all[text.count + 1] == nil)
        // Mutations of a config (a fixed-seed generator): no crash, and a place found is always a key's opening quote
        // whose value's strings lie after it.
        let base = Array(
            "{\"a\": [1, {\"auto_map\": 2}], \"auto_map\": {\"AutoModel\": \"x.Y\", \"b\": \"\\u0041\"}}".utf8)
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<3000 {
            var bytes = base
            for _ in 0..<3 {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let at = Int(seed >> 33) % bytes.count
                let pick: [UInt8] = [0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x3A, 0x2C, 0x0A, 0x00, 0xC3, 0x75]
                bytes[at] = pick[Int(seed >> 13) % pick.count]
            }
            let scan = TextPosition.scanJSON(bytes, key: "auto_map")
            if let k = scan.keyOffset {
                #expect(bytes[k] == 0x22)
                #expect(scan.strings.values.allSatisfy { $0 > k && bytes[$0] == 0x22 })
            }
            _ = TextPosition.points(bytes, offsets: Array(0...bytes.count))
        }
        let many = Array(("{\"auto_map\": [" + String(repeating: "\"a.B\",", count: 10_000) + "\"z.Z\"]}").utf8)
        #expect(TextPosition.scanJSON(many, key: "auto_map").strings.count <= TextPosition.maxStrings)
    }
}
