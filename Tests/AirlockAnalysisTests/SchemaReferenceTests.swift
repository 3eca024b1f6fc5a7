@testable import AirlockAnalysis
import AirlockFormats
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

/// The rules reference (docs/rules.md) against the rule ids the sources can emit, and the catalogue SARIF rules are
/// described from (`SarifRules`).
@Suite("Rules reference")
struct RulesReferenceTests {
    /// Literals that look like rule ids but are not: Python names (pickle globals the scanner matches) and a file name.
    static let notRules: Set<String> = ["numpy.dtype", "numpy.ndarray", "numpy.frombuffer", "report.json"]

    /// Files that list Python names, not rule ids.
    static let nameLists: Set<String> = ["PickleImportList.swift", "PickleCompatNames.swift"]

    /// Every rule id in the sources: string literals of a known family, literals where a rule id is given (`rule:`,
    /// `finding:`, `Observation(`, `log.add(`, a `…Rule =` constant, a severity table entry) whatever their family,
    /// `<prefix>.observations-truncated` for each `ObservationLog`, and the findings of the verdict policy.
    static func emittedRules() throws -> [String: String] {
        var found: [String: String] = [:]
        let families = SarifRules.families.map(\.prefix).joined(separator: "|")
        let known = try Regex("\"((?:\(families))\\.[a-z0-9-]+)\"")
        let placed = try Regex(
            "(?:rule|Rule|finding|kind)\\s*[:=]\\s*(?:[^\"\\n]*\\?\\s*)?\"([a-z0-9]+\\.[a-z0-9-]+)\"|(?:Observation|\\.add|finding)\\(\\s*\"([a-z0-9]+\\.[a-z0-9-]+)\"|\"([a-z0-9]+\\.[a-z0-9-]+)\": \\.(?:critical|high|medium|low|info)\\b"
        )
        let logs = /ObservationLog\(prefix: "([a-z0-9]+)"/
        let sources = URL(fileURLWithPath: "\(repositoryRoot)/Sources")
        let walk = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        for case let url as URL in walk where url.pathExtension == "swift" && !nameLists.contains(url.lastPathComponent)
        {
            let text = try String(contentsOf: url, encoding: .utf8)
            for m in text.matches(of: known) {
                if let s = m.output[1].substring { found[String(s)] = url.lastPathComponent }
            }
            for m in text.matches(of: placed) {
                for i in 1..<4 { if let s = m.output[i].substring { found[String(s)] = url.lastPathComponent } }
            }
            for m in text.matches(of: logs) { found["\(m.output.1).observations-truncated"] = url.lastPathComponent }
        }
        let policy = try JSON.parse(
            Array(try Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Profiles/policy.json"))))
        var stack = [policy]
        while let value = stack.popLast() {
            switch value {
            case .object(let members):
                for (k, v) in members {
                    if k == "finding", case .string(let s) = v { found[s] = "policy.json" }
                    stack.append(v)
                }
            case .array(let items): stack += items
            default: break
            }
        }
        let importNames = Set(PickleRules.importList.map(\.path))
        return found.filter { !notRules.contains($0.key) && !importNames.contains($0.key) }
    }

    /// The anchors `<a id="…"></a>` of docs/rules.md.
    static func anchors() throws -> [String] {
        let text = try String(contentsOfFile: "\(repositoryRoot)/docs/rules.md", encoding: .utf8)
        return text.matches(of: /<a id="([^"]+)"><\/a>/).map { String($0.output.1) }
    }

    @Test("every rule id the sources and the verdict policy can emit has an anchor in docs/rules.md")
    func everyRuleDocumented() throws {
        let rules = try Self.emittedRules()
        #expect(rules.count > 200, "the extraction finds the rules (\(rules.count))")
        for id in [
            "pickle.dangerous-import", "dynamic.exec", "hf.auto-map-traversal", "template.sandbox-escape",
            "gguf.observations-truncated", "probe.worlds-cut", "provenance.changed", "intake.empty",
        ] {
            #expect(rules[id] != nil, "\(id) is found in the sources")
        }
        let anchors = Set(try Self.anchors())
        for (id, file) in rules.sorted(by: { $0.key < $1.key }) {
            let documented = anchors.contains(id)
            #expect(documented, "\(id) (\(file)) has no entry in docs/rules.md")
            #expect(SarifRules.family(of: id) != nil, "\(id) (\(file)) belongs to no family of SarifRules")
        }
    }

    @Test("every anchor of docs/rules.md is unique and a rule of a known family, or a family")
    func anchorsWellFormed() throws {
        let anchors = try Self.anchors()
        #expect(Set(anchors).count == anchors.count)
        let families = Set(SarifRules.families.map(\.prefix))
        for a in anchors {
            if a.hasPrefix("family-") {
                #expect(families.contains(String(a.dropFirst(7))), "\(a)")
            } else {
                #expect(a.wholeMatch(of: /[a-z0-9]+(\.[a-z0-9-]+)+/) != nil && SarifRules.family(of: a) != nil, "\(a)")
            }
        }
        for f in families { #expect(anchors.contains("family-\(f)"), "family \(f) has no section") }
        let severities = ObservationRules.table
        let text = try String(contentsOfFile: "\(repositoryRoot)/docs/rules.md", encoding: .utf8)
        for (id, severity) in severities {
            #expect(text.contains("`\(id)` | \(severity.rawValue) |"), "\(id): docs/rules.md gives another severity")
        }
    }
}

/// `docs/*.schema.json` with stock `jsonschema`: every schema has an `$id`, every `$ref` resolves from the docs
/// folder alone (a resolver whose network handlers fail), and documents Airlock writes validate.
@Suite("JSON schemas in docs")
struct SchemaReferenceTests {
    /// Builds a store from every schema in the docs folder (by `$id`), refuses network fetches, resolves every `$ref`
    /// of every schema, then validates each `SCHEMA=FILE` pair with the validator its `$schema` names.
    static let script = """
        import glob, json, os, sys, warnings, jsonschema
        from urllib.parse import urljoin
        warnings.simplefilter("ignore")  # RefResolver is deprecated in new jsonschema; Debian 12's has no referencing
        docs = sys.argv[1]
        store, problems = {}, []
        for path in sorted(glob.glob(os.path.join(docs, "*.schema.json"))):
            schema = json.load(open(path))
            sid = schema.get("$id")
            if not sid or not sid.startswith("https://") or sid in store:
                problems.append("%s: $id missing, not absolute or not unique: %r" % (os.path.basename(path), sid))
                continue
            if not sid.endswith("/" + os.path.basename(path)):
                problems.append("%s: $id %s does not end in the file's name" % (path, sid))
            jsonschema.validators.validator_for(schema).check_schema(schema)
            store[sid] = schema
        def offline(uri):
            raise RuntimeError("would fetch %s" % uri)
        def resolver(schema):
            return jsonschema.RefResolver.from_schema(schema, store=store, handlers={"http": offline, "https": offline, "file": offline, "": offline})
        for sid, schema in store.items():
            r = resolver(schema)
            stack = [(schema, sid)]
            while stack:
                node, base = stack.pop()
                if isinstance(node, dict):
                    if "$ref" in node:
                        try:
                            r.resolve(urljoin(base, node["$ref"]))
                        except Exception as e:
                            problems.append("%s: $ref %s: %s" % (sid, node["$ref"], e))
                    stack += [(v, base) for v in node.values()]
                elif isinstance(node, list):
                    stack += [(v, base) for v in node]
        for pair in sys.argv[2:]:
            name, doc = pair.split("=", 1)
            schema = json.load(open(os.path.join(docs, name)))
            cls = jsonschema.validators.validator_for(schema)
            v = cls(schema, resolver=resolver(schema), format_checker=jsonschema.FormatChecker())
            for e in v.iter_errors(json.load(open(doc))):
                problems.append("%s against %s: /%s: %s" % (os.path.basename(doc), name, "/".join(map(str, e.absolute_path)), e.message[:300]))
        for p in problems:
            print(p)
        print("%d schemas, %d documents, %d problems" % (len(store), len(sys.argv) - 2, len(problems)))
        sys.exit(1 if problems or not store else 0)
        """

    static func sampleReport() -> Report {
        Report(
            target: ReportTarget(
                path: "repo/config.json", size: 120, sha256: String(repeating: "c", count: 64), format: "json"),
            findings: [
                Finding(
                    rule: "hf.auto-map-traversal", severity: .critical, message: "outside",
                    evidence: Evidence(
                        member: "config.json", args: ["/tmp/x.E"], details: [("fileLine", "3"), ("fileColumn", "5")])),
                Finding(rule: "provenance.changed", severity: .critical, source: .provenance, message: "changed"),
            ])
    }

    @Test("every schema has an $id, every $ref resolves offline, and reports, intake reports and SARIF validate")
    func offlineValidation() throws {
        let dir = NSTemporaryDirectory() + "airlock-schemas-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let report = Self.sampleReport()
        try report.json.serialized().write(toFile: "\(dir)/report.json", atomically: true, encoding: .utf8)
        let intake = """
            {"schemaVersion": 1,
             "intake": {"id": "20261205T092400Z-0123abcd", "name": "repo", "kind": "folder", "decision": "rejected",
                        "reason": "provenance.changed", "probeVerdict": "malicious", "pass": ["clean"],
                        "examinedAt": "2026-12-05T09:24:00Z", "decidedAt": "2026-12-05T09:24:01Z"},
             "verdict": "malicious",
             "provenance": {"verdict": "malicious", "checked": ["manifest"], "findings": [\(report.findings[1].json.serialized())]},
             "reports": [\(report.json.serialized())]}
            """
        try intake.write(toFile: "\(dir)/intake.json", atomically: true, encoding: .utf8)
        let broken = intake.replacingOccurrences(of: "\"severity\":\"critical\"", with: "\"severity\":\"dire\"")
        try broken.write(toFile: "\(dir)/broken.json", atomically: true, encoding: .utf8)
        let errored = Report(
            target: ReportTarget(path: "/elsewhere/x.pkl", size: 0, sha256: nil, format: "unknown"), findings: [],
            error: ("io", "cannot open"))
        let sarif = Sarif.log(
            [report, SarifTests.pickleReport("models/evil.pkl"), errored], version: "1.0.0",
            options: SarifOptions(sourceRoot: "/work/checkout", rulesURL: SarifRules.defaultRulesURL))
        try sarif.serialized().write(toFile: "\(dir)/log.sarif", atomically: true, encoding: .utf8)
        let docs = "\(repositoryRoot)/docs"
        let good = try SchemaValidation.python(
            [
                "-c", Self.script, docs, "report.schema.json=\(dir)/report.json",
                "intake-report.schema.json=\(dir)/intake.json", "sarif-2.1.0-subset.schema.json=\(dir)/log.sarif",
            ])
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("0 problems"))
        // The intake schema really reaches report.schema.json: a bad severity inside a report is caught.
        let bad = try SchemaValidation.python(["-c", Self.script, docs, "intake-report.schema.json=\(dir)/broken.json"])
        #expect(bad.status == 1 && bad.output.contains("dire"), "\(bad.output)")
    }

    @Test("a $ref that needs the network is caught")
    func networkRefCaught() throws {
        let dir = NSTemporaryDirectory() + "airlock-schemas-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let schema = """
            {"$schema": "http://json-schema.org/draft-07/schema#", "$id": "https://github.com/airlock/airlock/docs/x.schema.json",
             "properties": {"a": {"$ref": "elsewhere.schema.json#/definitions/a"}}}
            """
        try schema.write(toFile: "\(dir)/x.schema.json", atomically: true, encoding: .utf8)
        let run = try SchemaValidation.python(["-c", Self.script, dir])
        #expect(run.status == 1 && run.output.contains("would fetch"), "\(run.output)")
    }
}
