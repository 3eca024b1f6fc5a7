import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// The manifest contract (docs/manifest.md) against `docs/manifest.schema.json`: what `airlock manifest` writes
/// validates, with Python's jsonschema (Draft 7, as ReportSchemaTests), and what breaks the schema is refused by
/// `airlock verify` as well.
@Suite("Manifest JSON schema")
struct ManifestSchemaTests {

    @Test("airlock manifest output validates: folder and file, with and without policy flags")
    func manifestsValidate() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            try writeFile("\(model)/weights.pkl", tinyPickle)
            try writeFile("\(model)/empty", [])
            let file = try copyFixture("single.bin", to: dir)
            let key = "\(signingFixtures)/key.pub"
            let runs: [(String, [String])] = [
                ("folder", [model]),
                ("file", [file]),
                (
                    "folder-policy",
                    [
                        "--name", "tiny", "--source", "acme", "--allow-format", "json", "--allow-format", "unknown",
                        "--trusted-only-format", "pickle", "--trusted-source", "acme=\(key)", "--trusted-source", "hub",
                        "--require-signature", "--allow-extra-files", model,
                    ]
                ),
                (
                    "file-policy",
                    ["--source", "hub", "--trusted-source", "hub", "--trusted-only-format", "pickle", file]
                ),
                ("folder-extra-only", ["--allow-extra-files", model]),
            ]
            var written: [String] = []
            for (label, arguments) in runs {
                let run = try airlock(["manifest"] + arguments)
                #expect(run.status == 0, "\(label): \(run.stderr)")
                let path = "\(dir)/\(label).json"
                try run.stdout.write(toFile: path, atomically: true, encoding: .utf8)
                written.append(path)
                // And each verifies against what it describes.
                let target = arguments.last!
                let verify = try airlock(["verify", "--manifest", path, target])
                #expect(verify.status == (label == "folder-policy" ? 1 : 0), "\(label): \(verify.stdout)")
            }
            let policy = try #require(
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/folder-policy.json"))) as? [String: Any])
            let members = try #require(policy["policy"] as? [String: Any])
            #expect(
                Set(members.keys) == [
                    "allowedFormats", "trustedOnlyFormats", "trustedSources", "requireSignature", "allowExtraFiles",
                ])
            let validation = try SchemaValidation.validateManifests(written)
            #expect(validation.status == 0, "\(validation.output)")
            #expect(validation.output.contains("\(runs.count) valid"), "\(validation.output)")
        }
    }

    @Test("the schema's format names are exactly FileFormat's")
    func formatEnum() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: SchemaValidation.manifestSchema))
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let definitions = try #require(schema["definitions"] as? [String: Any])
        let format = try #require(definitions["format"] as? [String: Any])
        #expect(format["enum"] as? [String] == FileFormat.allCases.map(\.rawValue))
    }

    /// Manifests that break the schema, each from a valid one by one edit: (label, edit of the JSON text).
    static let breakages: [(String, @Sendable (String) -> String)] = [
        (
            "unknown top-level field",
            { $0.replacingOccurrences(of: "\"name\":", with: "\"comment\": \"x\", \"name\":") }
        ),
        ("unknown file field", { $0.replacingOccurrences(of: "\"size\":", with: "\"mode\": 420, \"size\":") }),
        (
            "sha256 not hex",
            {
                $0.replacingOccurrences(
                    of: #""sha256": "[0-9a-f]{2}"#, with: "\"sha256\": \"zz", options: .regularExpression)
            }
        ),
        (
            "path with ..",
            { $0.replacingOccurrences(of: "\"path\": \"config.json\"", with: "\"path\": \"../config.json\"") }
        ),
        (
            "manifestVersion 2",
            { $0.replacingOccurrences(of: "\"manifestVersion\": 1", with: "\"manifestVersion\": 2") }
        ),
        ("unknown format", { $0.replacingOccurrences(of: "\"format\": \"json\"", with: "\"format\": \"exe\"") }),
        (
            "unknown policy field",
            { $0.replacingOccurrences(of: "\"requireSignature\":", with: "\"trustAll\": true, \"requireSignature\":") }
        ),
        ("size as a string", { $0.replacingOccurrences(of: "\"size\": 51", with: "\"size\": \"51\"") }),
    ]

    @Test("a manifest that breaks the schema is refused by the schema and by airlock verify")
    func breakagesRefused() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let run = try airlock(["manifest", "--require-signature", model])
            #expect(run.status == 0)
            let good = run.stdout
            try good.write(toFile: "\(dir)/good.json", atomically: true, encoding: .utf8)
            #expect(try SchemaValidation.validateManifests(["\(dir)/good.json"]).status == 0)
            for (i, (label, edit)) in ManifestSchemaTests.breakages.enumerated() {
                let text = edit(good)
                #expect(text != good, "\(label): the edit did nothing")
                let path = "\(dir)/bad\(i).json"
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                let schema = try SchemaValidation.validateManifests([path])
                #expect(schema.status == 1, "\(label): the schema accepts it")
                #expect(schema.output.contains("0 valid"), "\(label): \(schema.output)")
                let verify = try airlock(["verify", "--manifest", path, model])
                #expect(verify.status == 2, "\(label): airlock verify accepts it: \(verify.stdout)")
                #expect(verify.stderr.contains("manifest \(path)"), "\(label): \(verify.stderr)")
            }
        }
    }

    @Test("airlock verify --format json reports validate against docs/report.schema.json")
    func verifyReportsValidate() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(
                try airlock([
                    "manifest", "--source", "x", "--trusted-source", "acme", "--trusted-only-format", "json", "-o",
                    "\(dir)/m.json", model,
                ]).status == 0)
            try writeFile("\(model)/extra.bin", [1])
            #expect(symlink("config.json", "\(model)/link") == 0)
            var lines = ""
            for arguments in [
                ["--manifest", "\(dir)/m.json"],
                ["--signature", "\(signingFixtures)/model.sig", "--public-key", "\(signingFixtures)/key.pub"],
                ["--signature", "\(signingFixtures)/other.sig", "--public-key", "\(signingFixtures)/key.pub"],
                ["--signature", "\(signingFixtures)/cert.sig", "--public-key", "\(signingFixtures)/key.pub"],
            ] {
                let run = try airlock(["verify", "--format", "json"] + arguments + [model])
                #expect(run.status == 1, "\(arguments): \(run.stdout)\(run.stderr)")
                lines += run.stdout
            }
            try lines.write(toFile: "\(dir)/verify.jsonl", atomically: true, encoding: .utf8)
            let validation = try SchemaValidation.python([
                "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", "\(dir)/verify.jsonl",
            ])
            #expect(validation.status == 0, "\(validation.output)")
            #expect(validation.output.contains("4 reports, 0 errors"), "\(validation.output)")
        }
    }
}
