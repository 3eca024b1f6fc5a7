import AirlockSystem
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// The sandbox's clocks in a world with a `SandboxClock`: the supervisor answers the calls `ClockFilter` sends it.
///
/// The virtual time of a clock is the host's plus, for the `CLOCK_REALTIME` family, the world's date offset, plus, in
/// a sleep-skipping world, every wait skipped so far (`skippedNs`, for all clocks alike, so `time.time()` and
/// `time.monotonic()` agree on how long a sleep took). Reads are answered with the virtual time; sleeps and long waits
/// return at once and advance it; waits with an absolute deadline on a shifted clock are translated back to the
/// host's clock and left to the kernel, so a short timed wait stays a wait and nothing hangs for the offset's length.
/// Everything here is O(1) per call: a payload reading the clock in a loop from many threads costs notifications,
/// never supervisor memory.
final class ClockEmulator {
    /// What the supervisor answers.
    enum Answer: Equatable {
        /// The call returns this value.
        case value(Int64)
        /// The call fails with this errno.
        case error(Int32)
        /// The kernel performs the call (its arguments possibly translated in the caller's memory first).
        case proceed
    }

    let clock: SandboxClock
    private let offsetNs: Int64
    /// Time skipped so far, added to every clock's virtual time (sleep-skipping worlds only).
    private(set) var skippedNs: Int64 = 0
    /// Threads whose vDSO is known to be patched since the last exec anywhere in the sandbox.
    private var patchedTids: Set<pid_t> = []
    /// Threads whose vDSO could not be written yet (bounded like `patchedTids`).
    private var failedTids: Set<pid_t> = []
    /// Processes whose vDSO was neither the kernel's nor patched.
    private var unknownImages = 0
    /// Processes whose vDSO was neither the kernel's nor patched, or could not be written (and never was later).
    var unpatched: Int { unknownImages + failedTids.count }
    /// A SIGALRM owed to a process once its call is answered (a skipped `alarm`/`setitimer`), as a pidfd.
    private var owedAlarm: Int32 = -1
    private let vdso: VDSOPatch?
    private let rules: [ClockFilter.Rule]

    /// Skipped time never grows past a century (arithmetic stays far from overflow; a sleep longer than that would
    /// never end on a real host either).
    static let maxSkippedNs: Int64 = 100 * 365 * 86_400 * 1_000_000_000

    /// A world's clock, or nil when it changes nothing (no offset, no skipping).
    init?(_ clock: SandboxClock?) {
        guard let clock, clock.realtimeOffsetSeconds != 0 || clock.skipsSleeps else { return nil }
        self.clock = clock
        let limit: Int64 = 1000 * 365 * 86_400
        offsetNs = max(-limit, min(limit, clock.realtimeOffsetSeconds)) * 1_000_000_000
        vdso = VDSOPatch.native
        rules = ClockFilter.rules(clock)
    }

    deinit { if owedAlarm >= 0 { close(owedAlarm) } }

    /// Whether the clock world can be kept on this machine (its vDSO can be patched, or there is none).
    static var supported: Bool { VDSOPatch.native != nil || airlock_vdso_base() == 0 }

    // MARK: The vDSO

    /// Every notification passes here first: an exec anywhere makes every thread's vDSO suspect again; any other
    /// call from a thread not yet seen patches its process's vDSO (idempotently) before the call is answered.
    /// `live` says whether the notification is still pending (its thread, and so its TID, still the caller's): checked
    /// before anything is written.
    func sawCall(_ name: String, hostTid: pid_t, live: () -> Bool) {
        if name == "execve" || name == "execveat" {
            patchedTids.removeAll(keepingCapacity: true)
            return
        }
        guard !patchedTids.contains(hostTid), let vdso, live() else { return }
        switch vdso.apply(hostTid: hostTid) {
        case .patched, .none:
            break
        case .unknownImage:
            unknownImages += 1
        case .failed:
            // /proc refused (the thread may be on its way out): tried again at its next call.
            if failedTids.count >= 4096 { failedTids.removeAll(keepingCapacity: true) }
            failedTids.insert(hostTid)
            return
        }
        failedTids.remove(hostTid)
        if patchedTids.count >= 4096 { patchedTids.removeAll(keepingCapacity: true) }
        patchedTids.insert(hostTid)
    }

    // MARK: Answers

    /// Whether `name` with `args` is a call this clock answers (the filter's rules, checked again on the values the
    /// notification carries: the profile's own notified calls pass on to the policy).
    func handles(_ name: String, _ args: [UInt64]) -> Bool {
        rules.contains { rule in
            rule.name == name && rule.tests.allSatisfy { ClockFilter.passes($0, args) }
        }
    }

