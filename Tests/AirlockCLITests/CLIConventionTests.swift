import Foundation
import Testing
import AirlockTestSupport

/// CLI conventions (issue 17): `exec`'s `--`, argument errors, `-` as standard input, help that names docs that
/// exist, exec's trace summary and `make demo`'s recipe.
@Suite("CLI conventions")
struct CLIConventionTests {
    // MARK: Argument errors

    /// Every numeric option of every command, with values outside its rule: a negative number is taken as the value
    /// (never "Missing value"), and the error states the rule. Exit status 64.
    @Test(
        "numeric options out of range, NaN, infinite, huge or not numbers are usage errors stating the rule",
        arguments: [
            (["exec", "--timeout", "-1", "--", "/bin/true"], "--timeout must be more than 0 and at most 86400"),
            (["exec", "--timeout", "0", "--", "/bin/true"], "--timeout must be more than 0 and at most 86400"),
            (["exec", "--timeout", "nan", "--", "/bin/true"], "--timeout must be more than 0"),
            (["exec", "--timeout=inf", "--", "/bin/true"], "--timeout must be more than 0"),
            (["exec", "--timeout", "1e999", "--", "/bin/true"], "--timeout must be more than 0"),
            (["exec", "--timeout", "86401", "--", "/bin/true"], "at most 86400 seconds, not 86401"),
            (["probe", "--timeout", "-1", "x"], "--timeout must be more than 0 and at most 86400"),
            (["probe", "--timeout", "0", "x"], "--timeout must be more than 0"),
            (["probe", "--worlds", "-1", "x"], "--worlds must be at least 1 and at most 5, not -1"),
            (["probe", "--worlds", "0", "x"], "--worlds must be at least 1"),
            (["probe", "--world-budget", "-5", "x"], "--world-budget must be more than 0"),
            (["probe", "--max-entries", "-1", "x"], "--max-entries must be at least 1"),
            (["scan", "--max-entries", "0", "x"], "--max-entries must be at least 1"),
            (["scan", "--folder-budget", "-1", "x"], "--folder-budget must be more than 0"),
            (["scan", "--folder-budget", "nan", "x"], "--folder-budget must be more than 0"),
            (["manifest", "--threads", "-1", "x"], "--threads must be at least 1 and at most 1024, not -1"),
            (["manifest", "--threads", "0", "x"], "--threads must be at least 1"),
            (["verify", "--manifest", "m", "--threads", "-2", "x"], "--threads must be at least 1"),
            (
                ["intake", "--root", "/nonexistent", "--once", "--lease-seconds", "-5"],
                "--lease-seconds must be at least 1"
            ),
            (
                ["intake", "--root", "/nonexistent", "--once", "--lease-seconds", "0"],
                "--lease-seconds must be at least 1"
            ),
        ])
    func numericRules(arguments: [String], message: String) throws {
        let run = try runCLI(arguments)
        #expect(run.status == 64, "\(arguments): \(run.stderr)")
        #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        #expect(!run.stderr.contains("Missing value"), "\(arguments): \(run.stderr)")
    }

    @Test(
        "values that are not numbers or do not fit are usage errors, never a crash",
        arguments: [
            ["exec", "--timeout", "soon", "--", "/bin/true"], ["probe", "--worlds", "99999999999999999999999", "x"],
            ["probe", "--worlds", "1.5", "x"], ["manifest", "--threads", "-", "x"], ["scan", "--max-entries", "", "x"],
        ])
    func notNumbers(arguments: [String]) throws {
        let run = try runCLI(arguments)
        #expect(run.status == 64, "\(arguments): \(run.stderr)")
        #expect(run.stderr.contains("invalid") || run.stderr.contains("must be"), "\(arguments): \(run.stderr)")
    }

