@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// The trace is what the kernel did: a second thread that rewrites a notified call's arguments while the supervisor
/// judges them cannot make the kernel act on other arguments than the ones recorded. Each payload races a buffer
/// hundreds of times and reports what the kernel actually opened or connected to (from the resulting descriptor);
/// every attempt must match its trace event.
@Suite("Trace fidelity under racing threads")
struct TraceFidelityTests {
    /// Python that flips `buffer` between two byte strings from a second thread while `body` runs, at least
    /// `attempts` times and on until both outcomes have been seen (up to ten times as many): on a loaded two-core
    /// machine the flipping thread may not get a core for a whole short run, and a run that never flipped proves nothing.
    static func racing(_ setup: String, _ body: String, attempts: Int = 400) -> String {
        """
        import ctypes, json, os, socket, threading
        libc = ctypes.CDLL(None, use_errno=True)
        \(setup)
        stop = False
        def flip():
            while not stop:
                ctypes.memmove(buf, second, len(second))
                ctypes.memmove(buf, first, len(first))
        t = threading.Thread(target=flip)
        t.start()
        results = []
        for i in range(\(attempts * 10)):
            if i >= \(attempts) and len(set(map(str, results))) > 1: break
        \(body.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        stop = True
        t.join()
        print(json.dumps(results))
        """
    }

    static func results(_ r: SandboxResult) throws -> [String] {
        let line = try #require(r.out.split(separator: "\n").last, "no output: \(r.err)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String])
    }

