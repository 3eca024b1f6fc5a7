import AirlockAnalysis
import Foundation
import Testing

/// `airlock intake` end to end: models dropped in incoming/ end in approved/ or rejected/ with their report and
/// manifest, exactly once, whatever happens in between — a kill -9 after any step, a full disk, a release that
/// cannot be done, a second intake on the same root, folders and files still being written.
@Suite("Intake: the quarantine stage", .serialized)
struct IntakeTests {
    /// A quarantine root with the samples of models.py (their payloads aimed at the test's canary and listener).
    final class Setup {
        let root: String
        let samples: String
        let bait: ProbeTests.Bait
        let policy: String

        init(policy json: String = #"{"settleSeconds": 0}"#) throws {
            bait = try ProbeTests.Bait()
            samples = try ProbeTests.generate("models.py", bait.args)
            root = try makeHostDirectory()
            policy = root + ".policy.json"
            try json.write(toFile: policy, atomically: true, encoding: .utf8)
        }

        var incoming: String { root + "/incoming" }

        /// Copies sample `name` into incoming/ as `as` (through a hidden name and a rename, as a careful uploader would).
        func drop(_ name: String, as target: String? = nil) throws {
            try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
            let hidden = incoming + "/.part-" + (target ?? name)
            try FileManager.default.copyItem(atPath: samples + "/" + name, toPath: hidden)
            #expect(rename(hidden, incoming + "/" + (target ?? name)) == 0)
        }

        /// Runs `airlock intake --once` with extra environment.
        func once(environment: [String: String] = [:]) throws -> ProgramRun {
            try runToEnd(airlockBinary, ["intake", "--root", root, "--policy", policy, "--once"], environment: environment)
        }

        /// Where each model is: its name → the places (relative to the root) that hold it.
        func places() -> [String: [String]] {
            var found: [String: [String]] = [:]
            let fm = FileManager.default
            for entry in (try? fm.contentsOfDirectory(atPath: incoming)) ?? [] where !entry.hasPrefix(".") {
                found[entry, default: []].append("incoming")
            }
            for id in (try? fm.contentsOfDirectory(atPath: root + "/quarantine")) ?? [] {
                for entry in (try? fm.contentsOfDirectory(atPath: root + "/quarantine/" + id)) ?? [] where !["report.json", "manifest.json"].contains(entry) && !entry.hasPrefix(".") {
                    found[entry, default: []].append("quarantine/\(id)")
                }
            }
            for side in ["approved", "rejected"] {
                for dest in (try? fm.contentsOfDirectory(atPath: root + "/" + side)) ?? [] {
                    for entry in (try? fm.contentsOfDirectory(atPath: "\(root)/\(side)/\(dest)")) ?? [] where !["report.json", "manifest.json"].contains(entry) {
                        found[entry, default: []].append("\(side)/\(dest)")
                    }
                }
            }
            // The delivery as the uploader made it, kept aside from the take until the intake's own copy is
            // released: the model's place only while no copy of it exists yet.
            for id in (try? fm.contentsOfDirectory(atPath: root + "/.airlock/delivered")) ?? [] where !id.hasSuffix(".discard") {
                for entry in (try? fm.contentsOfDirectory(atPath: "\(root)/.airlock/delivered/\(id)")) ?? [] where found[entry] == nil {
                    found[entry] = [".airlock/delivered/\(id)"]
                }
            }
            return found
        }

        /// The report released with `name` in `side`/`name`.
        func report(_ side: String, _ name: String) throws -> [String: Any] {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(side)/\(name)/report.json"))
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }

