import Foundation
import Testing
import AirlockTestSupport

/// `airlock probe --worlds N --world-budget SECONDS`, as users run it: the option's bounds, the text and JSON of a
/// probe in several worlds, locally and through airlockd.
@Suite("airlock probe --worlds", .serialized)
struct WorldsCLITests {
    @Test(
        "--worlds outside 1…5 and a --world-budget that is not a positive number are usage errors that say so",
        arguments: [
            (["--worlds", "0"], "--worlds must be at least 1 and at most 5"), (["--worlds", "-1"], "--worlds"),
            (["--worlds", "6"], "--worlds must be at least 1 and at most 5"),
            (["--worlds", "99999999999999999999"], "--worlds"), (["--worlds", "two"], "--worlds"),
            (["--world-budget", "0"], "--world-budget must be more than 0"),
            (["--world-budget", "-5"], "--world-budget"), (["--world-budget", "nan"], "--world-budget"),
        ])
    func badValues(arguments: [String], message: String) throws {
        let run = try runCLI(["probe"] + arguments + ["/dev/null"])
        #expect(run.status == 64, "\(arguments): \(run.status) \(run.stderr)")
        #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
    }

    @Test("probe --help documents --worlds and --world-budget")
    func help() throws {
        let run = try runCLI(["probe", "--help"])
        #expect(run.status == 0)
        #expect(run.stdout.contains("--worlds <N>") && run.stdout.contains("--world-budget <SECONDS>"))
    }

    @Test("a GPU-gated payload: text names the world of the dynamic finding, JSON validates against the schema")
    func textAndJSON() throws {
        try withSamples("worlds.py") { dir, _ in
            let text = try runCLI(["probe", "--worlds", "3", "\(dir)/gpu_gated.pkl"])
            #expect(text.status == 1)
            #expect(text.stdout.contains("dynamic.exec  (world gpu-next-month)"), "\(text.stdout)")
            #expect(text.stdout.contains("next-year not run (stopped-early)"), "\(text.stdout)")
            let json = try runCLI([
                "probe", "--format", "json", "--worlds", "3", "\(dir)/gpu_gated.pkl", "\(dir)/fails.pkl",
                "\(dir)/benign.pkl",
            ])
            #expect(json.stdout.split(separator: "\n").count == 3, "\(json.stderr)")
            let budget = try runCLI(["probe", "--format", "json", "--world-budget", "0.001", "\(dir)/benign.pkl"])
            #expect(budget.status == 0, "\(budget.stderr)")
            #expect(budget.stdout.contains(#""cutByBudget":true"#), "\(budget.stdout)")
            let sarif = try runCLI(["probe", "--format", "sarif", "--worlds", "2", "\(dir)/gpu_gated.pkl"])
            #expect(sarif.stdout.contains("gpu-next-month"), "SARIF carries the world of the dynamic finding")
            let file = NSTemporaryDirectory() + "airlock-worlds-\(UUID().uuidString.prefix(8)).jsonl"
            defer { try? FileManager.default.removeItem(atPath: file) }
            try (json.stdout + budget.stdout).write(toFile: file, atomically: true, encoding: .utf8)
            let validation = try SchemaValidation.python([
                "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", file,
            ])
            #expect(validation.status == 0, "\(validation.output)")
        }
    }

    @Test("through airlockd: --worlds reaches the daemon, which detonates in each world and names it")
    func throughDaemon() throws {
        try withSamples("worlds.py") { dir, _ in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            let run = try runCLI(
                ["probe", "--socket", daemon.socket, "--format", "json", "--worlds", "2", "\(dir)/gpu_gated.pkl"])
            #expect(run.status == 1, "\(run.stderr)")
            #expect(run.stdout.contains(#""worlds":"gpu-next-month""#), "\(run.stdout)")
            let one = try runCLI(
                ["probe", "--socket", daemon.socket, "--format", "json", "--worlds", "1", "\(dir)/gpu_gated.pkl"])
            #expect(!one.stdout.contains("gpu-next-month"), "\(one.stdout)")
        }
    }
}
