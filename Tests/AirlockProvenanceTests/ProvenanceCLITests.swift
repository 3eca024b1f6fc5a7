import Crypto
import Dispatch
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The model-signing fixtures made by the real tool (Fixtures/model-signing/README.md). Never modified: tests copy.
let signingFixtures = "\(repositoryRoot)/Tests/Fixtures/model-signing"

/// Runs the built `airlock` with a deadline: a run that outlives it is killed and reported as status -1, so a hang
/// fails the test instead of the suite.
func airlock(_ arguments: [String], timeout: Double = 20) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: airlockBinary)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let pid = process.processIdentifier
    let killed = ManagedFlag()
    let timer = DispatchWorkItem {
        killed.set()
        kill(pid, SIGKILL)
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    // Standard error is read on another thread so that neither pipe can fill up while the other is drained.
    let errData = DataBox()
    let errDone = DispatchSemaphore(value: 0)
    let errHandle = err.fileHandleForReading
    DispatchQueue.global().async {
        errData.data = errHandle.readDataToEndOfFile()
        errDone.signal()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    errDone.wait()
    process.waitUntilExit()
    timer.cancel()
    let status = killed.isSet ? -1 : process.terminationStatus
    return (status, String(decoding: outData, as: UTF8.self), String(decoding: errData.data, as: UTF8.self))
}

/// Data written by one thread and read by another after a semaphore.
final class DataBox: @unchecked Sendable {
    var data = Data()
}

final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// A scratch folder for one test, removed by `body`'s end.
func withScratch<T>(_ body: (String) throws -> T) throws -> T {
    let dir = try makeHostDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

/// Copies `name` from the signing fixtures into `dir` (folders with their content).
@discardableResult
func copyFixture(_ name: String, to dir: String, as newName: String? = nil) throws -> String {
    let target = "\(dir)/\(newName ?? name)"
    try FileManager.default.copyItem(atPath: "\(signingFixtures)/\(name)", toPath: target)
    return target
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Lower-case hex SHA-256.
func sha256Hex(of bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// The findings of a `--format json` report (one report on one line).
func reportFindings(_ stdout: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [[String: Any]] {
    let report = try #require(
        try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any], "not a report: \(stdout)",
        sourceLocation: sourceLocation)
    return try #require(report["findings"] as? [[String: Any]], sourceLocation: sourceLocation)
}

func rules(_ findings: [[String: Any]]) -> [String] { findings.compactMap { $0["rule"] as? String } }

func evidence(_ finding: [String: Any]) -> [String: Any] { finding["evidence"] as? [String: Any] ?? [:] }

/// The one finding with `rule`; fails when there is none or several.
func only(_ rule: String, in findings: [[String: Any]], sourceLocation: SourceLocation = #_sourceLocation) throws
    -> [String: Any]
{
    let matching = findings.filter { $0["rule"] as? String == rule }
    try #require(matching.count == 1, "expected one \(rule), found \(rules(findings))", sourceLocation: sourceLocation)
    return matching[0]
}

/// A minimal pickle (protocol 4, the integer 1): identified as `pickle`.
let tinyPickle: [UInt8] = [0x80, 0x04, 0x4B, 0x01, 0x2E]

/// `airlock verify` and `airlock manifest` as a user runs them, against the real model-signing tool's bundles and
/// against manifests `airlock manifest` writes.
@Suite("airlock verify and airlock manifest")
struct ProvenanceCLITests {
    // MARK: - Signatures

    @Test("the fixture folder verifies with its key; the key's fingerprint is the SHA-256 of key.pub")
    func signatureVerifies() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let run = try airlock([
                "verify", "--signature", "\(signingFixtures)/model.sig", "--public-key", "\(signingFixtures)/key.pub",
                model,
            ])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.hasPrefix("CLEAN"))
            let key = Array(try Data(contentsOf: URL(fileURLWithPath: "\(signingFixtures)/key.pub")))
            #expect(
                run.stdout.contains("signature verified with key sha256:\(sha256Hex(of: key)) over 3 files"),
                "\(run.stdout)")
        }
    }

    @Test("one byte changed in a signed file: provenance.changed against the signature, naming the file")
    func signatureByteChanged() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: "\(model)/weights.bin")))
            bytes[5] ^= 0x01
            try writeFile("\(model)/weights.bin", bytes)
            let run = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/model.sig", "--public-key",
                "\(signingFixtures)/key.pub", model,
            ])
            #expect(run.status == 1, "\(run.stderr)")
            let findings = try reportFindings(run.stdout)
            #expect(rules(findings) == ["provenance.changed"])
            let changed = try only("provenance.changed", in: findings)
            #expect(changed["severity"] as? String == "critical")
            #expect(evidence(changed)["path"] as? String == "weights.bin")
            #expect(evidence(changed)["against"] as? String == "signature")
            #expect(evidence(changed)["actualSha256"] as? String == sha256Hex(of: bytes))
            #expect((changed["message"] as? String)?.contains("weights.bin") == true)
        }
    }

    @Test("a file added to a signed folder: provenance.extra; a file removed: provenance.missing")
    func signatureExtraAndMissing() throws {
        try withScratch { dir in
            let added = try copyFixture("model", to: dir, as: "added")
            try writeFile("\(added)/sub/new.py", Array("import os\n".utf8))
            let a = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/model.sig", "--public-key",
                "\(signingFixtures)/key.pub", added,
            ])
            #expect(a.status == 1, "\(a.stderr)")
            let extra = try only("provenance.extra", in: try reportFindings(a.stdout))
            #expect(rules(try reportFindings(a.stdout)) == ["provenance.extra"])
            #expect(evidence(extra)["path"] as? String == "sub/new.py")
            #expect(evidence(extra)["against"] as? String == "signature")
            #expect(extra["severity"] as? String == "high")

            let removed = try copyFixture("model", to: dir, as: "removed")
            try FileManager.default.removeItem(atPath: "\(removed)/sub/tokenizer.txt")
            let r = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/model.sig", "--public-key",
                "\(signingFixtures)/key.pub", removed,
            ])
            #expect(r.status == 1, "\(r.stderr)")
            #expect(rules(try reportFindings(r.stdout)) == ["provenance.missing"])
            let missing = try only("provenance.missing", in: try reportFindings(r.stdout))
            #expect(evidence(missing)["path"] as? String == "sub/tokenizer.txt")
            #expect(evidence(missing)["against"] as? String == "signature")
        }
    }

    @Test(
        "a bundle signed by another key: provenance.signature-invalid (critical) saying so; with both keys it verifies")
    func signatureOtherKey() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let run = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/other.sig", "--public-key",
                "\(signingFixtures)/key.pub", model,
            ])
            #expect(run.status == 1, "\(run.stderr)")
            let findings = try reportFindings(run.stdout)
            #expect(rules(findings) == ["provenance.signature-invalid"])
            let invalid = try only("provenance.signature-invalid", in: findings)
            #expect(invalid["severity"] as? String == "critical")
            #expect((invalid["message"] as? String)?.contains("different key") == true, "\(invalid)")
            // Several keys: the one that signed wins.
            let both = try airlock([
                "verify", "--signature", "\(signingFixtures)/other.sig", "--public-key", "\(signingFixtures)/key.pub",
                "--public-key", "\(signingFixtures)/other.pub", model,
            ])
            #expect(both.status == 0, "\(both.stdout)\(both.stderr)")
        }
    }

    @Test("a certificate bundle: provenance.signature-unsupported, not verified yet")
    func signatureCertificate() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let run = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/cert.sig", "--public-key",
                "\(signingFixtures)/key.pub", model,
            ])
            #expect(run.status == 1, "\(run.stderr)")
            let findings = try reportFindings(run.stdout)
            #expect(rules(findings) == ["provenance.signature-unsupported"])
            let unsupported = try only("provenance.signature-unsupported", in: findings)
            #expect((unsupported["message"] as? String)?.contains("not verified yet") == true, "\(unsupported)")
        }
    }

    @Test("a single-file model verifies, also renamed; one byte changed: provenance.changed naming the file")
    func signatureSingleFile() throws {
        try withScratch { dir in
            let file = try copyFixture("single.bin", to: dir, as: "renamed.bin")
            let ok = try airlock([
                "verify", "--signature", "\(signingFixtures)/single.sig", "--public-key", "\(signingFixtures)/key.pub",
                file,
            ])
            #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
            bytes[0] ^= 0x20
            try writeFile(file, bytes)
            let bad = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/single.sig", "--public-key",
                "\(signingFixtures)/key.pub", file,
            ])
            #expect(bad.status == 1, "\(bad.stderr)")
            let changed = try only("provenance.changed", in: try reportFindings(bad.stdout))
            #expect(evidence(changed)["path"] as? String == "renamed.bin")
            #expect(evidence(changed)["against"] as? String == "signature")
            #expect((changed["message"] as? String)?.hasPrefix("renamed.bin ") == true, "\(changed)")
        }
    }

    @Test("--signature without --public-key is a usage error (exit 64), as are --public-key alone and no reference")
    func signatureWithoutKey() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let run = try airlock(["verify", "--signature", "\(signingFixtures)/model.sig", model])
            #expect(run.status == 64)
            #expect(run.stderr.contains("--signature needs --public-key"), "\(run.stderr)")
            #expect(run.stdout.isEmpty)
            #expect(try airlock(["verify", "--public-key", "\(signingFixtures)/key.pub", model]).status == 64)
            #expect(try airlock(["verify", model]).status == 64)
            // A signature that cannot be read is an error of the run, exit 2.
            let missing = try airlock([
                "verify", "--signature", "\(dir)/none.sig", "--public-key", "\(signingFixtures)/key.pub", model,
            ])
            #expect(missing.status == 2)
            #expect(missing.stderr.contains("none.sig"), "\(missing.stderr)")
        }
    }

    @Test("the signature file inside the model folder (model-signing's default) is left out of the comparison")
    func signatureInsideFolder() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            try FileManager.default.copyItem(atPath: "\(signingFixtures)/model.sig", toPath: "\(model)/model.sig")
            let run = try airlock([
                "verify", "--signature", "\(model)/model.sig", "--public-key", "\(signingFixtures)/key.pub", model,
            ])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            // It is the ignoring that makes it pass: named from outside, the copy inside is a file nobody signed.
            let outside = try airlock([
                "verify", "--format", "json", "--signature", "\(signingFixtures)/model.sig", "--public-key",
                "\(signingFixtures)/key.pub", model,
            ])
            #expect(outside.status == 1)
            #expect(
                evidence(try only("provenance.extra", in: try reportFindings(outside.stdout)))["path"] as? String
                    == "model.sig")
        }
    }

    // MARK: - Manifests

    @Test("round trip: the manifest of a folder and of a file verifies against them")
    func manifestRoundTrip() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            let made = try airlock(["manifest", "-o", "\(dir)/m.json", model])
            #expect(made.status == 0, "\(made.stderr)")
            #expect(made.stdout.isEmpty)
            let run = try airlock(["verify", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            #expect(run.stdout.contains("checked: manifest model: 3 files listed, 3 found"), "\(run.stdout)")

            let file = try copyFixture("single.bin", to: dir)
            let fileManifest = try airlock(["manifest", file])
            #expect(fileManifest.status == 0)
            try fileManifest.stdout.write(toFile: "\(dir)/f.json", atomically: true, encoding: .utf8)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(fileManifest.stdout.utf8)) as? [String: Any])
            #expect(object["kind"] as? String == "file")
            #expect(try airlock(["verify", "--manifest", "\(dir)/f.json", file]).status == 0)
        }
    }

    @Test("against a manifest: a changed file (with sizes), an extra file and a missing file are findings")
    func manifestChangedExtraMissing() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "-o", "\(dir)/m.json", model]).status == 0)
            let old = Array(try Data(contentsOf: URL(fileURLWithPath: "\(model)/config.json")))
            try writeFile("\(model)/config.json", old + [0x0A])
            try writeFile("\(model)/extra.bin", [1, 2, 3])
            try FileManager.default.removeItem(atPath: "\(model)/weights.bin")
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 1, "\(run.stderr)")
            let findings = try reportFindings(run.stdout)
            #expect(
                Set(rules(findings)) == ["provenance.changed", "provenance.extra", "provenance.missing"],
                "\(rules(findings))")
            let changed = evidence(try only("provenance.changed", in: findings))
            #expect(changed["path"] as? String == "config.json")
            #expect(changed["against"] as? String == "manifest")
            #expect(changed["expectedSha256"] as? String == sha256Hex(of: old))
            #expect(changed["actualSha256"] as? String == sha256Hex(of: old + [0x0A]))
            #expect(changed["expectedSize"] as? String == String(old.count))
            #expect(changed["actualSize"] as? String == String(old.count + 1))
            #expect(evidence(try only("provenance.extra", in: findings))["path"] as? String == "extra.bin")
            #expect(evidence(try only("provenance.missing", in: findings))["path"] as? String == "weights.bin")
            for finding in findings { #expect(finding["source"] as? String == "provenance") }
        }
    }

    @Test("--allow-extra-files: an extra file is info and the model clean")
    func manifestAllowExtraFiles() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "--allow-extra-files", "-o", "\(dir)/m.json", model]).status == 0)
            try writeFile("\(model)/README.md", Array("# notes\n".utf8))
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            let extra = try only("provenance.extra", in: try reportFindings(run.stdout))
            #expect(extra["severity"] as? String == "info")
            // The same without the flag: high, exit 1.
            #expect(try airlock(["manifest", "--ignore", "README.md", "-o", "\(dir)/strict.json", model]).status == 0)
            let strict = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/strict.json", model])
            #expect(strict.status == 1)
            #expect(
                try only("provenance.extra", in: try reportFindings(strict.stdout))["severity"] as? String == "high")
        }
    }

    @Test("--trusted-only-format pickle: a pickle without a trusted source is refused; from a trusted source it passes")
    func manifestTrustedOnlyPickle() throws {
        try withScratch { dir in
            let model = "\(dir)/model"
            try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
            try writeFile("\(model)/weights.pkl", tinyPickle)
            try writeFile("\(model)/config.json", Array("{\"a\": 1}\n".utf8))

            #expect(
                try airlock(["manifest", "--trusted-only-format", "pickle", "-o", "\(dir)/untrusted.json", model])
                    .status == 0)
            let untrusted = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/untrusted.json", model])
            #expect(untrusted.status == 1, "\(untrusted.stderr)")
            let findings = try reportFindings(untrusted.stdout)
            #expect(rules(findings) == ["provenance.format-not-allowed"])
            let refused = try only("provenance.format-not-allowed", in: findings)
            #expect(evidence(refused)["path"] as? String == "weights.pkl")
            #expect(evidence(refused)["format"] as? String == "pickle")

            #expect(
                try airlock([
                    "manifest", "--source", "acme", "--trusted-source", "acme", "--trusted-only-format", "pickle", "-o",
                    "\(dir)/trusted.json", model,
                ]).status == 0)
            let trusted = try airlock(["verify", "--manifest", "\(dir)/trusted.json", model])
            #expect(trusted.status == 0, "\(trusted.stdout)\(trusted.stderr)")
            #expect(trusted.stdout.contains("checked: source: source acme is trusted"), "\(trusted.stdout)")

            // A source the policy does not trust: untrusted-source, and the pickle refused.
            #expect(
                try airlock([
                    "manifest", "--source", "mallory", "--trusted-source", "acme", "--trusted-only-format", "pickle",
                    "-o", "\(dir)/other.json", model,
                ]).status == 0)
            let other = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/other.json", model])
            #expect(other.status == 1)
            #expect(
                Set(rules(try reportFindings(other.stdout))) == [
                    "provenance.untrusted-source", "provenance.format-not-allowed",
                ])

            // Listing pickle in --allow-format too does not lift the restriction.
            #expect(
                try airlock([
                    "manifest", "--allow-format", "pickle", "--allow-format", "json", "--trusted-only-format", "pickle",
                    "-o", "\(dir)/both.json", model,
                ]).status == 0)
            let both = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/both.json", model])
            #expect(both.status == 1, "\(both.stdout)")
            #expect(
                evidence(try only("provenance.format-not-allowed", in: try reportFindings(both.stdout)))["path"]
                    as? String == "weights.pkl")

            // --allow-format alone: what it does not list is refused from anyone.
            #expect(
                try airlock(["manifest", "--allow-format", "pickle", "-o", "\(dir)/allow.json", model]).status == 0)
            let allow = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/allow.json", model])
            #expect(allow.status == 1)
            let json = try only("provenance.format-not-allowed", in: try reportFindings(allow.stdout))
            #expect(evidence(json)["path"] as? String == "config.json")
            #expect((json["message"] as? String)?.contains("does not allow") == true)
        }
    }

    @Test("a trusted source with a key counts only when a signature by that key verifies")
    func manifestTrustedSourceKey() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            // config.json is json: restrict json to trusted sources, so trust decides a format finding too.
            let made = try airlock([
                "manifest", "--source", "acme", "--trusted-source", "acme=\(signingFixtures)/key.pub",
                "--trusted-only-format", "json", "-o", "\(dir)/m.json", model,
            ])
            #expect(made.status == 0, "\(made.stderr)")
            let manifest = try String(contentsOfFile: "\(dir)/m.json", encoding: .utf8)
            let key = Array(try Data(contentsOf: URL(fileURLWithPath: "\(signingFixtures)/key.pub")))
            #expect(manifest.contains(sha256Hex(of: key)), "the key is pinned by its fingerprint")

            let unsigned = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(unsigned.status == 1)
            let findings = try reportFindings(unsigned.stdout)
            #expect(
                Set(rules(findings)) == ["provenance.untrusted-source", "provenance.format-not-allowed"],
                "\(rules(findings))")
            #expect(
                (try only("provenance.untrusted-source", in: findings)["message"] as? String)?.contains(
                    "no signature verified") == true)

            let signed = try airlock([
                "verify", "--manifest", "\(dir)/m.json", "--signature", "\(signingFixtures)/model.sig",
                "--public-key", "\(signingFixtures)/key.pub", model,
            ])
            #expect(signed.status == 0, "\(signed.stdout)\(signed.stderr)")
            #expect(signed.stdout.contains("source acme is trusted and its key signed the model"), "\(signed.stdout)")

            // A valid signature by another key does not make the source trusted.
            let other = try airlock([
                "verify", "--format", "json", "--manifest", "\(dir)/m.json", "--signature",
                "\(signingFixtures)/other.sig",
                "--public-key", "\(signingFixtures)/other.pub", model,
            ])
            #expect(other.status == 1)
            let otherFindings = try reportFindings(other.stdout)
            let untrusted = try only("provenance.untrusted-source", in: otherFindings)
            let otherKey = Array(try Data(contentsOf: URL(fileURLWithPath: "\(signingFixtures)/other.pub")))
            #expect((untrusted["message"] as? String)?.contains(sha256Hex(of: otherKey)) == true, "\(untrusted)")
        }
    }

    @Test("--require-signature: no signature is provenance.signature-missing; a verified one satisfies it")
    func manifestRequireSignature() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "--require-signature", "-o", "\(dir)/m.json", model]).status == 0)
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 1)
            #expect(rules(try reportFindings(run.stdout)) == ["provenance.signature-missing"])
            let signed = try airlock([
                "verify", "--manifest", "\(dir)/m.json", "--signature", "\(signingFixtures)/model.sig", "--public-key",
                "\(signingFixtures)/key.pub", model,
            ])
            #expect(signed.status == 0, "\(signed.stdout)\(signed.stderr)")
        }
    }

    @Test("a symbolic link: airlock manifest refuses (exit 2), verify reports provenance.symlink")
    func manifestSymlink() throws {
        try withScratch { dir in
            let model = try copyFixture("model", to: dir)
            #expect(try airlock(["manifest", "-o", "\(dir)/m.json", model]).status == 0)
            #expect(symlink("/etc/passwd", "\(model)/link.json") == 0)
            let made = try airlock(["manifest", model])
            #expect(made.status == 2)
            #expect(made.stdout.isEmpty)
            #expect(made.stderr.contains("link.json: a symbolic link to /etc/passwd"), "\(made.stderr)")
            let run = try airlock(["verify", "--format", "json", "--manifest", "\(dir)/m.json", model])
            #expect(run.status == 1)
            let link = try only("provenance.symlink", in: try reportFindings(run.stdout))
            #expect(evidence(link)["path"] as? String == "link.json")
            #expect(evidence(link)["target"] as? String == "/etc/passwd")
            // The model itself given as a link is refused.
            #expect(symlink(model, "\(dir)/alias") == 0)
            let alias = try airlock(["verify", "--manifest", "\(dir)/m.json", "\(dir)/alias"])
            #expect(alias.status == 2)
            #expect(alias.stderr.contains("symbolic link"))
        }
    }
}