        deinit {
            bait.checkUntouched()
            try? FileManager.default.removeItem(atPath: samples)
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: policy)
        }
    }

    /// Each model is in exactly one place: approved/NAME or rejected/NAME with report.json and manifest.json, read-only
    /// and the intake's (`owner`); nothing is left in incoming/, quarantine/ or the intake's keeping of deliveries,
    /// and the journal is empty.
    static func checkReleased(_ setup: Setup, _ expected: [String: String], _ context: String, owner: uid_t = geteuid()) throws {
        let places = setup.places()
        for (name, side) in expected {
            #expect(places[name] == ["\(side)/\(name)"], "\(context): \(name) is in \(places[name] ?? []), expected \(side)/\(name)")
            for file in ["report.json", "manifest.json"] {
                #expect(FileManager.default.fileExists(atPath: "\(setup.root)/\(side)/\(name)/\(file)"), "\(context): \(side)/\(name)/\(file) is missing")
            }
        }
        #expect(Set(places.keys) == Set(expected.keys), "\(context): unexpected entries \(places)")
        for (name, side) in expected {
            let problems = IntakeTests.writableEntries("\(setup.root)/\(side)/\(name)", owner: owner)
            #expect(problems.isEmpty, "\(context): \(side)/\(name) is not released read-only and the intake's: \(problems)")
        }
        let quarantine = (try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine")) ?? []
        #expect(quarantine.isEmpty, "\(context): quarantine/ still holds \(quarantine)")
        let delivered = (try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/.airlock/delivered")) ?? []
        #expect(delivered.isEmpty, "\(context): .airlock/delivered/ still holds \(delivered)")
        let journal = (try? Data(contentsOf: URL(fileURLWithPath: setup.root + "/.airlock/journal"))) ?? Data([1])
        #expect(journal.isEmpty, "\(context): the journal was not emptied: \(String(decoding: journal, as: UTF8.self))")
    }

    /// The entries under `path` (itself included) that are not as released models must be: folders 0555, files 0444
    /// with one link, no set-id bits, owned by `owner`; each with what is wrong.
    static func writableEntries(_ path: String, owner: uid_t) -> [String] {
        var st = stat()
        guard lstat(path, &st) == 0 else { return ["\(path): \(String(cString: strerror(errno)))"] }
        var problems: [String] = []
        let mode = st.st_mode & 0o7777
        if st.st_uid != owner { problems.append("\(path): owner \(st.st_uid), not \(owner)") }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            if mode != 0o555 { problems.append("\(path): folder mode \(String(mode, radix: 8))") }
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
                problems += writableEntries(path + "/" + entry, owner: owner)
            }
        case S_IFREG:
            if mode != 0o444 { problems.append("\(path): file mode \(String(mode, radix: 8))") }
            if st.st_nlink != 1 { problems.append("\(path): \(st.st_nlink) links") }
        case S_IFLNK:
            break
        default:
            problems.append("\(path): not a file, folder or link")
        }
        return problems
    }

    /// Validates intake reports against docs/intake-report.schema.json (whose `reports` are reports of
    /// docs/report.schema.json); prints each error and exits 1 when there is any.
    static let validator = """
        import json, sys, warnings, jsonschema
        warnings.simplefilter("ignore")  # RefResolver is deprecated in new jsonschema, the only way in Debian 12's
        intake = json.load(open(sys.argv[1]))
        report = json.load(open(sys.argv[2]))
        jsonschema.Draft7Validator.check_schema(intake)
        resolver = jsonschema.RefResolver.from_schema(intake, store={"report.schema.json": report})
        validator = jsonschema.Draft7Validator(intake, resolver=resolver)
        bad = 0
        for name in sys.argv[3:]:
            for e in validator.iter_errors(json.load(open(name))):
                bad += 1
                print("%s: /%s: %s" % (name, "/".join(map(str, e.absolute_path)), e.message[:300]))
        print("%d reports, %d errors" % (len(sys.argv) - 3, bad))
        sys.exit(1 if bad or len(sys.argv) == 3 else 0)
        """

    /// Every report.json released under the root validates.
    static func checkSchema(_ setup: Setup) throws {
        var files: [String] = []
        for side in ["approved", "rejected"] {
            for dest in (try? FileManager.default.contentsOfDirectory(atPath: "\(setup.root)/\(side)")) ?? [] {
                files.append("\(setup.root)/\(side)/\(dest)/report.json")
            }
        }
        let run = try ReportSchemaTests.python(["-c", validator, "\(repositoryRoot)/docs/intake-report.schema.json", "\(repositoryRoot)/docs/report.schema.json"] + files)
        #expect(run.status == 0, "\(run.output)")
    }

    @Test("clean models are approved, malicious ones rejected with their evidence")
    func approvedAndRejected() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        try setup.drop("model.safetensors")
        try setup.drop("evil.pt")
        try setup.drop("exfil.pkl")
        let run = try setup.once()
        #expect(run.status == 1, "a rejected model makes --once exit 1: \(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "model.safetensors": "approved", "evil.pt": "rejected", "exfil.pkl": "rejected"], "one pass")

        let evil = try setup.report("rejected", "evil.pt")
        #expect(evil["verdict"] as? String == "malicious")
        let reports = try #require(evil["reports"] as? [[String: Any]])
        let rules = reports.flatMap { ($0["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String } }
        #expect(rules.contains("dynamic.exec"), "the detonation's evidence is in the released report: \(rules)")
        let intake = try #require(evil["intake"] as? [String: Any])
        #expect(intake["decision"] as? String == "rejected")
        let reason = intake["reason"] as? String ?? ""
        #expect(reason.hasPrefix("rejected: probe verdict malicious") && reason.contains("dynamic.exec"), "\(reason)")
        try IntakeTests.checkSchema(setup)

        let benign = try setup.report("approved", "benign.pt")
        #expect(benign["verdict"] as? String == "clean")
        let manifestData = try Data(contentsOf: URL(fileURLWithPath: setup.root + "/approved/benign.pt/manifest.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
        let files = try #require(manifest["files"] as? [[String: Any]])
        let original = try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/benign.pt"))
        #expect(files.count == 1 && files[0]["size"] as? Int == original.count)
        // The released manifest pins the released file: verify agrees.
        let verify = try runCLI(["verify", "--manifest", setup.root + "/approved/benign.pt/manifest.json", setup.root + "/approved/benign.pt/benign.pt"])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    /// The steps after which the intake kills itself (AIRLOCK_INTAKE_CRASH_AT), in the order they happen.
    static let crashPoints = ["take-journaled", "quarantine-created", "moved-in", "copied", "owned", "taken", "report-written", "reports-written",
                              "decided", "released", "discarded", "done"]

    @Test("kill -9 after any step: the restart finishes every model exactly once", arguments: crashPoints)
    func crashAndRecover(point: String) throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        try setup.drop("evil.pt")
        try FileManager.default.createDirectory(atPath: setup.incoming + "/.part-folder", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: setup.incoming + "/.part-folder/model.safetensors")
        _ = FileManager.default.createFile(atPath: setup.incoming + "/.part-folder/.ready", contents: nil)
        #expect(rename(setup.incoming + "/.part-folder", setup.incoming + "/folder") == 0)

        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": point])
        #expect(crashed.signal == SIGKILL, "the intake did not reach \(point): status \(crashed.status) \(crashed.stderr)")
        // Whatever the crash left, every model is somewhere, once.
        let during = setup.places()
        for name in ["benign.pt", "evil.pt", "folder"] {
            #expect(during[name]?.count == 1, "after a crash at \(point), \(name) is in \(during[name] ?? [])")
        }
        let restarted = try setup.once()
        // 1 when the restart rejected (or released a rejection) itself, 0 when the crashed run had finished that part.
        #expect(restarted.signal == nil && (restarted.status == 0 || restarted.status == 1), "restart after \(point): \(restarted.status) \(restarted.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "evil.pt": "rejected", "folder": "approved"], "crash at \(point)")
    }

    @Test("a journal line cut short by a crash is dropped; a journal with a foreign line is refused, not guessed at")
    func tornJournal() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        _ = try setup.once()  // makes the root; benign.pt approved
        try setup.drop("model.safetensors")
        // A take that was journaled (the move never happened), then half a line.
        let journal = setup.root + "/.airlock/journal"
        try Data(#"{"op":"take","id":"20261122T000000Z-00000000","name":"model.safetensors"}\#n{"op":"tak"#.utf8).write(to: URL(fileURLWithPath: journal))
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("the move into quarantine had not happened"), "\(run.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "model.safetensors": "approved"], "torn journal")

        try Data("not a record\n".utf8).write(to: URL(fileURLWithPath: journal))
        let refused = try setup.once()
        #expect(refused.status == 2 && refused.stderr.contains("refusing to guess"), "\(refused.stderr)")
    }

    @Test("a temporary report a crash left in quarantine is not released with the model")
    func leftoverTemporaryReport() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "taken"])
        #expect(crashed.signal == SIGKILL)
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine").first)
        // What a crash in the middle of writing report.json leaves (another process's id in the name).
        _ = FileManager.default.createFile(atPath: "\(setup.root)/quarantine/\(id)/.tmp-report.json-99999", contents: Data("{".utf8))
        #expect(try setup.once().status == 0)
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved"], "leftover temporary report")
    }

    @Test("kill -9 on the way back to incoming/ (airlockd unreachable): the restart finishes the move, then takes the model", arguments: ["rollback-journaled", "moved-back"])
    func crashDuringRollback(point: String) throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        let unreachable = setup.root + ".no-daemon.sock"
        let crashed = try runToEnd(airlockBinary, ["intake", "--root", setup.root, "--policy", setup.policy, "--once", "--socket", unreachable],
                                   environment: ["AIRLOCK_INTAKE_CRASH_AT": point])
        #expect(crashed.signal == SIGKILL, "the intake did not reach \(point): \(crashed.status) \(crashed.stderr)")
        #expect(setup.places()["benign.pt"]?.count == 1, "\(setup.places())")
        let restarted = try setup.once()  // local probes this time
        #expect(restarted.status == 0, "\(restarted.stdout) \(restarted.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved"], "rollback interrupted at \(point)")
    }

    @Test("the same name delivered twice: both kept, the second as NAME.ID, neither overwritten")
    func sameNameTwice() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        #expect(try setup.once().status == 0)
        try setup.drop("benign.pt")  // the same name again
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        let released = try FileManager.default.contentsOfDirectory(atPath: setup.root + "/approved").sorted()
        #expect(released.count == 2 && released[0] == "benign.pt" && released[1].hasPrefix("benign.pt.20"), "\(released)")
        let first = try Data(contentsOf: URL(fileURLWithPath: setup.root + "/approved/benign.pt/benign.pt"))
        let second = try Data(contentsOf: URL(fileURLWithPath: setup.root + "/approved/\(released[1])/benign.pt"))
        #expect(first == (try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/benign.pt"))))
        #expect(second == first)
        #expect(FileManager.default.fileExists(atPath: setup.root + "/approved/\(released[1])/report.json"))
        #expect(run.stdout.contains("approved/\(released[1])"), "\(run.stdout)")
    }

    @Test("links, special files and reserved names are left in incoming/ and said so")
    func leftAlone() throws {
        let setup = try Setup()
        try setup.drop("benign.pt", as: "report.json")
        try FileManager.default.createSymbolicLink(atPath: setup.incoming + "/link.pt", withDestinationPath: setup.samples + "/benign.pt")
        #expect(mkfifo(setup.incoming + "/pipe", 0o600) == 0)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("waiting   report.json: report.json is reserved"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   link.pt: a symbolic link"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   pipe: not a regular file or folder"), "\(run.stdout)")
        let left = try FileManager.default.contentsOfDirectory(atPath: setup.incoming).filter { !$0.hasPrefix(".") }.sorted()
        #expect(left == ["link.pt", "pipe", "report.json"])
    }

    @Test("bad policies, a missing manifests folder and a root across file systems are errors naming the cause")
    func configurationErrors() throws {
        let setup = try Setup()
        let cases: [(String, String)] = [
            (#"{"pass": ["clean", "fine"]}"#, "field pass[1]: expected clean, suspicious, malicious or error"),
            (#"{"settle": 3}"#, "field settle: unknown field"),
            (#"{"requireManifest": true}"#, "requireManifest needs manifests"),
            (#"{"settleSeconds": -1}"#, "settleSeconds: between 0 and 86400"),
            (#"{"maxBytes": 0}"#, "field maxBytes: between 1 and 2^50"),
            (#"{"manifests": "\#(setup.root).missing"}"#, "the policy's manifests folder \(setup.root).missing: ENOENT (No such file or directory)"),
            (#"{"publicKeys": ["\#(repositoryRoot)/Tests/AirlockSandboxTests/Fixtures/model-signing/rsa.pub"]}"#, "public key"),
            ("{", "not valid JSON"),
        ]
        for (policy, message) in cases {
            try policy.write(toFile: setup.policy, atomically: true, encoding: .utf8)
            let run = try setup.once()
            #expect(run.status == 2 && run.stderr.contains(message), "\(policy): \(run.status) \(run.stderr)")
        }
        // approved/ on another file system: renames could not reach it.
        try #"{"settleSeconds": 0}"#.write(toFile: setup.policy, atomically: true, encoding: .utf8)
        let run = try IntakeTests.inMountNamespace("""
            mkdir -p "\(setup.root)/approved" && mount -t tmpfs tmpfs "\(setup.root)/approved" || { echo MOUNT-FAILED; exit 3; }
            "\(airlockBinary)" intake --root "\(setup.root)" --policy "\(setup.policy)" --once; echo "STATUS=$?"
            """)
        #expect(!run.stdout.contains("MOUNT-FAILED"), "this host cannot mount a tmpfs in a private mount namespace: \(run.stderr)")
        #expect(run.stdout.contains("STATUS=2") && run.stderr.contains("approved is on another file system"), "\(run.stdout) \(run.stderr)")
    }

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
        #expect(run.stdout.split(separator: "\n").filter { $0.hasPrefix("approved") || $0.hasPrefix("rejected") }.count == 50)
        try IntakeTests.checkReleased(setup, expected, "50 at once")
        try IntakeTests.checkSchema(setup)
    }

    @Test("a folder still being copied or a file still open for writing is not taken early")
    func notTakenEarly() throws {
        let setup = try Setup(policy: #"{"settleSeconds": 3}"#)
        // A folder without .ready that keeps changing.
        let folder = setup.incoming + "/copying"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: folder + "/part1.safetensors")
        // A file held open for writing, and a folder with .ready but a file in it still open for writing.
        let writing = setup.incoming + "/writing.pt"
        _ = FileManager.default.createFile(atPath: writing, contents: Data(try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/benign.pt")).prefix(100)))
        let writer = try #require(FileHandle(forWritingAtPath: writing))
        let marked = setup.incoming + "/marked"
        try FileManager.default.createDirectory(atPath: marked, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: marked + "/.ready", contents: nil)
        _ = FileManager.default.createFile(atPath: marked + "/weights.safetensors", contents: nil)
        let markedWriter = try #require(FileHandle(forWritingAtPath: marked + "/weights.safetensors"))

        var run = try setup.once()
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("waiting   copying"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   writing.pt: open for writing"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   marked: a file in it is open for writing"), "\(run.stdout)")
        #expect(setup.places()["writing.pt"] == ["incoming"])

        // The copy goes on: still not taken.
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: folder + "/part2.safetensors")
        run = try setup.once()
        #expect(setup.places()["copying"] == ["incoming"], "a folder that just changed was taken")

        // The writers finish.
        try writer.seekToEnd()
        try writer.write(contentsOf: try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/benign.pt")).dropFirst(100))
        try writer.close()
        try markedWriter.write(contentsOf: try Data(contentsOf: URL(fileURLWithPath: setup.samples + "/model.safetensors")))
        try markedWriter.close()
        run = try setup.once()
        #expect(setup.places()["writing.pt"] == ["approved/writing.pt"], "\(run.stdout) \(run.stderr)")
        #expect(setup.places()["marked"] == ["approved/marked"], "\(run.stdout) \(run.stderr)")
        #expect(setup.places()["copying"] == ["incoming"])

        // Still for the settle time: taken.
        Thread.sleep(forTimeInterval: 3.5)
        run = try setup.once()
        try IntakeTests.checkReleased(setup, ["writing.pt": "approved", "marked": "approved", "copying": "approved"], "after settling")
    }

    @Test("what the intake cannot read (a file, a file in a folder) waits in incoming/ with the reason")
    func unreadableWaits() throws {
        let setup = try Setup()
        let folder = setup.incoming + "/folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: folder + "/weights.safetensors")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        try FileManager.default.copyItem(atPath: setup.samples + "/benign.pt", toPath: setup.incoming + "/private.pt")
        // The intake runs as uid 65534 and owns its root; the two model files stay root's, mode 0600.
        for path in [setup.root, setup.incoming, folder, folder + "/.ready"] { #expect(chown(path, 65534, 65534) == 0) }
        for path in [folder + "/weights.safetensors", setup.incoming + "/private.pt"] { #expect(chmod(path, 0o600) == 0) }
        let asNobody = ["--reuid", "65534", "--regid", "65534", "--clear-groups", airlockBinary, "intake", "--root", setup.root, "--policy", setup.policy, "--once"]
        let run = try runToEnd("/usr/bin/setpriv", asNobody)
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.stdout.contains("waiting   private.pt: cannot open: Permission denied"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   folder: cannot read weights.safetensors in it"), "\(run.stdout)")
        #expect(setup.places()["private.pt"] == ["incoming"] && setup.places()["folder"] == ["incoming"])
        // Readable again: taken (by root here; the intake's user could read them now too).
        for path in [folder + "/weights.safetensors", setup.incoming + "/private.pt"] { #expect(chmod(path, 0o644) == 0) }
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
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "model.safetensors": "approved"], "after the lock")
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
        #expect(!run.stdout.contains("MOUNT-FAILED"), "this host cannot mount a tmpfs in a private mount namespace: \(run.stderr)")
        #expect(run.stdout.contains("FULL-STATUS=2"), "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("No space left on device"), "\(run.stderr)")
        #expect(run.stdout.contains("INCOMING: benign.pt"), "\(run.stdout)")
        #expect(!run.stdout.contains("QUARANTINE:"), "\(run.stdout)")
        #expect(run.stdout.contains("ROOM-STATUS=0"), "\(run.stdout) \(run.stderr)")
        #expect(run.stdout.contains("APPROVED: benign.pt") && run.stdout.contains("APPROVED: report.json"), "\(run.stdout)")
    }

    @Test("a release that cannot be done leaves the model in quarantine with its report; the next run releases it")
    func releaseRefused() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        let a = airlockBinary
        // approved/ becomes a read-only bind mount: the release (a rename into it) fails with EXDEV.
        let run = try IntakeTests.inMountNamespace("""
            set -u
            R=\(setup.root)
            mkdir -p "$R/approved" "$R/rejected" "$R/quarantine"
            mount --bind "$R/approved" "$R/approved" && mount -o remount,bind,ro "$R/approved" || { echo "MOUNT-FAILED"; exit 3; }
            "\(a)" intake --root "$R" --policy "\(setup.policy)" --once; echo "RO-STATUS=$?"
            """)
        #expect(!run.stdout.contains("MOUNT-FAILED"), "this host cannot bind-mount in a private mount namespace: \(run.stderr)")
        #expect(run.stdout.contains("RO-STATUS=2"), "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("cannot release benign.pt"), "\(run.stderr)")
        let places = setup.places()
        #expect(places["benign.pt"]?.count == 1 && places["benign.pt"]?.first?.hasPrefix("quarantine/") == true, "\(places)")
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
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: folder + "/model.safetensors")
        Thread.sleep(forTimeInterval: 1.5)
        #expect(setup.places()["folder"] == ["incoming"], "a folder without .ready was taken before its settle time")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && setup.places().values.contains(where: { !$0.allSatisfy { $0.hasPrefix("approved") || $0.hasPrefix("rejected") } }) {
            Thread.sleep(forTimeInterval: 0.2)
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "evil.pt": "rejected", "folder": "approved"], "watch")
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.contains("rejected  evil.pt  malicious  rejected/evil.pt"), "\(lines)")
    }

    @Test("the policy's provenance: pinned manifests, required signatures, tampered copies rejected with the reason")
    func provenance() throws {
        let fixtures = "\(repositoryRoot)/Tests/AirlockSandboxTests/Fixtures/model-signing"
        let pins = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: pins) }
        // The fixture model's weights are not a model format (suspicious by the static analysis); provenance decides.
        let setup = try Setup(policy: """
            {"settleSeconds": 0, "pass": ["clean", "suspicious"], "manifests": "\(pins)", "requireSignature": true,
             "publicKeys": ["\(fixtures)/key.pub"]}
            """)
        try FileManager.default.createDirectory(atPath: setup.incoming, withIntermediateDirectories: true)
        func deliver(_ name: String, tamper: Bool = false, signed: Bool = true) throws {
            let folder = setup.incoming + "/.part-" + name
            try FileManager.default.copyItem(atPath: fixtures + "/model", toPath: folder)
            if signed { try FileManager.default.copyItem(atPath: fixtures + "/model.sig", toPath: folder + "/model.sig") }
            if tamper {
                let handle = try #require(FileHandle(forWritingAtPath: folder + "/weights.bin"))
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
        try IntakeTests.checkReleased(setup, ["signed": "approved", "tampered": "rejected", "unsigned": "rejected", "benign.pt": "rejected"], "provenance")
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
        let run = try runToEnd(airlockBinary, ["intake", "--root", setup.root, "--policy", setup.policy, "--once", "--socket", daemon.socket])
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved", "evil.pt": "rejected"], "through airlockd")
        let status = try runCLI(["--socket", daemon.socket, "status", "--json"])
        #expect(status.stdout.contains("\"requests\":2"), "the daemon did the two probes: \(status.stdout)")

        // The daemon gone: the models stay in incoming/ and the error names the socket.
        daemon.stop()
        try setup.drop("model.safetensors")
        let refused = try runToEnd(airlockBinary, ["intake", "--root", setup.root, "--policy", setup.policy, "--once", "--socket", daemon.socket])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains(daemon.socket), "\(refused.stderr)")
        #expect(setup.places()["model.safetensors"] == ["incoming"])
    }
}

/// Custody (issue 11, class 2): what is approved stays what was examined, whatever the uploader kept — a hard link, a
/// descriptor open for writing, a shared writable mapping, a descriptor of a delivered folder.
extension IntakeTests {
    /// The bytes of `path`.
    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// Writes `text` over the start of the file open as `fd` (or, with `truncate`, makes it the whole content).
    static func scribble(_ fd: Int32, _ text: String, truncate: Bool = false) -> Bool {
        if truncate && ftruncate(fd, 0) != 0 { return false }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == bytes.count
    }

    /// Runs `airlock intake --once` as uid/gid 65534 (the intake's own user, not the uploader), after giving it the root.
    static func onceAsNobody(_ setup: Setup, _ extra: [String] = [], environment: [String: String] = [:]) throws -> ProgramRun {
        for path in [setup.root, setup.incoming] { #expect(chown(path, 65534, 65534) == 0) }
        return try runToEnd("/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", airlockBinary,
                                                 "intake", "--root", setup.root, "--policy", setup.policy, "--once"] + extra,
                            environment: environment)
    }

    /// A folder model an uploader (root here) delivers group-writable, so that the intake's user may move it.
    static func dropWritableFolder(_ setup: Setup, _ name: String) throws {
        let folder = setup.incoming + "/" + name
        try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: folder + "/sub/weights.safetensors")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        for path in [folder, folder + "/sub"] { #expect(chmod(path, 0o777) == 0) }
    }

    @Test("as the intake's own user: a read-only copy cut short by kill -9 is made again; a rollback removes it and gives the delivery back")
    func unprivilegedCrashAndRollback() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        try IntakeTests.dropWritableFolder(setup, "folder")
        // Killed with both copies complete (0444 files, 0555 folders) but not yet named: the restart removes them.
        let crashed = try IntakeTests.onceAsNobody(setup, environment: ["AIRLOCK_INTAKE_CRASH_AT": "copied"])
        #expect(crashed.signal == SIGKILL, "\(crashed.status) \(crashed.stderr)")
        // airlockd unreachable: the take is rolled back, the read-only copy removed, the delivery back in incoming/.
        let unreachable = try IntakeTests.onceAsNobody(setup, ["--socket", setup.root + ".no-daemon.sock"])
        #expect(unreachable.status == 2, "\(unreachable.stdout) \(unreachable.stderr)")
        #expect(setup.places()["model.safetensors"] == ["incoming"] && setup.places()["folder"] == ["incoming"], "\(setup.places()) \(unreachable.stderr)")
        var st = stat()
        #expect(stat(setup.incoming + "/folder/sub/weights.safetensors", &st) == 0 && st.st_uid == 0, "the delivery itself went back")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine")) ?? []).isEmpty)
        let run = try IntakeTests.onceAsNobody(setup)
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved", "folder": "approved"], "as the intake's user", owner: 65534)
    }

    @Test("an uploader's hard link to a delivered file cannot rewrite the approved model")
    func hardLinkKept() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        let kept = setup.root + ".uploader-link"
        #expect(link(setup.incoming + "/model.safetensors", kept) == 0)
        defer { unlink(kept) }
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved"], "hard link kept")

        let fd = open(kept, O_WRONLY)
        #expect(fd >= 0 && IntakeTests.scribble(fd, "rewritten after approval", truncate: true))
        close(fd)
        let approved = setup.root + "/approved/model.safetensors/model.safetensors"
        #expect(try IntakeTests.bytes(approved) == (try IntakeTests.bytes(setup.samples + "/model.safetensors")), "the approved file was rewritten through the uploader's link")
        let verify = try runCLI(["verify", "--manifest", setup.root + "/approved/model.safetensors/manifest.json", approved])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test("an uploader's descriptor open for writing and shared writable mapping cannot reach the approved model; released read-only, owned by the intake's user")
    func writerKept() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        // A folder too, which the intake's user may move (an uploader's folder is group-writable in incoming/).
        try IntakeTests.dropWritableFolder(setup, "folder")
        let folder = setup.incoming + "/folder"

        // The intake runs as another user, which cannot take a lease on the uploader's file: it falls back to the
        // settle time (0 here) and takes the file while the uploader holds it open for writing and mapped.
        let fd = open(setup.incoming + "/model.safetensors", O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        #expect(map != MAP_FAILED)
        defer { if map != MAP_FAILED { munmap(map, size) } }
        let deep = open(folder + "/sub/weights.safetensors", O_RDWR)
        #expect(deep >= 0)
        defer { close(deep) }

        let run = try IntakeTests.onceAsNobody(setup)
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved", "folder": "approved"], "writer kept", owner: 65534)

        #expect(IntakeTests.scribble(fd, "written through the kept descriptor"))
        if map != MAP_FAILED, let map {
            map.storeBytes(of: 0x41, toByteOffset: size - 1, as: UInt8.self)
            #expect(msync(map, size, MS_SYNC) == 0)
        }
        #expect(IntakeTests.scribble(deep, "written through a descriptor of a file in the folder"))
        let sample = try IntakeTests.bytes(setup.samples + "/model.safetensors")
        #expect(try IntakeTests.bytes(setup.root + "/approved/model.safetensors/model.safetensors") == sample, "the approved file was rewritten through a kept descriptor or mapping")
        #expect(try IntakeTests.bytes(setup.root + "/approved/folder/folder/sub/weights.safetensors") == sample, "a file of the approved folder was rewritten")
        // Released as the intake's: it alone could change modes; the uploader's user cannot write them.
        var st = stat()
        #expect(stat(setup.root + "/approved/folder/folder/sub/weights.safetensors", &st) == 0 && st.st_uid == 65534 && st.st_gid == 65534)
    }

    @Test("an uploader's descriptor of a delivered folder cannot change the approved folder (openat, renameat, mkdirat)")
    func folderDescriptorKept() throws {
        let setup = try Setup()
        let folder = setup.incoming + "/.part-folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: folder + "/model.safetensors")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        let dfd = open(folder, O_RDONLY | O_DIRECTORY)
        #expect(dfd >= 0)
        defer { close(dfd) }
        #expect(rename(folder, setup.incoming + "/folder") == 0)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["folder": "approved"], "folder descriptor kept")

        // Through the descriptor: rewrite a file, add one, rename one, add a folder. (Each may fail: the delivered
        // folder is gone once the intake's copy is released. What matters is what they do to the approved folder.)
        let w = openat(dfd, "model.safetensors", O_WRONLY | O_TRUNC)
        if w >= 0 {
            _ = IntakeTests.scribble(w, "not a model")
            close(w)
        }
        let added = openat(dfd, "added.pkl", O_WRONLY | O_CREAT | O_EXCL, 0o644)
        if added >= 0 {
            _ = IntakeTests.scribble(added, "cos\nsystem\n")
            close(added)
        }
        _ = renameat(dfd, "model.safetensors", dfd, "renamed.safetensors")
        _ = mkdirat(dfd, "more", 0o755)

        let released = setup.root + "/approved/folder/folder"
        let entries = try FileManager.default.contentsOfDirectory(atPath: released).sorted()
        // The .ready marker is how the folder was delivered, not part of the model: it is not released.
        #expect(entries == ["model.safetensors"], "the approved folder changed: \(entries)")
        #expect(try IntakeTests.bytes(released + "/model.safetensors") == (try IntakeTests.bytes(setup.samples + "/model.safetensors")))
        let verify = try runCLI(["verify", "--manifest", setup.root + "/approved/folder/manifest.json", released])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test("a model whose copy changes between examination and release is not approved", arguments: ["bytes", "link", "bytes, crash after the new decision"])
    func changedBeforeRelease(tamper: String) throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        // Examined and decided "approved", stopped before the release (a crash is the fault injection).
        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "decided"])
        #expect(crashed.signal == SIGKILL, "\(crashed.status) \(crashed.stderr)")
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine").first)
        let copy = "\(setup.root)/quarantine/\(id)/model.safetensors"
        let extra = setup.root + ".extra-link"
        defer { unlink(extra) }
        if tamper == "link" {
            // Another name for the examined file: whoever holds it could change the model later.
            #expect(link(copy, extra) == 0)
        } else {
            // What only root (or a bug of the intake) could do to the intake's private copy.
            let fd = open(copy, O_WRONLY)
            #expect(fd >= 0)
            let x: [UInt8] = [0x58]
            #expect(x.withUnsafeBytes { pwrite(fd, $0.baseAddress, 1, off_t(Int(lseek(fd, 0, SEEK_END)) - 1)) } == 1)
            close(fd)
        }
        if tamper.hasPrefix("bytes, crash") {
            let again = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "redecided"])
            #expect(again.signal == SIGKILL, "the release did not turn the approval into a rejection: \(again.status) \(again.stderr)")
        }
        let run = try setup.once()
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        #expect(setup.places()["model.safetensors"] == ["rejected/model.safetensors"], "\(setup.places())")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/approved")) ?? []).isEmpty)
        let intake = try #require(try setup.report("rejected", "model.safetensors")["intake"] as? [String: Any])
        #expect(intake["decision"] as? String == "rejected")
        let reason = intake["reason"] as? String ?? ""
        #expect(reason.hasPrefix("rejected: the model about to be released is not the one examined"), "\(reason)")
        #expect(reason.contains(tamper == "link" ? "2 hard links" : "SHA-256"), "\(reason)")
        try IntakeTests.checkSchema(setup)
    }

    @Test("a delivery opened for writing again before it is copied goes back to incoming/ until the writer is gone")
    func writerBeforeCopy() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        // Moved into the intake's keeping, not yet copied: a writer opens it there (deterministically, through a
        // crash; in life, a link or descriptor the uploader kept).
        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "moved-in"])
        #expect(crashed.signal == SIGKILL, "\(crashed.status) \(crashed.stderr)")
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: setup.root + "/.airlock/delivered").first)
        let writer = open("\(setup.root)/.airlock/delivered/\(id)/model.safetensors", O_RDWR)
        #expect(writer >= 0)
        let held = try setup.once()
        #expect(held.stderr.contains("model.safetensors is open for writing again"), "\(held.stderr)")
        #expect(held.stdout.contains("waiting   model.safetensors: open for writing"), "\(held.stdout)")
        #expect(setup.places()["model.safetensors"] == ["incoming"], "\(setup.places())")
        close(writer)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved"], "writer before the copy")
    }

    @Test("a model an earlier intake moved into quarantine as the uploader's own inode is copied before it is examined")
    func takenBeforeCustody() throws {
        let setup = try Setup()
        _ = try setup.once()  // makes the root
        // What an intake before custody left after a crash: the uploader's inode itself in quarantine/ID/NAME.
        let id = "20261122T000000Z-00000000"
        try FileManager.default.createDirectory(atPath: "\(setup.root)/quarantine/\(id)", withIntermediateDirectories: false)
        try FileManager.default.copyItem(atPath: setup.samples + "/model.safetensors", toPath: "\(setup.root)/quarantine/\(id)/model.safetensors")
        let kept = setup.root + ".uploader-link"
        #expect(link("\(setup.root)/quarantine/\(id)/model.safetensors", kept) == 0)
        defer { unlink(kept) }
        try Data(#"{"op":"take","id":"\#(id)","name":"model.safetensors"}\#n{"op":"taken","id":"\#(id)","name":"model.safetensors"}\#n"#.utf8)
            .write(to: URL(fileURLWithPath: setup.root + "/.airlock/journal"))
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("taken by an earlier intake as the uploader's own inode; copying it"), "\(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved"], "taken before custody")
        let fd = open(kept, O_WRONLY)
        #expect(fd >= 0 && IntakeTests.scribble(fd, "rewritten", truncate: true))
        close(fd)
        #expect(try IntakeTests.bytes(setup.root + "/approved/model.safetensors/model.safetensors") == (try IntakeTests.bytes(setup.samples + "/model.safetensors")))
    }

    @Test("what cannot be copied whole (a 1 TB sparse file, a FIFO in a folder) stays in incoming/ with the reason; a sparse file within the budget stays sparse")
    func notCopied() throws {
        let setup = try Setup()
        try FileManager.default.createDirectory(atPath: setup.incoming + "/fifo-folder", withIntermediateDirectories: true)
        #expect(mkfifo(setup.incoming + "/fifo-folder/pipe", 0o600) == 0)
        _ = FileManager.default.createFile(atPath: setup.incoming + "/fifo-folder/.ready", contents: nil)
        _ = FileManager.default.createFile(atPath: setup.incoming + "/huge.bin", contents: nil)
        #expect(truncate(setup.incoming + "/huge.bin", 1 << 40) == 0)
        // 256 MiB apparent, a few bytes of data.
        _ = FileManager.default.createFile(atPath: setup.incoming + "/sparse.bin", contents: Data("not a model".utf8))
        #expect(truncate(setup.incoming + "/sparse.bin", 256 << 20) == 0)
        let run = try setup.once()
        #expect(run.stdout.contains("waiting   huge.bin: not taken: 1099511627776 bytes"), "\(run.stdout)")
        #expect(run.stdout.contains("byte budget (maxBytes 274877906944)"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   fifo-folder: not taken: fifo-folder/pipe is a FIFO"), "\(run.stdout)")
        #expect(setup.places()["huge.bin"] == ["incoming"] && setup.places()["fifo-folder"] == ["incoming"])
        #expect(setup.places()["sparse.bin"] == ["rejected/sparse.bin"], "\(run.stdout) \(run.stderr)")  // not a model format
        var st = stat()
        #expect(stat(setup.root + "/rejected/sparse.bin/sparse.bin", &st) == 0 && st.st_size == 256 << 20)
        #expect(st.st_blocks * 512 <= 1 << 20, "the copy of a sparse file filled its holes: \(st.st_blocks * 512) bytes allocated")
    }
}
