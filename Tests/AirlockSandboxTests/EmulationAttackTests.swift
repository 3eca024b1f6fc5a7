@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// Attacks on the calls the supervisor performs for the sandbox (CallEmulator), found by a review that tried them:
/// the supervisor acts with the sandbox's ids and rights only, never holds its deadline up, and judges sockets by
/// what they are.
@Suite("Calls the supervisor performs: attacks")
struct EmulationAttackTests {
    @Test("a Unix socket on the host reached from the sandbox sees the sandbox's user, not the supervisor's root")
    func peerCredentialsOnHost() throws {
        let dir = "/var/tmp/airlock-peer-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o777)
        // A host listener that prints the connecting peer's uid and gid (SO_PEERCRED).
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = [
            "-c",
            """
            import os, socket, struct, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(1)
            print("ready", flush=True)
            s.settimeout(20)
            c, _ = s.accept()
            pid, uid, gid = struct.unpack("3i", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            print("peer", uid, gid, flush=True)
            """, "\(dir)/s",
        ]
        let out = Pipe()
        server.standardOutput = out
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        let ready = out.fileHandleForReading.availableData
        #expect(String(decoding: ready, as: UTF8.self).contains("ready"))
        let r = try runPython(
            """
            import socket
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect("/mnt/peer/s")
            print("connected")
            """, mounts: [try MountSpec.readOnlyBind(host: dir, sandbox: "/mnt/peer")])
        #expect(r.out.contains("connected"), "\(r.out) \(r.err)")
        server.waitUntilExit()
        let peer = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let ids = try defaultProfile().sandbox.user.hostIDs
        #expect(peer.contains("peer \(ids.uid) \(ids.gid)"), "the host saw: \(peer)")
    }

    @Test("inside, a connection's peer credentials are the sandbox's user")
    func peerCredentialsInside() throws {
        let r = try runPython(
            """
            import socket, struct
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("/tmp/s"); s.listen(1)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("/tmp/s")
            a, _ = s.accept()
            pid, uid, gid = struct.unpack("3i", a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            print("peer", uid, gid)
            """)
        #expect(r.out.contains("peer 1000 1000"), "\(r.out) \(r.err)")
    }

    @Test("netlink with an explicit destination gets no capability from the supervisor: lo stays as it is")
    func netlinkHasNoCapability() throws {
        let r = try runPython(
            """
            import fcntl, socket, struct
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            # RTM_NEWLINK (16) for ifindex 1 (lo): IFF_UP cleared in flags, set in the change mask (down: the
            # emulated network brought it up); NLM_F_REQUEST | NLM_F_ACK.
            body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 1, 0, 1)
            msg = struct.pack("IHHII", 16 + len(body), 16, 0x5, 1, 0) + body
            nl.sendto(msg, (0, 0))
            reply = nl.recv(4096)
            print("ack", struct.unpack("i", reply[16:20])[0])
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, struct.pack("16sH", b"lo", 0)))[1]
            print("lo up", bool(flags & 1))
            """)
        #expect(r.out.contains("lo up True"), "\(r.out) \(r.err)")
        #expect(r.out.contains("ack -1"), "\(r.out)")  // -EPERM
    }

    @Test("a /proc/PID directory used as a pidfd cannot signal PID 1")
    func procDirectoryPidfd() throws {
        let r = try runPython(
            """
            import ctypes, os, signal
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/proc/1", os.O_DIRECTORY)
            print(libc.syscall(424, fd, signal.SIGSTOP, None, 0), ctypes.get_errno())
            print(open("/proc/1/stat").read().split()[2])
            """)
        #expect(r.out.contains("-1 1\n"), "\(r.out) \(r.err)")
        #expect(!r.out.contains("\nT"), "PID 1 was stopped: \(r.out)")
        let event = try #require(r.events("pidfd_send_signal").first)
        #expect(event.action == .denied && event.rule == .notify("signal-outside") && event.args.target == 1)
    }

