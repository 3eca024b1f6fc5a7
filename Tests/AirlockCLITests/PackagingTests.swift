import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Packaging and installation (docs/install.md): the licence, `make build`'s dependency check, `make install` and
/// `make uninstall` under DESTDIR with several PREFIXes, and the Debian packages' install/remove cycle in a
/// throwaway root with the installed release binaries run. They use the release build (`make test` makes it first).
@Suite("packaging and installation")
struct PackagingTests {
    @Test("the repository is licensed Apache-2.0 to the Airlock authors, and the README says so")
    func licence() throws {
        let licence = try String(contentsOfFile: "\(repositoryRoot)/LICENSE", encoding: .utf8)
        #expect(licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"))
        #expect(licence.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"))
        #expect(licence.contains("Copyright") && licence.contains("The Airlock authors"))
        let readme = try String(contentsOfFile: "\(repositoryRoot)/README.md", encoding: .utf8)
        #expect(readme.contains("Apache") && readme.contains("LICENSE"))
        let install = try String(contentsOfFile: "\(repositoryRoot)/docs/install.md", encoding: .utf8)
        for word in ["DESTDIR", "PREFIX", "make uninstall", "make deb", "make deps"] {
            #expect(install.contains(word), "docs/install.md does not mention \(word)")
        }
    }

