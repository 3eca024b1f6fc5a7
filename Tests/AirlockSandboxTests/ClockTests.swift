@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

/// A world's clock (`SandboxClock`): a shifted CLOCK_REALTIME however it is read (the vDSO, system calls, a forked
/// child, another program), absolute real-time waits that do not hang, and sleeps that are skipped.
@Suite("Clock worlds", .serialized)
struct ClockTests {
    /// A world that keeps the profile's persona and changes only the clock.
    static func world(_ clock: SandboxClock) throws -> HostWorld {
        let settings = try defaultProfile().sandbox
        return HostWorld(
            name: "clock", hostname: settings.hostname,
            user: HostWorld.User(name: "user", uid: settings.user.uid, gid: settings.user.gid, home: settings.cwd),
            environment: settings.environment.map { HostWorld.Variable($0.0, $0.1) }, clock: clock)
    }

    static func run(
        _ code: String, clock: SandboxClock?, timeout: Double = 25, profile: Profile? = nil
    ) throws -> SandboxResult {
        var request = SandboxRequest(
            argv: ["python3", "-c", code], profile: try profile ?? defaultProfile(), timeoutSeconds: timeout)
        if let clock { request.world = try world(clock) }
        return try Sandbox.run(request)
    }

    /// `name=value` lines of the output, as numbers.
    static func values(_ result: SandboxResult) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in result.out.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let v = Double(parts[1]) { out[String(parts[0])] = v }
        }
        return out
    }

    static let offset: Int64 = 400 * 86_400

    @Test("CLOCK_REALTIME is shifted through the vDSO, the raw system calls, a forked child and another program")
    func realtimeShifted() throws {
        let code = """
            import ctypes, datetime, os, subprocess, time
            libc = ctypes.CDLL(None, use_errno=True)
            class TS(ctypes.Structure):
                _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
            print("time=%f" % time.time())
            print("datetime=%f" % datetime.datetime.now().timestamp())
            print("clock_gettime=%f" % time.clock_gettime(time.CLOCK_REALTIME))
            print("tai=%f" % time.clock_gettime(time.CLOCK_TAI))
            print("coarse=%f" % time.clock_gettime(5))
            ts = TS()
            assert libc.syscall(228, 0, ctypes.byref(ts)) == 0
            print("raw_clock_gettime=%d" % ts.s)
            tv = TS()
            assert libc.gettimeofday(ctypes.byref(tv), None) == 0
            print("gettimeofday=%d" % tv.s)
            print("raw_gettimeofday=%d" % (libc.syscall(96, ctypes.byref(tv), None) or tv.s))
            print("libc_time=%d" % libc.time(None))
            print("raw_time=%d" % libc.syscall(201, None))
            print("monotonic=%f" % time.monotonic())
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(w, b"%f" % time.time())
                os._exit(0)
            os.waitpid(pid, 0)
            print("forked=%s" % os.read(r, 100).decode())
            print("date=%s" % subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout.strip())
            print("python_child=%s" % subprocess.run(["python3", "-c", "import time; print(time.time())"],
                                                     capture_output=True, text=True).stdout.strip())
            # A fresh vDSO mapping would be unpatched: refused as the kernel refuses it while one is mapped.
            print("map_vdso=%d" % (libc.syscall(158, 0x2003, ctypes.c_ulong(0x7f0000000000)) or 0))
            print("map_vdso_errno=%d" % ctypes.get_errno())
            """
        let before = Date().timeIntervalSince1970
        // Programs may start here (the default profile refuses every exec after the command's).
        let execs = try editedProfile { object in
            editSection(&object) { section in
                section["notify"] = (section["notify"] as! [[String: Any]]).filter { $0["id"] as? String != "exec" }
            }
        }
        let result = try ClockTests.run(
            code, clock: SandboxClock(realtimeOffsetSeconds: ClockTests.offset), profile: execs)
        let after = Date().timeIntervalSince1970
        #expect(result.exitCode == 0, "\(result.err)")
        let v = ClockTests.values(result)
        let shifted = [
            "time", "datetime", "clock_gettime", "coarse", "raw_clock_gettime", "gettimeofday", "raw_gettimeofday",
            "libc_time", "raw_time", "forked", "date", "python_child",
        ]
        for key in shifted {
            guard let value = v[key] else {
                Issue.record("no \(key) in \(result.out) \(result.err)")
                continue
            }
            let expected = Double(ClockTests.offset)
            #expect(value >= before + expected - 2 && value <= after + expected + 2, "\(key)=\(value)")
        }
        // CLOCK_TAI is CLOCK_REALTIME plus the leap seconds (0 when the host's TAI offset is unset).
        #expect((v["tai"] ?? 0) >= before + Double(ClockTests.offset) - 2)
        // The monotonic clock is the host's (it started at boot, not at the shifted date).
        #expect((v["monotonic"] ?? .infinity) < Double(ClockTests.offset))
        #expect(v["map_vdso_errno"] == Double(EEXIST))
        #expect(result.clock == ClockOutcome(skippedNs: 0, unpatchedProcesses: 0))
    }

    @Test("absolute waits on the shifted CLOCK_REALTIME wait their real length instead of the offset's")
    func absoluteRealtimeWaits() throws {
        let code = """
            import ctypes, os, time, threading
            libc = ctypes.CDLL(None, use_errno=True)
            class TS(ctypes.Structure):
                _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
            def deadline(after):
                t = time.time() + after
                return TS(int(t), int((t - int(t)) * 1e9))
            start = time.monotonic()
            ts = deadline(0.3)
            rc = libc.clock_nanosleep(0, 1, ctypes.byref(ts), None)
            print("nanosleep_rc=%d" % rc)
            print("nanosleep_s=%f" % (time.monotonic() - start))
            sem = ctypes.create_string_buffer(64)
            libc.sem_init(sem, 0, 0)
            start = time.monotonic()
            ts = deadline(0.3)
            rc = libc.sem_timedwait(sem, ctypes.byref(ts))
            print("sem_errno=%d" % ctypes.get_errno())
            print("sem_s=%f" % (time.monotonic() - start))
            fd = libc.timerfd_create(0, 0)
            spec = (TS * 2)(TS(0, 0), deadline(0.3))
            print("timerfd_rc=%d" % libc.timerfd_settime(fd, 1, spec, None))
            start = time.monotonic()
            os.read(fd, 8)
            print("timerfd_s=%f" % (time.monotonic() - start))
            """
        let result = try ClockTests.run(
            code, clock: SandboxClock(realtimeOffsetSeconds: ClockTests.offset), timeout: 15)
        #expect(result.exitCode == 0 && !result.timedOut, "\(result.err)")
        let v = ClockTests.values(result)
        #expect(v["nanosleep_rc"] == 0)
        #expect((0.2...5).contains(v["nanosleep_s"] ?? -1), "\(result.out)")
        #expect(v["sem_errno"] == Double(ETIMEDOUT))
        #expect((0.2...5).contains(v["sem_s"] ?? -1), "\(result.out)")
        #expect(v["timerfd_rc"] == 0)
        #expect((0.2...5).contains(v["timerfd_s"] ?? -1), "\(result.out)")
    }

    @Test("sleeps, timers, alarms, selects and event-loop sleeps are skipped, and both clocks show the time passed")
    func sleepsSkipped() throws {
        let code = """
            import asyncio, select, signal, threading, time
            def measure(name, wait):
                t, m = time.time(), time.monotonic()
                wait()
                print("%s_time=%f" % (name, time.time() - t))
                print("%s_monotonic=%f" % (name, time.monotonic() - m))
            measure("sleep", lambda: time.sleep(60))
            measure("select", lambda: select.select([], [], [], 60))
            measure("asyncio", lambda: asyncio.run(asyncio.sleep(60)))
            measure("poll", lambda: select.poll().poll(60000))
            fired = threading.Event()
            def timer():
                t = threading.Timer(60, fired.set)
                t.start()
                t.join()
            measure("timer", timer)
            print("timer_fired=%d" % fired.is_set())
            alarms = []
            signal.signal(signal.SIGALRM, lambda *a: alarms.append(1))
            def alarm():
                signal.alarm(60)
                while not alarms:
                    try:
                        time.sleep(1)
                    except InterruptedError:
                        # Seen now and then after threads have run: the alarm's signal interrupts the sleep.
                        pass
            measure("alarm", alarm)
            def itimer():
                del alarms[:]
                signal.setitimer(signal.ITIMER_REAL, 60)
                while not alarms:
                    try:
                        time.sleep(1)
                    except InterruptedError:
                        pass
            measure("itimer", itimer)
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            def timerfd():
                fd = libc.timerfd_create(1, 0)
                spec = (ctypes.c_long * 4)(0, 0, 60, 0)
                assert libc.timerfd_settime(fd, 0, spec, None) == 0
                os.read(fd, 8)
            measure("timerfd", timerfd)
            def posix_timer():
                del alarms[:]
                timer = ctypes.c_void_p()
                assert libc.timer_create(1, None, ctypes.byref(timer)) == 0
                spec = (ctypes.c_long * 4)(0, 0, 60, 0)
                assert libc.timer_settime(timer, 0, spec, None) == 0
                while not alarms:
                    try:
                        time.sleep(1)
                    except InterruptedError:
                        pass
            measure("posix_timer", posix_timer)
            """
        let started = Date()
        let result = try ClockTests.run(
            code, clock: SandboxClock(realtimeOffsetSeconds: 0, skipsSleeps: true), timeout: 25)
        let took = Date().timeIntervalSince(started)
        #expect(result.exitCode == 0 && !result.timedOut, "\(result.out) \(result.err)")
        #expect(took < 15, "nine waits of 60 s took \(took) s")
        let v = ClockTests.values(result)
        for name in ["sleep", "select", "asyncio", "poll", "timer", "alarm", "itimer", "timerfd", "posix_timer"] {
            #expect((v["\(name)_time"] ?? 0) >= 59, "\(name): time.time() moved \(v["\(name)_time"] ?? -1) s")
            #expect((v["\(name)_monotonic"] ?? 0) >= 59, "\(name): monotonic moved \(v["\(name)_monotonic"] ?? -1) s")
        }
        #expect(v["timer_fired"] == 1)
        #expect((result.clock?.skippedNs ?? 0) >= 539 * 1_000_000_000)
        #expect(result.clock?.unpatchedProcesses == 0)
    }

    @Test("many threads reading the clock in a tight loop: every read answered, the supervisor unhurt")
    func clockFlood() throws {
        let code = """
            import threading, time
            start = time.monotonic()
            for _ in range(2000):
                time.time()
            print("per_read_us=%f" % ((time.monotonic() - start) / 2000 * 1e6))
            counts = []
            def spin():
                n = 0
                end = time.monotonic() + 2
                while time.monotonic() < end:
                    time.time()
                    n += 1
                counts.append(n)
            threads = [threading.Thread(target=spin) for _ in range(16)]
            for t in threads: t.start()
            for t in threads: t.join()
            print("reads=%d" % sum(counts))
            print("time=%f" % time.time())
            """
        let before = Date().timeIntervalSince1970
        let result = try ClockTests.run(
            code, clock: SandboxClock(realtimeOffsetSeconds: ClockTests.offset), timeout: 25)
        #expect(result.exitCode == 0 && !result.timedOut, "\(result.err)")
        let v = ClockTests.values(result)
        #expect((v["reads"] ?? 0) > 100)
        let host = ClockTests.values(try ClockTests.run(code, clock: nil, timeout: 25))
        print(
            "clock-bench time.time(): \(v["per_read_us"] ?? -1) µs in a date world, \(host["per_read_us"] ?? -1) µs without"
        )
        print(
            "clock-bench reads in 2 s by 16 threads: \(v["reads"] ?? -1) in a date world, \(host["reads"] ?? -1) without"
        )
        #expect((v["time"] ?? 0) >= before + Double(ClockTests.offset) - 2)
    }

    @Test("no clock, or one that changes nothing: the filter and the notifications are as before")
    func noClockNoChange() throws {
        let profile = try defaultProfile()
        let program = try SeccompProgram(profile: profile)
        #expect(try program.with(clock: nil).instructions == program.instructions)
        #expect(ClockEmulator(nil) == nil)
        #expect(ClockEmulator(SandboxClock()) == nil)
        // A date-only world leaves the monotonic clock and the waits in the kernel.
        let dateOnly = ClockEmulator(SandboxClock(realtimeOffsetSeconds: 86_400))!
        #expect(dateOnly.handles("clock_gettime", [0, 0, 0, 0, 0, 0]))
        #expect(!dateOnly.handles("clock_gettime", [1, 0, 0, 0, 0, 0]))
        #expect(!dateOnly.handles("nanosleep", [1, 0, 0, 0, 0, 0]))
        #expect(!dateOnly.handles("futex", [1, 0x89, 0, 1, 0, 0]), "the GIL's monotonic waits stay in the kernel")
        #expect(dateOnly.handles("futex", [1, 0x189, 0, 1, 0, 0]))
        let skipping = ClockEmulator(SandboxClock(skipsSleeps: true))!
        #expect(!skipping.handles("poll", [1, 0, 10, 0, 0, 0]), "a 10 ms poll stays in the kernel")
        #expect(!skipping.handles("poll", [1, 0, 0xffff_ffff, 0, 0, 0]), "an endless poll waits for events")
        #expect(skipping.handles("poll", [1, 0, 60_000, 0, 0, 0]))
        #expect(!skipping.handles("select", [3, 1, 0, 0, 1, 0]), "a select on descriptors waits for them")
        // Without a world the run notifies exactly what it did before (the clock's calls are not traced either).
        let plain = try runPython("import time; time.time(); time.sleep(0.01)")
        #expect(plain.clock == nil)
        #expect(!plain.trace.contains { ["clock_gettime", "nanosleep", "clock_nanosleep"].contains($0.syscall) })
    }

    @Test("the filter's prologue notifies exactly what the Swift rules accept")
    func prologueMatchesRules() throws {
        for clock in [SandboxClock(realtimeOffsetSeconds: 5), SandboxClock(skipsSleeps: true)] {
            let prologue = ClockFilter.prologue(clock, arch: 0xc000_003e)
            let emulator = ClockEmulator(clock)!
            let names = [
                "clock_gettime", "futex", "poll", "select", "epoll_wait", "alarm", "setitimer", "arch_prctl",
                "clock_nanosleep", "timerfd_settime", "timer_settime", "read",
            ]
            let values: [UInt64] = [
                0, 1, 5, 9, 0x89, 0x109, 0x189, 999, 1000, 60_000, 0xffff_ffff, 0x1_0000_0000, 0x1002, 0x2003,
            ]
            for name in names {
                let nr = SyscallNames.number(name)!
                for a0 in values {
                    for a1 in values.prefix(8) {
                        for a3 in [0, 1, 0x1_0000_0000] as [UInt64] {
                            let args: [UInt64] = [a0, a1, a1 == 0 ? 60_000 : 0, a3, a0, a1]
                            let filtered = BPFRunner.run(prologue, nr: UInt32(nr), arch: 0xc000_003e, args: args)
                            #expect(
                                (filtered == ClockFilter.notify) == emulator.handles(name, args),
                                "\(name) \(args.map { String($0, radix: 16) })")
                        }
                    }
                }
            }
            // Another ABI falls through to the profile's program.
            #expect(BPFRunner.run(prologue, nr: 228, arch: 0x4000_0003, args: [0, 0, 0, 0, 0, 0]) == nil)
        }
    }
}

