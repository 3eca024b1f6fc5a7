import AirlockSystem
internal import CSandbox
internal import CSeccomp
#if canImport(Glibc)
    import Glibc
#endif

/// A seccomp BPF program compiled by libseccomp from a profile, ready for the child to install.
///
/// Compiled in the parent so the child never allocates after clone. With `recordRefused`, refusing rules
/// (`SCMP_ACT_ERRNO`, `SCMP_ACT_KILL*`) become notifications that the supervisor always answers the same way, so
/// they appear in the trace; the kernel still refuses them if the supervisor is gone (`ENOSYS`).
public struct SeccompProgram: Sendable {
    /// The raw `struct sock_filter` array.
    public let instructions: [UInt64]
    /// `SCMP_ARCH_*` token of this machine's ABI, as libseccomp reports it in notifications.
    public let nativeArch: UInt32

    /// Compiles `profile`'s rules.
    public init(profile: Profile) throws(SandboxError) {
        nativeArch = seccomp_arch_native()
        let nativeName = SeccompProgram.archName(nativeArch)
        guard profile.architectures.contains(nativeName) else {
            throw SandboxError(
                .profile,
                "profile \(profile.name): field architectures: this machine's ABI (\(nativeName)) is not listed")
        }
        let defaultAction = SeccompProgram.kernelAction(profile.defaultAction, record: false)
        guard let ctx = seccomp_init(defaultAction) else {
            throw SandboxError(.profile, "libseccomp could not create a filter")
        }
        defer { seccomp_release(ctx) }
        // A call made through another ABI (32-bit, x32: numbers >= 0x40000000) kills the process.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, airlock_scmp_act_kill_process())
        // We set no_new_privs ourselves, before the filter, and want libseccomp not to touch process state.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        // A binary search over system-call numbers instead of a linear chain: each call (and the kernel's action
        // cache, computed by running the filter for every number at install time) walks O(log n) instructions.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        try SeccompProgram.checkConsistency(profile)
        // A system call the profile does not decide is refused (ENOSYS), recorded like the profile's refusals.
        let undecidedAction = SeccompProgram.kernelAction(.errno(ENOSYS), record: profile.sandbox.recordRefused)
        for name in SeccompProgram.undecided(profile) {
            let rc = seccomp_rule_add_array(ctx, undecidedAction, seccomp_syscall_resolve_name(name), 0, nil)
            if rc < 0 {
                throw SandboxError(
                    .profile, "profile \(profile.name): libseccomp refused the rule for undecided '\(name)'",
                    errno: Errno(-rc))
            }
        }
        for rule in profile.syscalls {
            let action = SeccompProgram.kernelAction(rule.action, record: profile.sandbox.recordRefused)
            if action == defaultAction { continue }
            var conditions = rule.args.map { arg in
                scmp_arg_cmp(
                    arg: UInt32(arg.index), op: SeccompProgram.scmpOperator(arg.op),
                    datum_a: arg.value, datum_b: arg.valueTwo
                )
            }
            for name in rule.names {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == airlock_nr_scmp_error() {
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field syscalls[\(rule.index)].names: unknown system call '\(name)'")
                }
                let rc = conditions.withUnsafeMutableBufferPointer {
                    seccomp_rule_add_array(ctx, action, nr, UInt32($0.count), $0.baseAddress)
                }
                if rc < 0 {
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field syscalls[\(rule.index)]: libseccomp refused the rule for '\(name)'",
                        errno: Errno(-rc)
                    )
                }
            }
        }
        let bpf = airlock_memfd("airlock-bpf")
        guard bpf >= 0 else { throw SandboxError(.supervisor, "memfd_create for the BPF program", errno: .current) }
        let memfd = FileDescriptor(bpf)
        defer { memfd.close() }
        let rc = seccomp_export_bpf(ctx, memfd.rawValue)
        guard rc >= 0 else { throw SandboxError(.profile, "libseccomp could not export the filter", errno: Errno(-rc)) }
        let size = lseek(memfd.rawValue, 0, SEEK_END)
        guard size > 0, size % 8 == 0 else {
            throw SandboxError(
                .profile, "profile \(profile.name): the compiled filter has an invalid size (\(size) bytes)")
        }
        // BPF_MAXINSNS: the kernel refuses longer classic BPF programs.
        guard size / 8 <= 4096 else {
            throw SandboxError(
                .profile,
                "profile \(profile.name): field syscalls: the compiled filter has \(size / 8) instructions; the kernel accepts at most 4096"
            )
        }
        var program = [UInt64](repeating: 0, count: Int(size) / 8)
        let n = program.withUnsafeMutableBytes { pread(memfd.rawValue, $0.baseAddress, $0.count, 0) }
        guard n == Int(size) else { throw SandboxError(.supervisor, "reading the BPF program back", errno: .current) }
        let guardAction = profile.sandbox.recordRefused ? UInt32(0x7fc0_0000) : UInt32(0x0005_0000) | UInt32(ENOSYS)
        instructions =
            SeccompProgram.unknownNumberGuard(
                arch: nativeArch, highest: UInt32(SyscallTable.native.highest), action: guardAction
            ) + program
    }

    /// A prologue for libseccomp's program: on this machine's ABI, a system-call number above the highest that
    /// libseccomp's table knows (a call newer than the library: `fchmodat2`, `open_tree_attr`, … on an older one)
    /// gets `action` (a notification, which the supervisor refuses with ENOSYS as `unknown-syscall`, or ENOSYS).
    /// libseccomp would otherwise give such numbers the default action, which allows them unseen. Other ABIs and
    /// x32 numbers fall through to libseccomp's own architecture checks.
    static func unknownNumberGuard(arch: UInt32, highest: UInt32, action: UInt32) -> [UInt64] {
        func insn(_ code: UInt16, _ jt: UInt8, _ jf: UInt8, _ k: UInt32) -> UInt64 {
            // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }, little-endian in memory.
            UInt64(code) | UInt64(jt) << 16 | UInt64(jf) << 24 | UInt64(k) << 32
        }
        let ldAbsW: UInt16 = 0x20, jeqK: UInt16 = 0x15, jgeK: UInt16 = 0x35, jgtK: UInt16 = 0x25, retK: UInt16 = 0x06
        return [
            insn(ldAbsW, 0, 0, 4),  // A = seccomp_data.arch
            insn(jeqK, 0, 4, arch),  // another ABI: to libseccomp's program
            insn(ldAbsW, 0, 0, 0),  // A = seccomp_data.nr
            insn(jgeK, 2, 0, 0x4000_0000),  // x32: to libseccomp's program (its bad-arch action)
            insn(jgtK, 0, 1, highest),  // beyond the table: the guard's action
            insn(retK, 0, 0, action),
        ]
    }

    /// The system calls this machine's libseccomp knows that `profile` neither names in a `syscalls` rule nor lists
    /// in `airlock.allowedInKernel`, in number order. The shipped profile has none (SyscallInventoryTests).
    public static func undecided(_ profile: Profile) -> [String] {
        var decided = Set(profile.sandbox.allowedInKernel)
        for rule in profile.syscalls { decided.formUnion(rule.names) }
        return SyscallTable.native.names.filter { !decided.contains($0.name) }.map(\.name)
    }

    /// Rejects profiles whose rules libseccomp would silently merge away, and notify rules that can never fire.
    static func checkConsistency(_ profile: Profile) throws(SandboxError) {
        let record = profile.sandbox.recordRefused
        // A rule repeating a refusing defaultAction is skipped without recordRefused and kept (as a notification
        // answered by the first matching rule) with it: next to another rule for the same call, the profile would
        // mean different things with recordRefused on and off.
        if !OCIExport.permits(profile.defaultAction) {
            var repeating: [String: SyscallRule] = [:]
            for rule in profile.syscalls where rule.action == profile.defaultAction {
                for name in rule.names where repeating[name] == nil { repeating[name] = rule }
            }
            for rule in profile.syscalls where rule.action != profile.defaultAction {
                for name in rule.names {
                    guard let same = repeating[name] else { continue }
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field syscalls[\(same.index)]: it repeats defaultAction for '\(name)', which syscalls[\(rule.index)] also names, so the profile would mean different things with recordRefused on and off; drop the rule that repeats defaultAction and narrow the other"
                    )
                }
            }
        }
        var unconditional: [String: SyscallRule] = [:]
        for rule in profile.syscalls where rule.args.isEmpty {
            for name in rule.names where unconditional[name] == nil { unconditional[name] = rule }
        }
        for rule in profile.syscalls where !rule.args.isEmpty {
            for name in rule.names {
                guard let plain = unconditional[name] else { continue }
                if kernelAction(plain.action, record: record) != kernelAction(rule.action, record: record) {
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field syscalls[\(rule.index)]: the rule without conditions at syscalls[\(plain.index)] covers every '\(name)' call, so libseccomp would drop this conditional rule; give both conditions"
                    )
                }
            }
        }
        // A syscalls rule that names a call listed here wins (a profile derived from the default can refuse one).
        for name in profile.sandbox.allowedInKernel {
            if seccomp_syscall_resolve_name(name) == airlock_nr_scmp_error() {
                throw SandboxError(
                    .profile, "profile \(profile.name): field airlock.allowedInKernel: unknown system call '\(name)'")
            }
        }
        var notified: Set<String> = []
        for rule in profile.syscalls {
            switch rule.action {
            case .notify: notified.formUnion(rule.names)
            case .errno, .killProcess, .killThread: if record { notified.formUnion(rule.names) }
            case .allow, .log: break
            }
        }
        for (i, rule) in profile.sandbox.notify.enumerated() {
            for name in rule.syscalls {
                let nr = seccomp_syscall_resolve_name(name)
                if nr == airlock_nr_scmp_error() {
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field airlock.notify[\(i)].syscalls: unknown system call '\(name)'")
                }
                // Negative numbers are calls this ABI does not have (open on aarch64): nothing to notify.
                if nr >= 0 && !notified.contains(name) {
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field airlock.notify[\(i)].syscalls: '\(name)' is never sent to the supervisor (no SCMP_ACT_NOTIFY rule names it), so this rule could not apply"
                    )
                }
            }
        }
    }

    /// The action the kernel filter takes for a profile action.
    static func kernelAction(_ action: SeccompAction, record: Bool) -> UInt32 {
        switch action {
        case .allow: return airlock_scmp_act_allow()
        case .log: return airlock_scmp_act_log()
        case .notify: return airlock_scmp_act_notify()
        case .errno(let e): return record ? airlock_scmp_act_notify() : airlock_scmp_act_errno(UInt16(e))
        case .killProcess: return record ? airlock_scmp_act_notify() : airlock_scmp_act_kill_process()
        case .killThread: return record ? airlock_scmp_act_notify() : airlock_scmp_act_kill_thread()
        }
    }

    static func scmpOperator(_ op: ArgumentCondition.Operator) -> scmp_compare {
        switch op {
        case .notEqual: SCMP_CMP_NE
        case .lessThan: SCMP_CMP_LT
        case .lessOrEqual: SCMP_CMP_LE
        case .equal: SCMP_CMP_EQ
        case .greaterOrEqual: SCMP_CMP_GE
        case .greaterThan: SCMP_CMP_GT
        case .maskedEqual: SCMP_CMP_MASKED_EQ
        }
    }

    static func archName(_ token: UInt32) -> String {
        switch token {
        case airlock_scmp_arch_x86_64(): "SCMP_ARCH_X86_64"
        case airlock_scmp_arch_aarch64(): "SCMP_ARCH_AARCH64"
        default: "SCMP_ARCH_\(token)"
        }
    }
}

