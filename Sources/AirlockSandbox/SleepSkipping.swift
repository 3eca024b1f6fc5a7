internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// Sleep skipping for the waits that are not `nanosleep` or a futex (`ClockEmulator`): a poll or select on no
/// descriptor (a sleep in disguise), an event loop's long idle wait (asyncio.sleep), and the real-time interval
/// timers, which fire at once.
enum SleepSkipping {
    static func answer(
        _ name: String, _ args: [UInt64], memory: CallerMemory, clock: ClockEmulator
    ) -> ClockEmulator.Answer {
        switch name {
        case "poll":
            clock.skip(Int64(Int32(truncatingIfNeeded: args[2])) * 1_000_000)
            return .value(0)
        case "ppoll", "pselect6", "select":
            // ppoll(fds, 0, tsp), pselect6(0, …, tsp), select(0, …, tvp): the kernel writes back what is left (0).
            let at = name == "ppoll" ? args[2] : args[4]
            guard let timeout = memory.timespec(at) else { return .error(EFAULT) }
            let unit: Int64 = name == "select" ? 1000 : 1
            guard timeout.fraction >= 0, timeout.fraction < 1_000_000_000 / unit, timeout.seconds >= 0,
                timeout.seconds < 1_000_000_000_000
            else { return .error(EINVAL) }
            clock.skip(timeout.seconds * 1_000_000_000 + timeout.fraction * unit)
            _ = memory.write(at, words: [0, 0])
            return .value(0)
        case "epoll_wait", "epoll_pwait", "epoll_pwait2":
            let ns: Int64
            if name == "epoll_pwait2" {
                guard let timeout = memory.timespec(args[3]) else { return .error(EFAULT) }
                guard let value = timeout.ns else { return .error(EINVAL) }
                ns = value
            } else {
                ns = Int64(Int32(truncatingIfNeeded: args[3])) * 1_000_000
            }
            guard ns >= ClockFilter.skipThresholdNs, idle(epoll: Int32(truncatingIfNeeded: args[0]), memory) else {
                return .proceed
            }
            clock.skip(ns)
            return .value(0)
        case "alarm":
            clock.skip(Int64(UInt32(truncatingIfNeeded: args[0])) * 1_000_000_000)
            clock.oweAlarm(memory)
            return .value(0)
        case "setitimer":
            // struct itimerval { it_interval; it_value } of two timevals.
            guard let value = memory.timespec(args[1] &+ 16) else { return .error(EFAULT) }
            guard value.fraction >= 0, value.fraction < 1_000_000, value.seconds >= 0 else { return .error(EINVAL) }
            let ns = value.seconds * 1_000_000_000 + value.fraction * 1000
            guard ns >= ClockFilter.skipThresholdNs, value.seconds < 100 * 365 * 86_400 else { return .proceed }
            if args[2] != 0 && !memory.write(args[2], words: [0, 0, 0, 0]) { return .error(EFAULT) }
            clock.skip(ns)
            clock.oweAlarm(memory)
            return .value(0)
        case "timerfd_settime", "timer_settime":
            return arm(name, args, memory: memory, clock: clock)
        default:
            return .proceed
        }
    }

    /// `timerfd_settime(fd, flags, new, old)` and `timer_settime(id, flags, new, old)`: an absolute expiry on a
    /// shifted clock is translated onto the host's; in a sleep-skipping world an expiry a second or more away is
    /// brought to now (the time skipped). The timer's clock is read from /proc (`fdinfo`'s `clockid:`, `timers`'
    /// `ClockID:`). The interval, when there is one, stays real.
    static func arm(
        _ name: String, _ args: [UInt64], memory: CallerMemory, clock: ClockEmulator
    ) -> ClockEmulator.Answer {
        // struct itimerspec { it_interval; it_value }
        let at = args[2] &+ 16
        guard let value = memory.timespec(at) else { return .error(EFAULT) }
        guard let ns = value.ns else { return .error(EINVAL) }
        guard ns != 0, let id = memory.timerClock(name, Int32(truncatingIfNeeded: args[0])),
            let now = clock.virtualNow(id)
        else { return .proceed }
        let absolute = args[1] & 1 != 0
        let shift = now - clock.hostNow(id)
        let remaining = absolute ? ns - now : ns
        if clock.clock.skipsSleeps && remaining >= ClockFilter.skipThresholdNs {
            clock.skip(remaining)
            // 1 ns from now (0 would disarm it); absolute: the host's now.
            let soon = absolute ? clock.hostNow(id) : 1
            return memory.write(at, timespec: soon) ? .proceed : .error(EFAULT)
        }
        guard absolute && shift != 0 else { return .proceed }
        return memory.write(at, timespec: ns - shift) ? .proceed : .error(EFAULT)
    }

    /// Whether the caller's epoll set has nothing ready: polling the epoll descriptor itself reports readiness without
    /// taking any event (edge-triggered and one-shot ones included), so the caller's wait loses nothing.
    private static func idle(epoll fd: Int32, _ memory: CallerMemory) -> Bool {
        guard let copy = memory.descriptor(fd) else { return false }
        defer { close(copy) }
        var p = pollfd(fd: copy, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }
}

extension ClockFilter {
    /// Whether `args` pass `test` (the filter's test, in Swift).
    static func passes(_ test: Test, _ args: [UInt64]) -> Bool {
        func low(_ arg: Int) -> UInt32 { UInt32(truncatingIfNeeded: args[arg]) }
        switch test {
        case .low(let arg, let value): return low(arg) == value
        case .masked(let arg, let mask, let value): return low(arg) & mask == value
        case .lowSigned(let arg, let least): return low(arg) & 0x8000_0000 == 0 && low(arg) >= least
        case .lowNonzero(let arg): return low(arg) != 0
        case .nonzero(let arg): return args[arg] != 0
        }
    }

    /// `a + b`, saturating.
    static func clampAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? (b > 0 ? .max : .min) : sum
    }
}
