import AirlockSandbox
import AirlockTestSupport
import Foundation
import Testing

/// `OCIExport` and `OCIImport`: a profile's enforce-only part as an OCI runtime-spec seccomp object, and back.
@Suite("OCI seccomp profiles")
struct OCIProfileTests {
    /// The export of the shipped profile as a JSON object.
    static func exported(
        _ profile: Profile? = nil, fallback: OCIExport.Fallback = .deny, allow: Set<String> = []
    ) throws -> (OCIExport, [String: Any]) {
        let export = try OCIExport(profile: profile ?? defaultProfile(), fallback: fallback, allow: allow)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(export.document)) as? [String: Any])
        return (export, object)
    }

    /// The rules of an exported object.
    static func rules(_ object: [String: Any]) -> [[String: Any]] { object["syscalls"] as? [[String: Any]] ?? [] }

    /// The action (with errno) the first rule naming `name` without conditions gives, or nil.
    static func plainAction(_ name: String, in object: [String: Any]) -> String? {
        for rule in rules(object) where (rule["names"] as? [String] ?? []).contains(name) && rule["args"] == nil {
            let action = rule["action"] as? String ?? "?"
            return action == "SCMP_ACT_ERRNO" ? "\(action)/\(rule["errnoRet"] as? Int ?? -1)" : action
        }
        return nil
    }

    @Test("the export has the OCI runtime-spec seccomp shape: only its keys, actions, operators and ranges")
    func ociShape() throws {
        for fallback in OCIExport.Fallback.allCases {
            let (_, object) = try Self.exported(fallback: fallback)
            #expect(OCISpec.problems(object) == [], "\(fallback)")
        }
        // The checker itself finds what the spec forbids.
        let bad: [String: Any] = [
            "defaultAction": "SCMP_ACT_NOTIFY2", "listener": 1,
            "syscalls": [["names": [], "action": "SCMP_ACT_ALLOW", "args": [["index": 9, "op": "EQ"]]]],
        ]
        #expect(OCISpec.problems(bad).count >= 4)
    }

    @Test("kernel-enforced rules map one to one: refusals with their errno, conditions with their operands")
    func exactRules() throws {
        let (export, object) = try Self.exported()
        #expect(object["defaultAction"] as? String == "SCMP_ACT_ALLOW")
        #expect(object["architectures"] as? [String] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"])
        #expect(Self.plainAction("bpf", in: object) == "SCMP_ACT_ERRNO/1")
        #expect(Self.plainAction("clone3", in: object) == "SCMP_ACT_ERRNO/38")
        let packet = Self.rules(object).first { rule in
            (rule["names"] as? [String]) == ["socket"] && (rule["errnoRet"] as? Int) == 97
                && ((rule["args"] as? [[String: Any]])?.first?["op"] as? String) == "SCMP_CMP_GE"
        }
        #expect((packet?["args"] as? [[String: Any]])?.first?["value"] as? Int == 17)
        let newUser = Self.rules(object).first { rule in
            (rule["names"] as? [String]) == ["clone"]
                && ((rule["args"] as? [[String: Any]])?.first?["value"] as? Int) == 0x1000_0000
        }
        #expect(newUser?["action"] as? String == "SCMP_ACT_ERRNO")
        #expect((newUser?["args"] as? [[String: Any]])?.first?["valueTwo"] as? Int == 0x1000_0000)
        // Notified calls with one unconditional answer are exact: `identity` refuses setuid, socket(AF_INET) is
        // allowed (no notify rule names socket, notifyDefault allow) and so needs no rule under defaultAction allow.
        #expect(Self.plainAction("setuid", in: object) == "SCMP_ACT_ERRNO/1")
        #expect(!export.degraded.contains { $0.syscall == "setuid" || $0.syscall == "socket" })
        #expect(!Self.rules(object).contains { ($0["action"] as? String) == "SCMP_ACT_NOTIFY" })
        // Nothing left undecided on this ABI: the shipped profile decides every call (SyscallInventoryTests).
        #expect(export.notExpressible.contains { $0.contains("ENOSYS") })
    }

    @Test("a notified call whose answer reads its arguments is degraded to its refusal by default, and listed")
    func degradedToDeny() throws {
        let (export, object) = try Self.exported()
        // secrets (paths) and write-outside-tmp (access) refuse openat with EACCES; other opens are allowed.
        #expect(Self.plainAction("openat", in: object) == "SCMP_ACT_ERRNO/13")
        let openat = try #require(export.degraded.first { $0.syscall == "openat" })
        #expect(openat.rule == "syscalls[39]")
        #expect(openat.exported == "SCMP_ACT_ERRNO (EACCES)")
        #expect(openat.reasons.contains { $0.contains("paths") } && openat.reasons.contains { $0.contains("access") })
        // The network is emulated: no OCI form; the emulation's errno.
        #expect(Self.plainAction("connect", in: object) == "SCMP_ACT_ERRNO/13")
        #expect(export.degraded.first { $0.syscall == "connect" }?.reasons.contains { $0.contains("emulate") } == true)
        // exec is refused unconditionally, but Airlock lets the first one start the command.
        #expect(Self.plainAction("execve", in: object) == "SCMP_ACT_ERRNO/1")
        #expect(export.degraded.first { $0.syscall == "execve" }?.reasons.contains { $0.hasPrefix("launch") } == true)
        let explanation = try #require(
            try JSONSerialization.jsonObject(with: Data(export.explanation)) as? [String: Any])
        let listed = (explanation["degraded"] as? [[String: Any]] ?? []).compactMap { $0["syscall"] as? String }
        #expect(listed == export.degraded.map(\.syscall) && listed.contains("kill"))
    }

    @Test("--degrade allow and --allow NAME allow degraded calls; a name that is not degraded is an error")
    func degradedToAllow() throws {
        let (all, object) = try Self.exported(fallback: .allow)
        #expect(Self.plainAction("openat", in: object) == nil && Self.plainAction("execve", in: object) == nil)
        #expect(all.degraded.allSatisfy { $0.exported == "SCMP_ACT_ALLOW" })
        #expect(Self.plainAction("setuid", in: object) == "SCMP_ACT_ERRNO/1")  // exact refusals stay
        let (some, picked) = try Self.exported(allow: ["execve", "execveat"])
        #expect(Self.plainAction("execve", in: picked) == nil)
        #expect(Self.plainAction("openat", in: picked) == "SCMP_ACT_ERRNO/13")
        #expect(some.degraded.first { $0.syscall == "execve" }?.exported == "SCMP_ACT_ALLOW")
        #expect(throws: SandboxError.self) { try OCIExport(profile: try defaultProfile(), allow: ["read"]) }
        #expect(throws: SandboxError.self) { try OCIExport(profile: try defaultProfile(), allow: ["setuid"]) }
    }

    @Test("an export libseccomp would read differently (an unconditional and a conditional rule) is refused")
    func conflictingRules() throws {
        let profile = try editedProfile { object in
            var rules = object["syscalls"] as! [[String: Any]]
            rules.append([
                "names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [["index": 2, "value": 64, "valueTwo": 64, "op": "SCMP_CMP_MASKED_EQ"]],
            ])
            object["syscalls"] = rules
        }
        let error = #expect(throws: SandboxError.self) { try OCIExport(profile: profile) }
        #expect(error?.message.contains("'openat' cannot be exported") == true, "\(error?.message ?? "")")
        // Allowed, the unconditional rule equals defaultAction and is left out: the conditional refusal stays.
        let (_, object) = try Self.exported(profile, allow: ["openat"])
        #expect(Self.plainAction("openat", in: object) == nil)
        #expect(Self.rules(object).contains { ($0["names"] as? [String]) == ["openat"] && $0["args"] != nil })
    }

    /// The default profile under a refusing defaultAction (errno 77, which no rule uses), with getpriority named by
    /// `rules` instead of allowedInKernel.
    static func refusingDefault(_ rules: [[String: Any]]) throws -> Profile {
        try editedProfile { object in
            object["defaultAction"] = "SCMP_ACT_ERRNO"
            object["defaultErrnoRet"] = 77
            object["syscalls"] = (object["syscalls"] as! [[String: Any]]) + rules
            editSection(&object) { section in
                section["allowedInKernel"] = (section["allowedInKernel"] as! [String]).filter { $0 != "getpriority" }
            }
        }
    }

    @Test("a refusal equal to a refusing defaultAction next to another rule for the call is refused, not left out")
    func repeatedDefaultRefusal() throws {
        let refusal: [String: Any] = [
            "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
            "args": [["index": 1, "value": 0, "op": "SCMP_CMP_EQ"]],
        ]
        let allowance: [String: Any] = [
            "names": ["getpriority"], "action": "SCMP_ACT_ALLOW",
            "args": [["index": 0, "value": 0, "op": "SCMP_CMP_EQ"]],
        ]
        // Without the repeating refusal the profile exports and compiles: the checks below are about that rule.
        let plain = try Self.refusingDefault([allowance])
        _ = try OCIExport(profile: plain, fallback: .allow)
        _ = try SeccompProgram(profile: plain)
        // Airlock (recordRefused) keeps the refusal, answered first for getpriority(0, 0); an OCI runtime would leave
        // it out and allow that call.
        for rules in [[refusal, allowance], [allowance, refusal], [refusal.filter { $0.key != "args" }, allowance]] {
            let profile = try Self.refusingDefault(rules)
            let export = #expect(throws: SandboxError.self) { try OCIExport(profile: profile, fallback: .allow) }
            #expect(export?.message.contains("'getpriority' cannot be exported") == true, "\(export?.message ?? "")")
            // And Airlock itself: the profile would mean one thing with recordRefused and another without.
            let compile = #expect(throws: SandboxError.self) { try SeccompProgram(profile: profile) }
            #expect(compile?.message.contains("recordRefused on and off") == true, "\(compile?.message ?? "")")
        }
    }

    @Test("a call the profile leaves undecided is exported as the ENOSYS refusal Airlock gives it")
    func undecidedCalls() throws {
        let profile = try editedProfile { object in
            editSection(&object) { section in
                section["allowedInKernel"] = (section["allowedInKernel"] as! [String]).filter { $0 != "getpid" }
            }
        }
        let (_, object) = try Self.exported(profile)
        #expect(Self.plainAction("getpid", in: object) == "SCMP_ACT_ERRNO/38")
    }

    @Test("export → import → export gives the same document, and the imported profile has the same enforce rules")
    func roundTrip() throws {
        let root = repositoryRoot
        for fallback in OCIExport.Fallback.allCases {
            let first = try OCIExport(profile: try defaultProfile(), fallback: fallback)
            let base = try Data(contentsOf: URL(fileURLWithPath: "\(root)/Profiles/default.json"))
            let imported = try OCIImport(
                oci: first.document, ociName: "x.oci.json", base: Array(base), baseName: "default")
            let profile = try Profile(json: imported.document, name: "imported")
            let second = try OCIExport(profile: profile, fallback: fallback)
            #expect(second.document == first.document, "\(fallback)")
            #expect(second.degraded.isEmpty)
            #expect(profile.sandbox.notify.isEmpty && profile.sandbox.recordRefused)
            // The sandbox's shape is the base profile's.
            let original = try defaultProfile()
            #expect(profile.sandbox.mounts == original.sandbox.mounts)
            #expect(profile.sandbox.limits == original.sandbox.limits)
            #expect(profile.sandbox.user == original.sandbox.user && profile.sandbox.cwd == original.sandbox.cwd)
            _ = try SeccompProgram(profile: profile)
        }
    }

    @Test("an OCI rule without errnoRet returns EPERM even where defaultErrnoRet says otherwise; includes are honoured")
    func dockerConventions() throws {
        let oci = """
            {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
             "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                         {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                         {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}],
             "syscalls": [
               {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW", "comment": "", "includes": {}, "excludes": {}},
               {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
               {"names": ["mknod"], "action": "SCMP_ACT_ERRNO"},
               {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
               {"names": ["chown32", "_llseek"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_PTRACE"]}}
             ]}
            """
        let imported = try Self.importing(oci)
        let profile = try Profile(json: imported.document, name: "docker")
        #expect(profile.defaultAction == .errno(38))
        #expect(profile.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"])
        #expect(profile.syscalls.first { $0.names == ["mknod"] }?.action == .errno(1))
        #expect(!profile.syscalls.contains { $0.names.contains("mount") })
        #expect(profile.syscalls.contains { $0.names == ["ptrace"] && $0.action == .allow })
        #expect(profile.syscalls.contains { $0.names == ["getpid"] && $0.action == .allow })
        #expect(imported.notes.contains { $0.contains("SCMP_ARCH_X32") })
        #expect(imported.notes.contains { $0.contains("syscalls[1] dropped") })
        // Every call the file does not name gets defaultAction, not Airlock's "undecided".
        #expect(SeccompProgram.undecided(profile).isEmpty)
    }

    /// Imports `oci` with the shipped profile's airlock section.
    static func importing(_ oci: String) throws(SandboxError) -> OCIImport {
        let base = (try? Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Profiles/default.json"))) ?? Data()
        return try OCIImport(oci: Array(oci.utf8), ociName: "in.json", base: Array(base), baseName: "default")
    }

    static let rule = #"{"names": ["mknod"], "action": "SCMP_ACT_ERRNO"}"#

    /// A rule with conditions on `name`, each a different comparison (libseccomp cannot merge them).
    static func conditional(_ name: String, _ i: Int, args: Int) -> String {
        let conditions = (0..<args).map { #"{"index": \#($0), "value": \#(i * 7 + $0), "op": "SCMP_CMP_GT"}"# }
        return #"{"names": ["\#(name)"], "action": "SCMP_ACT_ERRNO", "args": [\#(conditions.joined(separator: ","))]}"#
    }

    /// Inputs too big, too deep or too costly to compile, by name (the documents are large, kept out of test names).
    static let oversized: [String: (document: String, expected: String)] = [
        "deep": (String(repeating: "[", count: 100_000), "nested deeper"),
        "rules": (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                + Array(repeating: rule, count: 5000).joined(separator: ",") + "]}", "more than 4096 rules"
        ),
        "bytes": (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"comment\": \"" + String(repeating: "x", count: 5 << 20) + "\"}",
            "larger than"
        ),
        // These took libseccomp from tens of seconds to minutes before the bounds.
        "conditions": (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                + (0..<64).map { conditional(["read", "write", "mmap", "brk"][$0 % 4], $0, args: 3) }.joined(
                    separator: ",") + "]}", "argument conditions in all"
        ),
        "per-call": (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": ["
                + (0..<40).map { conditional("read", $0, args: 1) }.joined(separator: ",") + "]}",
            "more than 32 rules with args for 'read'"
        ),
    ]

    @Test(
        "oversized input is refused quickly, never compiled for minutes",
        arguments: ["deep", "rules", "bytes", "conditions", "per-call"])
    func refusesOversizedInput(name: String) throws {
        let (document, expected) = try #require(Self.oversized[name])
        let started = ContinuousClock.now
        let error = #expect(throws: SandboxError.self) { try Self.importing(document) }
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "no error")")
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test(
        "hostile or wrong OCI input is refused with an error naming the field",
        arguments: [
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_MAYBE"}]}"#,
                "unknown action 'SCMP_ACT_MAYBE'"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XOR"}]}]}"#,
                "unknown operator 'SCMP_CMP_XOR'"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod", "mknod"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "'mknod' is listed twice"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["open_sesame"], "action": "SCMP_ACT_ERRNO"}]}"#,
                "unknown system call 'open_sesame'"
            ),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#, "unknown architecture"),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PPC64LE"]}"#, "this machine's ABI"),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#, "listenerPath"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                "SCMP_ACT_NOTIFY"
            ),
            (#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_TRAP"}]}"#,
                "not supported"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#,
                "errnoRet"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "index: must be 0–5"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "value"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO", "includes": {"kernel": "5"}}]}"#,
                "unknown field"
            ),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "mknod", "action": "SCMP_ACT_ERRNO"}]}"#,
                "use names"
            ),
            (#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultAction": "SCMP_ACT_ERRNO"}"#, "duplicate key"),
            (
                #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO"}, {"names": ["socket"], "action": "SCMP_ACT_LOG", "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}"#,
                "libseccomp would drop"
            ),
            (#"{"syscalls": []}"#, "defaultAction: required"),
            (#"[1, 2]"#, "expected an object"),
        ])
    func refusesBadInput(oci: String, expected: String) throws {
        let error = #expect(throws: SandboxError.self) { try Self.importing(oci) }
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "no error")")
        #expect(error?.message.hasPrefix("in.json: ") == true || error?.message.contains("in.json") == true)
    }
}
