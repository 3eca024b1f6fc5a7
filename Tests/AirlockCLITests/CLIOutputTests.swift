import AirlockTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// How scan, probe and verify report many files: the totals line, --quiet, -o FILE, colour, the progress line, and
/// the "nothing examined" exit status (docs/formats.md, "Output and exit status").
@Suite("airlock output of many files")
struct CLIOutputTests {
    /// A protocol-0 pickle that would call os.system('true'): malicious to a scan, never loaded by one.
    static let evil = Array("cos\nsystem\n(S'true'\ntR.".utf8)
    /// A protocol-0 pickle of [1]: clean.
    static let list = Array("(lp0\nI1\na.".utf8)
    /// A pickle importing a module on neither list: suspicious.
    static let odd = Array("cairlock_nowhere\nthing\n.".utf8)

    /// A fresh folder with `files` (name → bytes) in it; removed by the caller.
    static func folder(_ files: [String: [UInt8]] = [:]) throws -> String {
        let dir = "/tmp/airlock-cliout-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, bytes) in files {
            let path = "\(dir)/\(name)"
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        return dir
    }

    static func remove(_ dir: String) { try? FileManager.default.removeItem(atPath: dir) }

    /// Runs airlock on a terminal (`script` from util-linux makes a pty for stdout and stderr both); what the
    /// terminal showed, with its \r\n turned into \n, and the exit status.
    static func onTerminal(_ arguments: [String], environment: [String: String] = [:]) throws -> (
        status: Int32, output: String
    ) {
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        var env = ["TERM": "xterm", "NO_COLOR": ""]  // empty: colour stays on (the runner's may be set)
        env.merge(environment) { $1 }
        let command = ([airlockBinary] + arguments).map(quoted).joined(separator: " ")
        let run = try runToEnd("/usr/bin/script", ["-qec", command, "/dev/null"], environment: env)
        return (run.status, run.stdout.replacingOccurrences(of: "\r\n", with: "\n"))
    }

    static var totals: Regex<(Substring, Substring, Substring, Substring, Substring, Substring)> {
        #/(\d+) files: (\d+) clean, (\d+) suspicious, (\d+) malicious, (\d+) errors? \(\d+\.\d s\)/#
    }

    @Test("text output of many files ends with a totals line on stdout; one file has none")
    func totalsLine() throws {
        let dir = try Self.folder(["a.pkl": Self.list, "b.pkl": Self.evil, "c/d.pkl": Self.odd, "e.txt": [0x61]])
        defer { Self.remove(dir) }
        let run = try runCLI(["scan", dir])
        #expect(run.status == 1, "\(run.stderr)")
        let last = try #require(run.stdout.split(separator: "\n").last.map(String.init))
        let match = try #require(last.wholeMatch(of: Self.totals), "\(run.stdout)")
        #expect(match.1 == "4" && match.2 == "2" && match.3 == "1" && match.4 == "1" && match.5 == "0")
        let one = try runCLI(["scan", "\(dir)/a.pkl"])
        #expect(one.status == 0)
        #expect(one.stdout.firstMatch(of: Self.totals) == nil && one.stderr.isEmpty, "\(one.stdout)")
    }