    @Test("an IP address written as AF_UNSPEC is still IP: refused by the network rule")
    func unspecifiedFamily() throws {
        let r = try runPython(
            """
            import ctypes, socket, struct
            libc = ctypes.CDLL(None, use_errno=True)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            addr = struct.pack("HH4s8x", 0, socket.htons(5353), socket.inet_aton("127.0.0.1"))
            print("bind", libc.bind(s.fileno(), addr, len(addr)), ctypes.get_errno())
            print("sendto", libc.sendto(s.fileno(), b"x", 1, 0, addr, len(addr)), ctypes.get_errno())
            """, profile: networkDenyingProfile())
        #expect(r.out.contains("bind -1 13"), "\(r.out) \(r.err)")
        #expect(r.out.contains("sendto -1 13"), "\(r.out)")
        #expect(r.events("bind").first?.args.family == "inet")
        #expect(r.events("sendto").first?.rule == .notify("network"))
    }

    @Test("a lease held inside cannot stall the supervisor: the deadline holds")
    func leaseDoesNotStall() throws {
        let started = monotonicNow()
        let r = try runPython(
            """
            import fcntl, os, signal, time
            signal.signal(signal.SIGIO, signal.SIG_IGN)
            open("/tmp/leased", "w").close()
            fd = os.open("/tmp/leased", os.O_RDONLY)
            fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)  # F_SETLEASE
            pid = os.fork()
            if pid == 0:
                try:
                    os.open("/tmp/leased", os.O_WRONLY); print("opened", flush=True)
                except OSError as e:
                    print("child", e.errno, flush=True)
                os._exit(0)
            os.waitpid(pid, 0)
            """, timeout: 5)
        let seconds = Double(monotonicNow() - started) / 1e9
        #expect(seconds < 12, "the run took \(seconds) s with a 5 s deadline")
        #expect(r.out.contains("child 11") || r.timedOut, "\(r.out) \(r.err)")
    }

    @Test("a send the supervisor performs never blocks it: a full socket gives EAGAIN within about a second")
    func fullSocketSend() throws {
        let started = monotonicNow()
        let r = try runPython(
            """
            import socket, time
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            a.setblocking(False)
            try:
                while True: a.send(b"x" * 65536)
            except BlockingIOError:
                pass
            a.setblocking(True)
            t = time.monotonic()
            try:
                a.sendmsg([b"y" * 1000]); print("sent")
            except OSError as e:
                print("error", e.errno, round(time.monotonic() - t, 1))
            """, timeout: 20)
        #expect(r.out.contains("error 11"), "\(r.out) \(r.err)")
        #expect(monotonicNow() - started < 10_000_000_000)
    }

    @Test("truncate beyond the sandbox's file-size limit fails with EFBIG, as the kernel answers the sandbox")
    func truncateLimit() throws {
        let r = try runPython(
            """
            import os
            open("/tmp/big", "w").close()
            try:
                os.truncate("/tmp/big", 1 << 34); print("grew", os.stat("/tmp/big").st_size)
            except OSError as e:
                print("error", e.errno)
            """)
        #expect(r.out.contains("error 27"), "\(r.out) \(r.err)")
    }

    @Test("a pidfd of the supervisor itself (SO_PEERPIDFD of a connection it made) cannot signal it")
    func supervisorPidfd() throws {
        let r = try runPython(
            """
            import ctypes, socket, struct
            libc = ctypes.CDLL(None, use_errno=True)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("/tmp/srv"); s.listen(5)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("/tmp/srv")
            a, _ = s.accept()
            pfd = struct.unpack("i", a.getsockopt(socket.SOL_SOCKET, 77, 4))[0]  # SO_PEERPIDFD
            print("signal", libc.syscall(424, pfd, 19, None, 0), ctypes.get_errno())  # SIGSTOP
            """, timeout: 10)
        #expect(r.out.contains("signal -1 1"), "\(r.out) \(r.err)")
        #expect(!r.timedOut)
        let event = try #require(r.events("pidfd_send_signal").first)
        #expect(event.action == .denied && event.rule == .notify("signal-outside"))
    }

