import AirlockTestSupport
import Foundation
import Testing

/// `airlock profile export` and `import` as a user runs them: the built binary, its files and exit statuses.
@Suite("airlock profile")
struct OCIProfileCLITests {
    static func temporaryFolder() throws -> String {
        let path = NSTemporaryDirectory() + "oci-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("export --format oci writes the document, lists the degraded calls on stderr and in --explain")
    func export() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try runCLI([
            "profile", "export", "--format", "oci", "-o", "\(dir)/seccomp.json", "--explain", "\(dir)/explain.json",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.isEmpty)
        #expect(run.stderr.contains("notified calls have no exact OCI form") && run.stderr.contains("openat"))
        let document = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/seccomp.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: document) as? [String: Any])
        #expect(OCISpec.problems(object) == [])
        let explain = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/explain.json"))
        let explanation = try #require(try JSONSerialization.jsonObject(with: explain) as? [String: Any])
        #expect((explanation["degraded"] as? [Any])?.isEmpty == false)
        // Without -o the same document goes to stdout; --quiet keeps stderr empty.
        let plain = try runCLI(["profile", "export", "--format", "oci", "--quiet"])
        #expect(plain.status == 0 && plain.stderr.isEmpty && Data(plain.stdout.utf8) == document)
    }

    @Test(
        "usage errors exit 64; a profile or name that cannot be exported exits 1 naming it",
        arguments: [
            (["profile", "export"], 64, "--format"),
            (["profile", "export", "--format", "docker"], 64, "docker"),
            (["profile", "export", "--format", "oci", "--degrade", "maybe"], 64, "maybe"),
            (["profile", "export", "--format", "oci", "--allow", "read"], 1, "'read' is not a degraded call"),
            (["profile", "export", "--format", "oci", "--profile", "nosuch"], 1, "no profile named 'nosuch'"),
            (["profile", "import", "--mounts-from", "default"], 64, "--oci"),
            (["profile", "import", "--oci", "/nonexistent/x.json"], 1, "/nonexistent/x.json"),
        ])
    func errors(arguments: [String], status: Int32, message: String) throws {
        let run = try runCLI(arguments)
        #expect(run.status == status, "\(run.stdout)\(run.stderr)")
        #expect(run.stderr.contains(message), "\(run.stderr)")
    }

    @Test("export → import: airlock exec runs with the imported profile, which refuses what the OCI file refuses")
    func importedProfileRuns() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let export = try runCLI([
            "profile", "export", "--format", "oci", "--degrade", "allow", "--quiet", "-o", "\(dir)/oci.json",
        ])
        #expect(export.status == 0, "\(export.stderr)")
        let imported = try runCLI([
            "profile", "import", "--oci", "\(dir)/oci.json", "--mounts-from", "default", "-o", "\(dir)/imported.json",
        ])
        #expect(imported.status == 0, "\(imported.stderr)")
        let code = """
            import socket, os
            try:
                socket.socket(17, socket.SOCK_RAW)
                print("packet socket made")
            except OSError as e:
                print("packet", e.errno)
            try:
                os.setuid(0)
                print("setuid done")
            except OSError as e:
                print("setuid", e.errno)
            """
        let run = try runCLI([
            "exec", "--profile", "\(dir)/imported.json", "--format", "json", "--", "python3", "-c", code,
        ])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(object["stdout"] as? String == "packet 97\nsetuid 1\n")
        // Refusals still reach the trace (recordRefused), named by the imported rule.
        let trace = object["trace"] as? [[String: Any]] ?? []
        #expect(
            trace.contains {
                $0["syscall"] as? String == "socket" && ($0["rule"] as? String)?.hasPrefix("syscalls[") == true
            })
        // A broken OCI file: exit 1, the field named.
        try Data(
            #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["bogus"], "action": "SCMP_ACT_ERRNO"}]}"#.utf8
        )
        .write(to: URL(fileURLWithPath: "\(dir)/bad.json"))
        let bad = try runCLI(["profile", "import", "--oci", "\(dir)/bad.json", "-o", "\(dir)/out.json"])
        #expect(
            bad.status == 1 && bad.stderr.contains("syscalls[0].names: unknown system call 'bogus'"), "\(bad.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/out.json"))
    }
}
