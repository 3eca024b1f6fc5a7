import Foundation
import Testing
import AirlockTestSupport

/// `airlock manifest` and `airlock verify` on a Hugging Face cache snapshot: files listed by their snapshot names with
/// the blob content's hash, links that are not the cache's refused.
@Suite("Hugging Face cache: manifest and verify", .serialized)
struct HubCacheProvenanceTests {
    @Test(
        "a snapshot's manifest lists its files by snapshot name with the blobs' hashes, and verifies until a blob changes"
    )
    func snapshotRoundTrip() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let snapshot = cache.snapshot("clean-bert")
        let made = try airlock(["manifest", "-o", "\(cache.root)/m.json", snapshot])
        #expect(made.status == 0, "\(made.stderr)")
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(cache.root)/m.json")))
                as? [String: Any])
        let files = try #require(manifest["files"] as? [[String: Any]])
        #expect(
            files.compactMap { $0["path"] as? String }
                == ["config.json", "model.safetensors", "onnx/config.json", "tokenizer.json", "tokenizer_config.json"])
        // An LFS blob is named by the SHA-256 the manifest records.
        let weights = try #require(files.first { $0["path"] as? String == "model.safetensors" })
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "\(snapshot)/model.safetensors")
        #expect(weights["sha256"] as? String == String(link.split(separator: "/").last!))
        #expect(weights["format"] as? String == "safetensors")

        let verified = try airlock(["verify", "--manifest", "\(cache.root)/m.json", snapshot])
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")

        // One snapshot file named alone: its blob, under the snapshot's name.
        let single = try airlock(["manifest", "-o", "\(cache.root)/one.json", "\(snapshot)/tokenizer.json"])
        #expect(single.status == 0, "\(single.stderr)")
        let one = try airlock(["verify", "--manifest", "\(cache.root)/one.json", "\(snapshot)/tokenizer.json"])
        #expect(one.status == 0, "\(one.stdout)\(one.stderr)")

        // The blob changed after the download (and after the manifest): verify fails, a new manifest is refused.
        let blob = "\(snapshot)/../../blobs/" + String(link.split(separator: "/").last!)
        let handle = try #require(FileHandle(forWritingAtPath: blob))
        try handle.seekToEnd()
        handle.write(Data([0]))
        try handle.close()
        let after = try airlock(["verify", "--manifest", "\(cache.root)/m.json", snapshot])
        #expect(after.status != 0, "\(after.stdout)")
        let again = try airlock(["manifest", snapshot])
        #expect(again.status == 2)
        #expect(again.stderr.contains("does not match its name"), "\(again.stderr)")
    }

    @Test("links the cache never writes are refused by manifest, and a snapshot file that escapes is never followed")
    func attacksRefused() throws {
        let cache = try GeneratedHub()
        defer { cache.remove() }
        let snapshot = cache.snapshot("attacks")
        let made = try airlock(["manifest", snapshot])
        #expect(made.status == 2)
        for name in ["etc_passwd.json", "absolute.json", "other_repo.safetensors", "link_to_link.json", "detour.json"] {
            #expect(made.stderr.contains("\(name): a symbolic link to"), "\(name): \(made.stderr)")
        }
        let escape = try airlock(["manifest", "\(snapshot)/etc_passwd.json"])
        #expect(escape.status == 2)
        #expect(escape.stderr.contains("hfcache.link-escapes"), "\(escape.stderr)")
        #expect(!escape.stdout.contains("root:"))
        let relinked = try airlock(["manifest", cache.snapshot("relinked") + "/model.safetensors"])
        #expect(relinked.status == 2, "\(relinked.stdout)")
    }
}
