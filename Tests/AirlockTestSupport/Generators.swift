import Foundation

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

    /// Throws when a payload's host side effect happened: the canary file appeared, or the listener saw a
    /// connection. (This target is built by `make build` too, where the testing library is not available: it throws
    /// rather than records, and a test that lets the error through fails.)
    package func checkUntouched() throws(TestSupportError) {
        var problems: [String] = []
        if FileManager.default.fileExists(atPath: canary) { problems.append("the canary file appeared on the host") }
        if listener.sawConnection() { problems.append("the loopback listener saw a connection") }
        if !problems.isEmpty { throw TestSupportError(problems.joined(separator: "; ")) }
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
    guard p.terminationStatus == 0 else { throw TestSupportError("\(script) failed (exit \(p.terminationStatus))") }
    return out
}

/// Runs `body` with a fresh bait and the samples `script` wrote against it, then removes them and checks that no
/// payload reached the host.
package func withSamples(_ script: String, _ body: (_ dir: String, _ bait: Bait) throws -> Void) throws {
    let bait = try Bait()
    let dir = try generateSamples(script, bait.args)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try body(dir, bait)
    try bait.checkUntouched()
}

/// A test helper's failure, thrown so that the test calling it fails with this message.
package struct TestSupportError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
