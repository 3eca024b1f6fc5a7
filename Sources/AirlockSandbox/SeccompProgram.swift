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
            throw SandboxError(.profile, "profile \(profile.name): field architectures: this machine's ABI (\(nativeName)) is not listed")
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
                    throw SandboxError(.profile, "profile \(profile.name): field syscalls[\(rule.index)].names: unknown system call '\(name)'")
                }
                let rc = conditions.withUnsafeMutableBufferPointer {
                    seccomp_rule_add_array(ctx, action, nr, UInt32($0.count), $0.baseAddress)
                }
                if rc < 0 {
                    throw SandboxError(
                        .profile,
                        "profile \(profile.name): field syscalls[\(rule.index)]: libseccomp refused the rule for '\(name)'",
                        errno: -rc
                    )
                }
            }
        }
        let memfd = airlock_memfd("airlock-bpf")
        guard memfd >= 0 else { throw SandboxError(.supervisor, "memfd_create for the BPF program", errno: errno) }
        defer { close(memfd) }
        let rc = seccomp_export_bpf(ctx, memfd)
        guard rc >= 0 else { throw SandboxError(.profile, "libseccomp could not export the filter", errno: -rc) }
        let size = lseek(memfd, 0, SEEK_END)
        guard size > 0, size % 8 == 0 else {
            throw SandboxError(.profile, "profile \(profile.name): the compiled filter has an invalid size (\(size) bytes)")
        }
        // BPF_MAXINSNS: the kernel refuses longer classic BPF programs.
        guard size / 8 <= 4096 else {
            throw SandboxError(.profile, "profile \(profile.name): field syscalls: the compiled filter has \(size / 8) instructions; the kernel accepts at most 4096")
        }
        var program = [UInt64](repeating: 0, count: Int(size) / 8)
        let n = program.withUnsafeMutableBytes { pread(memfd, $0.baseAddress, $0.count, 0) }
        guard n == Int(size) else { throw SandboxError(.supervisor, "reading the BPF program back", errno: errno) }
        instructions = program
    }

    /// Rejects profiles whose rules libseccomp would silently merge away, and notify rules that can never fire.
    static func checkConsistency(_ profile: Profile) throws(SandboxError) {
        let record = profile.sandbox.recordRefused
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
                    throw SandboxError(.profile, "profile \(profile.name): field airlock.notify[\(i)].syscalls: unknown system call '\(name)'")
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

/// System call names by number, as libseccomp knows them, cached.
final class SyscallNames: @unchecked Sendable {
    private var cache: [Int32: String] = [:]

    /// The name of `number` on `arch` (an `AUDIT_ARCH_*` / `SCMP_ARCH_*` token).
    func name(_ number: Int32, arch: UInt32) -> String {
        if let n = cache[number] { return n }
        var result = "syscall_\(number)"
        if let c = seccomp_syscall_resolve_num_arch(arch, number) {
            result = String(cString: c)
            free(c)
        }
        cache[number] = result
        return result
    }

    /// The number of `name` on this machine, or nil.
    static func number(_ name: String) -> Int32? {
        let nr = seccomp_syscall_resolve_name(name)
        return nr == airlock_nr_scmp_error() || nr < 0 ? nil : nr
    }
}
