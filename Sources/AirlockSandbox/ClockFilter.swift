/// The seccomp prologue a world with a clock (`SandboxClock`) puts in front of the profile's program: the calls that
/// read `CLOCK_REALTIME` or wait on it, and in a sleep-skipping world the sleeps and long waits, are sent to the
/// supervisor (`ClockEmulator`). Values in registers (clock ids, flags, a poll's timeout, whether a timeout pointer is
/// given) are filtered here, so hot calls the clock does not change (a monotonic read, the GIL's 5 ms waits in a
/// world that only shifts the date) stay in the kernel. Without a clock nothing is added and nothing changes.
///
/// The prologue only ever says "notify" or falls through to the profile's program; the supervisor still refuses what
/// the profile refuses (`NotifyPolicy.refusal`) before it answers a clock call.
enum ClockFilter {
    /// `CLOCK_REALTIME`, `CLOCK_REALTIME_COARSE`, `CLOCK_REALTIME_ALARM`, `CLOCK_TAI`: the clocks a date offset moves.
    static let realtimeClocks: [UInt32] = [0, 5, 8, 11]
    /// `CLOCK_MONOTONIC`, `_RAW`, `_COARSE`, `CLOCK_BOOTTIME`, `_ALARM`: the clocks skipped sleeps advance too.
    static let monotonicClocks: [UInt32] = [1, 4, 6, 7, 9]
    /// Waits shorter than this are left to the kernel (translated when their deadline is absolute): the GIL's and
    /// thread pools' short timed waits. A sleep (`nanosleep`, `clock_nanosleep`) is skipped whatever its length.
    static let skipThresholdNs: Int64 = 1_000_000_000
    /// `ARCH_SET_FS`: every libc and the Go runtime set the thread pointer before running any user code, so the call
    /// marks a fresh image whose vDSO must be patched before it reads the clock.
    static let archSetFS: UInt32 = 0x1002
    /// `ARCH_MAP_VDSO_X32`, `_32`, `_64`: map a fresh (unpatched) vDSO; refused in a clock world.
    static let archMapVDSO: [UInt32] = [0x2001, 0x2002, 0x2003]

    /// One test on a call's argument; a rule notifies when its number matches and all its tests pass.
    enum Test {
        /// The argument's low 32 bits equal the value.
        case low(Int, equals: UInt32)
        /// The argument's low 32 bits, masked, equal the value.
        case masked(Int, mask: UInt32, equals: UInt32)
        /// The low 32 bits, as a signed int, are at least the (non-negative) value.
        case lowSigned(Int, atLeast: UInt32)
        /// The low 32 bits are not zero.
        case lowNonzero(Int)
        /// The whole 64-bit argument is not zero (a pointer is given).
        case nonzero(Int)
    }

    struct Rule {
        let name: String
        let tests: [Test]
    }

    /// The rules for `clock`: what a shifted date needs, and what sleep skipping needs besides.
    static func rules(_ clock: SandboxClock) -> [Rule] {
        let skips = clock.skipsSleeps
        let read = realtimeClocks + (skips ? monotonicClocks : [])
        var rules = read.map { Rule(name: "clock_gettime", tests: [.low(0, equals: $0)]) }
        rules += [Rule(name: "gettimeofday", tests: []), Rule(name: "time", tests: [])]
        rules += ([archSetFS] + archMapVDSO).map { Rule(name: "arch_prctl", tests: [.low(0, equals: $0)]) }
        if skips {
            rules += [
                Rule(name: "nanosleep", tests: []),
                Rule(name: "clock_nanosleep", tests: []),
                // FUTEX_WAIT_BITSET (absolute) and FUTEX_WAIT (relative), with a timeout.
                Rule(name: "futex", tests: [.masked(1, mask: 0x7f, equals: 9), .nonzero(3)]),
                Rule(name: "futex", tests: [.masked(1, mask: 0x7f, equals: 0), .nonzero(3)]),
                Rule(name: "futex_waitv", tests: [.nonzero(3)]),
                // Waits on no descriptor: sleeps written as a poll or a select.
                Rule(name: "poll", tests: [.low(1, equals: 0), .lowSigned(2, atLeast: 1000)]),
                Rule(name: "ppoll", tests: [.low(1, equals: 0), .nonzero(2)]),
                Rule(name: "select", tests: [.low(0, equals: 0), .nonzero(4)]),
                Rule(name: "pselect6", tests: [.low(0, equals: 0), .nonzero(4)]),
                // An event loop's idle wait (asyncio.sleep): the supervisor checks the epoll set is idle first.
                Rule(name: "epoll_wait", tests: [.lowSigned(3, atLeast: 1000)]),
                Rule(name: "epoll_pwait", tests: [.lowSigned(3, atLeast: 1000)]),
                Rule(name: "epoll_pwait2", tests: [.nonzero(3)]),
                Rule(name: "alarm", tests: [.lowNonzero(0)]),
                // Arming a timerfd or a POSIX timer: a long one fires at once.
                Rule(name: "timerfd_settime", tests: [.nonzero(2)]),
                Rule(name: "timer_settime", tests: [.nonzero(2)]),
                // ITIMER_REAL with a new value.
                Rule(name: "setitimer", tests: [.low(0, equals: 0), .nonzero(1)]),
            ]
        } else {
            // Absolute waits on CLOCK_REALTIME: their deadlines come from the shifted date and are translated.
            rules += realtimeClocks.map {
                Rule(name: "clock_nanosleep", tests: [.low(0, equals: $0), .masked(1, mask: 1, equals: 1)])
            }
            rules += [
                Rule(name: "futex", tests: [.masked(1, mask: 0x17f, equals: 0x109), .nonzero(3)]),
                Rule(name: "futex_waitv", tests: [.nonzero(3), .low(4, equals: 0)]),
                // Timers armed at an absolute time (TFD_TIMER_ABSTIME, TIMER_ABSTIME): on which clock, the
                // supervisor reads from /proc.
                Rule(name: "timerfd_settime", tests: [.masked(1, mask: 1, equals: 1), .nonzero(2)]),
                Rule(name: "timer_settime", tests: [.masked(1, mask: 1, equals: 1), .nonzero(2)]),
            ]
        }
        return rules
    }

