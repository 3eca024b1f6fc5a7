internal import AirlockAnalysis
internal import AirlockSandbox
internal import AirlockJSON
public import AirlockProbe
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd: answers probe, scan, status and metrics requests on a Unix socket (docs/protocol.md).
///
/// One I/O thread (the caller of `run`) owns the listening socket (`Listener`) and every connection
/// (ConnectionLoop.swift): it reads messages, parses each once (`DaemonRequest`), answers status requests itself and
/// queues probe and scan requests for a fixed pool of worker threads (`WorkerPool`), which each carry out one
/// `Examination` at a time and hand the reply back. Nothing a client sends can make the I/O thread block or hold
/// more than one bounded message per connection. This file holds the process set-up and the stop.
public final class Server: @unchecked Sendable {
    let config: DaemonConfig
    let version: String
    /// Counters for status and metrics.
    public let metrics: Metrics
    let listener: Listener
    let allowedGIDs: Set<gid_t>
    let signals: StopSignals
    let pool: WorkerPool
    /// Warm sandboxes per runtime (`warm` in the configuration); detonations take them through `ProbeOptions`.
    let warmPool: WarmPool
    let context: Examination.Context
    /// The names of the runtimes clients may choose (`DaemonRequest.parse`).
    let runtimeNames: Set<String>
    /// The HTTP metrics endpoint (`metricsListen`), when configured.
    let metricsEndpoint: MetricsEndpoint?

    var connections: [UInt64: Connection] = [:]
    var nextConnection: UInt64 = 1
    /// Open connections by peer uid, for `maxConnectionsPerUid`.
    var connectionsPerUid: [uid_t: Int] = [:]
    var stopping = false
    var graceDeadline: UInt64 = 0
    /// While the descriptor table is full, the listening socket is not polled until then (monotonic ns).
    var acceptPausedUntil: UInt64 = 0

    /// Sets up signals, the listening socket (or takes systemd's) and the worker pool; `run` starts the workers.
    /// Call from the main thread before any other thread exists: SIGTERM, SIGINT and SIGHUP are blocked here, so
    /// that every later thread inherits the mask and the I/O loop reads them from a signalfd. `runtimes` are the
    /// Python runtimes clients choose from, resolved already; a request naming none gets the default.
    public init(
        config: DaemonConfig, options: ProbeOptions, runtimes: DaemonRuntimes, version: String
    ) throws(ConfigError) {
        self.config = config
        self.version = version
        metrics = Metrics(workers: config.maxConcurrent, queueCapacity: config.queue)

        Sandbox.raiseDescriptorLimit()
        signal(SIGPIPE, SIG_IGN)
        signal(SIGIO, SIG_IGN)  // lease breaks: the writer waits for the lease to go, nothing to do here
        do {
            signals = try StopSignals()
        } catch {
            throw ConfigError(error.description, errno: error.errno)
        }
        pool = try WorkerPool(
            detonation: .init(
                workers: config.maxConcurrent, capacity: config.queue, perUid: config.effectiveQueuePerUid),
            fast: .init(
                workers: config.staticWorkers, capacity: config.staticQueue, perUid: max(1, config.staticQueue / 2)),
            defaultRuntime: runtimes.defaultName, metrics: metrics)
        metrics.lanes = { [pool] in pool.snapshot() }

        var gids = Set<gid_t>()
        for name in config.allowGroups {
            if let g = getgrnam(name) {
                gids.insert(g.pointee.gr_gid)
            } else {
                Log.write(.warning, "group \(name) does not exist: its members cannot be allowed")
            }
        }
        allowedGIDs = gids
        var options = options
        options.runtime = runtimes.runtime(named: nil)
        options.worlds = config.worlds
        runtimeNames = Set(runtimes.names)
        // Warm sandboxes for every runtime clients may name, each with that runtime's options.
        let perRuntime = runtimes.names.compactMap { name -> ProbeOptions? in
            guard let runtime = runtimes.runtime(named: name) else { return nil }
            var o = options
            o.runtime = runtime
            return o
        }
        warmPool = WarmPool(
            runtimes: perRuntime, count: config.warm, idleSeconds: config.warmIdle, worlds: config.warmWorlds)
        if config.warm > 0 {
            options.warmStart = warmPool
            metrics.warmStatus = { [warmPool] in warmPool.status() }
            metrics.warmReady = { [warmPool] in warmPool.readyByRuntime() }
        }
        context = Examination.Context(
            options: options, runtimes: runtimes, requestTimeout: config.requestTimeout, metrics: metrics,
            daemonGroups: Server.supplementaryGroups(), folderBudget: config.folderBudget)
        if let address = config.metricsListen {
            let endpoint = try MetricsEndpoint(address: address, metrics: metrics)
            metrics.endpoint = endpoint.bound.description
            metricsEndpoint = endpoint
        } else {
            metricsEndpoint = nil
        }
        listener = try Listener.open(config: config, group: gids.first)
    }

    /// The daemon's supplementary groups, which a worker thread takes back after acting as a client.
    private static func supplementaryGroups() -> [gid_t] {
        var groups = [gid_t](repeating: 0, count: 65536)
        let n = getgroups(Int32(groups.count), &groups)
        return n > 0 ? Array(groups.prefix(Int(n))) : []
    }

    /// Serves until SIGTERM (or SIGINT, SIGHUP); returns the exit status.
    public func run() -> Int32 {
        // Open the digest cache now, as the daemon: a worker thread acting as a client (a per-thread file-system
        // identity) could not open the daemon's 0700 cache directory, and the cache would stay off.
        _ = DigestCache.shared.isEnabled
        let context = self.context
        pool.start { job, lane in job.run(context, lane: lane) }
        warmPool.start()
        if let metricsEndpoint {
            metricsEndpoint.start()
            let bound = metricsEndpoint.bound
            Log.write(
                bound.isLoopback ? .info : .warning,
                "metrics over HTTP at http://\(bound)/metrics"
                    + (bound.isLoopback
                        ? "" : " (not loopback: anyone who reaches it reads the counts, unauthenticated)"))
        }
        Systemd.notify("READY=1\nSTATUS=answering on \(listener.shownName)")
        serve()
        shutdown()
        return 0
    }

    /// Whether nothing is in flight: no examination and no reply waiting to be taken.
    func idle() -> Bool {
        pool.isIdle && connections.values.allSatisfy { $0.out.isEmpty && !$0.inFlight }
    }

    /// On the first stop signal: no new connections or requests; requests still queued are answered at once.
    func readSignals() {
        while let signo = signals.next() {
            guard !stopping else { continue }
            stopping = true
            graceDeadline = monotonicNs() + UInt64(config.shutdownGrace * 1e9)
            Log.write(
                .notice,
                "signal \(signo): no new requests; waiting up to \(config.shutdownGrace) s for those in flight")
            Systemd.notify("STOPPING=1\nSTATUS=finishing the requests in flight")
            listener.close()
            // Requests still queued will not start: tell their clients now.
            for job in pool.cancelWaiting() {
                job.fd.close()
                metrics.refused(method: job.request.method.rawValue, code: .shuttingDown)
                pool.finish(job.connection, Reply.error(id: job.request.id, .shuttingDown, "airlockd is stopping"))
            }
        }
    }

    private func shutdown() {
        warmPool.stop()
        metricsEndpoint?.stop()
        for c in connections.values where c.inFlight {
            // Past the grace period: the request's sandbox dies with this process; its client hears why.
            c.sendNow(Reply.error(id: .null, .shuttingDown, "airlockd stopped before the request finished"))
        }
        for c in connections.values { drop(c) }
        Log.write(.notice, "stopped")
    }
}
