import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `airlock probe` of a Hugging Face cache snapshot: each blob detonated under its snapshot name.
@Suite("Hugging Face cache: probe", .serialized)
struct HubCacheProbeTests {
    @Test(
        "probing a snapshot folder detonates the malicious pickle's blob: malicious by its behaviour, named by the snapshot"
    )
    func snapshotDetonated() throws {
        let bait = try Bait()
        let cache = try GeneratedHub(canary: bait.canary)
        defer { cache.remove() }
        let snapshot = cache.snapshot("evil-bert")
        let run = try runCLI(["probe", "--format", "json", snapshot], timeout: 300)
        #expect(run.status == 1, "\(run.stderr)")
        var reports: [String: [String: Any]] = [:]
        for line in run.stdout.split(separator: "\n") {
            let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let target = try #require(report["target"] as? [String: Any])
            reports[try #require(target["path"] as? String)] = report
        }
        #expect(Set(reports.keys) == ["\(snapshot)/config.json", "\(snapshot)/pytorch_model.bin"])
        let evil = try #require(reports["\(snapshot)/pytorch_model.bin"])
        #expect(evil["verdict"] as? String == "malicious")
        let findings = try #require(evil["findings"] as? [[String: Any]])
        #expect(findings.contains { $0["rule"] as? String == "dynamic.exec" && $0["source"] as? String == "dynamic" })
        #expect(evil["detonation"] is [String: Any])
        let origin = try #require((evil["target"] as? [String: Any])?["huggingface"] as? [String: Any])
        #expect(origin["repo"] as? String == "acme/evil-bert")
        #expect(origin["revision"] as? String == GeneratedHub.r1)
        #expect(origin["verified"] as? Bool == true)
        try bait.checkUntouched()

        try run.stdout.write(toFile: "\(cache.root)/probe.jsonl", atomically: true, encoding: .utf8)
        let validation = try SchemaValidation.python([
            "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", "\(cache.root)/probe.jsonl",
        ])
        #expect(validation.status == 0, "\(validation.output)")
    }

    @Test(
        "a remote-code snapshot in the cache is detonated as transformers loads it, its modules read through their blobs"
    )
    func remoteCodeSnapshot() throws {
        let bait = try Bait()
        let cache = try GeneratedHub(canary: bait.canary, port: bait.listener.port)
        defer { cache.remove() }
        let snapshot = cache.snapshot("remote-code")
        let run = try runCLI(["probe", "--format", "json", snapshot], timeout: 300)
        #expect(run.status == 1, "\(run.stderr)")
        var rules: [String: [String]] = [:]
        for line in run.stdout.split(separator: "\n") {
            let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let path = try #require((report["target"] as? [String: Any])?["path"] as? String)
            rules[String(path.dropFirst(snapshot.count + 1))] =
                (report["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        }
        let config = try #require(rules["config.json"])
        #expect(config.contains("probe.remote-code") && config.contains("dynamic.exec"), "\(config)")
        #expect(rules["modeling_tiny.py"]?.contains("dynamic.exec") == true)
        try bait.checkUntouched()
    }

    @Test("what huggingface_hub itself resolves from the cache is the file each report names, with the same blob")
    func sameResolutionAsHuggingfaceHub() throws {
        let python = "\(RemoteCodeTests.transformersVenv)/bin/python3"
        #expect(
            FileManager.default.isExecutableFile(atPath: python),
            "no \(RemoteCodeTests.transformersVenv): run `make test-venvs` (make test does)")
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let script = """
            import json, os, sys
            from huggingface_hub import try_to_load_from_cache, scan_cache_dir
            hub = sys.argv[1]
            out = {}
            for repo, rev, names in (("acme/clean-bert", "main", ["config.json", "model.safetensors", "onnx/config.json",
                                                                 "tokenizer.json"]),
                                     ("acme/clean-bert", "pr/1", ["model.safetensors"]),
                                     ("acme/evil-bert", "main", ["pytorch_model.bin"])):
                for name in names:
                    path = try_to_load_from_cache(repo, name, cache_dir=hub, revision=rev)
                    out[path] = os.path.basename(os.path.realpath(path))
            info = scan_cache_dir(hub)
            out["repos"] = sorted(r.repo_id for r in info.repos)
            print(json.dumps(out))
            """
        let run = try runToEnd(python, ["-c", script, cache.hub])
        try #require(run.status == 0, "\(run.stderr)")
        let resolved = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        // The library's own scan takes the layout as its own (the attacks repository it calls corrupted: a broken link).
        #expect(
            resolved["repos"] as? [String] == [
                "acme/clean-bert", "acme/evil-bert", "acme/relinked", "acme/remote-code",
            ])
        var reports: [String: [String: Any]] = [:]
        let scan = try runCLI(["scan", "--format", "json", cache.hub])
        for line in scan.stdout.split(separator: "\n") {
            let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let target = try #require(report["target"] as? [String: Any])
            reports[try #require(target["path"] as? String)] = target
        }
        let files = resolved.filter { $0.key != "repos" }
        #expect(files.count == 6)
        for (path, blob) in files {
            let target = try #require(reports[path], "\(path): no report under huggingface_hub's path")
            let origin = try #require(target["huggingface"] as? [String: Any])
            #expect(origin["blob"] as? String == blob as? String, "\(path)")
        }
    }

    @Test(
        "a remote-code repository's pack takes a snapshot's files through their blobs, and no link out of the repository"
    )
    func packFollowsBlobs() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let clean = open(cache.snapshot("clean-bert"), O_RDONLY | O_DIRECTORY)
        try #require(clean >= 0)
        defer { close(clean) }
        let pack = RepositoryPack.read(dirfd: clean)
        #expect(
            pack.files.map(\.name) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
        #expect(pack.file("config.json").map { String(decoding: $0, as: UTF8.self).contains("BertModel") } == true)

        let attacks = open(cache.snapshot("attacks"), O_RDONLY | O_DIRECTORY)
        try #require(attacks >= 0)
        defer { close(attacks) }
        let names = RepositoryPack.read(dirfd: attacks).files.map(\.name)
        for escaping in [
            "etc_passwd.json", "absolute.json", "other_repo.safetensors", "link_to_link.json",
            "detour.json", "sibling.json", "wrong_depth.json", "dangling.safetensors",
        ] {
            #expect(!names.contains(escaping), "\(escaping) was packed")
        }
        #expect(names.contains("config.json"))
    }
}