    @Test("make build names a missing build dependency and `make deps` instead of installing it; install has no apt")
    func buildChecksDependencies() throws {
        let run = try make(["check-build-deps", "BUILD_PACKAGES=airlock-no-such-package pkg-config"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("airlock-no-such-package") && run.stderr.contains("make deps"), "\(run.stderr)")
        #expect(!run.stderr.contains(" pkg-config"), "an installed package was named missing: \(run.stderr)")
        // What `make install` and `make uninstall` would run: no package manager, no compiler.
        for target in ["install", "uninstall"] {
            let dry = try make(["-n", target, "DESTDIR=/nonexistent"])
            #expect(dry.status == 0, "\(dry.stderr)")
            for word in ["apt-get", "apt ", "swift build", "dpkg-query"] {
                #expect(!dry.stdout.contains(word), "make -n \(target) runs \(word): \(dry.stdout)")
            }
        }
    }

    @Test("make install without a build fails naming `make build`, and writes nothing")
    func installWithoutBuild() throws {
        try withScratch { destdir in
            let run = try make(["install", "DESTDIR=\(destdir)", "CONFIG=not-built"])
            #expect(run.status != 0)
            #expect(run.stderr.contains("run `make build` first"), "\(run.stderr)")
            #expect(try listTree(destdir).isEmpty)
        }
    }

    @Test(
        "make install DESTDIR PREFIX=/usr/local puts every file in its FHS place; make uninstall leaves DESTDIR empty")
    func installUsrLocal() throws {
        try requireReleaseBuild()
        try withScratch { destdir in
            let run = try make(["install", "DESTDIR=\(destdir)", "PREFIX=/usr/local"])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            let files = Set(try listTree(destdir))
            var expected = [
                "/usr/local/bin/airlock", "/usr/local/bin/airlockd", "/usr/local/share/man/man8/airlockd.8",
                "/usr/local/share/airlock/profiles/default.json", "/usr/local/share/airlock/profiles/policy.json",
                "/usr/local/share/airlock/profiles/harness/serve.py", "/usr/local/share/doc/airlock/LICENSE",
                "/usr/local/share/doc/airlock/README.md", "/usr/local/lib/systemd/system/airlockd.service",
                "/usr/local/lib/systemd/system/airlockd.socket", "/usr/local/lib/systemd/system/airlock-intake.service",
                "/usr/local/lib/systemd/system/airlock-intake@.service", "/usr/local/lib/sysusers.d/airlock.conf",
                "/usr/local/lib/tmpfiles.d/airlock.conf", "/etc/airlock/intake.json",
            ]
            for page in try manualPageNames() { expected.append("/usr/local/share/man/man1/\(page).1") }
            for tool in ["airlock", "airlockd"] {
                expected += [
                    "/usr/local/share/bash-completion/completions/\(tool)",
                    "/usr/local/share/zsh/site-functions/_\(tool)",
                    "/usr/local/share/fish/vendor_completions.d/\(tool).fish",
                ]
            }
            for doc in try FileManager.default.contentsOfDirectory(atPath: "\(repositoryRoot)/docs")
            where doc.hasSuffix(".md") {
                expected.append("/usr/local/share/doc/airlock/\(doc)")
            }
            for path in expected { #expect(files.contains(path), "not installed: \(path)") }
            #expect(files.allSatisfy { $0.hasPrefix("/usr/local/") || $0.hasPrefix("/etc/airlock/") }, "\(files)")

            let unit = try String(contentsOfFile: "\(destdir)/usr/local/lib/systemd/system/airlockd.service")
            #expect(unit.contains("\nExecStart=/usr/local/bin/airlockd\n"))
            // Every page renders without a warning (an empty line in mdoc, a macro misused).
            for page in files where page.contains("/share/man/") {
                let render = try runProgram(
                    "/bin/sh", ["-c", "MANWIDTH=100 man --warnings -l \"$1\" >/dev/null", "sh", destdir + page])
                #expect(render.status == 0 && render.stderr.isEmpty, "\(page): \(render.stderr)")
            }
            let scan = try String(contentsOfFile: "\(destdir)/usr/local/share/man/man1/airlock.scan.1")
            #expect(scan.contains(".Nm \"airlock scan\"") && scan.contains("max-entries"))
            // bash completes `airlock sc` to `scan` and `airlock scan --max` to `--max-entries` with the installed file.
            let completion = "\(destdir)/usr/local/share/bash-completion/completions/airlock"
            for (words, expected) in [("airlock sc", "scan"), ("airlock scan --max", "--max-entries")] {
                let bash = try runProgram(
                    "/bin/bash",
                    [
                        "-c",
                        """
                        source "$1"; COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$2"
                        COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _airlock airlock "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
                        echo "${COMPREPLY[@]}"
                        """, "bash", completion, words,
                    ])
                #expect(bash.stdout == "\(expected)\n", "completing '\(words)': \(bash.stdout)\(bash.stderr)")
            }
            let zsh = try String(contentsOfFile: "\(destdir)/usr/local/share/zsh/site-functions/_airlock")
            #expect(zsh.hasPrefix("#compdef airlock"))
            let fish = try String(contentsOfFile: "\(destdir)/usr/local/share/fish/vendor_completions.d/airlockd.fish")
            #expect(fish.contains("complete -c 'airlockd'"))

            // A second install on top is refused (it would lose the first one's list of files).
            let again = try make(["install", "DESTDIR=\(destdir)", "PREFIX=/usr/local"])
            #expect(again.status != 0 && again.stderr.contains("make uninstall"), "\(again.stderr)")

            let removed = try make(["uninstall", "DESTDIR=\(destdir)", "PREFIX=/usr/local"])
            #expect(removed.status == 0, "\(removed.stderr)")
            #expect(try listTree(destdir, directories: true).isEmpty, "left by make uninstall")
        }
    }

    @Test("PREFIX=/opt/airlock: nothing in /etc, units under the prefix, the installed binary finds its profiles")
    func installOpt() throws {
        try requireReleaseBuild()
        try withScratch { destdir in
            let run = try make(["install", "DESTDIR=\(destdir)", "PREFIX=/opt/airlock"])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            let files = try listTree(destdir)
            #expect(!files.isEmpty && files.allSatisfy { $0.hasPrefix("/opt/airlock/") }, "\(files)")
            let unit = try String(contentsOfFile: "\(destdir)/opt/airlock/lib/systemd/system/airlockd.service")
            #expect(unit.contains("\nExecStart=/opt/airlock/bin/airlockd\n"))
            #expect(unit.contains("Documentation=file:/opt/airlock/share/doc/airlock/daemon.md"))
            // The sandbox's profile and the harness come from share/airlock/profiles beside the binary's bin/.
            let exec = try runProgram("\(destdir)/opt/airlock/bin/airlock", ["exec", "--", "/bin/true"])
            #expect(exec.status == 0, "\(exec.stderr)")
            let removed = try make(["uninstall", "DESTDIR=\(destdir)", "PREFIX=/opt/airlock"])
            #expect(removed.status == 0, "\(removed.stderr)")
            #expect(try listTree(destdir, directories: true).isEmpty)
        }
    }

    @Test("make install under umask 000 leaves nothing group- or world-writable (the harness's checked-hash .pyc)")
    func installUmask() throws {
        try requireReleaseBuild()
        try withScratch { destdir in
            let run = try runProgram(
                "/bin/sh",
                [
                    "-c", "umask 000; exec make --no-print-directory -C \"$1\" install DESTDIR=\"$2\" PREFIX=/opt/al",
                    "sh", repositoryRoot, destdir,
                ])
            #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
            let found = try runProgram(
                "/usr/bin/find", [destdir, "-mindepth", "1", "-perm", "/022", "!", "-type", "l"])
            #expect(found.stdout.isEmpty, "writable by others: \(found.stdout)")
            let cache = try FileManager.default.attributesOfItem(
                atPath: "\(destdir)/opt/al/share/airlock/profiles/harness/__pycache__")
            #expect((cache[.posixPermissions] as? Int) == 0o755)
        }
    }

    @Test("PREFIX, BINDIR or DOCDIR with a character sed or systemd would read (& | \\ newline % space) is refused")
    func installRefusesUnitBreakingPaths() throws {
        try requireReleaseBuild()
        for assignment in [
            "PREFIX=/opt/R&D", "BINDIR=/opt/a|b", "DOCDIR=/opt/a\\b", "PREFIX=/opt/a\nb", "PREFIX=/opt/%h",
            "BINDIR=/opt/a b",
        ] {
            try withScratch { destdir in
                let run = try make(["install", "DESTDIR=\(destdir)", assignment])
                #expect(run.status != 0 && run.stderr.contains("systemd units"), "\(assignment): \(run.stderr)")
                #expect(try listTree(destdir).isEmpty, "\(assignment)")
            }
        }
    }

    @Test("make uninstall removes nothing through a symbolic link in DESTDIR, nor a manifest's directory elsewhere")
    func uninstallStaysInside() throws {
        try withScratch { scratch in
            let stage = "\(scratch)/stage", victim = "\(scratch)/victim"
            for dir in ["\(stage)/opt/al/share/airlock", "\(victim)/emptydir", "\(stage)/srv/empty"] {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            }
            for file in ["airlock", "other-file"] {
                try "precious\n".write(toFile: "\(victim)/\(file)", atomically: false, encoding: .utf8)
            }
            try FileManager.default.createSymbolicLink(atPath: "\(stage)/opt/al/bin", withDestinationPath: victim)
            let manifest = "f /opt/al/bin/airlock\nf /opt/al/bin/other-file\nd /opt/al/bin/emptydir\nd /srv/empty\n"
            try manifest.write(
                toFile: "\(stage)/opt/al/share/airlock/install-manifest", atomically: false, encoding: .utf8)
            let run = try runProgram(
                "/bin/bash", ["\(repositoryRoot)/packaging/uninstall.sh"],
                environment: ["DESTDIR": stage, "DATADIR": "/opt/al/share/airlock", "BINDIR": "/opt/al/bin"])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stderr.contains("through a symbolic link"), "\(run.stderr)")
            #expect(try listTree(victim, directories: true) == ["/airlock", "/emptydir", "/other-file"])
            #expect(FileManager.default.fileExists(atPath: "\(stage)/srv/empty"), "a directory outside the roots")
        }
    }

    @Test("the Debian postinst starts and restarts through deb-systemd-invoke, which asks policy-rc.d")
    func postinstInvoke() throws {
        try withScratch { scratch in
            let bin = "\(scratch)/bin", log = "\(scratch)/log"
            try FileManager.default.createDirectory(atPath: "\(scratch)/systemd", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            for tool in [
                "deb-systemd-helper", "deb-systemd-invoke", "systemctl", "systemd-sysusers", "systemd-tmpfiles",
            ] {
                try "#!/bin/sh\necho \"\(tool) $*\" >>\(log)\n".write(
                    toFile: "\(bin)/\(tool)", atomically: false, encoding: .utf8)
                chmod("\(bin)/\(tool)", 0o755)
            }
            let script = try String(contentsOfFile: "\(repositoryRoot)/packaging/debian/postinst", encoding: .utf8)
                .replacingOccurrences(of: "/run/systemd/system", with: "\(scratch)/systemd")
            try script.write(toFile: "\(scratch)/postinst", atomically: false, encoding: .utf8)
            let run = try runProgram(
                "/bin/sh", ["\(scratch)/postinst", "configure", "0.1"], environment: ["PATH": "\(bin):/usr/bin:/bin"])
            #expect(run.status == 0, "\(run.stderr)")
            let calls = try String(contentsOfFile: log, encoding: .utf8)
            #expect(calls.contains("deb-systemd-invoke try-restart airlockd.service\n"), "\(calls)")
            #expect(calls.contains("deb-systemd-invoke start airlockd.socket\n"), "\(calls)")
            #expect(!calls.contains("systemctl start") && !calls.contains("systemctl try-restart"), "\(calls)")
        }
    }

    @Test("an operator's /etc/airlock/intake.json is neither replaced by make install nor removed by make uninstall")
    func operatorPolicyKept() throws {
        try requireReleaseBuild()
        try withScratch { destdir in
            try FileManager.default.createDirectory(atPath: "\(destdir)/etc/airlock", withIntermediateDirectories: true)
            let mine = "{\"pass\": [\"clean\", \"suspicious\"]}\n"
            try mine.write(toFile: "\(destdir)/etc/airlock/intake.json", atomically: false, encoding: .utf8)
            #expect(try make(["install", "DESTDIR=\(destdir)", "PREFIX=/usr"]).status == 0)
            #expect(try String(contentsOfFile: "\(destdir)/etc/airlock/intake.json") == mine)
            #expect(try make(["uninstall", "DESTDIR=\(destdir)", "PREFIX=/usr"]).status == 0)
            #expect(try listTree(destdir) == ["/etc/airlock/intake.json"])
            #expect(try String(contentsOfFile: "\(destdir)/etc/airlock/intake.json") == mine)

            // Installed by us and then edited: kept by uninstall too.
            try FileManager.default.removeItem(atPath: "\(destdir)/etc")
            #expect(try make(["install", "DESTDIR=\(destdir)", "PREFIX=/usr"]).status == 0)
            try mine.write(toFile: "\(destdir)/etc/airlock/intake.json", atomically: false, encoding: .utf8)
            let removed = try make(["uninstall", "DESTDIR=\(destdir)", "PREFIX=/usr"])
            #expect(removed.stderr.contains("was changed since it was installed"), "\(removed.stderr)")
            #expect(try listTree(destdir) == ["/etc/airlock/intake.json"])
        }
    }

    @Test(
        "make deb: the packages' metadata, and install, run, remove and purge in a throwaway root",
        .timeLimit(.minutes(5)))
    func debianPackage() throws {
        try requireReleaseBuild()
        try withScratch { out in
            let built = try make(["deb"], environment: ["OUT": out, "DEB_COMPRESS": "none"])
            try #require(built.status == 0, "\(built.stdout)\(built.stderr)")
            let debs = built.stdout.split(separator: "\n").map(String.init).filter { $0.hasSuffix(".deb") }
            try #require(debs.count == 2, "\(built.stdout)")
            let (deb, dbgsym) = (debs[0], debs[1])
            #expect(deb.contains("/airlock_") && dbgsym.contains("/airlock-dbgsym_"))

            let info = try runProgram("/usr/bin/dpkg-deb", ["-I", deb])
            for field in ["Package: airlock", "libseccomp2", "libcap2", "python3", "Recommends:"] {
                #expect(info.stdout.contains(field), "dpkg-deb -I: no \(field)")
            }
            let conffiles = try runProgram("/usr/bin/dpkg-deb", ["--info", deb, "conffiles"])
            #expect(conffiles.stdout == "/etc/airlock/intake.json\n")
            let contents = try runProgram("/usr/bin/dpkg-deb", ["-c", deb]).stdout
            #expect(contents.contains("./usr/bin/airlockd") && contents.contains("./usr/share/man/man1/airlock.1.gz"))
            #expect(!contents.contains("install-manifest") && !contents.contains("/usr/local"))
            #expect(!contents.contains("/usr/lib/debug"), "debug symbols in the main package")
            #expect(try runProgram("/usr/bin/dpkg-deb", ["-c", dbgsym]).stdout.contains("./usr/lib/debug/.build-id/"))

            let cycle = try runProgram("/bin/bash", ["\(repositoryRoot)/Tests/Packaging/deb-root.sh", deb, dbgsym])
            #expect(cycle.status == 0, "\(cycle.stdout)\(cycle.stderr)")
            for step in [
                "dpkg -i", "airlock probe evil.pkl", "airlock exec", "dpkg -r", "dpkg -P", "nothing of airlock",
            ] {
                #expect(cycle.stdout.contains("ok: \(step)"), "step not passed: \(step)\n\(cycle.stdout)")
            }
        }
    }
}

/// Runs make in the repository with `arguments`.
private func make(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    try runProgram(
        "/usr/bin/make", ["--no-print-directory", "-C", repositoryRoot] + arguments, environment: environment)
}

/// Fails, naming `make build`, when the release build `make install` copies is missing.
private func requireReleaseBuild() throws {
    for built in ["airlock", "airlockd", "generate-manual"] {
        let path = "\(repositoryRoot)/.build/release/\(built)"
        try #require(
            FileManager.default.isExecutableFile(atPath: path), "\(path) is missing: run `make build` first")
    }
}

/// The manual pages of `airlock` (without section): `airlock` and `airlock.SUBCOMMAND` for each of its subcommands,
/// read from the release binary's own description of itself.
private func manualPageNames() throws -> [String] {
    let dump = try runProgram("\(repositoryRoot)/.build/release/airlock", ["--experimental-dump-help"])
    let object = try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any]
    let command = try #require(object?["command"] as? [String: Any])
    let subcommands = try #require(command["subcommands"] as? [[String: Any]])
    return ["airlock"] + subcommands.compactMap { ($0["commandName"] as? String).map { "airlock.\($0)" } }
}

/// Runs `body` with a fresh scratch directory, removed afterwards.
private func withScratch(_ body: (String) throws -> Void) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("airlock-pkg-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try body(dir)
}

/// Every file (and, with `directories`, every directory) below `root`, as an absolute path inside it, sorted.
private func listTree(_ root: String, directories: Bool = false) throws -> [String] {
    guard let walk = FileManager.default.enumerator(atPath: root) else { return [] }
    var paths: [String] = []
    while let relative = walk.nextObject() as? String {
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: "\(root)/\(relative)", isDirectory: &isDirectory)
        if directories || !isDirectory.boolValue { paths.append("/" + relative) }
    }
    return paths.sorted()
}
