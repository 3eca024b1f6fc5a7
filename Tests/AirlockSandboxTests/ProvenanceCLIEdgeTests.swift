import Crypto
import Dispatch
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A manifest `airlock verify` must refuse: its text (`"HASH"` stands for a valid digest, `"UPPER"` for one in upper
/// case) and a fragment of the error message.
struct MalformedManifest: Sendable, CustomTestStringConvertible {
    let label: String
    let text: String
    let fragment: String

    var testDescription: String { label }

    static let cases: [MalformedManifest] = [
        MalformedManifest(label: "bad JSON", text: "{\"manifestVersion\": 1,", fragment: "not valid JSON"),
        MalformedManifest(label: "unknown field", text: #"{"manifestVersion": 1, "name": "m", "files": [], "comment": "x"}"#, fragment: "field comment: unknown field"),
        MalformedManifest(label: "unknown file field", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "HASH", "mode": 420}]}"#, fragment: "field files[0].mode: unknown field"),
        MalformedManifest(label: "sha256 not hex", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "XYZ"}]}"#, fragment: "field files[0].sha256"),
        MalformedManifest(label: "upper-case sha256", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "UPPER"}]}"#, fragment: "field files[0].sha256"),
        MalformedManifest(label: ".. path", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "sub/../../etc/passwd", "size": 0, "sha256": "HASH"}]}"#, fragment: "field files[0].path"),
        MalformedManifest(label: "absolute path", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "/etc/passwd", "size": 0, "sha256": "HASH"}]}"#, fragment: "field files[0].path"),
        MalformedManifest(label: "duplicate path", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "HASH"}, {"path": "a", "size": 0, "sha256": "HASH"}]}"#, fragment: "field files[1].path: a is listed twice"),
        MalformedManifest(label: "wrong manifestVersion", text: #"{"manifestVersion": 2, "name": "m", "files": []}"#, fragment: "manifestVersion 2 is not supported"),
        MalformedManifest(label: "missing files", text: #"{"manifestVersion": 1, "name": "m"}"#, fragment: "field files is required"),
        MalformedManifest(label: "negative size", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": -1, "sha256": "HASH"}]}"#, fragment: "field files[0].size"),
        MalformedManifest(label: "unknown format", text: #"{"manifestVersion": 1, "name": "m", "files": [{"path": "a", "size": 0, "sha256": "HASH", "format": "exe"}]}"#, fragment: "field files[0].format: unknown format"),
        MalformedManifest(label: "bad key fingerprint", text: #"{"manifestVersion": 1, "name": "m", "files": [], "policy": {"trustedSources": [{"name": "acme", "keys": ["abc"]}]}}"#, fragment: "field policy.trustedSources[0].keys[0]"),
        MalformedManifest(label: "unknown policy field", text: #"{"manifestVersion": 1, "name": "m", "files": [], "policy": {"trustAll": true}}"#, fragment: "field policy.trustAll: unknown field"),
        MalformedManifest(label: "duplicate key", text: #"{"manifestVersion": 1, "name": "m", "name": "n", "files": []}"#, fragment: "duplicate key \"name\""),
        MalformedManifest(label: "file manifest with two files", text: #"{"manifestVersion": 1, "name": "m", "kind": "file", "files": [{"path": "a", "size": 0, "sha256": "HASH"}, {"path": "b", "size": 0, "sha256": "HASH"}]}"#, fragment: "exactly one file"),
    ]

}

/// Keys, formats and ignore paths.
extension ProvenanceCLITests {

    @Test("a key that is not a usable public key (RSA, secp256k1, a private key) is an error, not a finding")
    func unusableKeys() throws {
        for key in ["rsa.pub", "secp256k1.pub", "key.pem"] {
            let run = try airlock(["verify", "--signature", "\(signingFixtures)/model.sig", "--public-key", "\(signingFixtures)/\(key)", "\(signingFixtures)/model"])
            #expect(run.status == 2, "\(key): \(run.status) \(run.stdout) \(run.stderr)")
            #expect(run.stdout.isEmpty, "\(key): no report for a bad key: \(run.stdout)")
        }
    }

    @Test("a folder checked against a single-file signature: provenance.signature-mismatch")
    func folderAgainstFileSignature() throws {
        let run = try airlock(["verify", "--format", "json", "--signature", "\(signingFixtures)/single.sig", "--public-key", "\(signingFixtures)/key.pub", "\(signingFixtures)/model"])
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
            let run = try airlock(["verify", "--format", "json", "--manifest", manifest, "--signature", "\(signingFixtures)/model.sig",
                                   "--public-key", "\(signingFixtures)/key.pub", model])
            #expect(run.status == 1, "\(run.stderr)")
            let extra = try only("provenance.extra", in: try reportFindings(run.stdout))
            #expect(evidence(extra)["path"] as? String == ".gitattributes")
            #expect(evidence(extra)["against"] as? String == "manifest")
        }
    }

    @Test("Python source in a folder is format python: a policy that does not allow it keeps it out; joblib is refused in policies")
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
            #expect(joblib.status == 64 && joblib.stderr.contains("joblib never matches"), "\(joblib.status) \(joblib.stderr)")
            let edited = try String(contentsOfFile: "\(dir)/m.json", encoding: .utf8).replacingOccurrences(of: "\"allowedFormats\": [\"json\"]", with: "\"allowedFormats\": [\"joblib\"]")
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
            let onTerminal = try runToEnd("/usr/bin/script", ["-qec", "\(airlockBinary) manifest \(big) > \(dir)/m.json", "\(dir)/tty.log"])
            #expect(onTerminal.status == 0, "\(onTerminal.stderr)")
            let tty = try String(contentsOfFile: "\(dir)/tty.log", encoding: .utf8)
            #expect(tty.contains("hashing [") && tty.contains("100% 0.3/0.3 GiB"), "\(tty)")
            let piped = try airlock(["manifest", big])
            #expect(piped.status == 0 && !piped.stderr.contains("hashing"), "\(piped.stderr)")
            #expect(piped.stdout.contains("\"size\": \(260 << 20)"))
        }
    }
}
