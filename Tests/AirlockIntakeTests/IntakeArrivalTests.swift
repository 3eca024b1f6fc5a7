import AirlockAnalysis
import Foundation
import Testing
import AirlockTestSupport

/// The intake at work: many models at once, arrivals still being written, what it cannot read or copy, a second
/// intake, a full disk, a release that fails, --watch, provenance and airlockd.
extension IntakeTests {
    @Test("fifty models arriving at once")
    func fiftyAtOnce() throws {
        let setup = try Setup(policy: #"{"settleSeconds": 0, "workers": 4}"#)
        var expected: [String: String] = [:]
        for i in 0..<50 {
            switch i % 5 {
            case 0:
                try setup.drop("evil.pt", as: "evil-\(i).pt")
                expected["evil-\(i).pt"] = "rejected"
            case 1, 2:
                try setup.drop("benign.pt", as: "benign-\(i).pt")
                expected["benign-\(i).pt"] = "approved"
            default:
                try setup.drop("model.safetensors", as: "weights-\(i).safetensors")
                expected["weights-\(i).safetensors"] = "approved"
            }
        }
        let run = try setup.once()
        #expect(run.status == 1, "\(run.stderr)")
        #expect(
            run.stdout.split(separator: "\n").filter { $0.hasPrefix("approved") || $0.hasPrefix("rejected") }.count
                == 50)
        try IntakeTests.checkReleased(setup, expected, "50 at once")
        try IntakeTests.checkSchema(setup)
    }

