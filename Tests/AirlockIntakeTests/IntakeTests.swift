import AirlockAnalysis
import Foundation
import Testing
import AirlockTestSupport

/// `airlock intake` end to end: models dropped in incoming/ end in approved/ or rejected/ with their report and
/// manifest, exactly once, whatever happens in between — a kill -9 after any step, a full disk, a release that
/// cannot be done, a second intake on the same root, folders and files still being written.
@Suite("Intake: the quarantine stage", .serialized)
struct IntakeTests {
    /// A quarantine root with the samples of models.py (their payloads aimed at the test's canary and listener).
    final class Setup {
        let root: String
        let samples: String
        let bait: Bait
        let policy: String

        init(policy json: String = #"{"settleSeconds": 0}"#) throws {
            bait = try Bait()
            samples = try generateSamples("models.py", bait.args)
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
            try runToEnd(
                airlockBinary, ["intake", "--root", root, "--policy", policy, "--once"], environment: environment)
        }

        /// Where each model is: its name → the places (relative to the root) that hold it.
        func places() -> [String: [String]] {
            var found: [String: [String]] = [:]
            let fm = FileManager.default
            for entry in (try? fm.contentsOfDirectory(atPath: incoming)) ?? [] where !entry.hasPrefix(".") {
                found[entry, default: []].append("incoming")
            }
            for id in (try? fm.contentsOfDirectory(atPath: root + "/quarantine")) ?? [] {
                for entry in (try? fm.contentsOfDirectory(atPath: root + "/quarantine/" + id)) ?? []
                where !["report.json", "manifest.json"].contains(entry) && !entry.hasPrefix(".") {
                    found[entry, default: []].append("quarantine/\(id)")
                }
            }
            for side in ["approved", "rejected"] {
                for dest in (try? fm.contentsOfDirectory(atPath: root + "/" + side)) ?? [] {
                    for entry in (try? fm.contentsOfDirectory(atPath: "\(root)/\(side)/\(dest)")) ?? []
                    where !["report.json", "manifest.json"].contains(entry) {
                        found[entry, default: []].append("\(side)/\(dest)")
                    }
                }
            }
            // The delivery as the uploader made it, kept aside from the take until the intake's own copy is
            // released: the model's place only while no copy of it exists yet.
            for delivered in IntakeTests.deliveredFolders(root) {
                for id in (try? fm.contentsOfDirectory(atPath: delivered)) ?? [] where !id.hasSuffix(".discard") {
                    for entry in (try? fm.contentsOfDirectory(atPath: "\(delivered)/\(id)")) ?? []
                    where found[entry] == nil {
                        found[entry] = ["\(delivered.dropFirst(root.count + 1))/\(id)"]
                    }
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
            #expect(throws: Never.self) { try bait.checkUntouched() }
            try? FileManager.default.removeItem(atPath: samples)
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: policy)
        }
    }

