@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// Payloads that try to leave the sandbox. Each proves the host side effect is absent and the attempt is in the
/// trace. Nothing here is mocked: these run real sandboxes and need root (or unprivileged user namespaces).
@Suite("Escape attempts")
struct EscapeTests {
    @Test("TCP connect to a loopback listener the test owns, network refused: no connection arrives, connect traced")
    func loopbackConnect() throws {
        let listener = try LoopbackListener()
        let result = try runPython(
            """
            import socket
            try:
                socket.create_connection(("127.0.0.1", \(listener.port)), timeout=2)
                print("connected")
            except OSError as e:
                print("refused", e.errno)
            """, profile: networkDenyingProfile())
        #expect(result.out.contains("refused 13"))
        #expect(!listener.sawConnection())
        let connect = try #require(result.events("connect").first)
        #expect(connect.action == .denied)
        #expect(connect.errno == "EACCES")
        #expect(connect.args.family == "inet")
        #expect(connect.args.address == "127.0.0.1")
        #expect(connect.args.port == Int(listener.port))
        #expect(connect.rule == .notify("network"))
    }

    @Test("listen on an IP socket from a second thread: the family is found through the descriptor")
    func listenFromThread() throws {
        let result = try runPython(
            """
            import socket, threading
            def serve():
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.listen(1)
                    print("listening")
                except OSError as e:
                    print("refused", e.errno)
            t = threading.Thread(target=serve)
            t.start()
            t.join()
            """, profile: networkDenyingProfile())
        #expect(result.out.contains("refused 13"), "\(result.out) \(result.err)")
        let listen = try #require(result.events("listen").first)
        #expect(listen.args.family == "inet")
        #expect(listen.action == .denied)
        #expect(listen.pid != 2, "called from the second thread")
    }

    @Test("IPv6 and UDP sendto, network refused: refused with their addresses decoded")
    func ipv6AndUDP() throws {
        let result = try runPython(
            """
            import socket
            for fam, addr in ((socket.AF_INET6, ("::1", 5353)), (socket.AF_INET, ("127.0.0.1", 53))):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                try:
                    s.sendto(b"x", addr)
                except OSError as e:
                    print("refused", e.errno)
            """, profile: networkDenyingProfile())
        #expect(result.out.components(separatedBy: "refused 13").count == 3)
        let sends = result.events("sendto")
        #expect(sends.count == 2)
        #expect(sends.contains { $0.args.family == "inet6" && $0.args.address == "::1" && $0.args.port == 5353 })
        #expect(sends.contains { $0.args.family == "inet" && $0.args.address == "127.0.0.1" && $0.args.port == 53 })
        #expect(sends.allSatisfy { $0.action == .denied })
    }

