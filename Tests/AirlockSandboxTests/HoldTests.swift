import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Held sandboxes (`SandboxRequest.hold`, docs/sandbox.md "Warm start"): the idle bound until the release, the work's
/// own deadline from the release on.
@Suite("Held sandboxes")
struct HoldTests {
    /// Runs `argv` held, releasing it after `releaseAfter` seconds (never when nil) with `release`.
    static func run(
        _ argv: [String], idle: Double, timeout: Double, releaseAfter: Double?,
        release: SandboxHold.Release = SandboxHold.Release()
    ) throws -> (SandboxResult, Double) {
        let hold = try SandboxHold(idleSeconds: idle)
        if let releaseAfter {
            let thread = Thread {
                Thread.sleep(forTimeInterval: releaseAfter)
                _ = hold.release(release)
            }
            thread.start()
        }
        let start = Date()
        let result = try Sandbox.run(
            SandboxRequest(argv: argv, profile: defaultProfile(), timeoutSeconds: timeout, hold: hold))
        #expect(hold.hasEnded)
        #expect(!hold.release(), "nothing can be released once the sandbox is over")
        return (result, Date().timeIntervalSince(start))
    }

    @Test("a held sandbox's deadline counts from the release: it runs past the timeout counted from its start")
    func deadlineFromRelease() throws {
        // Timeout 1 s, released after 1 s: the command ends at 1.8 s, before release + 1 s = 2 s.
        let (result, seconds) = try HoldTests.run(
            ["/bin/sleep", "1.8"], idle: 30, timeout: 1.0, releaseAfter: 1.0,
            release: SandboxHold.Release(timeoutSeconds: 1.5))
        #expect(!result.timedOut && result.exitCode == 0, "\(result.signal ?? "") after \(seconds) s")
        let released = Double(result.releasedNs ?? 0) / 1e9
        #expect(released > 0.9 && released < 1.6, "released at \(released) s")
    }

    @Test("the work's deadline still holds after the release")
    func deadlineAfterRelease() throws {
        let (result, seconds) = try HoldTests.run(
            ["/bin/sleep", "30"], idle: 30, timeout: 1.0, releaseAfter: 0.5)
        #expect(result.timedOut && result.releasedNs != nil)
        #expect(seconds > 1.3 && seconds < 4, "killed \(seconds) s after the start (release at 0.5 s + 1 s)")
    }

    @Test("a sandbox never released ends at its idle bound, and one discarded at once")
    func idleAndDiscard() throws {
        let (idle, seconds) = try HoldTests.run(["/bin/sleep", "30"], idle: 1.0, timeout: 20, releaseAfter: nil)
        #expect(idle.timedOut && idle.releasedNs == nil)
        #expect(seconds < 4, "the idle bound (1 s), not the timeout (20 s): \(seconds) s")

        let hold = try SandboxHold(idleSeconds: 30)
        let thread = Thread {
            Thread.sleep(forTimeInterval: 0.5)
            hold.discard()
        }
        thread.start()
        let start = Date()
        let discarded = try Sandbox.run(
            SandboxRequest(argv: ["/bin/sleep", "30"], profile: defaultProfile(), hold: hold))
        #expect(!discarded.timedOut && discarded.releasedNs == nil && discarded.signal == "SIGKILL")
        #expect(Date().timeIntervalSince(start) < 4)
    }
}