    /// Each model is in exactly one place: approved/NAME or rejected/NAME with report.json and manifest.json, read-only
    /// and the intake's (`owner`); nothing is left in incoming/, quarantine/ or the intake's keeping of deliveries,
    /// and the journal is empty.
    static func checkReleased(_ setup: Setup, _ expected: [String: String], _ context: String, owner: uid_t = geteuid())
        throws
    {
        let places = setup.places()
        for (name, side) in expected {
            #expect(
                places[name] == ["\(side)/\(name)"],
                "\(context): \(name) is in \(places[name] ?? []), expected \(side)/\(name)")
            for file in ["report.json", "manifest.json"] {
                #expect(
                    FileManager.default.fileExists(atPath: "\(setup.root)/\(side)/\(name)/\(file)"),
                    "\(context): \(side)/\(name)/\(file) is missing")
            }
        }
        #expect(Set(places.keys) == Set(expected.keys), "\(context): unexpected entries \(places)")
        for (name, side) in expected {
            let problems = IntakeTests.writableEntries("\(setup.root)/\(side)/\(name)", owner: owner)
            #expect(
                problems.isEmpty, "\(context): \(side)/\(name) is not released read-only and the intake's: \(problems)")
        }
        let quarantine = (try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine")) ?? []
        #expect(quarantine.isEmpty, "\(context): quarantine/ still holds \(quarantine)")
        for folder in IntakeTests.deliveredFolders(setup.root) {
            let delivered = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            #expect(delivered.isEmpty, "\(context): \(folder) still holds \(delivered)")
        }
        IntakeTests.checkNoWorkerLeft(setup.root, context)
    }

    /// The `delivered/` folders of every worker of the root (and of folders taken over, not yet adopted), and the
    /// `.airlock/delivered/` of intakes from before workers.
    static func deliveredFolders(_ root: String) -> [String] {
        let fm = FileManager.default
        var out = [root + "/.airlock/delivered"]
        for worker in (try? fm.contentsOfDirectory(atPath: root + "/.airlock/workers")) ?? [] {
            let folder = "\(root)/.airlock/workers/\(worker)"
            out.append(folder + "/delivered")
            for dead in (try? fm.contentsOfDirectory(atPath: folder + "/takeover")) ?? [] {
                out.append("\(folder)/takeover/\(dead)/delivered")
            }
        }
        return out.filter { fm.fileExists(atPath: $0) }
    }

    /// Every worker that ran on the root left cleanly or was taken over and adopted: `.airlock/workers/` is empty,
    /// so no journal holds anything, and the legacy journal is gone.
    static func checkNoWorkerLeft(_ root: String, _ context: String) {
        let workers = (try? FileManager.default.contentsOfDirectory(atPath: root + "/.airlock/workers")) ?? []
        var journals: [String] = []
        for worker in workers {
            let journal = "\(root)/.airlock/workers/\(worker)/journal"
            journals.append("\(worker): " + ((try? String(contentsOfFile: journal, encoding: .utf8)) ?? "(none)"))
        }
        #expect(workers.isEmpty, "\(context): workers left on the root: \(journals)")
        #expect(
            !FileManager.default.fileExists(atPath: root + "/.airlock/journal"),
            "\(context): the journal of an intake from before workers was not adopted")
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
        resolver = jsonschema.RefResolver.from_schema(intake, store={report.get("$id", "report.schema.json"): report})
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
        let run = try SchemaValidation.python(
            [
                "-c", validator, "\(repositoryRoot)/docs/intake-report.schema.json",
                "\(repositoryRoot)/docs/report.schema.json",
            ] + files)
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
        try IntakeTests.checkReleased(
            setup,
            ["benign.pt": "approved", "model.safetensors": "approved", "evil.pt": "rejected", "exfil.pkl": "rejected"],
            "one pass")

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
        let verify = try runCLI([
            "verify", "--manifest", setup.root + "/approved/benign.pt/manifest.json",
            setup.root + "/approved/benign.pt/benign.pt",
        ])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    /// The steps after which the intake kills itself (AIRLOCK_INTAKE_CRASH_AT), in the order they happen.
    static let crashPoints = [
        "take-journaled", "quarantine-created", "moved-in", "copied", "owned", "taken", "report-written",
        "reports-written",
        "decided", "released", "discarded", "done",
    ]

    @Test("kill -9 after any step: the restart finishes every model exactly once", arguments: crashPoints)
    func crashAndRecover(point: String) throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        try setup.drop("evil.pt")
        try FileManager.default.createDirectory(
            atPath: setup.incoming + "/.part-folder", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: setup.incoming + "/.part-folder/model.safetensors")
        _ = FileManager.default.createFile(atPath: setup.incoming + "/.part-folder/.ready", contents: nil)
        #expect(rename(setup.incoming + "/.part-folder", setup.incoming + "/folder") == 0)

        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": point])
        #expect(
            crashed.signal == SIGKILL, "the intake did not reach \(point): status \(crashed.status) \(crashed.stderr)")
        // Whatever the crash left, every model is somewhere, once.
        let during = setup.places()
        for name in ["benign.pt", "evil.pt", "folder"] {
            #expect(during[name]?.count == 1, "after a crash at \(point), \(name) is in \(during[name] ?? [])")
        }
        let restarted = try setup.once()
        // 1 when the restart rejected (or released a rejection) itself, 0 when the crashed run had finished that part.
        #expect(
            restarted.signal == nil && (restarted.status == 0 || restarted.status == 1),
            "restart after \(point): \(restarted.status) \(restarted.stderr)")
        try IntakeTests.checkReleased(
            setup, ["benign.pt": "approved", "evil.pt": "rejected", "folder": "approved"], "crash at \(point)")
    }

    @Test("a journal line cut short by a crash is dropped; a journal with a foreign line is refused, not guessed at")
    func tornJournal() throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        _ = try setup.once()  // makes the root; benign.pt approved
        try setup.drop("model.safetensors")
        // A take that was journaled (the move never happened), then half a line.
        let journal = setup.root + "/.airlock/journal"
        try Data(#"{"op":"take","id":"20261122T000000Z-00000000","name":"model.safetensors"}\#n{"op":"tak"#.utf8).write(
            to: URL(fileURLWithPath: journal))
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("the move into quarantine had not happened"), "\(run.stderr)")
        try IntakeTests.checkReleased(
            setup, ["benign.pt": "approved", "model.safetensors": "approved"], "torn journal")

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
        _ = FileManager.default.createFile(
            atPath: "\(setup.root)/quarantine/\(id)/.tmp-report.json-99999", contents: Data("{".utf8))
        #expect(try setup.once().status == 0)
        try IntakeTests.checkReleased(setup, ["benign.pt": "approved"], "leftover temporary report")
    }

    @Test(
        "kill -9 on the way back to incoming/ (airlockd unreachable): the restart finishes the move, then takes the model",
        arguments: ["rollback-journaled", "moved-back"])
    func crashDuringRollback(point: String) throws {
        let setup = try Setup()
        try setup.drop("benign.pt")
        let unreachable = setup.root + ".no-daemon.sock"
        let crashed = try runToEnd(
            airlockBinary,
            ["intake", "--root", setup.root, "--policy", setup.policy, "--once", "--socket", unreachable],
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
        #expect(
            released.count == 2 && released[0] == "benign.pt" && released[1].hasPrefix("benign.pt.20"), "\(released)")
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
        try FileManager.default.createSymbolicLink(
            atPath: setup.incoming + "/link.pt", withDestinationPath: setup.samples + "/benign.pt")
        #expect(mkfifo(setup.incoming + "/pipe", 0o600) == 0)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("waiting   report.json: report.json is reserved"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   link.pt: a symbolic link"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   pipe: not a regular file or folder"), "\(run.stdout)")
        let left = try FileManager.default.contentsOfDirectory(atPath: setup.incoming).filter { !$0.hasPrefix(".") }
            .sorted()
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
            (
                #"{"manifests": "\#(setup.root).missing"}"#,
                "the policy's manifests folder \(setup.root).missing: ENOENT (No such file or directory)"
            ),
            (
                #"{"publicKeys": ["\#(repositoryRoot)/Tests/Fixtures/model-signing/rsa.pub"]}"#,
                "public key"
            ),
            ("{", "not valid JSON"),
        ]
        for (policy, message) in cases {
            try policy.write(toFile: setup.policy, atomically: true, encoding: .utf8)
            let run = try setup.once()
            #expect(run.status == 2 && run.stderr.contains(message), "\(policy): \(run.status) \(run.stderr)")
        }
        // approved/ on another file system: renames could not reach it.
        try #"{"settleSeconds": 0}"#.write(toFile: setup.policy, atomically: true, encoding: .utf8)
        let run = try IntakeTests.inMountNamespace(
            """
            mkdir -p "\(setup.root)/approved" && mount -t tmpfs tmpfs "\(setup.root)/approved" || { echo MOUNT-FAILED; exit 3; }
            "\(airlockBinary)" intake --root "\(setup.root)" --policy "\(setup.policy)" --once; echo "STATUS=$?"
            """)
        #expect(
            !run.stdout.contains("MOUNT-FAILED"),
            "this host cannot mount a tmpfs in a private mount namespace: \(run.stderr)")
        #expect(
            run.stdout.contains("STATUS=2") && run.stderr.contains("approved is on another file system"),
            "\(run.stdout) \(run.stderr)")
    }
}
