@testable import AirlockSandbox
import AirlockTrace
import AirlockProbe
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// Every system call has a decision, and calls that reach an effect without a notification are refused.
@Suite("System-call inventory")
struct SyscallInventoryTests {
    @Test("every system call this machine's libseccomp knows is decided by the default profile")
    func everyCallDecided() throws {
        // When this fails, a libseccomp (or kernel headers) update brought a system call the profile has never
        // judged: decide it in Profiles/default.json (a syscalls rule, or airlock.allowedInKernel), then
        // regenerate docs/profiles.md (make inventory). Until then it is refused with ENOSYS.
        let undecided = SeccompProgram.undecided(try defaultProfile())
        #expect(undecided.isEmpty, "undecided: \(undecided)")
    }

    @Test("docs/profiles.md lists the default profile's inventory as generated from it")
    func documentedInventory() throws {
        let path = "\(repositoryRoot)/docs/profiles.md"
        let doc = try String(contentsOfFile: path, encoding: .utf8)
        let begin = "<!-- inventory:begin (generated: make inventory) -->\n"
        let end = "<!-- inventory:end -->"
        let profile = try defaultProfile()
        let generated = SyscallInventory(profile: profile).markdown(
            architecture: SeccompProgram.archName(seccompNative()))
        let start = try #require(doc.range(of: begin), "docs/profiles.md has no inventory section")
        let stop = try #require(doc.range(of: end, range: start.upperBound..<doc.endIndex))
        let current = String(doc[start.upperBound..<stop.lowerBound])
        if ProcessInfo.processInfo.environment["AIRLOCK_UPDATE_DOCS"] == "1" && current != generated {
            let updated = doc.replacingCharacters(in: start.upperBound..<stop.lowerBound, with: generated)
            try updated.write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(current == generated, "docs/profiles.md's inventory is stale: run make inventory")
    }

    @Test("a number beyond libseccomp's table is refused with ENOSYS and recorded")
    func unknownNumber() throws {
        let beyond = SyscallTable.native.highest + 1
        let result = try runPython(
            """
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            for nr in (\(beyond), 467, 999):
                print(nr, libc.syscall(nr, 0, 0, 0, 0, 0), ctypes.get_errno())
            """)
        #expect(result.out.contains("\(beyond) -1 38"), "\(result.out) \(result.err)")
        #expect(result.out.contains("467 -1 38"))
        #expect(result.out.contains("999 -1 38"))
        let refused = result.trace.filter { $0.rule == .unknownSyscall }
        #expect(refused.count == 3)
        #expect(refused.allSatisfy { $0.action == .denied && $0.errno == "ENOSYS" })
    }

    @Test("a system call the profile does not decide is refused with ENOSYS and recorded")
    func undecidedCall() throws {
        let profile = try editedProfile { object in
            editSection(&object) { section in
                section["allowedInKernel"] = (section["allowedInKernel"] as! [String]).filter { $0 != "getppid" }
            }
        }
        #expect(SeccompProgram.undecided(profile) == ["getppid"])
        let result = try runPython(
            """
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            print(libc.getppid(), ctypes.get_errno())
            """, profile: profile)
        // glibc's getppid never fails, so it returns the raw -ENOSYS.
        #expect(result.out.contains("-38"), "\(result.out) \(result.err)")
        let event = try #require(result.events("getppid").first)
        #expect(event.rule == .undecided)
        #expect(event.action == .denied)
    }

    @Test(
        "calls that would reach an effect unseen are refused and recorded",
        arguments: [
            (
                "mknodat (a FIFO)",
                "import os\ntry:\n    os.mkfifo('/tmp/f'); print('made')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "mknodat"
            ),
            (
                "fchmod setting set-user-ID",
                "import os\nfd = os.open('/tmp/x', os.O_CREAT | os.O_WRONLY, 0o600)\ntry:\n    os.fchmod(fd, 0o4755); print('set')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "fchmod"
            ),
            (
                "fchmod setting set-group-ID",
                "import os\nfd = os.open('/tmp/x', os.O_CREAT | os.O_WRONLY, 0o600)\ntry:\n    os.fchmod(fd, 0o2755); print('set')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "fchmod"
            ),
            (
                "fcntl F_SETOWN",
                "import fcntl, os\nr, w = os.pipe()\ntry:\n    fcntl.fcntl(r, 8, 1); print('set')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "fcntl"
            ),
            (
                "fcntl F_SETSIG",
                "import fcntl, os\nr, w = os.pipe()\ntry:\n    fcntl.fcntl(r, 10, 9); print('set')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "fcntl"
            ),
            (
                "ioctl FIOSETOWN",
                "import fcntl, socket, struct\ns = socket.socket(socket.AF_UNIX)\ntry:\n    fcntl.ioctl(s.fileno(), 0x8901, struct.pack('i', 1)); print('set')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "ioctl"
            ),
            (
                "ioctl SIOCSPGRP",
                "import fcntl, socket, struct\ns = socket.socket(socket.AF_UNIX)\ntry:\n    fcntl.ioctl(s.fileno(), 0x8902, struct.pack('i', 1)); print('set')\nexcept OSError as e: print('refused', e.errno)",
                "refused 1", "ioctl"
            ),
            (
                "sendmmsg",
                "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('refused' if libc.sendmmsg(0, None, 0, 0) == -1 and ctypes.get_errno() == 38 else 'sent')",
                "refused", "sendmmsg"
            ),
            (
                "a seccomp listener of the sandbox's own",
                "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.syscall(317, 1, 8, None)\nprint('refused', ctypes.get_errno()) if r == -1 else print('installed')",
                "refused 1", "seccomp"
            ),
        ])
    func refusedCalls(_ what: String, _ code: String, _ expected: String, _ syscall: String) throws {
        let result = try runPython(code)
        #expect(result.out.contains(expected), "\(what): \(result.out) \(result.err)")
        #expect(result.events(syscall).contains { $0.action == .denied }, "\(what) is not in the trace as refused")
    }

    @Test("set-user-ID and set-group-ID modes are refused by the setid-mode rule, through every call that sets a mode")
    func setIdModes() throws {
        let result = try runPython(
            """
            import os, ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            open('/tmp/f', 'w').close()
            for name, call in [
                ('chmod', lambda: os.chmod('/tmp/f', 0o4755)),
                ('fchmodat', lambda: os.chmod('f', 0o2755, dir_fd=os.open('/tmp', os.O_RDONLY))),
                ('open', lambda: os.open('/tmp/g', os.O_CREAT | os.O_WRONLY, 0o4755)),
                ('fchmodat2', lambda: libc.syscall(452, -100, b'/tmp/f', 0o4755, 0) == 0 or (_ for _ in ()).throw(OSError(ctypes.get_errno(), 'x'))),
            ]:
                try:
                    call(); print(name, 'set')
                except OSError as e:
                    print(name, 'refused', e.errno)
            print('mode', oct(os.stat('/tmp/f').st_mode & 0o7777), os.path.exists('/tmp/g'))
            """)
        for name in ["chmod", "fchmodat", "open", "fchmodat2"] {
            #expect(result.out.contains("\(name) refused 1"), "\(name): \(result.out) \(result.err)")
        }
        #expect(result.out.contains("mode 0o644 False"), "\(result.out)")
        #expect(result.trace.filter { $0.rule == .notify("setid-mode") && $0.action == .denied }.count == 4)
    }
}

private func seccompNative() -> UInt32 { (try? SeccompProgram(profile: defaultProfile()))?.nativeArch ?? 0 }

/// The shipped profile and policy agree: a refusal is never judged as "some other denial" because its rule has no name
/// in the policy.
@Suite("Profile and policy")
struct ProfilePolicyTests {
    @Test("every refusing rule of the default profile, and the supervisor's own, is named by the default policy")
    func everyRefusalNamed() throws {
        let profile = try defaultProfile()
        let policy = try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: profile)
        let refusing =
            profile.sandbox.notify.filter { $0.action != .allow }.map(\.id)
            + ["undecided", "unknown-syscall", "phase-regression", "phase-unknown"]
        let unnamed = refusing.filter { policy.behaviour[TraceRule($0)] == nil }
        #expect(unnamed.isEmpty, "refusals the policy would call dynamic.denied: \(unnamed)")
    }
}