/// Every system call libseccomp knows on this machine's ABI, read once per process.
struct SyscallTable: Sendable {
    /// (name, number), in number order.
    let names: [(name: String, number: Int32)]
    /// The highest number known.
    let highest: Int32

    static let native: SyscallTable = {
        var names: [(name: String, number: Int32)] = []
        let arch = seccomp_arch_native()
        for nr in Int32(0)..<1024 {
            guard let c = seccomp_syscall_resolve_num_arch(arch, nr) else { continue }
            names.append((String(cString: c), nr))
            free(c)
        }
        return SyscallTable(names: names, highest: names.last?.number ?? 0)
    }()
}

/// System call names by number, as libseccomp knows them, cached.
final class SyscallNames: @unchecked Sendable {
    private var cache: [Int32: String] = [:]

    /// The name of `number` on `arch` (an `AUDIT_ARCH_*` / `SCMP_ARCH_*` token).
    func name(_ number: Int32, arch: UInt32) -> String {
        if let n = cache[number] { return n }
        // Unknown numbers are not cached: a caller can make as many of them as it likes.
        guard let c = seccomp_syscall_resolve_num_arch(arch, number) else { return "syscall_\(number)" }
        let result = String(cString: c)
        free(c)
        cache[number] = result
        return result
    }

    /// The number of `name` on this machine, or nil.
    static func number(_ name: String) -> Int32? {
        let nr = seccomp_syscall_resolve_name(name)
        return nr == airlock_nr_scmp_error() || nr < 0 ? nil : nr
    }
}
