@testable import AirlockProvenance
import AirlockAnalysis
import Crypto
import Foundation
import Testing
import AirlockTestSupport

/// The model-signing fixtures (made by the real `model_signing` 1.1.1; see Fixtures/model-signing/README.md).
private let fixtures = "\(repositoryRoot)/Tests/Fixtures/model-signing"

private func fixture(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/\(name)")))
}

private func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// A bundle as a JSON object, for editing.
private func bundleObject(_ name: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(try fixture(name))) as! [String: Any]
}

private func serialize(_ object: [String: Any]) throws -> [UInt8] {
    Array(try JSONSerialization.data(withJSONObject: object))
}

/// The decoded DSSE payload (the statement's JSON text) of a bundle fixture.
private func payloadText(_ name: String) throws -> String {
    let envelope = try bundleObject(name)["dsseEnvelope"] as! [String: Any]
    return String(decoding: Data(base64Encoded: envelope["payload"] as! String)!, as: UTF8.self)
}

/// `model.sig` with its payload replaced by `statement` and signed again with the test key `key.pem`, the way
/// model-signing signs (DSSE PAE, ECDSA P-256 SHA-256): a bundle whose signature verifies, to test statement checks.
private func resigned(_ statement: String, key: String = "key.pem") throws -> [UInt8] {
    let payload = Array(statement.utf8)
    let privateKey = try P256.Signing.PrivateKey(pemRepresentation: String(decoding: try fixture(key), as: UTF8.self))
    let pae = Array("DSSEv1 28 application/vnd.in-toto+json \(payload.count) ".utf8) + payload
    let signature = try privateKey.signature(for: pae).derRepresentation
    var bundle = try bundleObject("model.sig")
    var envelope = bundle["dsseEnvelope"] as! [String: Any]
    envelope["payload"] = Data(payload).base64EncodedString()
    envelope["signatures"] = [["sig": signature.base64EncodedString(), "keyid": ""]]
    bundle["dsseEnvelope"] = envelope
    return try serialize(bundle)
}

/// `text` with `old` replaced by `new`; fails the test when `old` is not there (so an edit cannot silently do nothing).
private func replacing(_ text: String, _ old: String, _ new: String) throws -> String {
    try #require(text.contains(old), "fixture text lacks \(old)")
    return text.replacingOccurrences(of: old, with: new)
}

/// Verifies and expects a ProvenanceError with `code` whose message contains `fragment`.
private func expectFailure(
    _ bundle: [UInt8], key: String = "key.pub", _ code: ProvenanceError.Code, _ fragment: String,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let keyPEM = try fixture(key)
    do {
        let model = try ModelSigning.verify(bundle: bundle, publicKeyPEM: keyPEM)
        Issue.record("verified, but should have failed: \(model.resources.map(\.name))", sourceLocation: sourceLocation)
    } catch {
        #expect(error.kind == code, "\(error.message)", sourceLocation: sourceLocation)
        #expect(error.message.contains(fragment), "message: \(error.message)", sourceLocation: sourceLocation)
    }
}

@Suite("OpenSSF model-signing bundles (key method)")
struct ModelSigningTests {
    @Test("the fixture bundle verifies and yields exactly what the tool signed")
    func fixtureVerifies() throws {
        let model = try ModelSigning.verify(bundle: try fixture("model.sig"), publicKeyPEM: try fixture("key.pub"))
        #expect(model.modelName == "model")
        #expect(model.allowSymlinks == false)
        #expect(Set(model.ignorePaths) == [".git", ".gitignore", ".gitattributes", ".github"])
        #expect(model.resources.map(\.name) == ["config.json", "sub/tokenizer.txt", "weights.bin"])
        // Each digest is the SHA-256 of the fixture file, computed here independently.
        for resource in model.resources {
            #expect(resource.sha256 == sha256Hex(try fixture("model/\(resource.name)")), "\(resource.name)")
        }
        // And exactly what the tool wrote in the statement.
        let statement =
            try JSONSerialization.jsonObject(with: Data(try payloadText("model.sig").utf8)) as! [String: Any]
        let predicate = statement["predicate"] as! [String: Any]
        let written = (predicate["resources"] as! [[String: String]]).map {
            SignedResource(name: $0["name"]!, sha256: $0["digest"]!)
        }
        #expect(model.resources == written)
        let subject = (statement["subject"] as! [[String: Any]])[0]
        #expect(model.rootDigest == (subject["digest"] as! [String: String])["sha256"])
        // The root digest is SHA-256 over the raw resource digests.
        let raw = model.resources.flatMap { r in
            stride(from: 0, to: 64, by: 2).map { UInt8(r.sha256.dropFirst($0).prefix(2), radix: 16)! }
        }
        #expect(model.rootDigest == sha256Hex(raw))
        // The fingerprint is the hint the tool wrote.
        let material = try bundleObject("model.sig")["verificationMaterial"] as! [String: Any]
        let hint = (material["publicKey"] as! [String: String])["hint"]!
        #expect(model.keyFingerprint == hint)
        #expect(try ModelSigning.fingerprint(publicKeyPEM: try fixture("key.pub")) == hint)
    }