    /// The answer to a call `handles` accepted; `memory` reads and writes the caller's.
    func answer(_ name: String, _ args: [UInt64], memory: CallerMemory) -> Answer {
        switch name {
        case "clock_gettime":
            let id = Int32(truncatingIfNeeded: args[0])
            // A clock this host cannot read (CLOCK_REALTIME_ALARM without an RTC) fails as the kernel fails it.
            var probe = Glibc.timespec()
            guard clock_gettime(clockid_t(id), &probe) == 0 else { return .error(errno) }
            guard let now = virtualNow(id) else { return .proceed }
            return memory.write(args[1], timespec: now) ? .value(0) : .error(EFAULT)
        case "gettimeofday":
            let now = virtualNow(CLOCK_REALTIME)!
            if args[0] != 0 && !memory.write(args[0], words: [now / 1_000_000_000, now % 1_000_000_000 / 1000]) {
                return .error(EFAULT)
            }
            if args[1] != 0 && !memory.write(args[1], words: [0]) { return .error(EFAULT) }
            return .value(0)
        case "time":
            let seconds = virtualNow(CLOCK_REALTIME)! / 1_000_000_000
            if args[0] != 0 && !memory.write(args[0], words: [seconds]) { return .error(EFAULT) }
            return .value(seconds)
        case "arch_prctl":
            // ARCH_SET_FS: `sawCall` has patched the image; a fresh vDSO mapping is refused as the kernel refuses it
            // while one is mapped.
            return UInt32(truncatingIfNeeded: args[0]) == ClockFilter.archSetFS ? .proceed : .error(EEXIST)
        case "nanosleep":
            guard let duration = memory.timespec(args[0]) else { return .error(EFAULT) }
            guard let ns = duration.ns, ns >= 0 else { return .error(EINVAL) }
            skip(ns)
            return .value(0)
        case "clock_nanosleep":
            return clockNanosleep(args, memory)
        case "futex", "futex_waitv":
            return futex(name, args, memory)
        default:
            return SleepSkipping.answer(name, args, memory: memory, clock: self)
        }
    }

    private func clockNanosleep(_ args: [UInt64], _ memory: CallerMemory) -> Answer {
        let id = Int32(truncatingIfNeeded: args[0])
        guard let now = virtualNow(id) else { return .proceed }
        guard let request = memory.timespec(args[2]) else { return .error(EFAULT) }
        guard let deadline = request.ns, deadline >= 0 else { return .error(EINVAL) }
        let absolute = args[1] & 1 != 0
        if clock.skipsSleeps {
            skip(absolute ? deadline - now : deadline)
            return .value(0)
        }
        // A date-shifted world: an absolute deadline on the shifted clock, moved back onto the host's.
        let shift = now - hostNow(id)
        return memory.write(args[2], timespec: deadline - shift) ? .proceed : .value(0)
    }

    /// FUTEX_WAIT_BITSET and futex_waitv take an absolute deadline (CLOCK_MONOTONIC, or CLOCK_REALTIME with
    /// FUTEX_CLOCK_REALTIME / clockid 0); FUTEX_WAIT a relative one. A long wait is skipped (ETIMEDOUT, as a real
    /// timeout ends it); a short one is left to the kernel, its absolute deadline translated onto the host's clock.
    private func futex(_ name: String, _ args: [UInt64], _ memory: CallerMemory) -> Answer {
        let waitv = name == "futex_waitv"
        // futex(uaddr, op, val, timeout, …) and futex_waitv(waiters, n, flags, timeout, clockid): the fourth.
        let pointer = args[3]
        let op = UInt32(truncatingIfNeeded: args[1])
        let absolute = waitv || op & 0x7f == 9
        let id: Int32 =
            waitv ? Int32(truncatingIfNeeded: args[4]) : (op & 0x100 != 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC)
        guard let now = virtualNow(id) else { return .proceed }
        guard let timeout = memory.timespec(pointer) else { return .error(EFAULT) }
        guard let value = timeout.ns, value >= 0 else { return .error(EINVAL) }
        let remaining = absolute ? value - now : value
        if clock.skipsSleeps && remaining >= ClockFilter.skipThresholdNs {
            skip(remaining)
            return .error(ETIMEDOUT)
        }
        let shift = now - hostNow(id)
        guard absolute && shift != 0 else { return .proceed }
        if memory.write(pointer, timespec: value - shift) { return .proceed }
        // A deadline in read-only memory cannot be translated: a timeout is the honest answer for one now past.
        if remaining > 0 { skip(remaining) }
        return .error(ETIMEDOUT)
    }

    // MARK: Time

