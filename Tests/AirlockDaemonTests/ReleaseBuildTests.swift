import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The release binaries, which users run, against the debug build, which every other test runs: the optimiser once
/// turned a task-local binding into a crash of every folder request in a release airlockd only (issue 16's note).
/// `make test` builds `.build/release` before the tests (PackagingTests use it too).
@Suite("release binaries", .serialized)
struct ReleaseBuildTests {
    static let release = "\(repositoryRoot)/.build/release"

    /// Fails, naming `make build`, when the release binaries are missing. (Release binaries older than the sources
    /// can disagree with the debug build: `make test` builds both first.)
    static func requireBuilt() throws {
        for binary in ["airlock", "airlockd"] {
            try #require(
                FileManager.default.isExecutableFile(atPath: "\(release)/\(binary)"),
                "\(release)/\(binary) is missing: run `make build` first (`make test` does)")
        }
    }

    /// The generators whose files are scanned, and their arguments (bait arguments are added for those that take them).
    static let corpora: [(script: String, bait: Bool, extra: [String])] = [
        ("models.py", false, []), ("gadgets.py", false, []), ("real_pickles.py", false, []),
        ("pickle_numbers.py", false, []), ("identities.py", false, []), ("detonations.py", true, []),
        ("packed.py", true, []), ("pickles.py", true, []), ("remote_code.py", true, []), ("thieves.py", true, []),
        ("network_payloads.py", true, []), ("sandbox_aware.py", true, []), ("worlds.py", true, []),
    ]

    /// Each file's verdict and sorted rule names, from `scan --format json` (one report per line).
    static func verdicts(_ binary: String, _ paths: [String]) throws -> (status: Int32, reports: [String: String]) {
        let run = try runToEnd(binary, ["scan", "--format", "json", "--no-digest-cache", "--no-progress"] + paths)
        #expect(run.signal == nil, "\(binary) died of signal \(run.signal ?? 0): \(run.stderr.suffix(2000))")
        var reports: [String: String] = [:]
        for line in run.stdout.split(separator: "\n") {
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line.prefix(300))")
            let path = try #require((object["target"] as? [String: Any])?["path"] as? String)
            let rules = ((object["findings"] as? [[String: Any]]) ?? []).compactMap { $0["rule"] as? String }
            reports[path] = "\(object["verdict"] ?? "?") \(rules.sorted().joined(separator: ","))"
        }
        return (run.status, reports)
    }

    @Test("the release airlock judges every generated sample exactly as the debug build does")
    func staticAgreement() throws {
        try Self.requireBuilt()
        let bait = try Bait()
        var dirs: [String] = []
        defer { for dir in dirs { try? FileManager.default.removeItem(atPath: dir) } }
        for corpus in Self.corpora {
            dirs.append(try generateSamples(corpus.script, (corpus.bait ? bait.args : []) + corpus.extra))
        }
        let debug = try Self.verdicts(airlockBinary, dirs)
        let release = try Self.verdicts("\(Self.release)/airlock", dirs)
        #expect(debug.reports.count > 200, "\(debug.reports.count) reports")
        #expect(release.status == debug.status)
        for (path, judged) in debug.reports.sorted(by: { $0.key < $1.key }) {
            #expect(
                release.reports[path] == judged, "\(path): debug \(judged), release \(release.reports[path] ?? "none")")
        }
        #expect(Set(release.reports.keys) == Set(debug.reports.keys))
        try bait.checkUntouched()
    }

    @Test("a release airlockd answers file, folder and standard-input requests and a probe, and stays up")
    func releaseDaemon() throws {
        try Self.requireBuilt()
        try withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon(binary: "\(Self.release)/airlockd")
            defer { daemon.stop() }
            let cli = "\(Self.release)/airlock"
            let socket = ["AIRLOCK_SOCKET": daemon.socket]
            // A folder of many small files, the request kind that crashed: every file reported.
            let many = "\(dir)/many"
            try FileManager.default.createDirectory(atPath: many, withIntermediateDirectories: true)
            for i in 0..<300 {
                try Data([0x80, 0x02, 0x4B, UInt8(i % 256), 0x2E]).write(to: URL(fileURLWithPath: "\(many)/\(i).pkl"))
            }
            let folder = try runToEnd(cli, ["scan", "--format", "json", "--no-progress", many], environment: socket)
            #expect(folder.status == 0 && folder.signal == nil, "\(folder.stderr)\n\(daemon.log)")
            #expect(folder.stdout.split(separator: "\n").count == 300)

            let scan = try runToEnd(cli, ["scan", "--format", "json", "--no-progress", dir], environment: socket)
            #expect(scan.status == 1, "\(scan.stderr)\n\(daemon.log)")
            #expect(scan.stdout.contains("\"path\":\"\(dir)/exfil.pkl\"") && scan.stdout.contains("\"malicious\""))

            let probe = try runToEnd(cli, ["probe", "--format", "json", "\(dir)/exfil.pkl"], environment: socket)
            #expect(probe.status == 1, "\(probe.stderr)\n\(daemon.log)")
            #expect(probe.stdout.contains("\"rule\":\"dynamic.network\""), "\(probe.stdout.prefix(3000))")

            let piped = try runProgram(
                "/bin/sh", ["-c", "\"$0\" probe --format json - < \"$1\"", cli, "\(dir)/model.safetensors"],
                environment: socket)
            #expect(piped.status == 0 && piped.stdout.contains("\"clean\""), "\(piped.stdout)\(piped.stderr)")

            let status = try runToEnd(cli, ["status", "--json"], environment: socket)
            #expect(status.status == 0, "\(status.stderr)")
            #expect(daemon.process.isRunning, "the release airlockd exited: \(daemon.log)")
        }
    }
}
