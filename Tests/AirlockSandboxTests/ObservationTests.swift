@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// What a command leaves running, as the supervisor sees it from outside (`SandboxObservation`): never from the
/// command's own output, never at the cost of a wait when nothing is left.
@Suite("Observation after the command's work", .serialized)
struct ObservationTests {
    static let phases = ["startup", "load", "end"]
    static let observe = SandboxObservation(baselinePhase: "load", endPhase: "end", windowSeconds: 2)

    /// Python that announces `load`, runs `body`, announces `end` and exits.
    static func script(_ body: String, beforeLoad: String = "") -> String {
        """
        import os, sys, threading, time
        def announce(name):
            try:
                open("\(PhaseMarker.prefix)" + name)
            except OSError:
                pass
        \(beforeLoad)
        announce("load")
        \(body)
        announce("end")
        """
    }

    static func run(_ code: String, profile: Profile? = nil, observation: SandboxObservation? = observe) throws
        -> SandboxResult
    {
        try Sandbox.run(
            SandboxRequest(
                argv: ["python3", "-I", "-S", "-c", code], profile: profile ?? defaultProfile(),
                timeoutSeconds: 20, phases: phases, observation: observation))
    }

    @Test("nothing left: nothing seen, and the sandbox ends with the command (no window is waited)")
    func nothingLeft() throws {
        let started = Date()
        let result = try ObservationTests.run(ObservationTests.script("x = sum(range(1000))"))
        #expect(Date().timeIntervalSince(started) < 1.5, "the window was waited for with nothing left")
        #expect(result.exitCode == 0, "\(result.err)")
        let o = try #require(result.observation)
        #expect(o.left.isEmpty, "\(o.left)")
        #expect(o.endAnnouncedNs != nil && !o.windowExpired)
    }

    @Test("threads the runtime had at the baseline are its own; a thread started after it is seen")
    func threadBaseline() throws {
        let runtime = "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()"
        let quiet = try ObservationTests.run(ObservationTests.script("pass", beforeLoad: runtime))
        #expect(quiet.observation?.left.isEmpty == true, "\(quiet.observation?.left ?? [])")
        let model = try ObservationTests.run(ObservationTests.script(runtime + "\nprint('started', flush=True)"))
        let left = try #require(model.observation?.left)
        #expect(left.contains { $0.kind == .thread && $0.pid > 2 }, "\(left)")
    }

    @Test("a child that outlives the command keeps the sandbox for the window, and acts under observation")
    func childOutlivesCommand() throws {
        let result = try ObservationTests.run(
            ObservationTests.script(
                """
                if os.fork() == 0:
                    time.sleep(0.3)
                    try:
                        open("/etc/airlock-late-write", "w")
                    except OSError:
                        pass
                    os._exit(0)
                """))
        #expect(result.exitCode == 0, "\(result.err)")
        let o = try #require(result.observation)
        #expect(o.left.contains { $0.kind == .process && $0.pid == 3 }, "\(o.left)")
        #expect(!o.windowExpired, "the child ended by itself, and the sandbox with it")
        let write = try #require(result.trace.first { $0.args.path == "/etc/airlock-late-write" })
        #expect(write.action == .denied && write.phase == "end")
    }

    @Test("without a procfs in the sandbox: PID 1's report says that processes outlived the command; threads are seen")
    func withoutProcfs() throws {
        let profile = try editedProfile { object in
            editSection(&object) { section in
                section["mounts"] = (section["mounts"] as! [[String: Any]]).filter { $0["type"] as? String != "proc" }
            }
        }
        let result = try ObservationTests.run(
            ObservationTests.script(
                """
                threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
                if os.fork() == 0:
                    time.sleep(0.3)
                    os._exit(0)
                """), profile: profile)
        #expect(result.exitCode == 0, "\(result.err)")
        let left = result.observation?.left ?? []
        #expect(left.contains { $0.kind == .process && $0.pid == 0 }, "\(left)")
        #expect(left.contains { $0.kind == .thread }, "\(left)")
    }

    @Test("what is still running when the window closes is killed and recorded, and the run is not a timeout")
    func windowExpires() throws {
        let started = Date()
        let short = SandboxObservation(baselinePhase: "load", endPhase: "end", windowSeconds: 0.5)
        let result = try ObservationTests.run(
            ObservationTests.script(
                """
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                """), observation: short)
        #expect(Date().timeIntervalSince(started) < 5)
        let o = try #require(result.observation)
        #expect(o.windowExpired)
        #expect(!result.timedOut)
        #expect(result.exitCode == 0, "the command's own status is kept")
        #expect(o.left.contains { $0.kind == .process && $0.name == "python3" }, "\(o.left)")
    }

    @Test("an `end` announced by another thread is not the command's: the work goes on until the command exits")
    func endFromAnotherThread() throws {
        let result = try ObservationTests.run(
            """
            import threading, time
            def announce(name):
                try:
                    open("\(PhaseMarker.prefix)" + name)
                except OSError:
                    pass
            announce("load")
            t = threading.Thread(target=announce, args=("end",))
            t.start()
            t.join()
            time.sleep(0.2)
            """)
        let o = try #require(result.observation)
        #expect(o.endAnnouncedNs == nil)
        #expect(o.workEndedNs != nil, "the command's exit ended its work")
    }

    @Test("without an observation, processes left by the command are killed when it exits, as before")
    func unobserved() throws {
        let marker = "unobserved-\(UUID().uuidString.prefix(8))"
        let started = Date()
        let result = try runPython(
            "import os, time\nMARK = '\(marker)'\nif os.fork() == 0:\n    time.sleep(30)\nprint('done')")
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(result.out.contains("done"))
        #expect(result.exitCode == 0)
        #expect(result.observation == nil)
        #expect(hostProcesses(containing: marker).isEmpty)
    }
}
