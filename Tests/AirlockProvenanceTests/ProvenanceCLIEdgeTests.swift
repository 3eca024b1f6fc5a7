import Crypto
import Dispatch
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Manifests that describe themselves, malformed ones, JSON output, FIFOs and parallel hashing.
extension ProvenanceCLITests {
    @Test("a manifest written into the folder it describes leaves itself out, and verify leaves it out too")
    func manifestInsideFolder() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "-o", "\(model)/manifest.json", model]).status == 0)
            let text = try String(contentsOfFile: "\(model)/manifest.json", encoding: .utf8)
            #expect(!text.contains("\"manifest.json\""))
            let run = try airlock(["verify", "--manifest", "\(model)/manifest.json", model])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            // Named through a relative path from inside the folder, too.
            let relative = try runProgram(
                airlockBinary, ["verify", "--manifest", "manifest.json", "."], directory: model)
            #expect(relative.status == 0, "\(relative.stdout)\(relative.stderr)")
        }
    }

    @Test("malformed manifests are errors (exit 2) naming the field", arguments: MalformedManifest.cases)
    func manifestMalformed(_ bad: MalformedManifest) throws {
        let (label, text, fragment) = (bad.label, bad.text, bad.fragment)
        let emptyHash = sha256Hex(of: [])
        let body = text.replacingOccurrences(of: "\"HASH\"", with: "\"\(emptyHash)\"")
            .replacingOccurrences(of: "\"UPPER\"", with: "\"\(emptyHash.uppercased())\"")
        try withScratch { dir in
            let model = "\(dir)/model"
            try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
            try writeFile("\(model)/a", [])
            try body.write(toFile: "\(dir)/bad.json", atomically: true, encoding: .utf8)
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/bad.json", model])
            #expect(run.status == 2, "\(label): \(run.stdout)\(run.stderr)")
            #expect(run.stdout.isEmpty, "\(label)")
            #expect(run.stderr.contains("manifest \(dir)/bad.json"), "\(label): \(run.stderr)")
            #expect(run.stderr.contains(fragment), "\(label): \(run.stderr)")
        }
    }

    @Test("--format json: one report whose findings all have source provenance")
    func jsonOutput() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "--require-signature", "-o", "\(dir)/m.json", model]).status == 0)
            try writeFile("\(model)/extra.bin", [0])
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 1)
            #expect(run.stdout.split(separator: "\n").count == 1)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            #expect(report["verdict"] as? String == "suspicious")
            let target = try #require(report["target"] as? [String: Any])
            #expect(target["format"] as? String == "folder")
            let findings = try reportFindings(run.stdout)
            #expect(findings.count == 2, "\(rules(findings))")
            for finding in findings { #expect(finding["source"] as? String == "provenance", "\(finding)") }
        }
    }

    @Test("a FIFO in the folder does not hang manifest or verify: it is a file nobody can vouch for")
    func fifoDoesNotHang() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "-o", "\(dir)/m.json", model]).status == 0)
            #expect(mkfifo("\(model)/pipe.bin", 0o666) == 0)
            let made = try airlock(["manifest", model], timeout: 10)
            #expect(made.status == 2, "killed after 10 s when -1: \(made.stderr)")
            #expect(made.stderr.contains("pipe.bin"))
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model], timeout: 10)
            #expect(run.status == 1, "killed after 10 s when -1: \(run.stderr)")
            let unreadable = try only("provenance.unreadable", in: try reportFindings(run.stdout))
            #expect(evidence(unreadable)["path"] as? String == "pipe.bin")
            // The model itself a FIFO: an error, not a hang.
            let alone = try airlock(["verify", "--manifest", "\(dir)/m.json", "\(model)/pipe.bin"], timeout: 10)
            #expect(alone.status == 2, "\(alone.stderr)")
        }
    }

    // MARK: - Hashing

    @Test("parallel hashing: --threads 1 and --threads 2 give python hashlib's digests for files of awkward sizes")
    func parallelHashing() throws {
        try withScratch { dir in
            let model = "\(dir)/model"
            let mib = 1 << 20
            // Sizes around the 4 MiB read buffer, empty and one-byte files, and small ones.
            let sizes = [
                0, 1, 4 * mib, 4 * mib + 1, 4 * mib - 1, 9 * mib + 12345, 8 * mib, 2, 63, 64, 65, 4095, 4096, 4097,
                65536, 100_000, 1 * mib, 3 * mib + 7, 17, 0,
            ]
            #expect(sizes.count == 20)
            var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
            for (i, size) in sizes.enumerated() {
                var bytes = [UInt8](repeating: 0, count: size)
                for j in stride(from: 0, to: size, by: 8) {
                    seed = seed &* 6364136223846793005 &+ 1442695040888963407
                    withUnsafeBytes(of: seed) { raw in
                        for k in 0..<min(8, size - j) { bytes[j + k] = raw[k] }
                    }
                }
                let sub = i % 3 == 0 ? "" : "d\(i % 3)/"
                try FileManager.default.createDirectory(atPath: "\(model)/\(sub)", withIntermediateDirectories: true)
                try writeFile("\(model)/\(sub)f\(i).bin", bytes)
            }
            let script = """
                import hashlib, json, os, sys
                root = sys.argv[1]
                out = {}
                for d, _, names in os.walk(root):
                    for n in names:
                        p = os.path.join(d, n)
                        out[os.path.relpath(p, root)] = [os.path.getsize(p), hashlib.sha256(open(p, "rb").read()).hexdigest()]
                print(json.dumps(out))
                """
            let python = try runProgram("/usr/bin/python3", ["-c", script, model])
            try #require(python.status == 0, "\(python.stderr)")
            let expected = try #require(
                try JSONSerialization.jsonObject(with: Data(python.stdout.utf8)) as? [String: [Any]])
            #expect(expected.count == 20)
            var manifests: [String] = []
            for threads in ["1", "2"] {
                let run = try airlock(["manifest", "--threads", threads, model])
                #expect(run.status == 0, "\(run.stderr)")
                manifests.append(run.stdout)
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
                let files = try #require(object["files"] as? [[String: Any]])
                var got: [String: (Int, String)] = [:]
                for f in files {
                    got[f["path"] as? String ?? ""] = (f["size"] as? Int ?? -1, f["sha256"] as? String ?? "")
                }
                #expect(Set(got.keys) == Set(expected.keys), "threads \(threads)")
                for (path, value) in expected {
                    #expect(got[path]?.0 == value[0] as? Int, "threads \(threads): size of \(path)")
                    #expect(got[path]?.1 == value[1] as? String, "threads \(threads): sha256 of \(path)")
                }
                // Written in path order.
                let paths = files.compactMap { $0["path"] as? String }
                #expect(paths == paths.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
            }
            #expect(manifests[0] == manifests[1], "the same bytes whatever the thread count")
            #expect(try airlock(["manifest", "--threads", "0", model]).status == 64)
        }
    }
}

