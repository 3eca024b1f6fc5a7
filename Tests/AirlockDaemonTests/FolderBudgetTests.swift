import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Folder requests under an entry and a time budget: what is walked is reported, the rest is recorded as not
/// examined, and the folder is never `clean` then (docs/daemon.md, "Folder budgets").
@Suite("folder budgets", .serialized)
struct FolderBudgetTests {
    /// A folder of `count` empty files `f000000`… in a tmpfs (`/dev/shm`), made fast; removed after `body`.
    static func withEmptyFiles(_ count: Int, _ body: (String) throws -> Void) throws {
        let dir = "/dev/shm/airlock-budget-\(getpid())-\(UUID().uuidString.prefix(8))"
        // rm is several times faster than FileManager on 100,000 files.
        defer { _ = try? runProgram("/bin/rm", ["-rf", "--", dir]) }
        let made = try runProgram(
            "/usr/bin/python3",
            [
                "-c",
                "import os,sys\nd=sys.argv[1]\nos.mkdir(d)\nfor i in range(int(sys.argv[2])):\n"
                    + "    os.close(os.open(os.path.join(d,'f%06d'%i),os.O_CREAT|os.O_WRONLY,0o644))",
                dir, String(count),
            ])
        try #require(made.status == 0, "\(made.stderr)")
        try body(dir)
    }

    /// The reports of a scan of `folder` through the daemon, asked with `params`.
    static func scan(_ socket: String, _ folder: String, params: [(String, JSON)] = []) throws -> [[String: Any]] {
        let fd = open(folder, O_RDONLY | O_DIRECTORY)
        try #require(fd >= 0)
        defer { close(fd) }
        let client = try DaemonClient(path: socket)
        let reply = foundation(try client.call("scan", params: [("name", .string(folder))] + params, descriptor: fd))
        return reply["reports"] as? [[String: Any]] ?? []
    }

    /// The evidence of the not-examined record, when `report` is one.
    static func notExamined(_ report: [String: Any]?) -> [String: String]? {
        let findings = report?["findings"] as? [[String: Any]] ?? []
        guard let finding = findings.first(where: { $0["rule"] as? String == "folder.not-examined" }) else {
            return nil
        }
        return finding["evidence"] as? [String: String]
    }

