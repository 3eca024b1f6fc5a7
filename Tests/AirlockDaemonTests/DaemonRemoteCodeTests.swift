import Foundation
import Testing
import AirlockTestSupport

/// Repositories with remote code through airlockd: the folder a client passes is walked with the client's identity,
/// each repository detonated once with the daemon's, and the verdicts are the ones `airlock probe` gives here.
@Suite("airlockd: repositories with remote code", .serialized)
struct DaemonRemoteCodeTests {
    @Test("a benign and a malicious repository get the same verdicts through airlockd as here, with dynamic evidence")
    func sameAsLocal() throws {
        try withSamples("remote_code.py") { dir, _ in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            for (repo, verdict) in [("benign", "clean"), ("init_payload", "malicious")] {
                let folder = "\(dir)/\(repo)"
                let remote = try runCLI(["--socket", daemon.socket, "probe", "--format", "json", folder])
                let local = try runCLI(["probe", "--format", "json", folder])
                let remoteVerdicts = DaemonTests.verdicts(remote.stdout)
                let localVerdicts = DaemonTests.verdicts(local.stdout)
                #expect(!remoteVerdicts.isEmpty, "\(repo): \(remote.stderr)")
                #expect(remoteVerdicts == localVerdicts, "\(repo): daemon \(remoteVerdicts), here \(localVerdicts)")
                #expect(
                    remoteVerdicts["\(folder)/config.json"]?.hasPrefix(verdict) == true, "\(repo): \(remoteVerdicts)")
                // The config's report carries the repository's detonation.
                let config = remote.stdout.split(separator: "\n").first { $0.contains("\"\(folder)/config.json\"") }
                #expect(config?.contains("hf-remote-code") == true, "\(repo): no detonation on config.json")
                if verdict == "malicious" { #expect(config?.contains("\"dynamic.exec\"") == true) }
            }
        }
    }
}