/// A manifest `airlock verify` must refuse: its text (`"HASH"` stands for a valid digest, `"UPPER"` for one in upper
/// case) and a fragment of the error message.
struct MalformedManifest: Sendable, CustomTestStringConvertible {
    let label: String
    let text: String
    let fragment: String

    var testDescription: String { label }

    static let cases: [MalformedManifest] = [
        MalformedManifest(label: "bad JSON", text: "{\"manifestVersion\": 1,", fragment: "not valid JSON"),
        MalformedManifest(
            label: "unknown field", text: #"{"manifestVersion": 1, "name": "m", "files": [], "comment": "x"}"#,
            fragment: "field comment: unknown field"),
        MalformedManifest(
            label: "unknown file field",
            text:
                #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "HASH", "mode": 420}]}"#,
            fragment: "field files[0].mode: unknown field"),
        MalformedManifest(
            label: "sha256 not hex",
            text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "XYZ"}]}"#,
            fragment: "field files[0].sha256"),
        MalformedManifest(
            label: "upper-case sha256",
            text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "UPPER"}]}"#,
            fragment: "field files[0].sha256"),
        MalformedManifest(
            label: ".. path",
            text:
                #"{"manifestVersion": 1, "name": "m", "files": [{"path": "sub/../../etc/passwd", "size": 0, "sha256": "HASH"}]}"#,
            fragment: "field files[0].path"),
        MalformedManifest(
            label: "absolute path",
            text:
                #"{"manifestVersion": 1, "name": "m", "files": [{"path": "/etc/passwd", "size": 0, "sha256": "HASH"}]}"#,
            fragment: "field files[0].path"),
        MalformedManifest(
            label: "duplicate path",
            text:
                #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "HASH"}, {"path": "a", "size": 0, "sha256": "HASH"}]}"#,
            fragment: "field files[1].path: a is listed twice"),
        MalformedManifest(
            label: "wrong manifestVersion", text: #"{"manifestVersion": 2, "name": "m", "files": []}"#,
            fragment: "manifestVersion 2 is not supported"),
        MalformedManifest(
            label: "missing files", text: #"{"manifestVersion": 1, "name": "m"}"#, fragment: "field files is required"),
        MalformedManifest(
            label: "negative size",
            text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": -1, "sha256": "HASH"}]}"#,
            fragment: "field files[0].size"),
        MalformedManifest(
            label: "unknown format",
            text:
                #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "HASH", "format": "exe"}]}"#,
            fragment: "field files[0].format: unknown format"),
        MalformedManifest(
            label: "bad key fingerprint",
            text:
                #"{"manifestVersion": 1, "name": "m", "files": [], "policy": {"trustedSources": [{"name": "acme", "keys": ["abc"]}]}}"#,
            fragment: "field policy.trustedSources[0].keys[0]"),
        MalformedManifest(
            label: "unknown policy field",
            text: #"{"manifestVersion": 1, "name": "m", "files": [], "policy": {"trustAll": true}}"#,
            fragment: "field policy.trustAll: unknown field"),
        MalformedManifest(
            label: "duplicate key", text: #"{"manifestVersion": 1, "name": "m", "name": "n", "files": []}"#,
            fragment: "duplicate key \"name\""),
        MalformedManifest(
            label: "file manifest with two files",
            text:
                #"{"manifestVersion": 1, "name": "m", "kind": "file", "files": [{"path": "a", "size": 0, "sha256": "HASH"}, {"path": "b", "size": 0, "sha256": "HASH"}]}"#,
            fragment: "exactly one file"),
    ]

}