    /// The prologue's classic BPF instructions (`struct sock_filter` packed in a `UInt64` each), for `arch`.
    static func prologue(_ clock: SandboxClock, arch: UInt32) -> [UInt64] {
        var body: [UInt64] = []
        for rule in rules(clock) {
            // Calls this ABI does not have (futex_waitv on an old libseccomp) are simply not notified.
            guard let nr = SyscallNames.number(rule.name) else { continue }
            body += block(nr: UInt32(nr), rule.tests)
        }
        // Another ABI: straight to the profile's program.
        return [insn(ldAbsW, 0, 0, 4), insn(jeqK, 1, 0, arch), insn(jaK, 0, 0, UInt32(body.count))] + body
    }

    // MARK: Assembly

    private static let ldAbsW: UInt16 = 0x20
    private static let jeqK: UInt16 = 0x15
    private static let jgeK: UInt16 = 0x35
    private static let jsetK: UInt16 = 0x45
    private static let andK: UInt16 = 0x54
    private static let jaK: UInt16 = 0x05
    private static let retK: UInt16 = 0x06
    /// SECCOMP_RET_USER_NOTIF.
    static let notify: UInt32 = 0x7fc0_0000

    private static func insn(_ code: UInt16, _ jt: UInt8, _ jf: UInt8, _ k: UInt32) -> UInt64 {
        UInt64(code) | UInt64(jt) << 16 | UInt64(jf) << 24 | UInt64(k) << 32
    }

    /// One rule: `nr` matches and every test passes → notify; any failure jumps past the block.
    private static func block(nr: UInt32, _ tests: [Test]) -> [UInt64] {
        // (code, jt, jf, k), with `fail` standing for "past the block" until the block's length is known.
        let fail = -1
        var code: [(UInt16, Int, Int, UInt32)] = [(ldAbsW, 0, 0, 0), (jeqK, 0, fail, nr)]
        func low(_ arg: Int) -> UInt32 { UInt32(16 + 8 * arg) }
        for test in tests {
            switch test {
            case .low(let arg, let value):
                code += [(ldAbsW, 0, 0, low(arg)), (jeqK, 0, fail, value)]
            case .masked(let arg, let mask, let value):
                code += [(ldAbsW, 0, 0, low(arg)), (andK, 0, 0, mask), (jeqK, 0, fail, value)]
            case .lowSigned(let arg, let least):
                code += [(ldAbsW, 0, 0, low(arg)), (jsetK, fail, 0, 0x8000_0000), (jgeK, 0, fail, least)]
            case .lowNonzero(let arg):
                code += [(ldAbsW, 0, 0, low(arg)), (jeqK, fail, 0, 0)]
            case .nonzero(let arg):
                // Low half nonzero: passed (skip the high half's test); else the high half decides.
                code += [(ldAbsW, 0, 0, low(arg)), (jeqK, 0, 2, 0), (ldAbsW, 0, 0, low(arg) + 4), (jeqK, fail, 0, 0)]
            }
        }
        code.append((retK, 0, 0, notify))
        let end = code.count
        return code.enumerated().map { i, c in
            let jt = c.1 == fail ? end - i - 1 : c.1
            let jf = c.2 == fail ? end - i - 1 : c.2
            return insn(c.0, UInt8(jt), UInt8(jf), c.3)
        }
    }
}

extension SeccompProgram {
    /// This program with `clock`'s prologue (`ClockFilter`) in front; unchanged without a clock.
    func with(clock: SandboxClock?) throws(SandboxError) -> SeccompProgram {
        guard let clock else { return self }
        let prologue = ClockFilter.prologue(clock, arch: nativeArch)
        guard prologue.count + instructions.count <= 4096 else {
            throw SandboxError(
                .profile,
                "the filter with the clock's rules has \(prologue.count + instructions.count) instructions; the kernel accepts at most 4096"
            )
        }
        return SeccompProgram(instructions: prologue + instructions, nativeArch: nativeArch)
    }

    init(instructions: [UInt64], nativeArch: UInt32) {
        self.instructions = instructions
        self.nativeArch = nativeArch
    }
}
