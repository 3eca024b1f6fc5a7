import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// An uploader that swaps what a name is around the claim, a delivery the intake cannot copy while a new model of its
/// name arrives, a live worker whose lease file looks old by the wall clock (docs/intake.md, "Several workers on one
/// root"). The races are made deterministic with `AIRLOCK_INTAKE_HOLD_AT`.
@Suite("Intake: swapped deliveries, stuck deliveries, clocks", .serialized)
struct IntakeSwapTests {
    typealias Root = IntakeScaleOutTests.Root

    /// An `airlock intake --once` process, its output kept in a file.
    final class Once {
        let process = Process()
        let log: String

        init(_ root: Root, name: String, environment: [String: String] = [:]) throws {
            log = "\(root.root).\(name).\(UInt32.random(in: 0...UInt32.max)).log"
            FileManager.default.createFile(atPath: log, contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.executableURL = URL(fileURLWithPath: airlockBinary)
            process.arguments = ["intake", "--root", root.root, "--policy", root.policy, "--once", "--worker", name]
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = out
            process.standardError = out
            try process.run()
        }

        var text: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        /// The exit status (nil after 60 s).
        func status() -> Int32? {
            guard IntakeScaleOutTests.waitUntil(60, { !self.process.isRunning }) else {
                kill(process.processIdentifier, SIGKILL)
                return nil
            }
            return process.terminationStatus
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(atPath: log)
        }
    }

    /// The deliveries left in any worker's keeping.
    static func held(_ root: Root) -> [String] {
        IntakeTests.deliveredFolders(root.root).flatMap { folder in
            ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).map { "\(folder)/\($0)" }
        }
    }

    static func type(_ path: String) -> mode_t {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : 0
    }

    @Test(
        "a claimed delivery swapped for a FIFO, a new model of its name in incoming/: it goes back as NAME.ID, never copied again, nothing held"
    )
    func fifoWithNewArrival() throws {
        // held: the worker sees the FIFO right after the claim; killed: a restart finds it in its keeping, journaled
        // `take`, and its copy fails.
        for mode in ["held", "killed"] {
            let root = try Root()
            try root.drop("x.safetensors")
            let environment =
                mode == "held" ? ["AIRLOCK_INTAKE_HOLD_AT": "moved-in:2"] : ["AIRLOCK_INTAKE_CRASH_AT": "moved-in"]
            let first = try Once(root, name: "w", environment: environment)
            if mode == "held" {
                #expect(
                    IntakeScaleOutTests.waitUntil(20) { first.text.contains("test hold at moved-in") }, "\(first.text)")
            } else {
                #expect(first.status() == SIGKILL, "\(first.text)")
            }
            // The claim happened: what it holds becomes a FIFO (the uploader won the race), and a new x arrives.
            let held = IntakeSwapTests.held(root)
            #expect(held.count == 1, "\(mode): \(held)")
            for id in held {
                #expect(unlink(id + "/x.safetensors") == 0)
                #expect(mkfifo(id + "/x.safetensors", 0o644) == 0)
            }
            try root.drop("x.safetensors")
            if mode == "held" { #expect(first.status() == 2, "\(first.text)") }
            // The next pass approves the new x; the FIFO waits in incoming/ under a name of its own.
            let second = try Once(root, name: "w")
            #expect(second.status() == 0, "\(mode): \(second.text)")
            #expect(!second.text.contains("recovery of"), "\(mode): \(second.text)")
            #expect((first.text + second.text).contains("went back to incoming/x.safetensors."), "\(mode)")
            #expect(IntakeSwapTests.held(root).isEmpty, "\(mode): still held: \(IntakeSwapTests.held(root))")
            let incoming = (try? FileManager.default.contentsOfDirectory(atPath: root.root + "/incoming")) ?? []
            let aside = incoming.filter { $0.hasPrefix("x.safetensors.") }
            #expect(aside.count == 1, "\(mode): \(incoming)")
            for name in aside { #expect(IntakeSwapTests.type("\(root.root)/incoming/\(name)") == S_IFIFO) }
            #expect(root.places()["x.safetensors"] == ["approved/x.safetensors"], "\(mode): \(root.places())")
            IntakeTests.checkNoWorkerLeft(root.root, "FIFO with a new arrival (\(mode))")
        }
    }

    @Test("a name swapped for a link to a secret (or a FIFO) before the claim: not copied, back in incoming/")
    func swappedBeforeClaim() throws {
        for kind in ["link", "fifo"] {
            let root = try Root()
            let secret = root.root + ".secret"
            try "SECRET-\(kind)".write(toFile: secret, atomically: true, encoding: .utf8)
            defer { unlink(secret) }
            chmod(secret, 0o600)
            try root.drop("x.safetensors")
            let run = try Once(root, name: "w", environment: ["AIRLOCK_INTAKE_HOLD_AT": "quarantine-created:2"])
            #expect(
                IntakeScaleOutTests.waitUntil(20) { run.text.contains("test hold at quarantine-created") },
                "\(run.text)")
            let swap = root.root + "/incoming/.swap"
            if kind == "link" {
                #expect(symlink(secret, swap) == 0)
            } else {
                #expect(mkfifo(swap, 0o644) == 0)
            }
            #expect(rename(swap, root.root + "/incoming/x.safetensors") == 0)
            let status = run.status()
            #expect(status == 2, "\(kind): \(run.text)")
            #expect(run.text.contains("was swapped in for it before the claim"), "\(kind): \(run.text)")
            let back = IntakeSwapTests.type(root.root + "/incoming/x.safetensors")
            #expect(back == (kind == "link" ? S_IFLNK : S_IFIFO), "\(kind): \(root.places())")
            #expect(root.places().keys.sorted() == ["x.safetensors"], "\(kind): \(root.places())")
            #expect(IntakeSwapTests.held(root).isEmpty, "\(kind): \(IntakeSwapTests.held(root))")
        }
    }