    @Test("a path swapped while the supervisor reads it: each open's trace path is the file the kernel opened")
    func pathSwap() throws {
        let code = TraceFidelityTests.racing(
            """
            first = b"/tmp/aaaa\\0"
            second = b"/tmp/bbbb\\0"
            buf = ctypes.create_string_buffer(first, 16)
            """,
            """
            fd = libc.open(buf, os.O_WRONLY | os.O_CREAT, 0o644)
            results.append(os.readlink("/proc/self/fd/%d" % fd) if fd >= 0 else "error %d" % ctypes.get_errno())
            if fd >= 0: os.close(fd)
            """)
        let r = try runPython(code, timeout: 60)
        let seen = try TraceFidelityTests.results(r)
        let opens = r.trace.filter {
            ($0.syscall == "open" || $0.syscall == "openat")
                && ($0.args.path == "/tmp/aaaa" || $0.args.path == "/tmp/bbbb")
        }
        #expect(seen.count >= 400 && opens.count == seen.count, "\(seen.count) results, \(opens.count) events")
        let mismatches = zip(opens, seen).filter { $0.0.args.path != $0.1 }
        #expect(
            mismatches.isEmpty,
            "\(mismatches.count) opens recorded under another path than the kernel opened, e.g. \(mismatches.prefix(3).map { "\($0.0.args.path ?? "-") vs \($0.1)" })"
        )
        #expect(Set(seen) == ["/tmp/aaaa", "/tmp/bbbb"], "the race never flipped: \(Set(seen).prefix(4))")
        #expect(opens.allSatisfy { $0.performed != nil && $0.args.resolved == $0.args.path })
    }

    @Test("openat2 flags swapped while read: the recorded flags are the ones the descriptor has, no truncation unseen")
    func flagsSwap() throws {
        let code = TraceFidelityTests.racing(
            """
            class How(ctypes.Structure):
                _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
            first = bytes(How(os.O_RDONLY, 0, 0))
            second = bytes(How(os.O_WRONLY | os.O_TRUNC, 0, 0))
            buf = ctypes.create_string_buffer(first, 24)
            with open("/tmp/f", "w") as f: f.write("content")
            """,
            """
            fd = libc.syscall(437, -100, b"/tmp/f", buf, 24)
            if fd >= 0:
                mode = __import__("fcntl").fcntl(fd, 3) & 3  # F_GETFL: the access mode the kernel gave
                results.append("w" if mode == os.O_WRONLY else "r")
                os.close(fd)
                if mode == os.O_WRONLY:
                    with open("/tmp/f", "w") as f: f.write("content")
            else:
                results.append("error %d" % ctypes.get_errno())
            """, attempts: 300)
        let r = try runPython(code, timeout: 60)
        let seen = try TraceFidelityTests.results(r)
        let opens = r.trace.filter { $0.syscall == "openat2" }
        #expect(
            seen.count >= 300 && opens.count == seen.count, "\(seen.count) results, \(opens.count) events; \(r.err)")
        let recorded = opens.map { ($0.args.flags ?? "").hasPrefix("O_WRONLY") ? "w" : "r" }
        let mismatches = zip(recorded, seen).filter { $0.0 != $0.1 }.count
        #expect(mismatches == 0, "\(mismatches) openat2 calls recorded with other flags than the kernel used")
        #expect(seen.contains("r") && seen.contains("w"), "the race never flipped: \(Set(seen))")
    }

    @Test("a Unix socket address swapped while read: each connect's trace address is the peer it reached")
    func connectSwap() throws {
        let code = TraceFidelityTests.racing(
            """
            servers = []
            for name in ("/tmp/s1", "/tmp/s2"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(name)
                s.listen(4096)
                servers.append(s)
            def addr(path):
                return (1).to_bytes(2, "little") + path + b"\\0"
            first = addr(b"/tmp/s1")
            second = addr(b"/tmp/s2")
            buf = ctypes.create_string_buffer(first, 16)
            """,
            """
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            rc = libc.connect(c.fileno(), buf, 10)
            results.append(c.getpeername() if rc == 0 else "error %d" % ctypes.get_errno())
            for s in servers:
                s.setblocking(False)
                try: s.accept()[0].close()
                except BlockingIOError: pass
            c.close()
            """, attempts: 200)
        let r = try runPython(code, timeout: 60)
        let seen = try TraceFidelityTests.results(r)
        let connects = r.events("connect")
        #expect(
            seen.count >= 200 && connects.count == seen.count,
            "\(seen.count) results, \(connects.count) events; \(r.err)")
        let mismatches = zip(connects, seen).filter { $0.0.args.address != $0.1 }
        #expect(
            mismatches.isEmpty,
            "\(mismatches.count) connects recorded under another address, e.g. \(mismatches.prefix(3).map { "\($0.0.args.address ?? "-") vs \($0.1)" })"
        )
        #expect(
            Set(seen) == ["/tmp/s1", "/tmp/s2"],
            "the race never flipped, or a name is not the one bound: \(Set(seen).prefix(4))")
    }

    @Test(
        "what the kernel resolved is judged: a write through a symlink out of /tmp is refused, a read records the target"
    )
    func symlinkJudgedByTarget() throws {
        let r = try runPython(
            """
            import os
            os.symlink("/etc", "/tmp/lnk")
            try:
                open("/tmp/lnk/passwd", "a"); print("opened for append")
            except OSError as e:
                print("refused", e.errno)
            print(len(open("/tmp/lnk/hostname").read()) > 0)
            """)
        #expect(r.out.contains("refused 13"), "\(r.out) \(r.err)")
        let events = r.trace.filter { $0.args.path?.hasPrefix("/tmp/lnk/") ?? false }
        let write = try #require(events.first { $0.args.path == "/tmp/lnk/passwd" })
        #expect(
            write.action == .denied && write.rule == .notify("write-outside-tmp")
                && write.args.resolved == "/etc/passwd")
        let read = try #require(events.first { $0.args.path == "/tmp/lnk/hostname" })
        #expect(read.action == .allowed && read.args.resolved == "/etc/hostname")
    }

    @Test("the supervisor opens as the sandbox's user: PID 1's memory map and descriptors stay out of reach")
    func noSupervisorPrivilege() throws {
        let r = try runPython(
            """
            import os
            for p in ("/proc/1/maps", "/proc/1/fd/3", "/proc/1/environ", "/proc/1/mem", "/proc/1/root/etc/hostname"):
                try:
                    os.open(p, os.O_RDONLY); print(p, "opened")
                except OSError as e:
                    print(p, "refused", e.errno)
            """)
        #expect(!r.out.contains("opened"), "\(r.out) \(r.err)")
    }

    @Test("an open that would block (a pipe with no writer, reopened) never stalls the supervisor")
    func blockingOpen() throws {
        let started = monotonicNow()
        let r = try runPython(
            """
            import os
            r, w = os.pipe()
            os.close(w)
            fd = os.open("/proc/self/fd/%d" % r, os.O_RDONLY)
            print("read end", os.get_blocking(fd))
            r2, w2 = os.pipe()
            os.close(r2)
            try:
                os.open("/proc/self/fd/%d" % w2, os.O_WRONLY); print("write end opened")
            except OSError as e:
                print("write end", e.errno)
            """, timeout: 20)
        #expect(r.out.contains("read end True"), "\(r.out) \(r.err)")
        // The write end is refused by write-outside-tmp (13) before anything could block; a profile that allowed it
        // would get ENXIO (6) rather than a supervisor stuck in open.
        #expect(r.out.contains("write end 13") || r.out.contains("write end 6"), "\(r.out)")
        #expect(!r.timedOut)
        #expect(monotonicNow() - started < 15_000_000_000)
    }
}
