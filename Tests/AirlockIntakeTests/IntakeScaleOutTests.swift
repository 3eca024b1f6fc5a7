import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Several `airlock intake` workers on one quarantine root (docs/intake.md, "Several workers on one root"): each
/// model claimed and released exactly once, a worker killed mid-model recovered by another after its lease, a "second
/// host" (another mount namespace, another boot id, the root at another path) on the same folder, and a worker
/// stopped past its lease that comes back and must not touch the root again.
@Suite("Intake: several workers on one root", .serialized)
struct IntakeScaleOutTests {
    /// A root, its policy, and static-only models (safetensors: no detonation, so the tests are fast).
    final class Root {
        let root: String
        let policy: String
        var workers: [Worker] = []

        init() throws {
            root = try makeHostDirectory()
            policy = root + ".policy.json"
            try #"{"settleSeconds": 0, "workers": 2}"#.write(toFile: policy, atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: root + "/incoming", withIntermediateDirectories: true)
        }

        /// Drops a small safetensors file named `name` (its tensor's bytes made from the name, so each is its own).
        func drop(_ name: String) throws {
            let tag = Array(name.utf8.prefix(8)) + [UInt8](repeating: 0x20, count: max(0, 8 - name.utf8.count))
            var header = Array(#"{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#.utf8)
            while header.count % 8 != 0 { header.append(0x20) }
            var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
            bytes += header + tag
            let hidden = "\(root)/incoming/.part-\(name)"
            try Data(bytes).write(to: URL(fileURLWithPath: hidden))
            #expect(rename(hidden, "\(root)/incoming/\(name)") == 0)
        }

        /// `name` → the places under approved/, rejected/, incoming/ and quarantine/ that hold it.
        func places() -> [String: [String]] {
            var found: [String: [String]] = [:]
            let fm = FileManager.default
            for side in ["approved", "rejected"] {
                for dest in (try? fm.contentsOfDirectory(atPath: "\(root)/\(side)")) ?? [] {
                    for entry in (try? fm.contentsOfDirectory(atPath: "\(root)/\(side)/\(dest)")) ?? []
                    where !["report.json", "manifest.json"].contains(entry) {
                        found[entry, default: []].append("\(side)/\(dest)")
                    }
                }
            }
            for entry in (try? fm.contentsOfDirectory(atPath: root + "/incoming")) ?? [] where !entry.hasPrefix(".") {
                found[entry, default: []].append("incoming")
            }
            for id in (try? fm.contentsOfDirectory(atPath: root + "/quarantine")) ?? [] {
                found["quarantine/\(id)", default: []].append("quarantine")
            }
            return found
        }

        /// Each of `names` approved exactly once under its own name, nothing else anywhere, no worker left.
        func checkExactlyOnce(_ names: [String], _ context: String) {
            let places = places()
            for name in names {
                #expect(places[name] == ["approved/\(name)"], "\(context): \(name) is in \(places[name] ?? [])")
                #expect(
                    FileManager.default.fileExists(atPath: "\(root)/approved/\(name)/report.json"),
                    "\(context): approved/\(name)/report.json is missing")
            }
            #expect(Set(places.keys) == Set(names), "\(context): unexpected entries \(places)")
            for folder in IntakeTests.deliveredFolders(root) {
                let left = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                #expect(left.isEmpty, "\(context): \(folder) still holds \(left)")
            }
            IntakeTests.checkNoWorkerLeft(root, context)
        }

        /// Waits until each of `names` is in approved/ (or `seconds` pass).
        func waitApproved(_ names: [String], seconds: Double) -> Bool {
            waitUntil(seconds) { names.allSatisfy { self.places()[$0] == ["approved/\($0)"] } }
        }

