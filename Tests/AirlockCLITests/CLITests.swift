import Foundation
import Testing
import AirlockTestSupport

/// `airlock exec` as a user runs it: the built binary, its JSON contract and its exit codes.
@Suite("airlock exec")
struct CLITests {
    /// `exec` captures its command for passthrough: `--help` among its own options used to be taken for the command
    /// ("command '--help' not found", exit 127). After `--` or the command's first word it is the command's own.
    @Test(
        "exec --help and -h among exec's options print exec's help; after the command they are the command's",
        arguments: [
            ["exec", "--help"], ["exec", "-h"], ["exec", "--timeout", "5", "--help"], ["exec", "--format=json", "-h"],
        ])
    func execHelp(arguments: [String]) throws {
        let help = try runCLI(["help", "exec"])
        let run = try runCLI(arguments)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout == help.stdout && run.stdout.contains("OVERVIEW: Run a command in the sandbox"))
        let passed = try runCLI(["exec", "--", "/bin/sh", "-c", "echo own:$1", "sh", "--help"])
        #expect(passed.status == 0 && passed.stdout.hasPrefix("own:--help"), "\(passed.stdout)\(passed.stderr)")
    }

    @Test("--format json prints one object with the agreed fields")
    func jsonContract() throws {
        let run = try runCLI([
            "exec", "--format", "json", "--", "python3", "-c",
            "import os, sys; print('hello'); sys.stderr.write('warn'); os.system('id'); sys.exit(3)",
        ])
        #expect(run.status == 3)
        let lines = run.stdout.split(separator: "\n")
        #expect(lines.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(object["exitCode"] as? Int == 3)
        #expect(object["signal"] is NSNull)
        #expect(object["timedOut"] as? Bool == false)
        #expect(object["stdout"] as? String == "hello\n")
        #expect(object["stderr"] as? String == "warn")
        #expect(object["stdoutTruncated"] as? Bool == false)
        let trace = try #require(object["trace"] as? [[String: Any]])
        for event in trace {
            for key in ["seq", "pid", "syscall", "action", "args", "timeNs"] { #expect(event[key] != nil, "\(key)") }
            #expect(["allowed", "denied", "killed"].contains(event["action"] as? String ?? ""))
        }
        let exec = try #require(
            trace.first { $0["syscall"] as? String == "execve" && $0["action"] as? String == "denied" })
        let args = try #require(exec["args"] as? [String: Any])
        #expect(args["argv"] as? [String] == ["sh", "-c", "id"])
        let seqs = trace.compactMap { $0["seq"] as? Int }
        #expect(seqs == seqs.sorted())
    }

    @Test("captured output with control characters, quotes and non-ASCII survives the JSON")
    func jsonEscapes() throws {
        let run = try runCLI([
            "exec", "--format", "json", "--", "python3", "-c",
            "import sys; sys.stdout.write('a\\x01\\t\"\\\\ é\\n')",
        ])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
        #expect(object["stdout"] as? String == "a\u{01}\t\"\\ é\n")
    }

    @Test("text output: the command's output, then the trace table and the outcome")
    func textOutput() throws {
        let run = try runCLI(["exec", "--", "python3", "-c", "print('hello'); open('/etc/shadow')"])
        #expect(run.status == 1)
        #expect(run.stdout.hasPrefix("hello\n"))
        #expect(run.stdout.contains("denied EACCES"))
        #expect(run.stdout.contains("/etc/shadow"))
        #expect(run.stdout.contains("exit code 1"))
        #expect(run.stderr.contains("PermissionError"))
    }

    @Test("exit codes: timeout 124, sandbox error 125, not found 127, signal 128+N")
    func exitCodes() throws {
        #expect(try runCLI(["exec", "--timeout", "1", "--", "python3", "-c", "while True: pass"]).status == 124)
        let missing = try runCLI(["exec", "--", "no-such-command-airlock"])
        #expect(missing.status == 127)
        #expect(missing.stderr.contains("not found inside the sandbox"))
        #expect(try runCLI(["exec", "--", "python3", "-c", "import os; os.kill(os.getpid(), 15)"]).status == 128 + 15)
        #expect(try runCLI(["exec", "--", "python3", "-c", "import os; os.kill(os.getpid(), 27)"]).status == 128 + 27)
        let badProfile = try runCLI(["exec", "--profile", "/nonexistent/profile.json", "--", "/bin/true"])
        #expect(badProfile.status == 125)
        #expect(badProfile.stderr.contains("/nonexistent/profile.json"))
    }

    @Test("a bad profile gives an error naming the field, in text and in JSON")
    func badProfileField() throws {
        let path = NSTemporaryDirectory() + "airlock-bad-\(UUID().uuidString).json"
        try
            #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"mounts": [{"type": "tmpfs", "destination": "relative"}]}}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = try runCLI(["exec", "--profile", path, "--", "/bin/true"])
        #expect(text.status == 125)
        #expect(text.stderr.contains("airlock.mounts[0].destination"))
        let json = try runCLI(["exec", "--format", "json", "--profile", path, "--", "/bin/true"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let error = try #require(object["error"] as? [String: Any])
        #expect(error["code"] as? String == "profile")
        #expect((error["message"] as? String)?.contains("airlock.mounts[0].destination") == true)
    }

    @Test("usage errors are refused before anything runs")
    func usageErrors() throws {
        #expect(try runCLI(["exec"]).status == 64)
        #expect(try runCLI(["exec", "--timeout", "-3", "--", "/bin/true"]).status == 64)
        #expect(try runCLI(["exec", "--ro-bind", "nocolon", "--", "/bin/true"]).status == 64)
    }

    @Test("the common forms, read without ArgumentParser, run exactly as spellings only ArgumentParser reads")
    func commonFormsMatchArgumentParser() throws {
        // `--option=value` never takes the short path (Exec.Invocation(commonForm:)), `--option value` may: each pair
        // must give the same status and output (numbers masked, with the padding that aligns them).
        let script = "echo out; echo err >&2; exit 3"
        let pairs: [([String], [String])] = [
            (
                ["exec", "--timeout", "5", "--format", "json", "--", "/bin/sh", "-c", script],
                ["exec", "--timeout=5", "--format=json", "--", "/bin/sh", "-c", script]
            ),
            (
                [
                    "exec", "--profile", "default", "--ro-bind", "/etc:/x", "--ro-bind", "/usr:/y", "--", "/bin/ls",
                    "/x",
                ],
                ["exec", "--profile=default", "--ro-bind=/etc:/x", "--ro-bind=/usr:/y", "--", "/bin/ls", "/x"]
            ),
            (["exec", "--", "/bin/sh", "-c", script], ["exec", "--format=text", "--", "/bin/sh", "-c", script]),
            (["exec", "--", "no-such-command-airlock"], ["exec", "--format=text", "--", "no-such-command-airlock"]),
            (["exec", "--timeout", "0", "--", "/bin/true"], ["exec", "--timeout=0", "--", "/bin/true"]),
            (["exec", "--format", "xml", "--", "/bin/true"], ["exec", "--format=xml", "--", "/bin/true"]),
            (["exec", "--ro-bind", "/etc", "--", "/bin/true"], ["exec", "--ro-bind=/etc", "--", "/bin/true"]),
        ]
        let mask = { (text: String) in text.replacing(/[ ]*[0-9]+(\.[0-9]+)?/, with: " N") }
        for (short, long) in pairs {
            let a = try runCLI(short), b = try runCLI(long)
            #expect(a.status == b.status, "\(short)")
            #expect(mask(a.stdout) == mask(b.stdout), "\(short)")
            #expect(mask(a.stderr) == mask(b.stderr), "\(short)")
        }
    }

    @Test("run by an unprivileged user: the command cannot reach PID 1's memory, environment or descriptors")
    func unprivilegedCaller() throws {
        let secret = "airlock-secret-\(UUID().uuidString.prefix(8))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        process.arguments = [
            "-u", "nobody", "--", "/usr/bin/env", "SECRET_TOKEN=\(secret)", "HOME=/", airlockBinary,
            "exec", "--format", "json", "--", "python3", "-c",
            """
            import os
            found = []
            for name, target in (("env", "/proc/1/environ"), ("mem", "/proc/1/maps"), ("fd", "/proc/1/fd/3")):
                link = "/tmp/" + name
                os.symlink(target, link)
                try:
                    with open(link, "rb") as f:
                        found.append(name + ":" + str(f.read(65536)))
                except OSError as e:
                    found.append(name + ": refused " + str(e.errno))
            print(os.getuid(), found)
            """,
        ]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let object = try #require(
            try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(String(decoding: data, as: UTF8.self))")
        let stdout = try #require(object["stdout"] as? String)
        #expect(stdout.hasPrefix("1000 "), "\(stdout)")
        #expect(!stdout.contains(secret))
        #expect(stdout.contains("env: refused 13"))
        #expect(stdout.contains("mem: refused 13"))
        #expect(stdout.contains("fd: refused 13"))
    }

    @Test("--ro-bind mounts a host file read-only")
    func readOnlyBind() throws {
        let path = NSTemporaryDirectory() + "airlock-bind-\(UUID().uuidString).txt"
        try "model bytes".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try runCLI([
            "exec", "--ro-bind", "\(path):/model/file.txt", "--", "python3", "-c",
            "print(open('/model/file.txt').read())\nopen('/model/file.txt', 'a')",
        ])
        #expect(run.stdout.hasPrefix("model bytes"))
        #expect(run.status == 1)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "model bytes")
    }
}