    @Test(
        "fingerprints equal the hints the tool wrote, whatever the PEM's line wrapping",
        arguments: [
            ("key.pub", "model.sig"), ("other.pub", "other.sig"), ("p384.pub", "p384.sig"), ("p521.pub", "p521.sig"),
        ])
    func fingerprints(key: String, bundle: String) throws {
        let material = try bundleObject(bundle)["verificationMaterial"] as! [String: Any]
        let hint = (material["publicKey"] as! [String: String])["hint"]!
        let pem = try fixture(key)
        #expect(try ModelSigning.fingerprint(publicKeyPEM: pem) == hint)
        // openssl writes the same canonical text Python does, so the hint is also the file's own SHA-256.
        #expect(sha256Hex(pem) == hint)
        // Re-wrapped in one line with CRLF and no final newline: same key, same fingerprint.
        let text = String(decoding: pem, as: UTF8.self)
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let rewrapped = "-----BEGIN PUBLIC KEY-----\r\n\(body)\r\n-----END PUBLIC KEY-----"
        #expect(Array(rewrapped.utf8) != pem)
        #expect(try ModelSigning.fingerprint(publicKeyPEM: Array(rewrapped.utf8)) == hint)
    }

    @Test("P-384 and P-521 bundles verify with their keys")
    func otherCurves() throws {
        for (key, bundle) in [("p384.pub", "p384.sig"), ("p521.pub", "p521.sig")] {
            let model = try ModelSigning.verify(bundle: try fixture(bundle), publicKeyPEM: try fixture(key))
            #expect(model.resources.map(\.name) == ["config.json", "sub/tokenizer.txt", "weights.bin"])
            #expect(model.keyFingerprint == sha256Hex(try fixture(key)))
        }
        try expectFailure(try fixture("p384.sig"), key: "key.pub", .badSignature, "signed with a different key")
    }

    @Test("a single-file model is one resource named \".\"")
    func singleFile() throws {
        let model = try ModelSigning.verify(bundle: try fixture("single.sig"), publicKeyPEM: try fixture("key.pub"))
        #expect(model.modelName == "single.bin")
        #expect(model.resources == [SignedResource(name: ".", sha256: sha256Hex(try fixture("single.bin")))])
    }

    @Test("a bundle signed with the other key fails: by its hint, and without the hint by its signature")
    func otherKey() throws {
        try expectFailure(try fixture("other.sig"), .badSignature, "signed with a different key")
        var bundle = try bundleObject("other.sig")
        bundle["verificationMaterial"] = ["publicKey": [String: Any](), "tlogEntries": [Any]()]
        try expectFailure(try serialize(bundle), .badSignature, "the signature does not verify with key sha256:")
        // The same bundle without a hint verifies with the right key: the failure above is the signature's.
        let model = try ModelSigning.verify(bundle: try serialize(bundle), publicKeyPEM: try fixture("other.pub"))
        #expect(model.resources.count == 3)
    }

    @Test("a payload with one byte changed fails at the signature")
    func payloadChanged() throws {
        var bundle = try bundleObject("model.sig")
        var envelope = bundle["dsseEnvelope"] as! [String: Any]
        var payload = [UInt8](Data(base64Encoded: envelope["payload"] as! String)!)
        let at = try #require(payload.firstIndex(of: UInt8(ascii: "a")))  // the "a" of "Statement"
        payload[at] = UInt8(ascii: "b")
        envelope["payload"] = Data(payload).base64EncodedString()
        bundle["dsseEnvelope"] = envelope
        try expectFailure(try serialize(bundle), .badSignature, "does not verify")
    }