    /// airlockd's numeric flags: the same class, checked before any configuration is read (usage error, 64).
    @Test(
        "airlockd's numeric flags: negative, zero, NaN and huge values are usage errors stating the rule",
        arguments: [
            (["--max-concurrent", "-1"], "--max-concurrent must be at least 1 and at most 1024, not -1"),
            (["--max-concurrent", "0"], "--max-concurrent must be at least 1"),
            (["--queue", "-1"], "--queue must be at least 0 and at most 100000"),
            (["--folder-max-entries", "0"], "--folder-max-entries must be at least 1"),
            (["--folder-budget", "-3"], "--folder-budget must be more than 0 and at most 86400"),
            (["--folder-budget", "nan"], "--folder-budget must be more than 0"),
            (["--static-workers", "-1"], "--static-workers must be at least 1 and at most 64"),
            (["--queue-per-uid", "0"], "--queue-per-uid must be at least 1"),
            (["--max-connections-per-uid", "-7"], "--max-connections-per-uid must be at least 1"),
            (["--allow-uid", "-1"], "invalid"),
        ])
    func daemonFlags(arguments: [String], message: String) throws {
        let run = try runProgram(airlockdBinary, ["--socket", "/nonexistent/airlockd.sock"] + arguments)
        #expect(run.status == 64, "\(arguments): \(run.stderr)")
        #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        #expect(!run.stderr.contains("Missing value"), "\(arguments): \(run.stderr)")
    }

    @Test("a value within the rule still works: exec --timeout 0.5")
    func withinRule() throws {
        let run = try runCLI(["exec", "--timeout", "0.5", "--", "/bin/true"])
        #expect(run.status == 0, "\(run.stderr)")
    }

    @Test("help on a command that does not exist, and a command that does not exist: exit 64")
    func unknownCommands() throws {
        for arguments in [["help", "nosuch"], ["nosuch"], ["help", "exec", "nosuch"]] {
            let run = try runCLI(arguments)
            #expect(run.status == 64, "\(arguments): \(run.stdout)\(run.stderr)")
            #expect(run.stderr.contains("nosuch"), "\(arguments): \(run.stderr)")
            #expect(!run.stdout.contains("OVERVIEW"), "\(arguments)")
        }
        for arguments in [["help"], ["help", "exec"], ["help", "probe"], ["help", "help"]] {
            let run = try runCLI(arguments)
            #expect(run.status == 0 && run.stdout.contains("OVERVIEW"), "\(arguments): \(run.stderr)")
        }
    }

