package import AirlockSystem
import AirlockNames
internal import AirlockFormats
internal import AirlockDaemon
internal import AirlockProvenance

#if canImport(Glibc)
    import Glibc
#endif

extension Intake {
    /// Runs until SIGTERM, SIGINT or SIGHUP: watches incoming/ with inotify (and looks again every second, for
    /// folders settling and changes deeper than inotify sees), takes each model as it arrives, and examines models on
    /// `workers` threads while watching goes on. Tells systemd when it is ready and stopping, and pings its watchdog.
    /// On a stop signal no new model is taken; those being examined are finished first.
    ///
    /// Make `signals` (`StopSignals()`) before the first thread of the process starts.
    package func watch(signals: StopSignals, report: @escaping @Sendable (IntakeOutcome) -> Void) throws(IntakeError) {
        let incoming: FolderWatch
        do {
            incoming = try FolderWatch(root.path + "/incoming")
        } catch {
            throw IntakeError.system("cannot watch \(root.path)/incoming", errno: error.errnoValue)
        }
        defer { incoming.close() }
        let queue = WorkQueue()
        let workers = policy.workers > 0 ? policy.workers : ModelInventory.onlineCPUs
        for _ in 0..<workers {
            startThread {
                while let taken = queue.pop() {
                    report(self.examineAndRelease(taken))
                    queue.finished()
                }
            }
        }
        for outcome in takeRecovered() { report(outcome) }
        for taken in takePending() { queue.push(taken) }
        _ = Systemd.notify("READY=1")
        let watchdog = Systemd.watchdogIntervalNs()
        var lastPing = Intake.wallClock()
        var failedAt: [FileName: Double] = [:]
        var lastWaiting: [FileName: String] = [:]
        var running = true
        var lastTakeoverLook = IntakeLease.now()
        while running {
            var fds = [
                pollfd(fd: signals.descriptor.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: incoming.descriptor.rawValue, events: Int16(POLLIN), revents: 0),
            ]
            _ = poll(&fds, 2, 1000)
            if fds[0].revents != 0, let signal = signals.next() {
                log("signal \(signal): no new models are taken; finishing the \(queue.busy) being examined")
                running = false
                break
            }
            if fds[1].revents != 0 { incoming.drain() }
            if let lost = leaseLost {
                log("worker \(worker) lost its lease (\(lost)): stopping without touching the root again")
                break
            }
            // Other workers' leases: looked at every few seconds (a quarter of a lease, at most 5 s).
            if Double(IntakeLease.now() - lastTakeoverLook) / 1e9 >= min(5, lease.seconds / 4) {
                lastTakeoverLook = IntakeLease.now()
                takeOverDead()
                for outcome in takeRecovered() { report(outcome) }
                for taken in takePending() { queue.push(taken) }
            }
            let now = Intake.wallClock()
            if let watchdog, now - lastPing >= Double(watchdog) / 1e9 {
                _ = Systemd.notify("WATCHDOG=1")
                lastPing = now
            }
            let (ready, waiting) = arrivals()
            var waitingNow: [FileName: String] = [:]
            for (name, why) in waiting {
                waitingNow[name] = why
                if lastWaiting[name] != why { log("not taking \(name) yet: \(why)") }
            }
            lastWaiting = waitingNow
            for name in ready where leaseLost == nil {
                // A model the intake could not take or examine is tried again after a minute, not in a tight loop.
                if let t = failedAt[name], now - t < 60 { continue }
                switch take(name) {
                case .success(let taken): queue.push(taken)
                case .failure(let error) where Intake.isClaimedElsewhere(error): continue
                case .failure: failedAt[name] = now
                }
            }
            failedAt = failedAt.filter { now - $0.value < 60 }
            if queue.busy == 0 && queue.isEmpty { journal.clearIfFinished() }
        }
        _ = Systemd.notify("STOPPING=1")
        queue.close()
        queue.waitIdle()
        journal.clearIfFinished()
    }
}

/// Models waiting for a worker.
private final class WorkQueue: @unchecked Sendable {
    private let monitor = Monitor()
    private var items: [Intake.Taken] = []
    private var closed = false
    private var working = 0

    /// Whether no model waits for a worker.
    var isEmpty: Bool { monitor.locked { items.isEmpty } }

    /// Models being examined now.
    var busy: Int { monitor.locked { working } }

    func push(_ item: Intake.Taken) {
        monitor.locked {
            items.append(item)
            monitor.broadcast()
        }
    }

    /// The next model, or nil once closed and empty.
    func pop() -> Intake.Taken? {
        monitor.locked {
            while items.isEmpty && !closed { monitor.wait() }
            guard !items.isEmpty else { return nil }
            working += 1
            return items.removeFirst()
        }
    }

    func finished() {
        monitor.locked {
            working -= 1
            monitor.broadcast()
        }
    }

    func close() {
        monitor.locked {
            closed = true
            monitor.broadcast()
        }
    }

    /// Waits until every model pushed has been examined.
    func waitIdle() {
        monitor.locked {
            while !items.isEmpty || working > 0 { monitor.wait() }
        }
    }
}
