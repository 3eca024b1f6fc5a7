internal import AirlockJSON
internal import AirlockProbe
internal import AirlockSandbox
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd's warm sandboxes (docs/sandbox.md, "Warm start"; `warm` and `warmIdleSeconds` in docs/daemon.md): per
/// runtime and per start-up the runtime supports (`ConsumerPlan.templates`: torch; numpy, joblib and scikit-learn),
/// `count` sandboxes started ahead with the full isolation of any detonation, whose harness has imported those
/// libraries and waits for one model (`WarmSandbox`).
///
/// A detonation takes a ready one whose start-up its plan covers (`take`, through `ProbeOptions.warmStart`) or,
/// when none is ready, starts cold at once: nobody waits for a refill. Each sandbox serves one model and ends with it. A replacement starts once the
/// one taken has finished, or a second after it was taken, whichever is first, so that the refill's start-up does not
/// compete with the detonation it follows for long. A sandbox that ends before any model (it waited past
/// `idleSeconds`, or failed) is replaced at once; repeated failures back off, up to a minute. One maintenance thread
/// starts them; each sandbox is supervised by a thread of its own.
final class WarmPool: WarmStartSource, @unchecked Sendable {
    /// The sandboxes of one runtime; only touched with the pool's monitor held.
    private final class Slot: @unchecked Sendable {
        let options: ProbeOptions
        /// The libraries its sandboxes import at start-up.
        let template: [String]
        /// The catalog's world its sandboxes start in (`WorldCatalog.candidates`), drawn afresh for each.
        let world: Int
        /// Started and not taken: starting, or ready.
        var waiting: [WarmSandbox] = []
        /// Taken, with when (monotonic ns), until they end.
        var serving: [(sandbox: WarmSandbox, since: UInt64)] = []
        /// Consecutive failures before any model, and when the next start may be tried.
        var failures = 0
        var nextStart: UInt64 = 0
        init(options: ProbeOptions, template: [String], world: Int) {
            var options = options
            options.world = WarmPool.world(world, options)
            self.options = options
            self.template = template
            self.world = world
        }

        /// Its options with its world drawn now (a later world's date is counted from the sandbox's start).
        var fresh: ProbeOptions {
            var options = options
            options.world = WarmPool.world(world, options)
            return options
        }
    }

    /// Warm sandboxes kept per runtime.
    let count: Int
    /// How long each may wait for its model, seconds.
    let idleSeconds: Double
    private let monitor = Monitor()
    private var slots: [Slot] = []
    private var stopped = false
    private var served = 0
    private var missed = 0
    private var replaced = 0
    private var failed = 0

    /// How long after a take its replacement starts even if the detonation has not finished, ns.
    static let refillDelay: UInt64 = 1_000_000_000
    /// The longest back-off after failures, seconds.
    static let maxBackoff = 60.0

    /// A pool for the runtimes `runtimes` (one `ProbeOptions` each); `start` starts filling it. It keeps `count`
    /// sandboxes per runtime, start-up template and world: the first `worlds` of the catalog (`WorldCatalog`), so each
    /// world of a probe can start warm.
    init(runtimes: [ProbeOptions], count: Int, idleSeconds: Double, worlds: Int = WorldCatalog.defaultCount) {
        self.count = count
        self.idleSeconds = idleSeconds
        for options in runtimes {
            for world in 0..<max(1, min(worlds, WorldCatalog.maximum)) {
                slots += ConsumerPlan.templates(runtime: options.runtime).map {
                    Slot(options: options, template: $0, world: world)
                }
            }
        }
    }

    /// The catalog's world `index` for `options`, drawn now.
    static func world(_ index: Int, _ options: ProbeOptions) -> HostWorld {
        WorldCatalog.candidates(base: WorldCatalog.persona(options.profile), nowSeconds: Int64(time(nil)))[index].world
    }

    /// Starts the maintenance thread, which fills every runtime's slot and keeps it filled.
    func start() {
        guard count > 0, !slots.isEmpty else { return }
        startThread(stackBytes: 1 << 20) { [self] in maintain() }
    }

    /// A ready warm sandbox for the runtime of `options` whose start-up `plan` covers (the largest such start-up
    /// first), or nil (none is ready, or the pool is off).
    func take(for options: ProbeOptions, plan: ConsumerPlan) -> WarmSandbox? {
        let key = WarmSandbox.key(options)
        return monitor.locked { () -> WarmSandbox? in
            guard !stopped else { return nil }
            let fitting = slots.filter { WarmSandbox.key($0.options) == key && plan.serves(template: $0.template) }
            guard !fitting.isEmpty else { return nil }
            for slot in fitting.sorted(by: { $0.template.count > $1.template.count }) {
                guard let index = slot.waiting.firstIndex(where: \.isReady) else { continue }
                let sandbox = slot.waiting.remove(at: index)
                slot.serving.append((sandbox, monotonicNs()))
                served += 1
                monitor.broadcast()
                return sandbox
            }
            missed += 1
            monitor.broadcast()  // the maintenance thread gives up any that proved unusable
            return nil
        }
    }