    /// The host's time on clock `id` in nanoseconds.
    func hostNow(_ id: Int32) -> Int64 {
        var ts = Glibc.timespec()
        _ = clock_gettime(clockid_t(id), &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// The sandbox's time on clock `id`, or nil for a clock this world does not change (CPU clocks, unknown ids).
    func virtualNow(_ id: Int32) -> Int64? {
        let realtime = ClockFilter.realtimeClocks.contains(UInt32(bitPattern: id))
        let monotonic = ClockFilter.monotonicClocks.contains(UInt32(bitPattern: id))
        guard realtime || monotonic else { return nil }
        return hostNow(id) &+ (realtime ? offsetNs : 0) &+ skippedNs
    }

    /// Advances every clock by `ns` (a skipped wait), within `maxSkippedNs`.
    func skip(_ ns: Int64) {
        guard ns > 0 else { return }
        skippedNs = min(ClockFilter.clampAdd(skippedNs, ns), ClockEmulator.maxSkippedNs)
    }

    /// Owes SIGALRM to the caller's process: sent once its call is answered (`afterAnswer`).
    func oweAlarm(_ memory: CallerMemory) {
        if owedAlarm >= 0 { close(owedAlarm) }
        owedAlarm = memory.processDescriptor() ?? -1
    }

    /// Called once the answer is sent: delivers an owed SIGALRM (a skipped alarm firing).
    func afterAnswer() {
        guard owedAlarm >= 0 else { return }
        _ = airlock_pidfd_send_signal(owedAlarm, SIGALRM)
        close(owedAlarm)
        owedAlarm = -1
    }
}

/// The notified caller's memory, read and written by the supervisor (process_vm_readv/writev, which keep the
/// caller's page protections).
struct CallerMemory {
    let hostTid: pid_t

    /// A `struct timespec` (or `timeval`: the same two 64-bit words) at `address`.
    struct Words {
        let seconds: Int64
        let fraction: Int64
        /// As nanoseconds, when the fraction is a valid nanosecond count.
        var ns: Int64? {
            guard fraction >= 0, fraction < 1_000_000_000, seconds >= 0, seconds < Int64.max / 1_000_000_000 - 1
            else { return nil }
            return seconds * 1_000_000_000 + fraction
        }
    }

    /// Two 64-bit words at `address`, or nil when they cannot be read.
    func timespec(_ address: UInt64) -> Words? {
        guard let bytes = SyscallDecoder(hostPid: hostTid).read(address, count: 16), bytes.count == 16 else {
            return nil
        }
        func word(_ at: Int) -> Int64 {
            Int64(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * $1) })
        }
        return Words(seconds: word(0), fraction: word(8))
    }

    /// Writes nanoseconds `ns` as a `struct timespec`.
    func write(_ address: UInt64, timespec ns: Int64) -> Bool {
        let clamped = max(0, ns)
        return write(address, words: [clamped / 1_000_000_000, clamped % 1_000_000_000])
    }

    /// Writes 64-bit words at `address`.
    func write(_ address: UInt64, words: [Int64]) -> Bool {
        guard address != 0 else { return false }
        var bytes: [UInt8] = []
        for w in words { withUnsafeBytes(of: w.littleEndian) { bytes += $0 } }
        let n = bytes.withUnsafeBytes { airlock_write_process_memory(hostTid, $0.baseAddress, $0.count, address) }
        return n == bytes.count
    }

    /// A copy of the caller's descriptor `fd`, close-on-exec; nil when it is not open.
    func descriptor(_ fd: Int32) -> Int32? { SyscallDecoder(hostPid: hostTid).copyDescriptor(fd) }

    /// The clock of the caller's timerfd `fd` (`timerfd_settime`) or POSIX timer `id` (`timer_settime`), from
    /// /proc; nil when it cannot be read.
    func timerClock(_ name: String, _ handle: Int32) -> Int32? {
        let path = name == "timerfd_settime" ? "/proc/\(hostTid)/fdinfo/\(handle)" : "/proc/\(hostTid)/timers"
        guard let bytes = try? FileBytes.read(path, limit: 1 << 20, what: "timers") else { return nil }
        var inTimer = name == "timerfd_settime"
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" })
            guard fields.count >= 2 else { continue }
            if fields[0] == "ID" { inTimer = Int32(fields[1]) == handle }
            if inTimer && (fields[0] == "clockid" || fields[0] == "ClockID") { return Int32(fields[1]) }
        }
        return nil
    }

    /// A pidfd for the caller's process.
    func processDescriptor() -> Int32? {
        let fd = airlock_pidfd_open(SyscallDecoder(hostPid: hostTid).threadGroup() ?? hostTid)
        return fd >= 0 ? fd : nil
    }
}