    @Test("JSON and SARIF on stdout stay pure: no totals there, nor on a stderr that is not a terminal")
    func machineOutputPure() throws {
        let dir = try Self.folder(["a.pkl": Self.list, "b.pkl": Self.evil])
        defer { Self.remove(dir) }
        let json = try runCLI(["scan", "--format", "json", dir])
        #expect(json.status == 1)
        let lines = json.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines { #expect(try JSONSerialization.jsonObject(with: Data(line.utf8)) is [String: Any]) }
        #expect(json.stderr.isEmpty, "\(json.stderr)")
        let sarif = try runCLI(["scan", "--format", "sarif", "--color", "always", dir])
        #expect(try JSONSerialization.jsonObject(with: Data(sarif.stdout.utf8)) is [String: Any])
        #expect(!sarif.stdout.contains("\u{1B}") && sarif.stderr.isEmpty)
        // On a terminal the totals come after the JSON, on stderr.
        let tty = try Self.onTerminal(["scan", "--no-progress", "--format", "json", dir])
        let ttyLines = tty.output.split(separator: "\n")
        #expect(ttyLines.count == 3 && ttyLines[2].wholeMatch(of: Self.totals) != nil, "\(tty.output)")
        #expect(!tty.output.contains("\u{1B}["), "JSON is never coloured: \(tty.output)")
    }

    @Test("--quiet: only what is not clean, plus the totals; the exit status is unchanged")
    func quiet() throws {
        let dir = try Self.folder(["a.pkl": Self.list, "b.pkl": Self.evil, "c.pkl": Self.list])
        defer { Self.remove(dir) }
        let run = try runCLI(["scan", "-q", dir])
        #expect(run.status == 1)
        #expect(!run.stdout.contains("CLEAN") && run.stdout.hasPrefix("MALICIOUS  \(dir)/b.pkl"), "\(run.stdout)")
        #expect(run.stdout.split(separator: "\n").last?.wholeMatch(of: Self.totals)?.1 == "3")
        let json = try runCLI(["scan", "--quiet", "--format", "json", dir])
        #expect(json.stdout.split(separator: "\n").count == 1 && json.stdout.contains("\"malicious\""))
        let clean = try runCLI(["scan", "-q", "\(dir)/a.pkl", "\(dir)/c.pkl"])
        #expect(clean.status == 0)
        #expect(clean.stdout.firstMatch(of: Self.totals) != nil && !clean.stdout.contains("CLEAN"), "\(clean.stdout)")
    }

    @Test("-o FILE: the output written whole (0644), verdict lines and totals on the terminal, no temporary left")
    func outputFile() throws {
        let dir = try Self.folder(["m/a.pkl": Self.list, "m/b.pkl": Self.evil])
        defer { Self.remove(dir) }
        let out = "\(dir)/report.sarif"
        try Data("old".utf8).write(to: URL(fileURLWithPath: out))
        chmod(out, 0o600)
        let run = try runCLI(["scan", "--format", "sarif", "-o", out, "\(dir)/m"])
        #expect(run.status == 1, "\(run.stderr)")
        let log = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        #expect(log["version"] as? String == "2.1.0")
        var st = stat()
        #expect(stat(out, &st) == 0 && st.st_mode & 0o777 == 0o644)
        let shown = run.stdout.split(separator: "\n")
        #expect(shown.count == 3 && shown[0].hasPrefix("CLEAN  ") && shown[1].hasPrefix("MALICIOUS  "), "\(run.stdout)")
        #expect(shown[2].wholeMatch(of: Self.totals) != nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["m", "report.sarif"])
        // JSON Lines and text to a file; a file on a terminal: never coloured there, coloured verdict lines here.
        let text = "\(dir)/report.txt"
        let tty = try Self.onTerminal(["scan", "--no-progress", "-o", text, "--color", "always", "\(dir)/m"])
        let written = try String(contentsOfFile: text, encoding: .utf8)
        #expect(written.contains("MALICIOUS  \(dir)/m/b.pkl") && !written.contains("\u{1B}"))
        #expect(tty.output.contains("\u{1B}[1;31mMALICIOUS\u{1B}[0m  \(dir)/m/b.pkl"), "\(tty.output)")
        #expect(!tty.output.contains("os.system") && !tty.output.contains("system"), "only verdict lines")
    }

    @Test("-o refuses a folder, a symbolic link, an input (or a hard link to one) and -; nothing is changed")
    func outputRefusals() throws {
        let dir = try Self.folder(["a.pkl": Self.list])
        defer { Self.remove(dir) }
        symlink("\(dir)/target", "\(dir)/link")
        link("\(dir)/a.pkl", "\(dir)/hard.pkl")
        for (target, why) in [
            (dir, "is a folder"), ("\(dir)/", "is a folder"), ("\(dir)/link", "symbolic link"),
            ("\(dir)/a.pkl", "one of the inputs"), ("\(dir)/hard.pkl", "one of the inputs"), ("-", "standard output"),
            ("/dev/null", "not a regular file"),
        ] {
            let run = try runCLI(["scan", "--format", "json", "-o", target, "\(dir)/a.pkl"])
            #expect(run.status == 64 && run.stderr.contains(why), "\(target): \(run.status) \(run.stderr)")
            #expect(run.stdout.isEmpty)
        }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/target"), "the link's target was not written")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/a.pkl")) == Data(Self.list))
        // A model inside a folder given would be replaced: refused. A new file there is named after the walk.
        let inside = try runCLI(["scan", "-o", "\(dir)/a.pkl", dir])
        #expect(inside.status == 64 && inside.stderr.contains("inside"), "\(inside.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/a.pkl")) == Data(Self.list))
        let other = try Self.folder(["x.pkl": Self.list, "y.pkl": Self.list])
        defer { Self.remove(other) }
        let fresh = try runCLI(["scan", "--format", "json", "-o", "\(other)/new.json", other])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(try String(contentsOfFile: "\(other)/new.json", encoding: .utf8).split(separator: "\n").count == 2)
        #expect(try runCLI(["scan", "-o", "\(other)/new.json", other]).status == 64)
        let missing = try runCLI(["scan", "-o", "\(dir)/no/such/out.json", "\(dir)/a.pkl"])
        #expect(missing.status == 2 && missing.stderr.contains("cannot open the folder"), "\(missing.stderr)")
    }

    @Test(
        "-o refuses standard input's file (scan - -o F < F) and a file reached through a bind mount of a folder given")
    func outputOtherPathsToAnInput() throws {
        let dir = try Self.folder(["models/a.pkl": Self.list, "alias/.keep": []])
        defer {
            _ = try? runProgram("/bin/umount", ["\(dir)/alias"])
            Self.remove(dir)
        }
        let stdin = try runProgram(
            "/bin/sh", ["-c", "exec \"$0\" scan - -o \"$1\" < \"$1\"", airlockBinary, "\(dir)/models/a.pkl"])
        #expect(stdin.status == 64 && stdin.stderr.contains("one of the inputs"), "\(stdin.status) \(stdin.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/models/a.pkl")) == Data(Self.list))
        let mount = try runProgram("/bin/mount", ["--bind", "\(dir)/models", "\(dir)/alias"])
        try #require(mount.status == 0, "mount --bind: \(mount.stderr)")
        for (output, input) in [("alias/a.pkl", "models"), ("models/a.pkl", "alias"), ("alias/a.pkl", ".")] {
            let run = try runProgram(airlockBinary, ["scan", input, "-o", output], directory: dir)
            #expect(run.status == 64 && run.stderr.contains("inside"), "\(output) \(input): \(run.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/models/a.pkl")) == Data(Self.list))
        // A new file through the alias is fine, as one inside the folder given is.
        let fresh = try runProgram(airlockBinary, ["scan", "models", "-o", "alias/new.txt"], directory: dir)
        #expect(fresh.status == 0, "\(fresh.stderr)")
    }

    @Test("-o keeps the old file when the run fails (airlockd cannot be reached), and leaves no temporary")
    func outputKeptOnError() throws {
        let dir = try Self.folder(["a.pkl": Self.list])
        defer { Self.remove(dir) }
        let out = "\(dir)/out.json"
        try Data("old".utf8).write(to: URL(fileURLWithPath: out))
        let run = try runCLI(["--socket", "\(dir)/no.sock", "scan", "--format", "json", "-o", out, "\(dir)/a.pkl"])
        #expect(run.status == 2, "\(run.stderr)")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "old")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a.pkl", "out.json"])
    }

    @Test("-o where the file system has no O_TMPFILE: written elsewhere, copied in whole at the end, nothing left")
    func outputWithoutTmpfile() throws {
        let dir = try Self.folder(["m/a.pkl": Self.list, "m/b.pkl": Self.evil])
        defer { Self.remove(dir) }
        // A shim that refuses O_TMPFILE in a folder opened by descriptor (FILE's), as NFS or an old overlayfs does.
        let shim = """
            #define _GNU_SOURCE
            #include <dlfcn.h>
            #include <errno.h>
            #include <fcntl.h>
            #include <stdarg.h>
            #include <string.h>
            static int refuse(int dirfd, const char *path, int flags) {
                return dirfd >= 0 && strcmp(path, ".") == 0 && (flags & __O_TMPFILE) == __O_TMPFILE;
            }
            #define SHIM(name) int name(int dirfd, const char *path, int flags, ...) { \\
                va_list ap; va_start(ap, flags); mode_t mode = va_arg(ap, int); va_end(ap); \\
                if (refuse(dirfd, path, flags)) { errno = EOPNOTSUPP; return -1; } \\
                int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, #name); \\
                return real(dirfd, path, flags, mode); }
            SHIM(openat)
            SHIM(openat64)
            """
        try shim.write(toFile: "\(dir)/shim.c", atomically: true, encoding: .utf8)
        let cc = try runProgram("/usr/bin/cc", ["-shared", "-fPIC", "-o", "\(dir)/shim.so", "\(dir)/shim.c", "-ldl"])
        #expect(cc.status == 0, "\(cc.stderr)")
        let out = "\(dir)/out.json"
        let run = try runProgram(
            airlockBinary, ["scan", "--format", "json", "-o", out, "\(dir)/m"],
            environment: ["LD_PRELOAD": "\(dir)/shim.so", "TMPDIR": dir])
        #expect(run.status == 1, "\(run.stderr)")
        #expect(try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").count == 2)
        var st = stat()
        #expect(stat(out, &st) == 0 && st.st_mode & 0o777 == 0o644)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["m", "out.json", "shim.c", "shim.so"])
    }

    @Test("an interrupted run leaves no file and no temporary (the output has no name until it is whole)")
    func outputInterrupted() throws {
        var files: [String: [UInt8]] = [:]
        for i in 0..<3000 { files["m/f\(i).pkl"] = Self.list }
        let dir = try Self.folder(files)
        defer { Self.remove(dir) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: airlockBinary)
        process.arguments = ["scan", "--format", "json", "-o", "\(dir)/out.json", "\(dir)/m"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        usleep(300_000)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(
            process.terminationReason == .uncaughtSignal || process.terminationStatus == 0,
            "\(process.terminationStatus): -o accepted, and the run either interrupted or done")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        if names.contains("out.json") {
            // It finished first: then the file is whole.
            let text = try String(contentsOfFile: "\(dir)/out.json", encoding: .utf8)
            #expect(text.split(separator: "\n").count == 3000)
        }
        #expect(names.filter { $0 != "out.json" } == ["m"], "\(names)")
    }

    @Test("colour: verdicts coloured with --color always or on a terminal; not with NO_COLOR, TERM=dumb or never")
    func colour() throws {
        let dir = try Self.folder(["a.pkl": Self.list, "b.pkl": Self.evil, "c.pkl": Self.odd])
        defer { Self.remove(dir) }
        let forced = try runCLI(["scan", "--color", "always", dir])
        #expect(forced.stdout.contains("\u{1B}[32mCLEAN\u{1B}[0m  \(dir)/a.pkl"), "\(forced.stdout)")
        #expect(forced.stdout.contains("\u{1B}[1;31mMALICIOUS\u{1B}[0m  \(dir)/b.pkl"))
        #expect(forced.stdout.contains("\u{1B}[33mSUSPICIOUS\u{1B}[0m  \(dir)/c.pkl"))
        let missing = try runCLI(["scan", "--color", "always", "\(dir)/nothing-here"])
        #expect(missing.stdout.hasPrefix("\u{1B}[1;35mERROR\u{1B}[0m  "), "\(missing.stdout)")
        #expect(try !runCLI(["scan", dir]).stdout.contains("\u{1B}"), "a pipe is not coloured")
        let auto = try Self.onTerminal(["scan", "--no-progress", dir])
        #expect(auto.output.contains("\u{1B}[1;31mMALICIOUS"), "\(auto.output)")
        for env in [["NO_COLOR": "1"], ["TERM": "dumb"]] {
            let plain = try Self.onTerminal(["scan", "--no-progress", dir], environment: env)
            #expect(plain.output.contains("MALICIOUS  ") && !plain.output.contains("\u{1B}["), "\(env)")
        }
        let never = try Self.onTerminal(["scan", "--no-progress", "--color", "never", dir])
        #expect(!never.output.contains("\u{1B}["))
        #expect(
            try Self.onTerminal(["scan", "--no-progress", dir], environment: ["NO_COLOR": ""]).output.contains(
                "\u{1B}[1;31m"))
        #expect(try runCLI(["scan", "--color", "sometimes", dir]).status == 64)
    }

    @Test("a progress line on a terminal for a long run, erased before each output line; none with --no-progress")
    func progress() throws {
        let dir = try Self.folder(Dictionary(uniqueKeysWithValues: (0..<5).map { ("f\($0).pkl", Self.list) }))
        defer { Self.remove(dir) }
        let run = try Self.onTerminal(["probe", "--worlds", "1", "--color", "never", dir])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains(#/\r\x1B\[Kprobing \d+ files? \(\d+\.\d s\) /#), "\(run.output.debugDescription)")
        // Every drawing of the line is erased (\r, erase to the end) before anything else is written.
        for piece in run.output.components(separatedBy: "\r\u{1B}[K").dropFirst() where piece.hasPrefix("probing") {
            #expect(
                !piece.contains("\n"), "an output line interleaved with the progress line: \(piece.debugDescription)")
        }
        #expect(run.output.components(separatedBy: "CLEAN  \(dir)/f").count == 6)
        let quietRun = try Self.onTerminal(["probe", "--worlds", "1", "--no-progress", "--color", "never", dir])
        #expect(!quietRun.output.contains("probing") && !quietRun.output.contains("\u{1B}[K"), "\(quietRun.output)")
        #expect(try !runCLI(["probe", "--worlds", "1", dir]).stderr.contains("probing"), "stderr is not a terminal")
    }

    @Test("nothing examined: a line on stderr for each such folder, exit status 3; valid JSON and SARIF")
    func nothingExamined() throws {
        let dir = try Self.folder(["repo/.git/config": [0x61], "docs/README.md": [0x61]])
        defer { Self.remove(dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/empty", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(dir)/nested/deeper", withIntermediateDirectories: true)
        let run = try runCLI(["scan", "\(dir)/empty"])
        #expect(run.status == 3 && run.stdout.isEmpty)
        #expect(run.stderr == "airlock: nothing to examine in \(dir)/empty: empty folder\n", "\(run.stderr)")
        let both = try runCLI(["scan", "\(dir)/empty", "\(dir)/repo", "\(dir)/nested"])
        #expect(both.status == 3)
        #expect(
            both.stderr.contains("in \(dir)/repo: no file in it") && both.stderr.contains("in \(dir)/nested: no file"))
        let sarif = try runCLI(["scan", "--format", "sarif", "\(dir)/empty"])
        let log = try #require(try JSONSerialization.jsonObject(with: Data(sarif.stdout.utf8)) as? [String: Any])
        #expect(sarif.status == 3 && (log["runs"] as? [Any])?.count == 1)
        let json = try runCLI(["scan", "--format", "json", "\(dir)/empty"])
        #expect(json.status == 3 && json.stdout.isEmpty)
        // Any file examined anywhere decides the status as usual; a file of unknown format is examined.
        let mixed = try runCLI(["scan", "\(dir)/empty", "\(dir)/docs"])
        #expect(mixed.status == 0 && mixed.stderr.contains("nothing to examine in \(dir)/empty"), "\(mixed.stderr)")
        let probe = try runCLI(["probe", "\(dir)/empty"])
        #expect(probe.status == 3 && probe.stderr.contains("empty folder"), "\(probe.stderr)")
    }

    @Test("nothing examined through airlockd: the same line and exit status 3")
    func nothingExaminedRemote() throws {
        let dir = try Self.folder()
        defer { Self.remove(dir) }
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        chmod(dir, 0o755)
        let run = try runCLI(["--socket", daemon.socket, "scan", dir])
        #expect(run.status == 3 && run.stderr.contains("nothing to examine in \(dir): empty folder"), "\(run.stderr)")
    }

    @Test("verify takes -o, --quiet and --color too; -o may not replace a file of the model")
    func verifyOutput() throws {
        let dir = try Self.folder(["model/a.pkl": Self.list, "model/b.pkl": Self.list])
        defer { Self.remove(dir) }
        let made = try runCLI(["manifest", "-o", "\(dir)/m.json", "\(dir)/model"])
        #expect(made.status == 0, "\(made.stderr)")
        let run = try runCLI([
            "verify", "--manifest", "\(dir)/m.json", "--format", "json", "-o", "\(dir)/v.json", "\(dir)/model",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(
            run.stdout.hasPrefix("CLEAN  \(dir)/model") && run.stdout.split(separator: "\n").count == 1, "\(run.stdout)"
        )
        let report = try String(contentsOfFile: "\(dir)/v.json", encoding: .utf8)
        #expect(report.contains("\"verdict\":\"clean\""))
        let quiet = try runCLI(["verify", "-q", "--manifest", "\(dir)/m.json", "\(dir)/model"])
        #expect(quiet.status == 0 && quiet.stdout.isEmpty, "\(quiet.stdout)")
        let coloured = try runCLI(["verify", "--color", "always", "--manifest", "\(dir)/m.json", "\(dir)/model"])
        #expect(coloured.stdout.hasPrefix("\u{1B}[32mCLEAN\u{1B}[0m  "), "\(coloured.stdout)")
        let inside = try runCLI(["verify", "--manifest", "\(dir)/m.json", "-o", "\(dir)/model/a.pkl", "\(dir)/model"])
        #expect(inside.status == 64, "\(inside.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/model/a.pkl")) == Data(Self.list))
    }

    @Test("help names the exit statuses of scan, probe and verify, 3 included")
    func helpExitStatuses() throws {
        for command in ["scan", "probe"] {
            let help = try runCLI(["help", command]).stdout.replacingOccurrences(of: "\n", with: " ")
                .replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
            #expect(help.contains("3 nothing was examined"), "\(command)")
            #expect(help.contains("--quiet") && help.contains("--output <FILE>") && help.contains("--color"))
        }
        #expect(try runCLI(["help", "verify"]).stdout.contains("--quiet"))
    }
}