    @Test("a signature with one byte changed fails", arguments: [8, 20, 40, -1])
    func signatureChanged(position: Int) throws {
        var bundle = try bundleObject("model.sig")
        var envelope = bundle["dsseEnvelope"] as! [String: Any]
        var signatures = envelope["signatures"] as! [[String: String]]
        var sig = [UInt8](Data(base64Encoded: signatures[0]["sig"]!)!)
        let i = position < 0 ? sig.count + position : position
        sig[i] ^= 0x01
        signatures[0]["sig"] = Data(sig).base64EncodedString()
        envelope["signatures"] = signatures
        bundle["dsseEnvelope"] = envelope
        try expectFailure(try serialize(bundle), .badSignature, "does not verify")
    }

    @Test("several signatures: accepted when one verifies, refused when none does")
    func severalSignatures() throws {
        let good =
            (try bundleObject("model.sig")["dsseEnvelope"] as! [String: Any])["signatures"] as! [[String: String]]
        let other =
            (try bundleObject("other.sig")["dsseEnvelope"] as! [String: Any])["signatures"] as! [[String: String]]
        var bundle = try bundleObject("model.sig")
        var envelope = bundle["dsseEnvelope"] as! [String: Any]
        envelope["signatures"] = other + good
        bundle["dsseEnvelope"] = envelope
        _ = try ModelSigning.verify(bundle: try serialize(bundle), publicKeyPEM: try fixture("key.pub"))
        envelope["signatures"] = other + other
        bundle["dsseEnvelope"] = envelope
        try expectFailure(try serialize(bundle), .badSignature, "none of the 2 signatures verifies with key sha256:")
        envelope["signatures"] = [Any]()
        bundle["dsseEnvelope"] = envelope
        try expectFailure(try serialize(bundle), .malformed, "no signature")
    }

