@testable import AirlockSandbox
import AirlockSystem
import Foundation
import Testing
import AirlockTestSupport

/// Bad profiles, missing mount sources and missing commands fail clearly and run nothing.
@Suite("Set-up errors")
struct SetupErrorTests {
    @Test(
        "bad profiles name the field at fault",
        arguments: [
            (#"{"defaultActon": "SCMP_ACT_ALLOW"}"#, "defaultActon"),
            (#"{"defaultAction": "SCMP_ACT_FOO"}"#, "defaultAction"),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]}"#, "architectures[0]"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}"#,
                "syscalls[0].action"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"mounts": [{"type": "bindd", "destination": "/x"}]}}"#,
                "airlock.mounts[0].type"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"mounts": [{"type": "tmpfs", "destination": "tmp"}]}}"#,
                "airlock.mounts[0].destination"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"mounts": [{"type": "bind", "destination": "/a/../b", "source": "/usr"}]}}"#,
                "airlock.mounts[0].destination"
            ),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"cwd": 5}}"#, "airlock.cwd"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"limits": {"timeoutSeconds": -1}}}"#,
                "airlock.limits.timeoutSeconds"
            ),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"limits": {"cpuSecs": 1}}}"#, "airlock.limits.cpuSecs"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"notify": [{"id": "x", "syscalls": ["open"], "action": "deny", "errno": "EWHAT"}]}}"#,
                "airlock.notify[0].errno"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"notify": [{"id": "x", "syscalls": ["open"], "action": "maybe"}]}}"#,
                "airlock.notify[0].action"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"user": {"uid": 1, "hostUid": 0}}}"#,
                "airlock.user.hostUid"
            ),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"hostname": "a b"}}"#, "airlock.hostname"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "airlock": {"mounts": [{"type": "tmpfs", "destination": "/t", "size": 0}]}}"#,
                "airlock.mounts[0].size"
            ),
            (#"{"defaultAction": "#, "not valid JSON"),
        ])
    func badProfile(json: String, field: String) {
        #expect {
            _ = try Profile(json: Array(json.utf8), name: "bad")
        } throws: { error in
            guard let e = error as? SandboxError else { return false }
            return e.kind == .profile && e.message.contains(field)
        }
    }

    @Test("an unknown system call name is an error naming the rule")
    func unknownSyscall() throws {
        let profile = try Profile(
            json: Array(
                #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}, {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]}"#
                    .utf8), name: "bad")
        #expect {
            _ = try SeccompProgram(profile: profile)
        } throws: { error in
            (error as? SandboxError)?.message.contains("syscalls[1].names") == true
        }
    }

    @Test(
        "rules libseccomp would merge away, and notify rules that can never fire, are refused",
        arguments: [
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_NOTIFY"}, {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}], "airlock": {"recordRefused": false}}"#,
                "syscalls[1]"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["openat"], "action": "SCMP_ACT_NOTIFY"}], "airlock": {"notify": [{"id": "x", "syscalls": ["connect"], "action": "deny"}]}}"#,
                "airlock.notify[0].syscalls"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["openat"], "action": "SCMP_ACT_NOTIFY"}], "airlock": {"notify": [{"id": "x", "syscalls": ["opneat"], "action": "deny"}]}}"#,
                "airlock.notify[0].syscalls"
            ),
        ])
    func inconsistentRules(json: String, field: String) throws {
        let profile = try Profile(json: Array(json.utf8), name: "bad")
        #expect {
            _ = try SeccompProgram(profile: profile)
        } throws: { error in
            (error as? SandboxError)?.message.contains(field) == true
        }
    }

    @Test("file and directory modes are applied as written, whatever the supervisor's umask")
    func modes() throws {
        let profile = try profileAddingMounts([
            ["type": "file", "destination": "/etc/airlock-test", "contents": "x", "mode": "0640"],
            ["type": "dir", "destination": "/srv/shared", "mode": "0777"],
        ])
        let result = try runPython(
            "import os; print(oct(os.stat('/etc/airlock-test').st_mode & 0o777), oct(os.stat('/srv/shared').st_mode & 0o777))",
            profile: profile)
        #expect(result.out == "0o640 0o777\n", "\(result.out) \(result.err)")
    }

    @Test("the shipped default profile loads and compiles")
    func defaultProfileCompiles() throws {
        let profile = try defaultProfile()
        let program = try SeccompProgram(profile: profile)
        #expect(program.instructions.count > 20)
        #expect(profile.sandbox.mounts.contains { $0.destination == "/usr" && $0.kind == .bind })
        #expect(
            !profile.sandbox.mounts.contains { ["/root", "/home", "/etc/shadow", "/etc"].contains($0.destination) })
    }

    @Test("a missing mount source is a clear error and nothing runs")
    func missingMountSource() throws {
        let profile = try profileAddingMounts([
            ["type": "bind", "source": "/nonexistent/airlock-source", "destination": "/data"]
        ])
        #expect {
            _ = try Sandbox.run(SandboxRequest(argv: ["/bin/true"], profile: profile))
        } throws: { error in
            guard let e = error as? SandboxError else { return false }
            return e.kind == .mountSource && e.message.contains("/nonexistent/airlock-source")
                && e.message.contains("airlock.mounts[")
        }
    }

    @Test("a mount the tree cannot hold fails inside the child and is reported as a set-up failure")
    func setupFailureInside() throws {
        // A file under the read-only /usr bind: only the child, mid-set-up, can find out.
        let profile = try profileAddingMounts([
            ["type": "file", "destination": "/usr/airlock-cannot-write-here", "contents": "x"]
        ])
        #expect {
            _ = try Sandbox.run(SandboxRequest(argv: ["/bin/true"], profile: profile))
        } throws: { error in
            guard let e = error as? SandboxError else { return false }
            return e.kind == .setup && e.message.contains("/usr/airlock-cannot-write-here") && e.errno != nil
        }
    }

    @Test("a command missing inside the sandbox is reported as not found")
    func commandNotFound() throws {
        #expect {
            _ = try Sandbox.run(SandboxRequest(argv: ["no-such-command-airlock"], profile: defaultProfile()))
        } throws: { error in
            (error as? SandboxError)?.kind == .commandNotFound
        }
        #expect {
            _ = try Sandbox.run(SandboxRequest(argv: ["/root/.profile"], profile: defaultProfile()))
        } throws: { error in
            (error as? SandboxError)?.kind == .commandNotFound
        }
    }
}