        deinit {
            for w in workers { w.kill9() }
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: policy)
        }
    }

    /// One `airlock intake --watch` process, its standard error kept in a file.
    final class Worker {
        let process = Process()
        let log: String

        init(
            _ root: Root, name: String, lease: Double = 2, environment: [String: String] = [:],
            mountedAt: String? = nil
        ) throws {
            log = "\(root.root).\(name).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            var arguments = [
                "intake", "--policy", root.policy, "--watch", "--worker", name, "--lease-seconds", String(lease),
            ]
            if let mountedAt {
                // Another mount namespace, with the root bind-mounted at another path: a second host's view of a
                // shared folder (its own boot id, given by the caller, so that no lock is shared either).
                process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
                process.arguments =
                    [
                        "--mount", "--propagation", "private", "/bin/sh", "-c",
                        #"mkdir -p "$1" && mount --bind "$2" "$1" && shift 2 && exec "$@""#, "sh", mountedAt,
                        root.root, airlockBinary,
                    ] + arguments + ["--root", mountedAt]
            } else {
                process.executableURL = URL(fileURLWithPath: airlockBinary)
                arguments += ["--root", root.root]
                process.arguments = arguments
            }
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = out
            process.standardError = out
            try process.run()
            root.workers.append(self)
        }

        var text: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        func waitFor(_ needle: String, seconds: Double) -> Bool { waitUntil(seconds) { self.text.contains(needle) } }

        func signal(_ s: Int32) { if process.isRunning { kill(process.processIdentifier, s) } }

        func kill9() {
            signal(SIGCONT)
            signal(SIGKILL)
            if process.isRunning { process.waitUntilExit() }
        }

        /// SIGTERM, then the exit status (nil when it did not exit within `seconds`).
        func stop(seconds: Double = 20) -> Int32? {
            signal(SIGTERM)
            return exitStatus(seconds: seconds)
        }

        func exitStatus(seconds: Double) -> Int32? {
            guard waitUntil(seconds, { !self.process.isRunning }) else { return nil }
            return process.terminationStatus
        }

        deinit { try? FileManager.default.removeItem(atPath: log) }
    }

    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    @Test("three workers race for 24 models: each claimed, examined and approved exactly once, no error")
    func threeWorkersOnce() throws {
        let root = try Root()
        let names = (0..<24).map { "m\($0).safetensors" }
        for name in names { try root.drop(name) }
        // Started together, each lists all 24 and tries to take each: the rename decides.
        var processes: [(Process, Pipe, Pipe)] = []
        for i in 1...3 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: airlockBinary)
            p.arguments = ["intake", "--root", root.root, "--policy", root.policy, "--once", "--worker", "w\(i)"]
            let out = Pipe()
            let err = Pipe()
            p.standardOutput = out
            p.standardError = err
            processes.append((p, out, err))
        }
        for (p, _, _) in processes { try p.run() }
        var took: [String: Int] = [:]
        for (p, out, err) in processes {
            let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "a worker failed: \(p.terminationStatus)\n\(stdout)\n\(stderr)")
            #expect(!stderr.contains("cannot take"), "\(stderr)")
            for line in stderr.split(separator: "\n") where line.contains("airlock intake: took ") {
                let name = line.split(separator: " ")[3]
                took[String(name), default: 0] += 1
            }
        }
        #expect(took.count == names.count && took.values.allSatisfy { $0 == 1 }, "takes: \(took)")
        root.checkExactlyOnce(names, "three workers")
    }

    @Test("two processes with the same worker name: the second is refused; a bad name is refused")
    func sameName() throws {
        let root = try Root()
        let first = try Worker(root, name: "same")
        #expect(
            IntakeScaleOutTests.waitUntil(10) {
                FileManager.default.fileExists(atPath: root.root + "/.airlock/workers/same/lease")
            })
        let second = try runToEnd(
            airlockBinary, ["intake", "--root", root.root, "--policy", root.policy, "--once", "--worker", "same"])
        #expect(second.status == 2 && second.stderr.contains("one process per worker name"), "\(second.stderr)")
        let other = try runToEnd(
            airlockBinary, ["intake", "--root", root.root, "--policy", root.policy, "--once", "--worker", "other"])
        #expect(other.status == 0, "\(other.stderr)")
        let bad = try runToEnd(
            airlockBinary, ["intake", "--root", root.root, "--policy", root.policy, "--once", "--worker", "../x"])
        #expect(bad.status != 0 && bad.stderr.contains("--worker ../x"), "\(bad.stderr)")
        #expect(first.stop() == 0, "\(first.text)")
        root.checkExactlyOnce([], "same name")
    }

    @Test(
        "kill -9 mid-model: workers on two other hosts (one in a mount namespace) wait while the slow one renews, then one of them recovers its claim after the lease"
    )
    func killedWorkerRecoveredFromSecondHost() throws {
        let root = try Root()
        try root.drop("held.safetensors")
        // Worker a takes held.safetensors and then stalls (a long detonation, say), renewing its lease.
        let a = try Worker(root, name: "a", environment: ["AIRLOCK_INTAKE_HOLD_AT": "taken:120"])
        #expect(a.waitFor("test hold at taken", seconds: 20), "\(a.text)")
        let mount = root.root + ".host-b"
        defer { try? FileManager.default.removeItem(atPath: mount) }
        let b = try Worker(
            root, name: "b", environment: ["AIRLOCK_INTAKE_BOOT_ID": "second-host"], mountedAt: mount)
        // A third host, racing b for a's folder when a dies: one rename wins.
        let c = try Worker(root, name: "c", environment: ["AIRLOCK_INTAKE_BOOT_ID": "third-host"])
        // Three leases of a's stall: a renews, so b and c leave it alone.
        sleep(6)
        #expect(!b.text.contains("worker a is gone"), "a slow worker was taken over: \(b.text)")
        #expect(!c.text.contains("worker a is gone"), "a slow worker was taken over: \(c.text)")
        #expect(root.places()["held.safetensors"] == nil, "\(root.places())")
        // b works meanwhile (a's loop is stalled, so b takes these).
        let more = (1...4).map { "more\($0).safetensors" }
        for name in more { try root.drop(name) }
        #expect(root.waitApproved(more, seconds: 30), "\(root.places())\n\(b.text)")
        a.kill9()
        let killedAt = Date()
        #expect(
            IntakeScaleOutTests.waitUntil(20) {
                b.text.contains("worker a is gone") || c.text.contains("worker a is gone")
            },
            "\(b.text)\n\(c.text)")
        let after = Date().timeIntervalSince(killedAt)
        #expect(after >= 1.5, "taken over \(after) s after the kill, before its 2 s lease could expire")
        #expect(root.waitApproved(["held.safetensors"], seconds: 30), "\(root.places())\n\(b.text)")
        #expect(b.stop() == 0, "\(b.text)")
        #expect(c.stop() == 0, "\(c.text)")
        let takeovers = [b, c].filter { $0.text.contains("worker a is gone") }.count
        #expect(takeovers == 1, "a was taken over \(takeovers) times:\n\(b.text)\n\(c.text)")
        root.checkExactlyOnce(["held.safetensors"] + more, "kill -9 and two other hosts")
    }

    @Test("a worker stopped past its lease comes back: it finds its lease lost, writes nothing, exits 75")
    func revenant() throws {
        let root = try Root()
        try root.drop("m.safetensors")
        let a = try Worker(root, name: "a", environment: ["AIRLOCK_INTAKE_HOLD_AT": "report-written:3"])
        #expect(a.waitFor("test hold at report-written", seconds: 20), "\(a.text)")
        a.signal(SIGSTOP)
        let b = try Worker(root, name: "b")
        #expect(b.waitFor("worker a is gone", seconds: 20), "\(b.text)")
        #expect(root.waitApproved(["m.safetensors"], seconds: 30), "\(root.places())\n\(b.text)")
        var before = stat()
        #expect(stat(root.root + "/approved/m.safetensors/manifest.json", &before) == 0)
        let report = try Data(contentsOf: URL(fileURLWithPath: root.root + "/approved/m.safetensors/report.json"))
        a.signal(SIGCONT)
        #expect(a.exitStatus(seconds: 20) == 75, "\(a.text)")
        #expect(a.text.contains("lost its lease"), "\(a.text)")
        var after = stat()
        #expect(stat(root.root + "/approved/m.safetensors/manifest.json", &after) == 0)
        #expect(
            before.st_ino == after.st_ino && before.st_mtim.tv_sec == after.st_mtim.tv_sec
                && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec,
            "the revenant rewrote the released manifest.json")
        #expect(
            try Data(contentsOf: URL(fileURLWithPath: root.root + "/approved/m.safetensors/report.json")) == report)
        try root.drop("later.safetensors")
        #expect(root.waitApproved(["later.safetensors"], seconds: 30), "\(root.places())\n\(b.text)")
        #expect(b.stop() == 0, "\(b.text)")
        root.checkExactlyOnce(["m.safetensors", "later.safetensors"], "revenant")
    }

    @Test("systemd-analyze verify: the worker template")
    func template() throws {
        let unit = try String(contentsOfFile: "\(repositoryRoot)/systemd/airlock-intake@.service", encoding: .utf8)
        #expect(unit.contains("--worker %i"))
        // verify needs an instance name.
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try unit.write(toFile: dir + "/airlock-intake@3.service", atomically: true, encoding: .utf8)
        let run = try runToEnd("/usr/bin/systemd-analyze", ["verify", dir + "/airlock-intake@3.service"])
        let unexpected = (run.stdout + run.stderr).split(separator: "\n").filter {
            !$0.contains("Command /usr/local/bin/airlock is not executable") && !$0.isEmpty
        }
        #expect(unexpected.isEmpty, "systemd-analyze verify: \(unexpected.joined(separator: "\n"))")
    }
}

private func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
    IntakeScaleOutTests.waitUntil(seconds, condition)
}