/// Keys, formats and ignore paths.
extension ProvenanceCLITests {

    @Test("a key that is not a usable public key (RSA, secp256k1, a private key) is an error, not a finding")
    func unusableKeys() throws {
        for key in ["rsa.pub", "secp256k1.pub", "key.pem"] {
            let run = try airlock([
                "verify", "--signature", "\(signingFixtures)/model.sig", "--public-key", "\(signingFixtures)/\(key)",
                "\(signingFixtures)/model",
            ])
            #expect(run.status == 2, "\(key): \(run.status) \(run.stdout) \(run.stderr)")
            #expect(run.stdout.isEmpty, "\(key): no report for a bad key: \(run.stdout)")
        }
    }

    @Test("a folder checked against a single-file signature: provenance.signature-mismatch")
    func folderAgainstFileSignature() throws {
        let run = try airlock([
            "verify", "--format", "json", "--signature", "\(signingFixtures)/single.sig", "--public-key",
            "\(signingFixtures)/key.pub", "\(signingFixtures)/model",
        ])
        #expect(run.status == 1, "\(run.stderr)")
        #expect(rules(try reportFindings(run.stdout)) == ["provenance.signature-mismatch"])
    }

    @Test("the signature's ignore_paths hide files from the signature only: the manifest still sees them")
    func signedIgnorePathsStayVisibleToManifests() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let manifest = "\(dir)/manifest.json"
            #expect(try airlock(["manifest", "-o", manifest, model]).status == 0)
            // model-signing ignores .gitattributes by default: the signature still holds, the manifest does not.
            try writeFile("\(model)/.gitattributes", Array("*.bin filter=lfs\n".utf8))
            let run = try airlock([
                "verify", "--format", "json", "--manifest", manifest, "--signature", "\(signingFixtures)/model.sig",
                "--public-key", "\(signingFixtures)/key.pub", model,
            ])
            #expect(run.status == 1, "\(run.stderr)")
            let extra = try only("provenance.extra", in: try reportFindings(run.stdout))
            #expect(evidence(extra)["path"] as? String == ".gitattributes")
            #expect(evidence(extra)["against"] as? String == "manifest")
        }
    }

    @Test(
        "Python source in a folder is format python: a policy that does not allow it keeps it out; joblib is refused in policies"
    )
    func pythonAndJoblibFormats() throws {
        try withScratch { dir in
            let model = "\(dir)/repo"
            try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
            try writeFile("\(model)/config.json", Array("{\"a\": 1}\n".utf8))
            let made = try airlock(["manifest", "--allow-format", "json", model])
            #expect(made.status == 0, "\(made.stderr)")
            try made.stdout.write(toFile: "\(dir)/m.json", atomically: true, encoding: .utf8)
            try writeFile("\(model)/modeling_evil.py", Array("import os\nos.system('id')\n".utf8))
            let withPy = try airlock(["manifest", model])
            #expect(withPy.stdout.contains("\"format\": \"python\""), "\(withPy.stdout)")
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 1)
            let notAllowed = try only("provenance.format-not-allowed", in: try reportFindings(run.stdout))
            #expect(evidence(notAllowed)["format"] as? String == "python")

            let joblib = try airlock(["manifest", "--trusted-only-format", "joblib", model])
            #expect(
                joblib.status == 64 && joblib.stderr.contains("joblib never matches"),
                "\(joblib.status) \(joblib.stderr)")
            let edited = try String(contentsOfFile: "\(dir)/m.json", encoding: .utf8).replacingOccurrences(
                of: "\"allowedFormats\": [\"json\"]", with: "\"allowedFormats\": [\"joblib\"]")
            try edited.write(toFile: "\(dir)/m.json", atomically: true, encoding: .utf8)
            let refused = try airlock(["verify", "--manifest", "\(dir)/m.json", model])
            #expect(refused.status == 2 && refused.stderr.contains("policy.allowedFormats[0]"), "\(refused.stderr)")
        }
    }
}

/// The progress bar.
extension ProvenanceCLITests {
    @Test("a progress bar on a terminal for a model over 256 MiB, none when standard error is not a terminal")
    func progressBar() throws {
        try withScratch { dir in
            let big = "\(dir)/big.bin"
            #expect(FileManager.default.createFile(atPath: big, contents: nil))
            #expect(truncate(big, 260 << 20) == 0)  // sparse: zeros cost no disk
            // script(1) gives the command a terminal and records what it wrote there.
            let onTerminal = try runToEnd(
                "/usr/bin/script", ["-qec", "\(airlockBinary) manifest \(big) > \(dir)/m.json", "\(dir)/tty.log"])
            #expect(onTerminal.status == 0, "\(onTerminal.stderr)")
            let tty = try String(contentsOfFile: "\(dir)/tty.log", encoding: .utf8)
            #expect(tty.contains("hashing [") && tty.contains("100% 0.3/0.3 GiB"), "\(tty)")
            let piped = try airlock(["manifest", big])
            #expect(piped.status == 0 && !piped.stderr.contains("hashing"), "\(piped.stderr)")
            #expect(piped.stdout.contains("\"size\": \(260 << 20)"))
        }
    }
}