    /// The daemon's peak resident memory (`VmHWM`), kB.
    static func peakKB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    @Test("100,000 empty files: answered within seconds by the default budget, memory bounded, the rest not examined")
    func hundredThousandEmptyFiles() throws {
        try FolderBudgetTests.withEmptyFiles(100_000) { dir in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            let before = FolderBudgetTests.peakKB(daemon.pid)
            let start = Date()
            let run = try runCLI(["--socket", daemon.socket, "scan", "--format", "json", dir], timeout: 60)
            let seconds = Date().timeIntervalSince(start)
            let grown = FolderBudgetTests.peakKB(daemon.pid) - before
            let lines = run.stdout.split(separator: "\n")
            // Before the budget: 100,000 reports, 31 s and 190 MB more in a debug daemon.
            #expect(seconds < 20, "answered in \(seconds) s")
            #expect(grown < 100_000, "the daemon's peak grew by \(grown) kB")
            #expect(lines.count == 10_001, "\(lines.count) reports")
            #expect(run.status == 2, "exit \(run.status): a folder not examined whole is not clean")
            let last = lines.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) } as? [String: Any]
            #expect(last?["verdict"] as? String == "error")
            let evidence = FolderBudgetTests.notExamined(last)
            #expect(evidence?["budget"] == "entries")
            #expect(evidence?["examined"] == "10000")
            #expect(evidence?["notExamined"] == "90000")
            #expect(evidence?["notExamined1"] == "f010000")
        }
    }

    @Test("an entry budget of 5 examines 5 entries and records the other 7 as not examined; the CLI says so")
    func entryBudget() throws {
        try FolderBudgetTests.withEmptyFiles(12) { dir in
            let daemon = try TestDaemon(["--folder-max-entries", "5"])
            defer { daemon.stop() }
            let reports = try FolderBudgetTests.scan(daemon.socket, dir)
            #expect(reports.count == 6)
            let paths = reports.compactMap { ($0["target"] as? [String: Any])?["path"] as? String }
            #expect(paths.prefix(5) == ArraySlice((0..<5).map { "\(dir)/f00000\($0)" }), "\(paths)")
            let evidence = FolderBudgetTests.notExamined(reports.last)
            #expect(evidence?["notExamined"] == "7")
            #expect(evidence?["notExamined1"] == "f000005")
            #expect(evidence?["notExamined7"] == "f000011")
            #expect(reports.last?["verdict"] as? String == "error")
            #expect(reports.dropLast().allSatisfy { $0["verdict"] as? String == "clean" })
            let text = try runCLI(["--socket", daemon.socket, "scan", dir])
            #expect(text.status == 2)
            #expect(text.stdout.contains("7 entries of the folder were not examined"), "\(text.stdout)")
        }
    }

    @Test("--max-entries locally and through the daemon: the same reports, a record the report schema accepts")
    func cliMaxEntries() throws {
        try FolderBudgetTests.withEmptyFiles(12) { dir in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            let local = try runCLI(["scan", "--format", "json", "--max-entries", "4", dir])
            let remote = try runCLI(["--socket", daemon.socket, "scan", "--format", "json", "--max-entries", "4", dir])
            #expect(local.status == 2 && remote.status == 2, "\(local.stderr) \(remote.stderr)")
            for run in [local, remote] {
                let lines = run.stdout.split(separator: "\n")
                #expect(lines.count == 5)
                let last = lines.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }
                let evidence = FolderBudgetTests.notExamined(last as? [String: Any])
                #expect(evidence?["notExamined"] == "8" && evidence?["notExamined1"] == "f000004", "\(run.stdout)")
            }
            let file = "\(NSTemporaryDirectory())/airlock-budget-\(getpid()).jsonl"
            defer { try? FileManager.default.removeItem(atPath: file) }
            try remote.stdout.write(toFile: file, atomically: true, encoding: .utf8)
            let checked = try SchemaValidation.python([
                "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", file,
            ])
            #expect(checked.status == 0, "\(checked.output)")
            let refused = try runCLI(["scan", "--max-entries", "0", dir])
            #expect(refused.status == 64)
        }
    }

    @Test("a request lowers the budget but cannot raise it; a budget that is not a number is refused")
    func requestLowersOnly() throws {
        try FolderBudgetTests.withEmptyFiles(12) { dir in
            let daemon = try TestDaemon(["--folder-max-entries", "8"])
            defer { daemon.stop() }
            let lowered = try FolderBudgetTests.scan(daemon.socket, dir, params: [("maxEntries", .int(3))])
            #expect(lowered.count == 4)
            #expect(FolderBudgetTests.notExamined(lowered.last)?["notExamined"] == "9")
            let raised = try FolderBudgetTests.scan(daemon.socket, dir, params: [("maxEntries", .int(1000))])
            #expect(raised.count == 9)
            #expect(FolderBudgetTests.notExamined(raised.last)?["limit"] == "8")
            let whole = try FolderBudgetTests.scan(daemon.socket, dir, params: [("maxEntries", .int(12))])
            #expect(whole.count == 9, "the daemon's 8 still apply")
            let fd = open(dir, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            let client = try DaemonClient(path: daemon.socket)
            for bad: JSON in [.string("all"), .int(0), .int(-1)] {
                #expect(throws: ClientError.self) {
                    _ = try client.call("scan", params: [("maxEntries", bad)], descriptor: fd)
                }
            }
            #expect(throws: ClientError.self) {
                _ = try client.call("scan", params: [("folderBudget", .int(0))], descriptor: fd)
            }
        }
    }

    @Test("a time budget stops the walk of a folder too large for it; a request lowers it but cannot raise it")
    func timeBudget() throws {
        try FolderBudgetTests.withEmptyFiles(40_000) { dir in
            do {
                let daemon = try TestDaemon(["--folder-max-entries", "100000"])
                defer { daemon.stop() }
                let start = Date()
                let reports = try FolderBudgetTests.scan(daemon.socket, dir, params: [("folderBudget", .double(0.3))])
                let seconds = Date().timeIntervalSince(start)
                let evidence = FolderBudgetTests.notExamined(reports.last)
                #expect(evidence?["budget"] == "time", "\(evidence ?? [:])")
                #expect(evidence?["limit"] == "0.3")
                #expect(reports.count < 40_000)
                #expect(Int(evidence?["examined"] ?? "") == reports.count - 1)
                #expect(seconds < 15, "answered in \(seconds) s")
            }
            let daemon = try TestDaemon(["--folder-max-entries", "100000", "--folder-budget", "0.3"])
            defer { daemon.stop() }
            let capped = try FolderBudgetTests.scan(daemon.socket, dir, params: [("folderBudget", .double(1000))])
            let evidence = FolderBudgetTests.notExamined(capped.last)
            #expect(evidence?["budget"] == "time", "\(evidence ?? [:])")
            #expect(evidence?["limit"] == "0.3")
        }
    }
}
