import Foundation

/// A Hugging Face cache built as huggingface_hub builds one (`Tests/Generators/hf_cache.py`) in a fresh folder:
/// `root/hub`, and `root/expectations.json` (what `airlock scan root/hub` must say of each path).
package struct GeneratedHub {
    package let root: String
    package var hub: String { root + "/hub" }
    /// The revisions the generator writes (`refs/main` is `r1`, `refs/pr/1` is `r2`).
    package static let r1 = "1f0c2a3b4d5e6f708192a3b4c5d6e7f801234567"
    package static let r2 = "9a8b7c6d5e4f30211203f4e5d6c7b8a990817263"

    /// Generates the cache; payloads touch `canary` (and connect to `port`) when run.
    package init(canary: String? = nil, port: UInt16? = nil) throws {
        root = NSTemporaryDirectory() + "airlock-hf-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments =
            ["\(repositoryRoot)/Tests/Generators/hf_cache.py", root + "/hub"] + (canary.map { ["--canary", $0] } ?? [])
            + (port.map { ["--port", String($0)] } ?? [])
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw POSIXError(.EIO) }
    }

    /// The snapshot folder of `repo` (`clean-bert`, `evil-bert`, `attacks`, `remote-code`, `relinked`) at `revision`.
    package func snapshot(_ repo: String, _ revision: String = GeneratedHub.r1) -> String {
        "\(hub)/models--acme--\(repo)/snapshots/\(revision)"
    }

    /// Removes the folder.
    package func remove() { try? FileManager.default.removeItem(atPath: root) }
}
