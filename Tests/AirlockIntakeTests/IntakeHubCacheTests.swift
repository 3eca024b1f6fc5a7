import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A Hugging Face cache arriving at the intake: a whole repository is examined through its blobs, within the copy; a
/// snapshot folder arriving without its repository holds only links, and none is followed out of the arrival.
@Suite("Intake: Hugging Face cache arrivals", .serialized)
struct IntakeHubCacheTests {
    /// Copies `source` into incoming/ as `name` with its links as links (`cp -a`), marked complete.
    static func drop(_ source: String, as name: String, into incoming: String) throws {
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        let hidden = incoming + "/.part-" + name
        let copy = try runToEnd("/bin/cp", ["-a", source, hidden])
        try #require(copy.status == 0, "\(copy.stderr)")
        _ = FileManager.default.createFile(atPath: hidden + "/.ready", contents: nil)
        #expect(rename(hidden, incoming + "/" + name) == 0)
    }

    @Test(
        "a whole repository is approved, its snapshot files examined through their blobs; a lone snapshot is not followed"
    )
    func repositoryAndLoneSnapshot() throws {
        let bait = try Bait()
        let cache = try GeneratedHub(canary: bait.canary)
        defer { cache.remove() }
        let root = try makeHostDirectory()
        let policy = root + ".policy.json"
        try #"{"settleSeconds": 0}"#.write(toFile: policy, atomically: true, encoding: .utf8)
        let incoming = root + "/incoming"
        try IntakeHubCacheTests.drop(
            cache.hub + "/models--acme--clean-bert", as: "models--acme--clean-bert", into: incoming)
        try IntakeHubCacheTests.drop(cache.snapshot("evil-bert"), as: "lone-snapshot", into: incoming)
        let run = try runToEnd(airlockBinary, ["intake", "--root", root, "--policy", policy, "--once"])
        #expect(run.status == 1, "the lone snapshot is rejected: \(run.stdout) \(run.stderr)")

        let approved = "\(root)/approved/models--acme--clean-bert"
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: approved + "/report.json")))
                as? [String: Any])
        let reports = try #require(report["reports"] as? [[String: Any]])
        let snapshotReports = reports.filter {
            (($0["target"] as? [String: Any])?["path"] as? String)?.contains("/snapshots/") == true
        }
        #expect(snapshotReports.count == 9)
        for r in snapshotReports {
            let target = try #require(r["target"] as? [String: Any])
            #expect(r["verdict"] as? String == "clean", "\(target["path"] ?? "")")
            let origin = try #require(target["huggingface"] as? [String: Any])
            #expect(origin["verified"] as? Bool == true)
            #expect(origin["repo"] as? String == "acme/clean-bert")
        }

        let rejected = "\(root)/rejected/lone-snapshot"
        let lone = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: rejected + "/report.json")))
                as? [String: Any])
        let loneReports = try #require(lone["reports"] as? [[String: Any]])
        let rules = loneReports.flatMap {
            ($0["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        }
        // Its links lead out of the arrival: reported, never followed, so the pickle's blob was never read.
        #expect(rules.contains("folder.symlink"), "\(rules)")
        #expect(!rules.contains("pickle.dangerous-import"), "\(rules)")
        #expect(!loneReports.contains { ($0["target"] as? [String: Any])?["huggingface"] != nil })
        try bait.checkUntouched()
    }
}