    @Test("writing into a host directory mounted read-only: nothing appears on the host")
    func writeIntoHostDirectory() throws {
        let host = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: host) }
        let mount = try MountSpec.readOnlyBind(host: host, sandbox: "/host")
        let result = try runPython(
            """
            import os
            for attempt in (lambda: open("/host/pwned", "w"), lambda: os.mkdir("/host/dir"), lambda: os.symlink("/etc", "/host/link")):
                try:
                    attempt()
                    print("wrote")
                except OSError as e:
                    print("refused", e.errno)
            """, mounts: [mount])
        #expect(!result.out.contains("wrote"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: host).isEmpty)
        let open = try #require(result.events("openat").first { $0.args.path == "/host/pwned" })
        #expect(open.action == .denied)
        #expect(open.args.flags?.contains("O_WRONLY") == true)
        #expect(result.events("mkdir").first?.action == .denied)
        #expect(result.events("symlink").first?.args.path == "/host/link")
    }

    @Test("the mount tree holds even when the supervisor allows every notified call")
    func mountTreeIsTheBoundary() throws {
        let host = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: host) }
        let permissive = try editedProfile { object in
            editSection(&object) { $0["notify"] = [] }
        }
        let result = try runPython(
            """
            import errno
            for path in ("/host/pwned", "/usr/pwned", "/etc/pwned", "/proc/sys/kernel/hostname"):
                try:
                    open(path, "w")
                    print("wrote", path)
                except OSError as e:
                    print("refused", errno.errorcode[e.errno])
            """, profile: permissive, mounts: [try MountSpec.readOnlyBind(host: host, sandbox: "/host")])
        #expect(!result.out.contains("wrote"), "\(result.out)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: host).isEmpty)
        #expect(result.events("openat").contains { $0.args.path == "/host/pwned" && $0.action == .allowed })
    }

    @Test("reading /etc/shadow and other secrets is refused and recorded")
    func readSecrets() throws {
        let result = try runPython(
            """
            for path in ("/etc/shadow", "/root/.ssh/id_rsa", "/proc/1/environ", "/tmp/../etc/gshadow"):
                try:
                    open(path).read()
                    print("read", path)
                except OSError as e:
                    print("refused", e.errno)
            """)
        #expect(!result.out.contains("read "))
        let denied = result.events("openat").filter { $0.rule == .notify("secrets") }
        #expect(
            Set(denied.compactMap(\.args.path)) == [
                "/etc/shadow", "/root/.ssh/id_rsa", "/proc/1/environ", "/etc/gshadow",
            ])
        #expect(denied.allSatisfy { $0.action == .denied && $0.errno == "EACCES" })
    }

    @Test("os.system: execve denied with its argv in the trace")
    func osSystem() throws {
        let result = try runPython("import os; print('status', os.system('touch /tmp/ran; echo pwned'))")
        #expect(!result.out.contains("pwned"))
        let exec = try #require(result.events("execve").first { $0.rule == .notify("exec") })
        #expect(exec.action == .denied)
        #expect(exec.errno == "EPERM")
        #expect(exec.args.path == "/bin/sh")
        #expect(exec.args.argv == ["sh", "-c", "touch /tmp/ran; echo pwned"])
        #expect(exec.pid > 2, "the forked child, not python itself")
        // The command's own exec is the launch, allowed.
        #expect(result.trace.first?.syscall == "execve")
        #expect(result.trace.first?.rule == .launch)
        #expect(result.trace.first?.action == .allowed)
    }

    @Test(
        "refused outright and recorded",
        arguments: [
            ("io_uring_setup", "print(libc.syscall(425, 1, 0), ctypes.get_errno())", "-1 1"),
            ("unshare", "print(libc.unshare(0x10000000), ctypes.get_errno())", "-1 1"),
            ("ptrace", "print(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())", "-1 1"),
            ("mount", "print(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())", "-1 1"),
            ("bpf", "print(libc.syscall(321, 0, 0, 0), ctypes.get_errno())", "-1 1"),
            ("clone", "print(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0), ctypes.get_errno())", "-1 1"),
            ("ioctl", "print(libc.ioctl(0, 0x5412, ctypes.c_char_p(b'x')), ctypes.get_errno())", "-1 1"),
            ("socket", "print(libc.socket(38, 5, 0), ctypes.get_errno())", "-1 97"),
        ])
    func refused(syscall: String, code: String, expected: String) throws {
        let result = try runPython("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n" + code)
        #expect(result.out.trimmingCharacters(in: .whitespacesAndNewlines) == expected, "\(result.out) \(result.err)")
        let event = try #require(result.events(syscall).last, "\(syscall) missing from the trace")
        #expect(event.action == .denied)
        #expect({ if case .refused? = event.rule { true } else { false } }())
    }

    @Test("kill(-1, SIGKILL) inside: a process outside survives")
    func killEverything() throws {
        let outsider = Process()
        outsider.executableURL = URL(fileURLWithPath: "/bin/sleep")
        outsider.arguments = ["30"]
        try outsider.run()
        defer { outsider.terminate() }
        let result = try runPython(
            """
            import os, signal
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError as e:
                print("refused", e.errno)
            try:
                os.kill(1, signal.SIGKILL)
            except OSError as e:
                print("refused", e.errno)
            try:
                signal.pidfd_send_signal(os.pidfd_open(1), signal.SIGKILL)
            except OSError as e:
                print("refused", e.errno)
            print("alive")
            """)
        #expect(result.out.contains("alive"))
        #expect(outsider.isRunning)
        let kills = result.events("kill")
        #expect(kills.contains { $0.args.target == -1 && $0.args.signal == "SIGKILL" && $0.action == .denied })
        #expect(kills.contains { $0.args.target == 1 && $0.action == .denied })
        let pidfdKill = try #require(result.events("pidfd_send_signal").first)
        #expect(pidfdKill.args.target == 1)
        #expect(pidfdKill.action == .denied)
    }

    @Test("the state inside: no capabilities, no_new_privs, seccomp filter, only lo, only the sandbox's processes")
    func stateInside() throws {
        let result = try runPython(
            """
            import os, json
            status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
            print(json.dumps({
                "caps": {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
                "nnp": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
                "ifaces": [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]],
                "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                "hostname": os.uname().nodename, "root": sorted(os.listdir("/")),
                "mounts_rw": [l.split()[1] for l in open("/proc/self/mounts") if " rw," in l],
            }))
            """)
        let data = try #require(result.out.data(using: .utf8))
        let state = try #require(
            try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(result.out) \(result.err)")
        let caps = try #require(state["caps"] as? [String: String])
        for (name, value) in caps { #expect(value == "0000000000000000", "\(name)") }
        #expect(state["nnp"] as? String == "1")
        #expect(state["seccomp"] as? String == "2")
        #expect(state["ifaces"] as? [String] == ["lo"])
        #expect(state["pids"] as? [Int] == [1, 2])
        #expect(state["uid"] as? Int == 1000)
        #expect(state["gid"] as? Int == 1000)
        #expect(state["groups"] as? [Int] == [])
        #expect(state["hostname"] as? String == "airlock")
        let root = try #require(state["root"] as? [String])
        #expect(!root.contains("root") && !root.contains("home"))
        let writable = try #require(state["mounts_rw"] as? [String])
        #expect(
            Set(writable).isSubset(of: [
                "/tmp", "/proc", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
            ]), "\(writable)")
    }

    @Test("hostile arguments: unreadable pointers and huge argv are decoded within bounds")
    func hostileArguments() throws {
        let result = try runPython(
            """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            print(libc.syscall(59, ctypes.c_void_p(0xdeadbeef000), 0, 0), ctypes.get_errno())
            print(libc.syscall(257, -100, ctypes.c_void_p(0xdeadbeef000), 0, 0), ctypes.get_errno())
            try:
                os.execv("/bin/true", ["true"] + ["A" * 1000] * 300)
            except OSError as e:
                print("refused", e.errno)
            """)
        #expect(result.out.contains("-1 1\n"), "execve with a bad path pointer is still refused")
        #expect(result.out.contains("-1 14"), "openat with a bad pointer fails in the kernel (EFAULT)")
        let execs = result.events("execve").filter { $0.rule == .notify("exec") }
        #expect(execs.count == 2)
        #expect(execs.first?.args.unreadable == "path")
        let big = try #require(execs.last)
        #expect(big.args.argvTruncated == true)
        #expect((big.args.argv?.count ?? 0) < 301)
        #expect((big.args.argv ?? []).reduce(0) { $0 + $1.utf8.count } <= 64 * 1024)
    }

    @Test("a system call through the x32 ABI kills the process (architecture check)")
    func foreignABI() throws {
        let result = try runPython("import ctypes; ctypes.CDLL(None).syscall(0x40000000 + 39); print('survived')")
        #expect(!result.out.contains("survived"))
        #expect(result.signal == "SIGSYS")
        #expect(result.exitCode == nil)
    }
}