    /// Gives up every waiting sandbox and starts no more (on shutdown).
    func stop() {
        let waiting = monitor.locked { () -> [WarmSandbox] in
            stopped = true
            monitor.broadcast()
            return slots.flatMap(\.waiting)
        }
        for sandbox in waiting { sandbox.discard() }
    }

    /// The `warm` member of the daemon's status: sandboxes per state, and what happened to them so far.
    func status() -> JSON {
        monitor.locked {
            let waiting = slots.flatMap(\.waiting)
            let ready = waiting.filter(\.isReady).count
            return .object([
                ("perStartup", .int(count)), ("idleSeconds", .double(idleSeconds)),
                ("ready", .int(ready)), ("starting", .int(waiting.count - ready)),
                ("serving", .int(slots.map(\.serving.count).reduce(0, +))),
                ("served", .int(served)), ("cold", .int(missed)), ("replaced", .int(replaced)),
                ("failed", .int(failed)),
            ])
        }
    }

    /// Warm sandboxes ready for a model, by runtime name (every runtime with slots listed, 0 included).
    func readyByRuntime() -> [String: Int] {
        monitor.locked {
            var out: [String: Int] = [:]
            for slot in slots {
                out[slot.options.runtime?.name ?? "", default: 0] += slot.waiting.filter(\.isReady).count
            }
            return out
        }
    }

    // MARK: Keeping the slots filled

    private func maintain() {
        while true {
            var toStart: [Slot] = []
            let wait = monitor.locked { () -> Double? in
                if stopped { return nil }
                let now = monotonicNs()
                var next = Double.infinity
                for slot in slots {
                    // A waiting sandbox that cannot be used any more (its harness ended, or said something else
                    // than ready) is given up; its end replaces it.
                    for sandbox in slot.waiting where sandbox.isUnusable { sandbox.discard() }
                    let pending = slot.serving.filter { now < $0.since + WarmPool.refillDelay }
                    for (_, since) in pending { next = min(next, Double(since + WarmPool.refillDelay - now) / 1e9) }
                    let missing = count - slot.waiting.count - pending.count
                    guard missing > 0 else { continue }
                    if now < slot.nextStart {
                        next = min(next, Double(slot.nextStart - now) / 1e9)
                        continue
                    }
                    toStart += Array(repeating: slot, count: missing)
                }
                return next
            }
            guard let wait else { return }
            for slot in toStart { startOne(slot) }
            monitor.locked {
                if toStart.isEmpty && !stopped { monitor.wait(seconds: wait.isFinite ? wait : 3600) }
            }
        }
    }

    /// Starts one sandbox for `slot`; a failure to start counts as a failure of the slot.
    private func startOne(_ slot: Slot) {
        do throws(SandboxError) {
            let sandbox = try WarmSandbox.start(
                options: slot.fresh, template: slot.template, idleSeconds: idleSeconds
            ) {
                [weak self] sandbox, ending in self?.ended(sandbox, ending, slot: slot)
            }
            monitor.locked { slot.waiting.append(sandbox) }
        } catch {
            monitor.locked { fail(slot, "\(error)") }
        }
    }

    /// A sandbox of `slot` is gone (on its supervising thread).
    private func ended(_ sandbox: WarmSandbox, _ ending: WarmSandbox.Ending, slot: Slot) {
        monitor.locked {
            slot.waiting.removeAll { $0 === sandbox }
            slot.serving.removeAll { $0.sandbox === sandbox }
            switch ending {
            case .served:
                slot.failures = 0
            case .expired:
                replaced += 1
            case .failed(let why):
                fail(slot, why)
            }
            monitor.broadcast()
        }
    }

    /// Call with the monitor held.
    private func fail(_ slot: Slot, _ why: String) {
        failed += 1
        slot.failures += 1
        let backoff = min(WarmPool.maxBackoff, Double(1 << min(slot.failures - 1, 6)))
        slot.nextStart = monotonicNs() + UInt64(backoff * 1e9)
        Log.write(.warning, "a warm sandbox failed before any model: \(why); the next one starts in \(backoff) s")
    }
}