    /// A file opened for writing with `O_CLOEXEC`: a process another test starts meanwhile must not inherit it (the
    /// intake would rightly see that copy as a writer still open, after this test closed its own).
    static func writer(_ path: String) -> FileHandle? {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        return fd < 0 ? nil : FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    @Test("a folder still being copied or a file still open for writing is not taken early")
    func notTakenEarly() throws {
        let setup = try Setup(policy: #"{"settleSeconds": 3}"#)
        // A folder without .ready that keeps changing.
        let folder = setup.incoming + "/copying"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: folder + "/part1.safetensors")
        // A file held open for writing, and a folder with .ready but a file in it still open for writing.
        let writing = setup.incoming + "/writing.pt"
        _ = FileManager.default.createFile(
            atPath: writing,
            contents: Data(try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/benign.pt")).prefix(100)))
        let writer = try #require(Self.writer(writing))
        let marked = setup.incoming + "/marked"
        try FileManager.default.createDirectory(atPath: marked, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: marked + "/.ready", contents: nil)
        _ = FileManager.default.createFile(atPath: marked + "/weights.safetensors", contents: nil)
        let markedWriter = try #require(Self.writer(marked + "/weights.safetensors"))

        var run = try setup.once()
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("waiting   copying"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   writing.pt: open for writing"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   marked: a file in it is open for writing"), "\(run.stdout)")
        #expect(setup.places()["writing.pt"] == ["incoming"])

        // The copy goes on: still not taken.
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: folder + "/part2.safetensors")
        run = try setup.once()
        #expect(setup.places()["copying"] == ["incoming"], "a folder that just changed was taken")

        // The writers finish.
        try writer.seekToEnd()
        try writer.write(
            contentsOf: try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/benign.pt")).dropFirst(100))
        try writer.close()
        try markedWriter.write(
            contentsOf: try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/model.safetensors")))
        try markedWriter.close()
        run = try setup.once()
        #expect(setup.places()["writing.pt"] == ["approved/writing.pt"], "\(run.stdout) \(run.stderr)")
        #expect(setup.places()["marked"] == ["approved/marked"], "\(run.stdout) \(run.stderr)")
        #expect(setup.places()["copying"] == ["incoming"])

        // Still for the settle time: taken.
        Thread.sleep(forTimeInterval: 3.5)
        run = try setup.once()
        try IntakeTests.checkReleased(
            setup, ["writing.pt": "approved", "marked": "approved", "copying": "approved"], "after settling")
    }

    @Test("what the intake cannot read (a file, a file in a folder) waits in incoming/ with the reason")
    func unreadableWaits() throws {
        let setup = try Setup()
        let folder = setup.incoming + "/folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: folder + "/weights.safetensors")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        try FileManager.default.copyItem(atPath: setup.samples + "/benign.pt", toPath: setup.incoming + "/private.pt")
        // The intake runs as uid 65534 and owns its root; the two model files stay root's, mode 0600.
        for path in [setup.root, setup.incoming, folder, folder + "/.ready"] { #expect(chown(path, 65534, 65534) == 0) }
        for path in [folder + "/weights.safetensors", setup.incoming + "/private.pt"] {
            #expect(chmod(path, 0o600) == 0)
        }
        let asNobody = [
            "--reuid", "65534", "--regid", "65534", "--clear-groups", airlockBinary, "intake", "--root", setup.root,
            "--policy", setup.policy, "--once",
        ]
        let run = try runToEnd("/usr/bin/setpriv", asNobody)
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.stdout.contains("waiting   private.pt: cannot open: Permission denied"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   folder: cannot read weights.safetensors in it"), "\(run.stdout)")
        #expect(setup.places()["private.pt"] == ["incoming"] && setup.places()["folder"] == ["incoming"])
        // Readable again: taken (by root here; the intake's user could read them now too).
        for path in [folder + "/weights.safetensors", setup.incoming + "/private.pt"] {
            #expect(chmod(path, 0o644) == 0)
        }
        let again = try setup.once()
        #expect(again.status == 0, "\(again.stdout) \(again.stderr)")
        try IntakeTests.checkReleased(setup, ["private.pt": "approved", "folder": "approved"], "readable again")
    }

    @Test("two intakes on one root: the second is refused")
    func lock() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        _ = try setup.once()  // creates the root's folders and the lock file
        try setup.drop("model.safetensors")
        let fd = open(setup.root + "/.airlock/lock", O_RDWR)
        #expect(fd >= 0)
        #expect(flock(fd, LOCK_EX | LOCK_NB) == 0)
        let refused = try setup.once()
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("another airlock intake"), "\(refused.stderr)")
        #expect(setup.places()["model.safetensors"] == ["incoming"])
        close(fd)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stderr)")
        try IntakeTests.checkReleased(
            setup, ["benign.pt": "approved", "model.safetensors": "approved"], "after the lock")
    }

    /// Runs a shell script in a private mount namespace (so its mounts vanish with it) and returns its output.
    static func inMountNamespace(_ script: String) throws -> ProgramRun {
        try runToEnd("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script])
    }

    @Test("disk full: the model stays in incoming/ and the error says why; it is taken once there is room")
    func diskFull() throws {
        let setup = try Setup()
        let a = airlockBinary
        let script = """
            set -u
            R=\(setup.root)
            mount -t tmpfs -o size=256k tmpfs "$R" || { echo "MOUNT-FAILED"; exit 3; }
            "\(a)" intake --root "$R" --policy "\(setup.policy)" --once >/dev/null 2>&1
            cp "\(setup.samples)/benign.pt" "$R/incoming/benign.pt"
            dd if=/dev/zero of="$R/filler" bs=4096 2>/dev/null
            "\(a)" intake --root "$R" --policy "\(setup.policy)" --once; echo "FULL-STATUS=$?"
            ls "$R/incoming" | sed 's/^/INCOMING: /'
            ls "$R/quarantine" | sed 's/^/QUARANTINE: /'
            rm "$R/filler"
            "\(a)" intake --root "$R" --policy "\(setup.policy)" --once; echo "ROOM-STATUS=$?"
            ls "$R/approved/benign.pt" | sed 's/^/APPROVED: /'
            """
        let run = try IntakeTests.inMountNamespace(script)
        #expect(
            !run.stdout.contains("MOUNT-FAILED"),
            "this host cannot mount a tmpfs in a private mount namespace: \(run.stderr)")
        #expect(run.stdout.contains("FULL-STATUS=2"), "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("No space left on device"), "\(run.stderr)")
        #expect(run.stdout.contains("INCOMING: benign.pt"), "\(run.stdout)")
        #expect(!run.stdout.contains("QUARANTINE:"), "\(run.stdout)")
        #expect(run.stdout.contains("ROOM-STATUS=0"), "\(run.stdout) \(run.stderr)")
        #expect(
            run.stdout.contains("APPROVED: benign.pt") && run.stdout.contains("APPROVED: report.json"), "\(run.stdout)")
    }

    @Test("a release that cannot be done leaves the model in quarantine with its report; the next run releases it")
    func releaseRefused() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        let a = airlockBinary
        // approved/ becomes a read-only bind mount: the release (a rename into it) fails with EXDEV.
        let run = try IntakeTests.inMountNamespace(
            """
            set -u
            R=\(setup.root)
            mkdir -p "$R/approved" "$R/rejected" "$R/quarantine"
            mount --bind "$R/approved" "$R/approved" && mount -o remount,bind,ro "$R/approved" || { echo "MOUNT-FAILED"; exit 3; }
            "\(a)" intake --root "$R" --policy "\(setup.policy)" --once; echo "RO-STATUS=$?"
            """)
        #expect(
            !run.stdout.contains("MOUNT-FAILED"),
            "this host cannot bind-mount in a private mount namespace: \(run.stderr)")
        #expect(run.stdout.contains("RO-STATUS=2"), "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("cannot release benign.pt"), "\(run.stderr)")
        let places = setup.places()
        #expect(
            places["benign.pt"]?.count == 1 && places["benign.pt"]?.first?.hasPrefix("quarantine/") == true, "\(places)"
        )
        if let q = places["benign.pt"]?.first {
            #expect(FileManager.default.fileExists(atPath: "\(setup.root)/\(q)/report.json"))
        }
        let again = try setup.once()
        #expect(again.status == 0, "\(again.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved"], "after the mount is gone")
    }

    @Test("--watch takes models as they arrive and stops cleanly on SIGTERM")
    func watch() throws {
        let setup = try Setup(policy: #"{"settleSeconds": 30}"#)
        try FileManager.default.createDirectory(atPath: setup.incoming, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: airlockBinary)
        process.arguments = ["intake", "--root", setup.root, "--policy", setup.policy, "--watch"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        Thread.sleep(forTimeInterval: 0.5)
        try setup.drop("benign.pt")
        try setup.drop("evil.pt")
        // A folder is delivered: files first, the marker last.
        let folder = setup.incoming + "/folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: folder + "/model.safetensors")
        Thread.sleep(forTimeInterval: 1.5)
        #expect(setup.places()["folder"] == ["incoming"], "a folder without .ready was taken before its settle time")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline
            && setup.places().values.contains(where: {
                !$0.allSatisfy { $0.hasPrefix("approved") || $0.hasPrefix("rejected") }
            })
        {
            Thread.sleep(forTimeInterval: 0.2)
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        try IntakeTests.checkReleased(
            setup, ["benign.pt": "approved", "evil.pt": "rejected", "folder": "approved"], "watch")
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.contains("rejected  evil.pt  malicious  rejected/evil.pt"), "\(lines)")
    }

    @Test("the policy's provenance: pinned manifests, required signatures, tampered copies rejected with the reason")
    func provenance() throws {
        let fixtures = "\(repositoryRoot)/Tests/Fixtures/model-signing"
        let pins = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: pins) }
        // The fixture model's weights are not a model format (suspicious by the static analysis); provenance decides.
        let setup = try Setup(
            policy: """
                {"settleSeconds": 0, "pass": ["clean", "suspicious"], "manifests": "\(pins)", "requireSignature": true,
                 "publicKeys": ["\(fixtures)/key.pub"]}
                """)
        try FileManager.default.createDirectory(atPath: setup.incoming, withIntermediateDirectories: true)
        func deliver(_ name: String, tamper: Bool = false, signed: Bool = true) throws {
            let folder = setup.incoming + "/.part-" + name
            try FileManager.default.copyItem(atPath: fixtures + "/model", toPath: folder)
            if signed {
                try FileManager.default.copyItem(atPath: fixtures + "/model.sig", toPath: folder + "/model.sig")
            }
            if tamper {
                let handle = try #require(Self.writer(folder + "/weights.bin"))
                try handle.write(contentsOf: Data("X".utf8))
                try handle.close()
            }
            _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
            #expect(rename(folder, setup.incoming + "/" + name) == 0)
        }
        try deliver("signed")
        try deliver("tampered", tamper: true)
        try deliver("unsigned", signed: false)
        // A pinned manifest for benign.pt, and a different file delivered under that name.
        let made = try runCLI(["manifest", "-o", pins + "/benign.pt.json", setup.samples + "/benign.pt"])
        #expect(made.status == 0, "\(made.stderr)")
        try setup.drop("legacy.pt", as: "benign.pt")

        let run = try setup.once()
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(
            setup, ["signed": "approved", "tampered": "rejected", "unsigned": "rejected", "benign.pt": "rejected"],
            "provenance")
        func provenanceRules(_ name: String) throws -> [String] {
            let report = try setup.report(name == "signed" ? "approved" : "rejected", name)
            let provenance = try #require(report["provenance"] as? [String: Any])
            return (provenance["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        }
        #expect(try provenanceRules("signed").isEmpty)
        #expect(try provenanceRules("tampered").contains("provenance.changed"))
        #expect(try provenanceRules("unsigned") == ["provenance.signature-missing"])
        #expect(try provenanceRules("benign.pt").contains("provenance.changed"), "a file that is not the pinned one")
        let signedReport = try setup.report("approved", "signed")
        let checked = (signedReport["provenance"] as? [String: Any])?["checked"] as? [String] ?? []
        #expect(checked.contains { $0.hasPrefix("signature verified with key sha256:") }, "\(checked)")
    }

    @Test("detonations through airlockd when a socket is named")
    func throughDaemon() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        let setup = try Setup()
        try setup.drop("benign.pt")
        try setup.drop("evil.pt")
        let run = try runToEnd(
            airlockBinary,
            ["intake", "--root", setup.root, "--policy", setup.policy, "--once", "--socket", daemon.socket])
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "evil.pt": "rejected"], "through airlockd")
        let status = try runCLI(["--socket", daemon.socket, "status", "--json"])
        #expect(status.stdout.contains("\"requests\":2"), "the daemon did the two probes: \(status.stdout)")

        // The daemon gone: the models stay in incoming/ and the error names the socket.
        daemon.stop()
        try setup.drop("model.safetensors")
        let refused = try runToEnd(
            airlockBinary,
            ["intake", "--root", setup.root, "--policy", setup.policy, "--once", "--socket", daemon.socket])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains(daemon.socket), "\(refused.stderr)")
        #expect(setup.places()["model.safetensors"] == ["incoming"])
    }
}