/// `airlock scan` as a user runs it.
@Suite("airlock scan")
struct ScanCLITests {
    @Test("exit codes: 0 clean, 1 malicious or suspicious, 2 unreadable; JSON Lines, one report per file")
    func exitCodes() throws {
        let dir = NSTemporaryDirectory() + "airlock-scan-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // pickle.dumps(os.system('true')) written by hand: GLOBAL 'os system', the argument, REDUCE, STOP.
        try Data("cos\nsystem\n(S'true'\ntR.".utf8).write(to: URL(fileURLWithPath: "\(dir)/evil.pkl"))
        var clean = Data([8, 0, 0, 0, 0, 0, 0, 0])
        clean.append(contentsOf: Array("{}      ".utf8))
        try clean.write(to: URL(fileURLWithPath: "\(dir)/empty.safetensors"))

        let good = try runCLI(["scan", "\(dir)/empty.safetensors"])
        #expect(good.status == 0, "\(good.stdout) \(good.stderr)")
        #expect(good.stdout.hasPrefix("CLEAN"))
        let bad = try runCLI(["scan", "\(dir)/evil.pkl"])
        #expect(bad.status == 1)
        #expect(bad.stdout.hasPrefix("MALICIOUS"))
        #expect(bad.stdout.contains("os.system"))
        #expect(try runCLI(["scan", "/nonexistent/airlock.pt"]).status == 2)
        #expect(try runCLI(["scan"]).status == 64)

        // SARIF validates against the schema of the SARIF subset Airlock writes (docs/), with Python's jsonschema.
        let sarif = try runCLI(["scan", "--format", "sarif", dir, "/nonexistent/airlock.pt"])
        #expect(sarif.status == 2)
        let sarifPath = "\(dir)/log.sarif"
        try sarif.stdout.write(toFile: sarifPath, atomically: true, encoding: .utf8)
        let validate = Process()
        validate.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        validate.arguments = [
            "-c",
            "import json, sys, jsonschema; jsonschema.Draft7Validator(json.load(open(sys.argv[1])), format_checker=jsonschema.FormatChecker()).validate(json.load(open(sys.argv[2])))",
            "\(repositoryRoot)/docs/sarif-2.1.0-subset.schema.json", sarifPath,
        ]
        try validate.run()
        validate.waitUntilExit()
        #expect(validate.terminationStatus == 0, "the SARIF log does not validate")
        try FileManager.default.removeItem(atPath: sarifPath)

        let json = try runCLI(["scan", "--format", "json", dir])
        #expect(json.status == 1)
        let lines = json.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["schemaVersion"] as? Int == 1)
            #expect(["clean", "malicious"].contains(object["verdict"] as? String ?? ""))
        }
    }
}
