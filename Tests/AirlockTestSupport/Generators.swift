import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

// Sample models come from the generators under Tests/Generators (never downloaded); their payloads are harmless and
// aimed at a bait the test owns.

/// The test's canary (outside /tmp: the sandbox's /tmp is its own) and loopback listener.
package final class Bait {
    package let dir: String
    package let canary: String
    package let listener: LoopbackListener

    package init() throws {
        dir = "/var/tmp/airlock-canary-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o777)  // only the sandbox, not permissions, may keep a payload out
        canary = "\(dir)/airlock-canary"
        listener = try LoopbackListener()
    }

    package var args: [String] { ["--canary", canary, "--port", String(listener.port)] }

    /// The payloads' host side effects never happened.
    package func checkUntouched() {
        #expect(!FileManager.default.fileExists(atPath: canary), "the canary file appeared on the host")
        #expect(!listener.sawConnection(), "the loopback listener saw a connection")
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

/// Runs the generator `script` (Tests/Generators) into a fresh temporary folder with `extra` arguments; returns the
/// folder, which the caller removes.
package func generateSamples(_ script: String, _ extra: [String]) throws -> String {
    let out = NSTemporaryDirectory() + "airlock-probe-\(UUID().uuidString.prefix(8))"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    p.arguments = ["\(repositoryRoot)/Tests/Generators/\(script)", out] + extra
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0, "\(script) failed")
    return out
}

/// Runs `body` with a fresh bait and the samples `script` wrote against it, then removes them and checks that no
/// payload reached the host.
package func withSamples(_ script: String, _ body: (_ dir: String, _ bait: Bait) throws -> Void) throws {
    let bait = try Bait()
    let dir = try generateSamples(script, bait.args)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try body(dir, bait)
    bait.checkUntouched()
}