    @Test("a resource digest edited without the subject digest fails, even when signed")
    func rootDigestInconsistent() throws {
        let statement = try payloadText("model.sig")
        let digest = sha256Hex(try fixture("model/weights.bin"))
        let edited = try replacing(statement, digest, String(repeating: "0", count: 64))
        // Re-signed correctly: the signature holds, the statement contradicts itself.
        try expectFailure(try resigned(edited), .badSignature, "resource digests do not add up to the subject digest")
        // The unedited statement re-signed the same way verifies, so the failure above is the edit's.
        #expect(
            try ModelSigning.verify(bundle: try resigned(statement), publicKeyPEM: try fixture("key.pub")).resources
                .count == 3)
    }

    @Test("resources named by NFC and NFD spellings of one name are two resources, and a verification flags them")
    func normalisationLookalikes() throws {
        let statement = try payloadText("model.sig")
        var edited = try replacing(statement, #""name": "config.json""#, #""name": "\u00e9.json""#)
        edited = try replacing(edited, #""name": "weights.bin""#, #""name": "e\u0301.json""#)
        let model = try ModelSigning.verify(bundle: try resigned(edited), publicKeyPEM: try fixture("key.pub"))
        #expect(Set(model.resources.map { Array($0.name.utf8) }).count == 3)
        let inventory = ModelInventory(kind: .folder, display: "m", files: [], symlinks: [], problems: [])
        let rules = ProvenanceCheck.findings(inventory: inventory, manifest: nil, signature: .verified(model)).map(
            \.rule)
        #expect(rules.filter { $0 == "provenance.name-lookalike" }.count == 1, "\(rules)")
    }

    @Test("a changed payloadType is refused")
    func payloadTypeChanged() throws {
        var bundle = try bundleObject("model.sig")
        var envelope = bundle["dsseEnvelope"] as! [String: Any]
        envelope["payloadType"] = "application/json"
        bundle["dsseEnvelope"] = envelope
        try expectFailure(try serialize(bundle), .malformed, "payloadType")
    }

    @Test(
        "other serializations and hash types are unsupported, not mis-verified",
        arguments: [
            ("\"method\": \"files\"", "\"method\": \"shards\", \"shard_size\": 1000000", "shard serialization"),
            ("\"method\": \"files\"", "\"method\": \"chunks\"", "serialization method \"chunks\""),
            ("\"hash_type\": \"sha256\"", "\"hash_type\": \"blake2\"", "hash type \"blake2\""),
            ("\"algorithm\": \"sha256\"", "\"algorithm\": \"blake3\"", "hashed with \"blake3\""),
            ("https://model_signing/signature/v1.0", "https://model_signing/Digests/v0.1", "pre-1.0 predicate"),
            ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1", "not an in-toto"),
        ])
    func unsupportedStatements(old: String, new: String, fragment: String) throws {
        let edited = try replacing(try payloadText("model.sig"), old, new)
        try expectFailure(try resigned(edited), .unsupported, fragment)
    }

    @Test(
        "resource names must be unique plain relative paths",
        arguments: [
            ("\"sub/tokenizer.txt\"", "\"config.json\"", "listed twice"),
            ("\"sub/tokenizer.txt\"", "\"../tokenizer.txt\"", "climbs out"),
            ("\"sub/tokenizer.txt\"", "\"/etc/passwd\"", "is absolute"),
            ("\"sub/tokenizer.txt\"", "\"sub//tokenizer.txt\"", "empty path segment"),
            ("\"sub/tokenizer.txt\"", "\"sub/./tokenizer.txt\"", "\".\" segment"),
            ("\"sub/tokenizer.txt\"", "\".\"", "single-file model"),
            ("\"sub/tokenizer.txt\"", "\"\"", "is empty"),
            ("\".github\"", "\"../outside\"", "ignored path"),
        ])
    func resourceNames(old: String, new: String, fragment: String) throws {
        let edited = try replacing(try payloadText("model.sig"), old, new)
        try expectFailure(try resigned(edited), .malformed, fragment)
    }

    @Test("certificate bundles are refused as not verified yet")
    func certificateBundle() throws {
        try expectFailure(
            try fixture("cert.sig"), .unsupported,
            "certificate-based and keyless (Sigstore) bundles are not verified yet")
        // A single-certificate form (what keyless Sigstore signing writes) too.
        var bundle = try bundleObject("model.sig")
        bundle["verificationMaterial"] = ["certificate": ["rawBytes": "MIIB"], "tlogEntries": [Any]()]
        try expectFailure(
            try serialize(bundle), .unsupported, "not verified yet (this one carries verificationMaterial.certificate)")
    }

    @Test("model-signing 0.2's PAE (which 1.1.1 still accepts) verifies; its pre-1.0 key material is ignored")
    func compatBundle() throws {
        let model = try ModelSigning.verify(bundle: try fixture("compat.sig"), publicKeyPEM: try fixture("key.pub"))
        #expect(model.resources.map(\.name) == ["config.json", "sub/tokenizer.txt", "weights.bin"])
        try expectFailure(try fixture("compat.sig"), key: "other.pub", .badSignature, "does not verify")
    }

    @Test("broken bundles are malformed, with a reason, and do not crash")
    func malformedBundles() throws {
        let good = try fixture("model.sig")
        try expectFailure([], .malformed, "empty")
        try expectFailure(Array("{\"mediaType\": ".utf8), .malformed, "not valid JSON")
        try expectFailure(Array(good.prefix(good.count / 2)), .malformed, "not valid JSON")
        try expectFailure(Array(good.dropLast()), .malformed, "not valid JSON")
        try expectFailure(
            Array(String(repeating: "[", count: 10_000).utf8) + Array(String(repeating: "]", count: 10_000).utf8),
            .malformed, "nested deeper")
        try expectFailure(Array(String(repeating: "{\"a\":", count: 10_000).utf8), .malformed, "nested deeper")
        try expectFailure(Array("[]".utf8), .malformed, "expected an object")
        for (field, value, fragment) in [
            ("payload", "not base64!", "dsseEnvelope.payload: not valid base64"),
            ("payload", "ewogIC", "dsseEnvelope.payload: not valid base64"),
            ("payload", "", "dsseEnvelope.payload: empty"),
        ] {
            var bundle = try bundleObject("model.sig")
            var envelope = bundle["dsseEnvelope"] as! [String: Any]
            envelope[field] = value
            bundle["dsseEnvelope"] = envelope
            try expectFailure(try serialize(bundle), .malformed, fragment)
        }
        var bundle = try bundleObject("model.sig")
        var envelope = bundle["dsseEnvelope"] as! [String: Any]
        envelope["signatures"] = [["sig": "MEUCIDN6d1ckwT0bJup=", "keyid": ""]]
        bundle["dsseEnvelope"] = envelope
        try expectFailure(try serialize(bundle), .malformed, "signatures[0].sig: not valid base64")
        bundle = try bundleObject("model.sig")
        bundle["extra"] = 1
        try expectFailure(try serialize(bundle), .malformed, "unknown field")
        bundle = try bundleObject("model.sig")
        bundle["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
        try expectFailure(try serialize(bundle), .unsupported, "media type")
        // A signed payload that is not JSON is malformed, not a bad signature.
        try expectFailure(try resigned("not json"), .malformed, "signed payload is not valid JSON")
    }

    @Test("keys that are not EC public keys on a supported curve are refused clearly")
    func badKeys() throws {
        let good = try fixture("model.sig")
        func keyFailure(_ pem: [UInt8], _ code: ProvenanceError.Code, _ fragment: String) {
            #expect(throws: ProvenanceError.self) { try ModelSigning.verify(bundle: good, publicKeyPEM: pem) }
            do {
                _ = try ModelSigning.fingerprint(publicKeyPEM: pem)
                Issue.record("fingerprinted a bad key")
            } catch {
                #expect(error.kind == code, "\(error.message)")
                #expect(error.message.contains(fragment), "\(error.message)")
            }
        }
        keyFailure(try fixture("rsa.pub"), .unsupported, "RSA keys are not supported")
        keyFailure(try fixture("key.pem"), .malformed, "private key")
        keyFailure(try fixture("cert.pem"), .unsupported, "certificate")
        keyFailure([], .malformed, "not a PEM file")
        keyFailure(
            Array("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n".utf8), .malformed, "not valid base64")
        keyFailure(Array("-----BEGIN PUBLIC KEY-----\nMFkwEwYH\n".utf8), .malformed, "no -----END PUBLIC KEY-----")
        // secp256k1: an EC key, on a curve model-signing does not accept.
        keyFailure(try fixture("secp256k1.pub"), .unsupported, "1.3.132.0.10 (secp256k1) is not supported")
        // A P-256 SPKI whose point was changed: not on the curve.
        var pub = String(decoding: try fixture("key.pub"), as: UTF8.self)
        pub = pub.replacingOccurrences(of: "DVCFbasUi", with: "DVCFbasUj")
        #expect(Array(pub.utf8) != (try fixture("key.pub")))
        keyFailure(Array(pub.utf8), .malformed, "point")
    }

    @Test("strict base64")
    func base64() {
        #expect(Base64.decode(Array("QQ==".utf8)) == [0x41])
        #expect(Base64.decode(Array("QUI=".utf8)) == [0x41, 0x42])
        #expect(Base64.decode(Array("QUJD".utf8)) == [0x41, 0x42, 0x43])
        #expect(Base64.decode([]) == [])
        for bad in ["QR==", "QUJ=", "QQ=", "QQ", "Q===", "QQ==QUJD", "QU=D", "Q Q=", "QUJD\n", "QU-_", "=QQQ"] {
            #expect(Base64.decode(Array(bad.utf8)) == nil, "\(bad)")
        }
        var bytes: [UInt8] = []
        for n in 0..<300 {
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
            #expect(Base64.encode(bytes) == Array(Data(bytes).base64EncodedString().utf8))
            bytes.append(UInt8(truncatingIfNeeded: n &* 131 &+ 7))
        }
    }

    @Test("Python's bytes repr, which model-signing 0.2 signed")
    func pythonRepr() {
        #expect(DSSE.pythonBytesRepr(Array("a'b".utf8)) == Array("b\"a'b\"".utf8))
        #expect(DSSE.pythonBytesRepr(Array("a'b\"".utf8)) == Array("b'a\\'b\"'".utf8))
        #expect(
            DSSE.pythonBytesRepr([0x0A, 0x09, 0x0D, 0x5C, 0x00, 0x7F, 0xFF])
                == Array("b'\\n\\t\\r\\\\\\x00\\x7f\\xff'".utf8))
    }
}