/// A classic-BPF interpreter for the few instructions the clock's prologue uses; nil when the program falls off its
/// end (to the profile's program).
enum BPFRunner {
    static func run(_ program: [UInt64], nr: UInt32, arch: UInt32, args: [UInt64]) -> UInt32? {
        var data = [UInt8](repeating: 0, count: 64)
        func put(_ v: UInt32, _ at: Int) { for i in 0..<4 { data[at + i] = UInt8(v >> (8 * UInt32(i)) & 0xff) } }
        put(nr, 0)
        put(arch, 4)
        for (i, a) in args.enumerated() {
            put(UInt32(truncatingIfNeeded: a), 16 + 8 * i)
            put(UInt32(truncatingIfNeeded: a >> 32), 20 + 8 * i)
        }
        var a: UInt32 = 0
        var pc = 0
        while pc < program.count {
            let insn = program[pc]
            let code = UInt16(insn & 0xffff), jt = Int(insn >> 16 & 0xff), jf = Int(insn >> 24 & 0xff)
            let k = UInt32(insn >> 32)
            pc += 1
            switch code {
            case 0x20: a = (0..<4).reduce(UInt32(0)) { $0 | UInt32(data[Int(k) + $1]) << (8 * UInt32($1)) }
            case 0x54: a &= k
            case 0x15: pc += a == k ? jt : jf
            case 0x35: pc += a >= k ? jt : jf
            case 0x45: pc += a & k != 0 ? jt : jf
            case 0x05: pc += Int(k)
            case 0x06: return k
            default: return 0xdead
            }
        }
        return nil
    }
}