    @Test("--once exits 2 while a delivery stays in the worker's keeping")
    func heldMakesOnceFail() throws {
        let root = try Root()
        let start = try Once(root, name: "w0")
        #expect(start.status() == 0, "\(start.text)")
        let stray = root.root + "/.airlock/workers/w/delivered/stray"
        try FileManager.default.createDirectory(atPath: stray, withIntermediateDirectories: true)
        try "x".write(toFile: stray + "/m.bin", atomically: true, encoding: .utf8)
        let run = try Once(root, name: "w")
        #expect(run.status() == 2, "\(run.text)")
        #expect(run.text.contains("held      stray"), "\(run.text)")
    }

    @Test("a live worker whose lease file looks an hour old (a wall clock set wrong) is not taken over on its kernel")
    func oldMtimeHeldLock() throws {
        let root = try Root()
        let a = try IntakeScaleOutTests.Worker(root, name: "a", lease: 60)
        let lease = root.root + "/.airlock/workers/a/lease"
        #expect(IntakeScaleOutTests.waitUntil(20) { FileManager.default.fileExists(atPath: lease) })
        // a renews every 10 s: the check below runs well within that.
        var times = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, lease, &times, 0) == 0)
        let b = try Once(root, name: "b")
        #expect(b.status() == 0, "\(b.text)")
        #expect(!b.text.contains("worker a is gone"), "a live worker was taken over: \(b.text)")
        #expect(a.stop() == 0, "\(a.text)")
        IntakeTests.checkNoWorkerLeft(root.root, "old lease mtime")
    }

    @Test("a worker's lock held for an instant (another worker checking a dead one of that name): the start waits")
    func startRetriesLock() throws {
        let root = try Root()
        let start = try Once(root, name: "w0")
        #expect(start.status() == 0, "\(start.text)")
        let folder = root.root + "/.airlock/workers/r"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let lock = open(folder + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(lock >= 0)
        defer { close(lock) }
        #expect(flock(lock, LOCK_EX | LOCK_NB) == 0)
        // The process reaches its lock in about 0.1 s; held 0.3 s, as a look of another worker (far longer).
        let run = try Once(root, name: "r")
        usleep(300_000)
        #expect(flock(lock, LOCK_UN) == 0)
        #expect(run.status() == 0, "\(run.text)")
    }
}