    @Test("status --json --prometheus is a usage error, not one silently picked")
    func statusConflict() throws {
        let run = try runCLI(["status", "--json", "--prometheus", "--socket", "/nonexistent/airlockd.sock"])
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr.contains("--json and --prometheus"), "\(run.stderr)")
    }

    // MARK: exec and --

    @Test(
        "an unknown option before -- is a usage error naming it, never run as the command",
        arguments: [
            ["exec", "--bogus", "--", "/bin/true"], ["exec", "--timeout", "5", "--bogus", "--", "/bin/true"],
            ["exec", "--timeot", "5", "--", "/bin/true"], ["exec", "-x", "/bin/true"],
        ])
    func unknownExecOption(arguments: [String]) throws {
        let run = try runCLI(arguments)
        #expect(run.status == 64, "\(arguments): \(run.stdout)\(run.stderr)")
        let unknown = arguments.first { $0.hasPrefix("-") && !["--timeout", "--"].contains($0) } ?? ""
        #expect(run.stderr.contains("'\(unknown)'"), "\(arguments): \(run.stderr)")
        #expect(run.stderr.contains("airlock exec --help"), "\(arguments): \(run.stderr)")
        #expect(!run.stderr.contains("not found inside the sandbox"), "\(arguments)")
    }

    @Test("after --, --help is the command; without --, the first word starts the command and the rest is its")
    func commandBoundaries() throws {
        let helpCommand = try runCLI(["exec", "--", "--help"])
        #expect(helpCommand.status == 127, "\(helpCommand.stderr)")
        #expect(helpCommand.stderr.contains("command '--help' not found"), "\(helpCommand.stderr)")
        // Without --: /bin/echo's arguments look like exec's options and are the command's.
        let bare = try runCLI(["exec", "/bin/echo", "--timeout", "-1", "--bogus"])
        #expect(bare.status == 0, "\(bare.stderr)")
        #expect(bare.stdout.hasPrefix("--timeout -1 --bogus\n"), "\(bare.stdout)")
    }

    /// `Exec.Invocation(commonForm:)` (`--option value`) and ArgumentParser (`--option=value`): the same statuses and
    /// output for the new option and the new errors.
    @Test("the fast path and ArgumentParser agree on --trace and on the new errors")
    func fastPathAgrees() throws {
        let pairs: [([String], [String])] = [
            (["exec", "--trace", "full", "--", "/bin/true"], ["exec", "--trace=full", "--", "/bin/true"]),
            (["exec", "--trace", "summary", "--", "/bin/true"], ["exec", "--trace=summary", "--", "/bin/true"]),
            (["exec", "--trace", "some", "--", "/bin/true"], ["exec", "--trace=some", "--", "/bin/true"]),
            (["exec", "--timeout", "-1", "--", "/bin/true"], ["exec", "--timeout=-1", "--", "/bin/true"]),
            (["exec", "--timeout", "nan", "--", "/bin/true"], ["exec", "--timeout=nan", "--", "/bin/true"]),
            (
                ["exec", "--trace", "full", "--format", "json", "--", "/bin/true"],
                ["exec", "--trace=full", "--format=json", "--", "/bin/true"]
            ),
        ]
        let mask = { (text: String) in text.replacing(/[ ]*[0-9]+(\.[0-9]+)?/, with: " N") }
        for (short, long) in pairs {
            let a = try runCLI(short), b = try runCLI(long)
            #expect(a.status == b.status, "\(short)")
            #expect(mask(a.stdout) == mask(b.stdout), "\(short)")
            #expect(mask(a.stderr) == mask(b.stderr), "\(short)")
        }
        #expect(try runCLI(["exec", "--trace", "some", "--", "/bin/true"]).status == 64)
        // --trace shapes text output only: with --format json it is a conflict, not silently ignored.
        let conflict = try runCLI(["exec", "--trace", "full", "--format", "json", "--", "/bin/true"])
        #expect(conflict.status == 64 && conflict.stderr.contains("--trace shapes text output"), "\(conflict.stderr)")
    }

    // MARK: exec's trace summary

    @Test("exec's text output groups the trace by what was tried; --trace full lists every event")
    func traceSummary() throws {
        let script = "import os\nfor _ in range(3): os.system('id')\nopen('/etc/shadow')"
        let summary = try runCLI(["exec", "--", "python3", "-c", script])
        #expect(summary.status == 1, "\(summary.stderr)")
        #expect(!summary.stdout.contains("SEQ"), "\(summary.stdout)")
        let execLines = summary.stdout.split(separator: "\n").filter { $0.contains("execve") && $0.contains("refused") }
        #expect(execLines.count == 1, "\(summary.stdout)")
        #expect(execLines.first?.contains("3 × execve") == true, "\(summary.stdout)")
        #expect(execLines.first?.contains("sh -c id") == true, "\(summary.stdout)")
        #expect(summary.stdout.contains("denied EACCES") && summary.stdout.contains("/etc/shadow"))
        #expect(summary.stdout.contains("--trace full lists each"))
        #expect(summary.stdout.contains("exit code 1"))

        let full = try runCLI(["exec", "--trace", "full", "--", "python3", "-c", script])
        #expect(full.status == 1)
        #expect(full.stdout.contains("SEQ"))
        let fullExec = full.stdout.split(separator: "\n").filter { $0.contains("execve") && $0.contains("denied") }
        #expect(fullExec.count == 3, "\(full.stdout)")
    }

    @Test("the escape demo explains os.system's 32512")
    func escapeDemoExplains() throws {
        let run = try runCLI([
            "exec", "--timeout", "20", "--ro-bind", "\(repositoryRoot)/Tests/Payloads/escape_demo.py:/demo/escape.py",
            "--", "python3", "/demo/escape.py",
        ])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let line = run.stdout.split(separator: "\n").first { $0.contains("os.system('id')") } ?? ""
        #expect(line.contains("32512 = exit status 127 << 8"), "\(line)")
        #expect(line.contains("refused to execute it") || line.contains("no /bin/sh"), "\(line)")
        #expect(run.stdout.split(separator: "\n").count < 30, "\(run.stdout)")
    }

    // MARK: Help names docs that exist

    @Test("every docs/… path a help text names exists in the repository")
    func helpNamesExistingDocs() throws {
        var named: Set<String> = []
        var texts: [String] = []
        for command in [[], ["scan"], ["probe"], ["exec"], ["verify"], ["manifest"], ["intake"], ["status"]] {
            let run = try runCLI(["help"] + command)
            #expect(run.status == 0, "\(command): \(run.stderr)")
            texts.append(run.stdout)
        }
        let daemon = try runProgram(airlockdBinary, ["--help"])
        #expect(daemon.status == 0)
        texts.append(daemon.stdout)
        for text in texts {
            // Help wraps long lines: a path is never cut (ArgumentParser breaks at spaces).
            for match in text.matches(of: /docs\/[A-Za-z0-9_.\/-]*[A-Za-z0-9_]/) { named.insert(String(match.output)) }
        }
        #expect(named.contains("docs/policy.md"), "\(named)")
        #expect(named.count >= 5, "\(named)")
        for path in named.sorted() {
            #expect(FileManager.default.fileExists(atPath: "\(repositoryRoot)/\(path)"), "help names \(path)")
        }
        let policy = try String(contentsOfFile: "\(repositoryRoot)/docs/policy.md", encoding: .utf8)
        #expect(policy.contains("Profiles/policy.json"), "probe's help promises the verdict policy's description")
    }

    // MARK: make demo

    @Test("make demo's recipe checks every step: no ignored failures, the expected exit statuses are tested")
    func demoRecipe() throws {
        let makefile = try String(contentsOfFile: "\(repositoryRoot)/Makefile", encoding: .utf8)
        let lines = makefile.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.hasPrefix("demo:") })
        let recipe = lines[(start + 1)...].prefix { $0.hasPrefix("\t") || $0.isEmpty }.filter { !$0.isEmpty }
        #expect(!recipe.isEmpty)
        for line in recipe {
            #expect(!line.hasPrefix("\t-") && !line.hasPrefix("\t@-"), "ignored failure: \(line)")
        }
        let text = recipe.joined(separator: "\n")
        #expect(text.contains("set -e"))
        #expect(text.contains("[ $$s -eq 1 ]"), "the malicious sample's exit 1 is checked")
        #expect(text.contains("make test") && text.contains("docs/daemon.md"), "the demo ends with what to do next")
        #expect(!text.contains("|| true"))
    }

    // MARK: - as standard input

    /// Runs the CLI with standard input redirected from `input` (a path), closed (`nil`), or a terminal (`"tty"`).
    func runWithInput(_ arguments: [String], input: String?, environment: [String: String] = [:]) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        let redirect = input.map { _ in "< \"$AIRLOCK_TEST_INPUT\"" } ?? "<&-"
        return try runProgram(
            "/bin/sh", ["-c", "exec \"$0\" \"$@\" \(redirect)", airlockBinary] + arguments,
            environment: environment.merging(["AIRLOCK_TEST_INPUT": input ?? ""]) { a, _ in a })
    }

    func reports(_ jsonLines: String) throws -> [[String: Any]] {
        try jsonLines.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], "\($0)")
        }
    }

    func target(_ report: [String: Any]) -> String? { (report["target"] as? [String: Any])?["path"] as? String }

    @Test("scan - reads the model from standard input; the report names the target -, in order with other paths")
    func scanStandardInput() throws {
        try withSamples("models.py") { dir, _ in
            let run = try runWithInput(
                ["scan", "--format", "json", "\(dir)/benign.pt", "-", "\(dir)/model.safetensors"],
                input: "\(dir)/exfil.pkl")
            #expect(run.status == 1, "\(run.stderr)")
            let all = try reports(run.stdout)
            #expect(all.map(target) == ["\(dir)/benign.pt", "-", "\(dir)/model.safetensors"], "\(run.stdout)")
            #expect(all.map { $0["verdict"] as? String } == ["clean", "malicious", "clean"])
            let piped = try runProgram(
                "/bin/sh", ["-c", "cat \"$1\" | \"$0\" scan --format json -", airlockBinary, "\(dir)/exfil.pkl"])
            #expect(piped.status == 1 && piped.stdout.contains("\"path\":\"-\""), "\(piped.stdout)\(piped.stderr)")
        }
    }

    @Test("a file named - is reachable as ./-")
    func fileNamedDash() throws {
        try withSamples("models.py") { dir, _ in
            try FileManager.default.copyItem(atPath: "\(dir)/exfil.pkl", toPath: "\(dir)/-")
            let run = try runProgram(airlockBinary, ["scan", "--format", "json", "./-"], directory: dir)
            #expect(run.status == 1, "\(run.stderr)")
            #expect(try reports(run.stdout).map(target) == ["./-"])
        }
    }

    @Test("probe - detonates standard input by descriptor: malicious, with a trace, the bait untouched")
    func probeStandardInput() throws {
        try withSamples("models.py") { dir, _ in
            let run = try runWithInput(["probe", "--worlds", "1", "--format", "json", "-"], input: "\(dir)/exfil.pkl")
            #expect(run.status == 1, "\(run.stderr)")
            let report = try #require(try reports(run.stdout).first)
            #expect(target(report) == "-")
            #expect(report["verdict"] as? String == "malicious")
            #expect((report["trace"] as? [Any])?.isEmpty == false, "detonated, not only scanned: \(run.stdout)")
        }
    }

    @Test("- through airlockd: the spooled descriptor is sent like any file")
    func standardInputThroughDaemon() throws {
        try withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            let run = try runWithInput(
                ["--socket", daemon.socket, "scan", "--format", "json", "-"], input: "\(dir)/exfil.pkl")
            #expect(run.status == 1, "\(run.stderr)\(daemon.log)")
            let report = try #require(try reports(run.stdout).first)
            #expect(target(report) == "-" && report["verdict"] as? String == "malicious", "\(run.stdout)")
        }
    }

    @Test("- twice, a terminal, a closed, empty or too large standard input: clear errors")
    func standardInputErrors() throws {
        let twice = try runWithInput(["scan", "-", "-"], input: "/dev/null")
        #expect(twice.status == 64 && twice.stderr.contains("read only once"), "\(twice.stderr)")
        let twiceProbe = try runWithInput(["probe", "-", "x", "-"], input: "/dev/null")
        #expect(twiceProbe.status == 64, "\(twiceProbe.stderr)")
        for arguments in [["manifest", "-"], ["verify", "--manifest", "m.json", "-"]] {
            let refused = try runWithInput(arguments, input: "/dev/null")
            #expect(
                refused.status == 64 && refused.stderr.contains("does not read standard input"), "\(refused.stderr)")
        }

        let closed = try runWithInput(["scan", "--format", "json", "-"], input: nil)
        #expect(closed.status == 2 && closed.stdout.contains("standard input is closed"), "\(closed.stdout)")
        let empty = try runWithInput(["scan", "--format", "json", "-"], input: "/dev/null")
        #expect(empty.status == 2 && empty.stdout.contains("standard input is empty"), "\(empty.stdout)")
        let large = try runWithInput(
            ["scan", "--format", "json", "-"], input: "\(repositoryRoot)/Makefile",
            environment: ["AIRLOCK_STDIN_MAX_BYTES": "100"])
        #expect(large.status == 2 && large.stdout.contains("larger than 100 bytes"), "\(large.stdout)")
        let badSetting = try runWithInput(
            ["scan", "--format", "json", "-"], input: "\(repositoryRoot)/Makefile",
            environment: ["AIRLOCK_STDIN_MAX_BYTES": "lots"])
        #expect(badSetting.status == 2 && badSetting.stdout.contains("AIRLOCK_STDIN_MAX_BYTES must be"))

        // A terminal: `script` gives the CLI a pseudo-terminal as standard input.
        let tty = try runProgram("/usr/bin/script", ["-qec", "\(airlockBinary) scan -", "/dev/null"])
        #expect(tty.status == 64, "\(tty.stdout)\(tty.stderr)")
        #expect(tty.stdout.contains("standard input, which is a terminal"), "\(tty.stdout)")
    }
}
