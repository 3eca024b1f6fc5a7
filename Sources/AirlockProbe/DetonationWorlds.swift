public import AirlockSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// One world a probe detonates a file in (docs/probe.md, "Worlds"): the host the sandbox pretends to be
/// (`HostWorld`: persona, clock, GPU) and whether credentials are planted in it.
public struct DetonationWorld: Sendable, Equatable {
    /// The host, applied to the detonation's sandbox (`SandboxRequest.world`).
    public var world: HostWorld
    /// Whether credentials (honeytokens) are planted in it.
    public var credentials: Bool

    /// Creates a world.
    public init(world: HostWorld, credentials: Bool) {
        self.world = world
        self.credentials = credentials
    }

    /// Its short name (`now`, `gpu-next-month`, …): the report names it beside each finding seen in it.
    public var name: String { world.name }
    /// Seconds its wall clock is ahead of the host's.
    public var dateOffsetSeconds: Int64 { world.clock?.realtimeOffsetSeconds ?? 0 }
    /// Whether sleeps and timers return at once in it.
    public var skipsSleeps: Bool { world.clock?.skipsSleeps ?? false }
    /// Whether it is a GPU host.
    public var gpu: Bool { world.gpu }
}

/// The worlds a probe may detonate in, in the order it runs them (docs/probe.md, "Worlds"), and how many it runs
/// by default.
///
/// Every world costs one detonation (docs/benchmarks.md, "Worlds"), so the order is by what each catches: first the
/// world most payloads act in (today, credentials planted, a CPU host, real sleeps, as an ordinary inference host);
/// then worlds that stack the triggers sleepers wait for, several per world, so each extra detonation covers as many
/// as it can: a later date on the first of a month (the dates payloads name: the first of next month, a year ahead),
/// a GPU, timers that do not make the payload wait; and a world without credentials, for a payload that goes quiet
/// when it sees credentials it could take for a honeypot.
public enum WorldCatalog {
    /// The number of candidate worlds: `--worlds` takes 1 to this.
    public static let maximum = 5
    /// `--worlds` when not given (airlock probe, airlockd): measured, docs/benchmarks.md "Worlds".
    public static let defaultCount = 3
    /// The hour (UTC) of the later worlds' dates: a working hour on the first of the month.
    static let laterHour = 9

    /// The candidate worlds over the persona `base` (the world a single detonation runs in), dated from
    /// `nowSeconds` (the host's UNIX time), in the order a probe runs them.
    public static func candidates(base: HostWorld, nowSeconds: Int64) -> [DetonationWorld] {
        let nextMonth = firstOfMonth(monthsAhead: 1, from: nowSeconds) - nowSeconds
        let yearAhead = firstOfMonth(monthsAhead: 13, from: nowSeconds) - nowSeconds
        func world(_ name: String, offset: Int64, gpu: Bool, skips: Bool, credentials: Bool) -> DetonationWorld {
            var w = base
            w.name = name
            if offset != 0 || skips {
                w.clock = SandboxClock(realtimeOffsetSeconds: offset, skipsSleeps: skips)
            }
            if gpu { withGPU(&w) }
            if credentials && w.honeytokens.isEmpty { plantCredentials(in: &w) }
            return DetonationWorld(world: w, credentials: credentials)
        }
        return [
            world("now", offset: 0, gpu: false, skips: false, credentials: true),
            world("gpu-next-month", offset: nextMonth, gpu: true, skips: true, credentials: true),
            world("next-year", offset: yearAhead, gpu: false, skips: true, credentials: true),
            world("gpu-next-year-bare", offset: yearAhead, gpu: true, skips: true, credentials: false),
            world("now-bare", offset: 0, gpu: false, skips: true, credentials: false),
        ]
    }

    /// The worlds a probe with `options` runs, at most `options.worlds`: the caller's (`worldCandidates`) or the
    /// catalog's over the profile's persona.
    static func plan(_ options: ProbeOptions, nowSeconds: Int64) -> [DetonationWorld] {
        // A caller's fixed world (`ProbeOptions.world`) is the one world of a single detonation, as it is, and the
        // persona every world starts from otherwise.
        if let fixed = options.world, options.worlds <= 1, options.worldCandidates == nil {
            return [DetonationWorld(world: fixed, credentials: !fixed.honeytokens.isEmpty)]
        }
        let base = options.world ?? persona(options.profile)
        let all = options.worldCandidates ?? candidates(base: base, nowSeconds: nowSeconds)
        return Array(all.prefix(max(1, options.worlds)))
    }

    /// The persona every world starts from: a host drawn afresh for the probe (`HostWorld.draw`), sized by the
    /// profile's file-size limit; each world then varies its clock, GPU and credentials.
    public static func persona(_ profile: Profile) -> HostWorld {
        HostWorld.draw(fileBytes: profile.sandbox.limits.fileSizeBytes)
    }

    /// Makes `world` a GPU host (`HostWorld.setGPU`: the devices and the variables CUDA's runtime reads).
    static func withGPU(_ world: inout HostWorld) {
        world.setGPU(true)
    }

    /// Plants credentials in `world`, unique to it (`Honeytokens.plant(in:)`).
    static func plantCredentials(in world: inout HostWorld) {
        Honeytokens.plant(in: &world)
    }

    /// 09:00 UTC on the first day of the month `monthsAhead` months after the one `seconds` (UNIX time) falls in.
    static func firstOfMonth(monthsAhead: Int, from seconds: Int64) -> Int64 {
        var t = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return seconds + Int64(monthsAhead) * 31 * 86_400 }
        let months = Int(parts.tm_mon) + monthsAhead
        var first = tm()
        first.tm_year = parts.tm_year + Int32(months / 12)
        first.tm_mon = Int32(months % 12)
        first.tm_mday = 1
        first.tm_hour = Int32(laterHour)
        return Int64(timegm(&first))
    }
}