@Suite("Path globs")
struct PathMatcherTests {
    @Test(arguments: [
        ("/etc/shadow", "/etc/shadow", true),
        ("/etc/shadow", "/etc/shadow-", false),
        ("/root/**", "/root", true),
        ("/root/**", "/root/.ssh/id_rsa", true),
        ("/root/**", "/rootkit", false),
        ("/proc/*/environ", "/proc/1/environ", true),
        ("/proc/*/environ", "/proc/1/task/2/environ", false),
        ("**/.ssh/**", "/tmp/x/.ssh/id_rsa", true),
        ("**/.ssh/**", "/tmp/ssh/id_rsa", false),
        ("/tmp/**", "/tmp/a/b/c", true),
        ("/tmp/**", "/tmpfoo", false),
        ("/dev/null", "/dev/null", true),
        ("/a?c", "/abc", true),
        ("/a?c", "/a/c", false),
        ("**", "/anything/at/all", true),
        ("**/.ssh/**", "/.ssh", true),
        ("/proc/*/task/*/environ", "/proc/1/task/2/environ", true),
        ("/a/*b*c", "/a/xxbyyc", true),
        ("/a/*b*c", "/a/xxbyyd", false),
        ("/a/**/z", "/a/z", true),
        ("/a/**/z", "/a/b/c/z", true),
        ("/a/**/z", "/a/b/c/zz", false),
        ("/", "/", true),
    ])
    func glob(pattern: String, path: String, matches: Bool) {
        #expect(PathMatcher.matches(pattern, path) == matches)
    }

    @Test("set-up steps are named from the one table the child's C code reports from, with the mount at fault")
    func stepNames() throws {
        let usr = try MountSpec.readOnlyBind(host: "/usr", sandbox: "/usr")
        // 25 is no step (a number once given to a step nothing reported); every other number up to 26 is one.
        for step in UInt32(1)...26 where step != 25 {
            let e = StatusChannel.setupError(step: step, errno: Errno(EPERM), index: -1, mounts: [])
            #expect(e.kind == .setup && !e.message.hasSuffix("step \(step)"), "\(e)")
        }
        let mount = StatusChannel.setupError(step: 8, errno: Errno(EPERM), index: 0, mounts: [usr])
        #expect(mount.message == "sandbox set-up failed while mounting /usr → /usr (bind)", "\(mount.message)")
        #expect(mount.description.hasSuffix(": EPERM (Operation not permitted)"))
        let maps = StatusChannel.setupError(step: 1, errno: Errno(ECANCELED), index: -1, mounts: [])
        #expect(maps.message == "sandbox set-up failed while waiting for the uid/gid maps")
        #expect(
            StatusChannel.setupError(step: 99, errno: Errno(EPERM), index: -1, mounts: []).message.hasSuffix("step 99"))
    }

    @Test(arguments: [("/tmp/../etc/shadow", "/etc/shadow"), ("//a/./b//c/", "/a/b/c"), ("/../..", "/")])
    func normalize(path: String, expected: String) {
        #expect(PathMatcher.normalize(path) == expected)
    }

    @Test("a long hostile path is matched in linear time")
    func hostilePath() {
        let path = "/" + String(repeating: "a/", count: 2000) + "b"
        #expect(!PathMatcher.matches("**/*/*/*/*/.ssh/**", path))
    }
}