    @Test("a trailing slash after a symlink is resolved beneath the sandbox's root, not the host's")
    func trailingSlash() throws {
        let dir = "/var/tmp/airlock-slash-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chown(dir, 65534, 65534)
        var before = stat()
        stat(dir, &before)
        let r = try runPython(
            """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            os.symlink("\(dir)", "/tmp/x")
            times = (ctypes.c_long * 4)(1234567890, 0, 1234567890, 0)
            print("utimensat", libc.utimensat(-100, b"/tmp/x/", times, 0x100), ctypes.get_errno())
            print("lsetxattr", libc.lsetxattr(b"/tmp/x/", b"user.airlock", b"v", 1, 0), ctypes.get_errno())
            print("link", libc.link(b"/tmp/x/", b"/tmp/y"), ctypes.get_errno())
            """)
        #expect(r.out.contains("utimensat -1 2"), "\(r.out) \(r.err)")
        #expect(r.out.contains("lsetxattr -1 2"), "\(r.out)")
        #expect(r.out.contains("link -1 2"), "\(r.out)")
        var after = stat()
        stat(dir, &after)
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec, "the host directory's time changed")
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        check.arguments = ["-c", "import os, sys; print(os.listxattr(sys.argv[1]))", dir]
        let listed = Pipe()
        check.standardOutput = listed
        try check.run()
        check.waitUntilExit()
        let attributes = String(decoding: listed.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(!attributes.contains("user.airlock"), "an attribute appeared on the host directory: \(attributes)")
    }

    @Test("a connect held up while another thread flips O_NONBLOCK still ends within about a second")
    func connectRace() throws {
        let started = monotonicNow()
        let r = try runPython(
            """
            import fcntl, os, socket, threading, time
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("/tmp/full"); s.listen(0)
            held = []
            for i in range(8):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.setblocking(False)
                try: c.connect("/tmp/full")
                except BlockingIOError: break
                held.append(c)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stop = False
            def flip():
                while not stop:
                    fl = fcntl.fcntl(c.fileno(), fcntl.F_GETFL)
                    fcntl.fcntl(c.fileno(), fcntl.F_SETFL, fl ^ os.O_NONBLOCK)
            t = threading.Thread(target=flip); t.start()
            t0 = time.monotonic()
            try:
                c.connect("/tmp/full"); print("connected")
            except OSError as e:
                print("connect", e.errno)
            stop = True; t.join()
            print("took", round(time.monotonic() - t0, 1))
            """, timeout: 20)
        #expect(!r.timedOut, "\(r.out) \(r.err)")
        #expect(monotonicNow() - started < 10_000_000_000)
    }

    @Test("a Unix socket bound for the sandbox gets the caller's umask")
    func bindUmask() throws {
        let r = try runPython(
            """
            import os, socket, stat
            os.umask(0o077)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("/tmp/s")
            print("mode", oct(stat.S_IMODE(os.stat("/tmp/s").st_mode)))
            """)
        #expect(r.out.contains("mode 0o700"), "\(r.out) \(r.err)")
    }

    @Test("O_PATH opens get a usable descriptor (seccomp cannot hand over O_PATH files)")
    func pathOpens() throws {
        let r = try runPython(
            """
            import os
            d = os.open("/tmp", os.O_PATH | os.O_DIRECTORY)
            print("dir", os.path.isdir("/proc/self/fd/%d" % d))
            f = os.open("/usr/bin/python3", os.O_PATH)
            print("file", os.fstat(f).st_size > 0)
            """)
        #expect(r.out.contains("dir True") && r.out.contains("file True"), "\(r.out) \(r.err)")
    }

    @Test("more than 253 descriptors in one SCM_RIGHTS message: EINVAL before any is copied")
    func tooManyRights() throws {
        let r = try runPython(
            """
            import array, os, socket
            a, b = socket.socketpair()
            fds = array.array("i", [0] * 300)
            try:
                a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]); print("sent")
            except OSError as e:
                print("error", e.errno)
            a.sendmsg([b"y"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0] * 10))])
            msg, anc, _, _ = b.recvmsg(16, socket.CMSG_SPACE(40 * 4))
            print("received", msg, sum(len(data) // 4 for _, _, data in anc))
            """)
        #expect(r.out.contains("error 22"), "\(r.out) \(r.err)")
        #expect(r.out.contains("received b'y' 10"), "\(r.out)")
    }
}
