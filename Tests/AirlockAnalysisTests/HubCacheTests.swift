@testable import AirlockAnalysis
import AirlockJSON
import AirlockNames
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

extension GeneratedHub {
    struct Expectation: Decodable {
        var verdict: String?
        var rules: [String]
        var absent: [String]
        var blob: String?
        var verified: Bool?
        var revision: String?
    }

    func expectations() throws -> [String: Expectation] {
        try JSONDecoder().decode(
            [String: Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: root + "/expectations.json")))
    }

    /// Scans `paths`, the reports by path.
    static func scan(_ paths: [String]) -> [String: Report] {
        var reports: [String: Report] = [:]
        var twice: [String] = []
        StaticScanner.scan(paths: paths) { r in
            if reports[r.target.path] != nil { twice.append(r.target.path) }
            reports[r.target.path] = r
        }
        #expect(twice.isEmpty, "reported twice: \(twice)")
        return reports
    }
}

@Suite("Hugging Face cache", .serialized)
struct HubCacheTests {
    @Test(
        "scanning hub/: every snapshot file analysed through its blob, tampered and escaping links found, no blob twice"
    )
    func wholeHub() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let expectations = try cache.expectations()
        #expect(expectations.count >= 40)
        let reports = GeneratedHub.scan([cache.hub])
        for (path, e) in expectations.sorted(by: { $0.key < $1.key }) {
            let shown = cache.hub + "/" + path
            guard let verdict = e.verdict else {
                #expect(reports[shown] == nil, "\(path) reported, though a snapshot names its blob")
                continue
            }
            let r = try #require(reports[shown], "\(path) was not reported")
            let rules = Set(r.findings.map(\.rule))
            #expect(r.verdict.rawValue == verdict, "\(path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(path) lacks \(rule): \(rules.sorted())") }
            for rule in e.absent { #expect(!rules.contains(rule), "\(path) has \(rule)") }
            if let blob = e.blob {
                #expect(r.target.huggingface?.blob == blob, "\(path)")
                #expect(r.target.huggingface?.verified == e.verified, "\(path): verified")
                #expect(r.target.huggingface?.revision == e.revision, "\(path): revision")
            }
        }
        for r in reports.values {
            for f in r.findings where f.rule.hasPrefix("hfcache.") {
                #expect(f.severity == ObservationRules.severity(of: f.rule), "\(f.rule)")
            }
        }
        // Nothing but the expected links is reported as an unfollowed link.
        for (path, r) in reports where r.findings.contains(where: { $0.rule == "folder.symlink" }) {
            let relative = String(path.dropFirst(cache.hub.count + 1))
            #expect(expectations[relative]?.rules.contains("folder.symlink") == true, "\(relative): folder.symlink")
        }
        let evil = try #require(
            reports[cache.hub + "/models--acme--evil-bert/snapshots/\(GeneratedHub.r1)/pytorch_model.bin"])
        #expect(evil.target.format == "pytorch-zip")
        #expect(evil.target.huggingface?.repo == "acme/evil-bert")
        #expect(evil.target.huggingface?.kind == "model")
        #expect(evil.target.huggingface?.refs == ["main"])
        // An escaping link is not followed: nothing was read through it.
        let passwd = try #require(
            reports[cache.hub + "/models--acme--attacks/snapshots/\(GeneratedHub.r1)/etc_passwd.json"])
        #expect(passwd.target.sha256 == nil && passwd.target.size == 0)
    }

    @Test(
        "a repository, its snapshots/, one snapshot, a folder in one and one snapshot file are recognised from within",
        arguments: [
            "", "/snapshots", "/snapshots/R1", "/snapshots/R1/onnx", "/snapshots/R1/model.safetensors",
            "/snapshots/R1/onnx/config.json", "/snapshots/R2/tokenizer.json",
        ])
    func startingPoints(_ suffix: String) throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let repo = cache.hub + "/models--acme--clean-bert"
        let start =
            repo
            + suffix.replacingOccurrences(of: "R1", with: GeneratedHub.r1).replacingOccurrences(
                of: "R2", with: GeneratedHub.r2)
        let reports = GeneratedHub.scan([start])
        let snapshotFiles = reports.values.filter { $0.target.path.contains("/snapshots/") }
        #expect(!snapshotFiles.isEmpty)
        for r in reports.values {
            #expect(!r.findings.contains { $0.rule == "folder.symlink" }, "\(r.target.path)")
            #expect(!r.target.path.contains("/blobs/") || r.target.huggingface?.revision == nil, "\(r.target.path)")
        }
        for r in snapshotFiles {
            #expect(r.verdict == .clean, "\(r.target.path): \(r.findings.map(\.rule))")
            let origin = try #require(r.target.huggingface, "\(r.target.path)")
            #expect(origin.repo == "acme/clean-bert" && origin.kind == "model" && origin.verified == true)
            let revision = r.target.path.contains(GeneratedHub.r1) ? GeneratedHub.r1 : GeneratedHub.r2
            #expect(origin.revision == revision)
            #expect(origin.refs == (revision == GeneratedHub.r1 ? ["main"] : ["pr/1"]))
            #expect(r.target.sha256?.count == 64 && r.target.size > 0)
        }
        if suffix.hasSuffix(".json") || suffix.hasSuffix(".safetensors") {
            #expect(reports.count == 1)
            #expect(reports[start] != nil)
        }
        if suffix == "" {
            // Both revisions, the sub-folder, the stray and the unfinished blob.
            #expect(snapshotFiles.count == 9)
            #expect(
                reports.values.filter { $0.findings.contains { $0.rule == "hfcache.unreferenced-blob" } }.count == 2)
        }
    }

    @Test("scanning blobs/ itself reports every blob under its blob path; only those no snapshot names say so")
    func blobsFolder() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let blobs = cache.hub + "/models--acme--clean-bert/blobs"
        let reports = GeneratedHub.scan([blobs])
        #expect(reports.count == 7)
        let unreferenced = reports.values.filter { $0.findings.contains { $0.rule == "hfcache.unreferenced-blob" } }
        #expect(unreferenced.count == 2, "\(unreferenced.map(\.target.path))")
        for r in reports.values {
            let origin = try #require(r.target.huggingface)
            #expect(origin.revision == nil && origin.repo == "acme/clean-bert")
            #expect(r.target.path == blobs + "/" + origin.blob)
        }
    }

    @Test("a blob swapped for a link or another file between the walk's look and the open is not opened")
    func blobSwappedDuringWalk() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let snapshot = cache.hub + "/models--acme--clean-bert/snapshots/\(GeneratedHub.r1)"
        let blobs = cache.hub + "/models--acme--clean-bert/blobs/"
        let dirfd = open(snapshot, O_RDONLY | O_DIRECTORY)
        try #require(dirfd >= 0)
        defer { close(dirfd) }
        var outcomes: [String: Bool] = [:]
        FolderWalk.walk(dirfd) { relative, entry in
            guard case .hubFile(let open, _, let origin, _) = entry else { return }
            let blob = blobs + origin.blob
            switch relative.escaped {
            case "model.safetensors":
                rename(blob, blob + ".moved")
                symlink("/etc/hostname", blob)
            case "tokenizer.json":
                rename(blob, blob + ".moved")
                FileManager.default.createFile(atPath: blob, contents: Data("{}".utf8))
            default:
                break
            }
            let fd = open()
            outcomes[relative.escaped] = fd != nil
            if let fd { close(fd) }
        }
        #expect(outcomes["config.json"] == true)
        #expect(outcomes["model.safetensors"] == false)
        #expect(outcomes["tokenizer.json"] == false)
    }

    @Test("a snapshot link given on the command line is resolved or refused, never followed out of the repository")
    func linksOnTheCommandLine() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let snapshot = cache.hub + "/models--acme--attacks/snapshots/\(GeneratedHub.r1)"
        let cases: [(String, String)] = [
            ("etc_passwd.json", "hfcache.link-escapes"), ("absolute.json", "hfcache.link-escapes"),
            ("other_repo.safetensors", "hfcache.link-escapes"), ("deep/escape.json", "hfcache.link-escapes"),
            ("link_to_link.json", "hfcache.link-not-blob"), ("link_to_folder.json", "hfcache.link-not-blob"),
            ("detour.json", "hfcache.link-not-blob"), ("dangling.safetensors", "hfcache.link-dangling"),
            ("model.safetensors", "hfcache.blob-mismatch"), ("tokenizer.json", "hfcache.blob-mismatch"),
        ]
        for (name, rule) in cases {
            let reports = GeneratedHub.scan([snapshot + "/" + name])
            let r = try #require(reports[snapshot + "/" + name])
            #expect(r.findings.contains { $0.rule == rule }, "\(name): \(r.findings.map(\.rule))")
            #expect(r.verdict == .suspicious, "\(name)")
        }
        let relinked = cache.hub + "/models--acme--relinked/snapshots/\(GeneratedHub.r1)/model.safetensors"
        let r = try #require(GeneratedHub.scan([relinked])[relinked])
        #expect(r.findings.contains { $0.rule == "hfcache.link-escapes" }, "\(r.findings.map(\.message))")
        #expect(r.target.sha256 == nil)
    }

    @Test("a blob two revisions share is examined once, and reported under each revision's name")
    func sharedBlobExaminedOnce() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        var examined: [String] = []
        var reports: [Report] = []
        ModelWalk.walk(
            paths: [cache.hub + "/models--acme--clean-bert/snapshots"],
            examine: { fd, path in
                examined.append(path)
                return StaticScanner.scan(fd: fd, path: path)
            }, report: { reports.append($0) })
        #expect(reports.count == 9)
        // config.json (twice in R1: onnx/ too), tokenizer.json, tokenizer_config.json: examined once each.
        #expect(examined.count == 5, "\(examined)")
        #expect(Set(reports.map(\.target.path)).count == 9)
    }

    @Test("a cache report writes target.huggingface, reads it back, and validates against the schema")
    func reportJSON() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let reports = GeneratedHub.scan([cache.hub])
        var lines: [String] = []
        for r in reports.values.sorted(by: { $0.target.path < $1.target.path }) {
            let text = r.json.serialized()
            lines.append(text)
            let back = try #require(Report(json: try JSON.parse(Array(text.utf8))))
            #expect(back.target.huggingface == r.target.huggingface)
            #expect(back.json.serialized() == text)
        }
        try lines.joined(separator: "\n").write(toFile: cache.root + "/r.jsonl", atomically: true, encoding: .utf8)
        let validation = try SchemaValidation.python([
            "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", cache.root + "/r.jsonl",
        ])
        #expect(validation.status == 0, "\(validation.output)")
    }

    @Test(
        "link text is followed only in the exact form huggingface_hub writes",
        arguments: [
            ("../../blobs/abc", 0, "blob"), ("../../../blobs/abc", 1, "blob"), ("../../blobs/abc", 1, "inside"),
            ("../../../blobs/abc", 0, "escapes"), ("/etc/passwd", 0, "escapes"), ("../../blobs/a/b", 0, "inside"),
            ("../../blobs/..", 0, "inside"), ("../../blobs/", 0, "inside"), ("..//../blobs/abc", 0, "inside"),
            ("../../../../x", 1, "escapes"), ("./../../blobs/abc", 0, "inside"),
        ])
    func linkForms(_ text: String, _ depth: Int, _ form: String) {
        let got: String =
            switch HubCache.classify(Array(text.utf8), depth: depth) {
            case .blob: "blob"
            case .escapes: "escapes"
            case .inside: "inside"
            }
        #expect(got == form, "\(text) at depth \(depth)")
    }

    @Test("repository folder names: models--ORG--NAME, datasets--, spaces--, and names that are none of them")
    func repositoryNames() {
        #expect(HubRepository.parse(FileName("models--acme--bert")) == ("acme/bert", "model"))
        #expect(HubRepository.parse(FileName("models--gpt2")) == ("gpt2", "model"))
        #expect(HubRepository.parse(FileName("datasets--a--b")) == ("a/b", "dataset"))
        #expect(HubRepository.parse(FileName("spaces--a--b")) == ("a/b", "space"))
        #expect(HubRepository.parse(FileName("models--a--b--c")).0 == nil)
        #expect(HubRepository.parse(FileName("my-model")) == (nil, nil))
    }
}
