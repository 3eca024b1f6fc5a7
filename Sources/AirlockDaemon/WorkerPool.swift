internal import AirlockFormats
internal import AirlockJSON
internal import AirlockSystem
internal import CDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// One worker thread, for `status` and the metrics.
struct WorkerState: Sendable {
    /// Whether it is handling a request.
    let busy: Bool
    /// The request's method, while busy.
    let method: String?
    /// The runtime the request names (its default when it names none; `""` for a scan), while busy.
    let runtime: String?
    /// Since when it handles the request (monotonic ns), while busy.
    let busySinceNs: UInt64?

    static let idle = WorkerState(busy: false, method: nil, runtime: nil, busySinceNs: nil)
}

/// One lane: "static" (answered without a sandbox) or "detonation".
struct LaneSnapshot: Sendable {
    let name: String
    let workers: [WorkerState]
    let capacity: Int
    /// Waiting requests by runtime name ("" when the request names none and the lane runs no Python).
    let queuedByRuntime: [String: Int]
}

/// The two lanes of the worker pool (docs/daemon.md, "Lanes"). Every probe and scan enters the static lane; only
/// its workers decide (with the same code a probe uses) that a file needs a sandbox, and hand the request on.
enum Lane: Int, Sendable, CaseIterable {
    /// Scans, and probes the static analysis answers whole. Its workers never start a sandbox.
    case fast = 0
    /// Probes that detonate, and folders.
    case detonation = 1

    /// The name in `status` and the metrics.
    var name: String { self == .fast ? "static" : "detonation" }
}

/// What a worker made of an examination: the reply, or (static lane only) that it needs a sandbox.
enum ExaminationOutcome: Sendable {
    case reply(JSON)
    case detonate
}

/// Why a lane did not take a request: the `reason` of the `busy` reply and of the refusal's count.
enum QueueRefusal: String, Sendable {
    case queueFull = "queue-full"
    case peerQueueFull = "peer-queue-full"
}

/// Fixed sets of worker threads, one per lane, each taking examinations from its lane's bounded queue. Each worker
/// handles one at a time and hands its reply back to the I/O thread, which owns every connection, through a wake-up
/// pipe: the I/O thread never waits for a worker, and a worker never touches a connection. One monitor guards both
/// lanes, so a hand-over from the static lane to the detonation lane is checked and made at once.
final class WorkerPool: @unchecked Sendable {
    /// Limits of one lane.
    struct LaneLimits: Sendable {
        /// Worker threads.
        let workers: Int
        /// Examinations that may wait for a worker.
        let capacity: Int
        /// Examinations of one peer uid that may wait for a worker.
        let perUid: Int
    }

    private final class LaneState {
        let limits: LaneLimits
        var queue: [Examination] = []
        var busy = 0
        var waitingByUid: [uid_t: Int] = [:]
        var runningByUid: [uid_t: Int] = [:]
        var lastStarted: uid_t? = nil
        var workers: [WorkerState]
        /// The examination each worker runs, by worker index (for `cancel(connection:)`).
        var running: [Int: Examination] = [:]

        init(_ limits: LaneLimits) {
            self.limits = limits
            workers = Array(repeating: .idle, count: limits.workers)
        }

        /// Whether `uid` may queue one more: the global and the per-uid bound, each with room for a request an idle
        /// worker is about to take.
        func refusal(for uid: uid_t) -> QueueRefusal? {
            let idle = limits.workers - busy
            if queue.count >= limits.capacity + idle { return .queueFull }
            if waitingByUid[uid, default: 0] >= limits.perUid + idle { return .peerQueueFull }
            return nil
        }

        func append(_ job: Examination) {
            queue.append(job)
            waitingByUid[job.peer.uid, default: 0] += 1
        }

        /// The next examination to start: the oldest of a uid with the fewest examinations running in this lane,
        /// preferring a uid other than the one that started last, so that a uid with a long line of slow requests
        /// (scans of huge files) delays another uid's request by about one of its own, not by the whole line.
        /// Linear in the queue, which is bounded.
        func removeNext() -> Examination {
            var chosen = 0
            var best = (Int.max, Int.max)
            for (i, job) in queue.enumerated() {
                let key = (runningByUid[job.peer.uid, default: 0], job.peer.uid == lastStarted ? 1 : 0)
                if key < best {
                    (chosen, best) = (i, key)
                    if key == (0, 0) { break }
                }
            }
            let job = queue.remove(at: chosen)
            lastStarted = job.peer.uid
            let left = waitingByUid[job.peer.uid, default: 1] - 1
            waitingByUid[job.peer.uid] = left > 0 ? left : nil
            runningByUid[job.peer.uid, default: 0] += 1
            return job
        }

        /// An examination of `uid` ended (or left the lane).
        func finished(_ uid: uid_t) {
            let left = runningByUid[uid, default: 1] - 1
            runningByUid[uid] = left > 0 ? left : nil
        }
    }

    /// Readable when replies are ready (`takeReplies`): the I/O loop polls it.
    let wakeup: FileDescriptor
    private let wakeWrite: FileDescriptor
    private let metrics: Metrics
    private let monitor = Monitor()
    private let lanes: [LaneState]
    /// The runtime a detonation without a `python` parameter uses, for `queuedByRuntime`.
    private let defaultRuntime: String
    private var replies: [(connection: UInt64, frame: [UInt8])] = []

    /// Makes the wake-up pipe; `start` starts the threads.
    init(detonation: LaneLimits, fast: LaneLimits, defaultRuntime: String, metrics: Metrics) throws(ConfigError) {
        lanes = [LaneState(fast), LaneState(detonation)]
        self.defaultRuntime = defaultRuntime
        self.metrics = metrics
        var pipeFDs: [Int32] = [0, 0]
        guard airlock_wake_pipe(&pipeFDs) == 0 else {
            let error = SystemCallError("pipe2")
            throw ConfigError(error.description, errno: error.errno)
        }
        wakeup = FileDescriptor(pipeFDs[0])
        wakeWrite = FileDescriptor(pipeFDs[1])
    }

    /// The limits of `lane`.
    func limits(_ lane: Lane) -> LaneLimits { lanes[lane.rawValue].limits }

    /// Starts the worker threads of both lanes, each running `work` on one examination at a time. An examination
    /// the static lane says needs a sandbox goes to the detonation lane (or is answered `busy` when that is full).
    func start(_ work: @escaping @Sendable (Examination, Lane) -> ExaminationOutcome) {
        for lane in Lane.allCases {
            for index in 0..<lanes[lane.rawValue].limits.workers {
                startThread { [self] in
                    while true {
                        let job = next(lane, worker: index)
                        let outcome = work(job, lane)
                        // What became of a hand-over is decided once, under the monitor `cancel` takes, and only
                        // that decision is acted on: the cancellation flag read again after the monitor is let go
                        // could be set by then for a job already queued, whose descriptor the detonation lane (or
                        // `cancelWaiting`) now owns and closes: closing it here too would close a number some other
                        // connection or model may have been given meanwhile.
                        let handOver = monitor.locked { () -> HandOver in
                            let state = lanes[lane.rawValue]
                            state.busy -= 1
                            state.finished(job.peer.uid)
                            state.workers[index] = .idle
                            state.running[index] = nil
                            var handOver = HandOver.none
                            if case .detonate = outcome, lane == .fast {
                                // A client that left gets no detonation.
                                if job.cancellation.isCancelled {
                                    handOver = .cancelled
                                } else if let refused = lanes[Lane.detonation.rawValue].refusal(for: job.peer.uid) {
                                    handOver = .refused(refused)
                                } else {
                                    lanes[Lane.detonation.rawValue].append(job)
                                    handOver = .queued
                                    monitor.broadcast()
                                }
                            }
                            publish()
                            return handOver
                        }
                        switch (outcome, handOver) {
                        case (.reply(let reply), _):
                            finish(job.connection, reply)
                        case (.detonate, .none):
                            // Never: the detonation lane answers everything itself.
                            job.fd.close()
                            finish(job.connection, Reply.error(id: job.request.id, .internalError, "no lane left"))
                        case (.detonate, .cancelled):
                            job.fd.close()
                            Log.write(.debug, "\(job.name): its client left before the detonation lane took it")
                        case (.detonate, .refused(let refused)):
                            job.fd.close()
                            finish(job.connection, busyReply(job, refused, lane: .detonation))
                        case (.detonate, .queued):
                            break  // the detonation lane owns the job, and its descriptor, now
                        }
                    }
                }
            }
        }
    }

    /// What a static worker did with a job it could not answer (`start`), decided under the monitor.
    private enum HandOver {
        /// Not handed over: the job was answered, or ran in the detonation lane.
        case none
        /// Queued in the detonation lane, which owns the job from then on.
        case queued
        /// Its client had left: dropped.
        case cancelled
        /// The detonation lane was full, for everyone or for the job's peer uid.
        case refused(QueueRefusal)
    }

    /// Queues `job` on `lane`; the refusal when the lane is full, globally or for the job's peer uid (the caller
    /// answers `busy`, `busyReply`).
    func submit(_ job: Examination, to lane: Lane) -> QueueRefusal? {
        monitor.locked { () -> QueueRefusal? in
            let state = lanes[lane.rawValue]
            if let refused = state.refusal(for: job.peer.uid) { return refused }
            state.append(job)
            publish()
            monitor.broadcast()
            return nil
        }
    }

    /// The `busy` reply to `job` refused by `lane` (counted in the metrics).
    func busyReply(_ job: Examination, _ refused: QueueRefusal, lane: Lane) -> JSON {
        let method = job.request.method.rawValue
        metrics.refused(method: method, code: .busy, reason: refused.rawValue)
        let (limits, waiting) = monitor.locked { (lanes[lane.rawValue].limits, lanes[lane.rawValue].queue.count) }
        let message =
            refused == .queueFull
            ? "all \(limits.workers) \(lane.name) workers are busy and \(waiting) requests are waiting: try again later"
            : "uid \(job.peer.uid) already has \(limits.perUid) requests waiting for the \(lane.name) workers: try again later"
        return Reply.busy(id: job.request.id, message, reason: refused.rawValue, waiting: waiting)
    }

    /// Takes every examination not yet started, in either lane (on shutdown: they will not start).
    func cancelWaiting() -> [Examination] {
        monitor.locked {
            var all: [Examination] = []
            for state in lanes {
                all += state.queue
                state.queue.removeAll()
                state.waitingByUid.removeAll()
            }
            publish()
            return all
        }
    }

    /// Takes the examinations of `connection` not yet started, in either lane (its client left).
    func cancelWaiting(connection: UInt64) -> [Examination] {
        monitor.locked {
            var taken: [Examination] = []
            for state in lanes where state.queue.contains(where: { $0.connection == connection }) {
                for job in state.queue where job.connection == connection {
                    taken.append(job)
                    let left = state.waitingByUid[job.peer.uid, default: 1] - 1
                    state.waitingByUid[job.peer.uid] = left > 0 ? left : nil
                }
                state.queue.removeAll { $0.connection == connection }
            }
            if !taken.isEmpty { publish() }
            return taken
        }
    }

    /// Marks every examination of `connection`, waiting or running, as cancelled (its client left): static work
    /// stops at its next check, and no hand-over or detonation starts for them. Waiting ones stay queued for
    /// `cancelWaiting(connection:)` to take.
    func cancel(connection: UInt64) {
        monitor.locked {
            for state in lanes {
                for job in state.running.values where job.connection == connection { job.cancellation.cancel() }
                for job in state.queue where job.connection == connection { job.cancellation.cancel() }
            }
        }
    }

    /// Whether no examination runs or waits.
    var isIdle: Bool { monitor.locked { lanes.allSatisfy { $0.busy == 0 && $0.queue.isEmpty } } }

    /// Both lanes as they are now: each worker's state, the capacity and the waiting requests by runtime.
    func snapshot() -> [LaneSnapshot] {
        monitor.locked {
            Lane.allCases.map { lane in
                let state = lanes[lane.rawValue]
                var byRuntime: [String: Int] = [:]
                for job in state.queue {
                    byRuntime[lane == .fast ? "" : job.request.python ?? defaultRuntime, default: 0] += 1
                }
                return LaneSnapshot(
                    name: lane.name, workers: state.workers, capacity: state.limits.capacity,
                    queuedByRuntime: byRuntime)
            }
        }
    }

    /// Hands a reply to the I/O thread (from a worker, or from the I/O thread itself for an examination that will
    /// not run) and wakes it.
    func finish(_ connection: UInt64, _ reply: JSON) {
        let frame = Wire.frame(reply)
        monitor.locked { replies.append((connection, frame)) }
        try? wakeWrite.writeAll([1])
    }

    /// The replies ready since the last call; empties the wake-up pipe.
    func takeReplies() -> [(connection: UInt64, frame: [UInt8])] {
        var sink = [UInt8](repeating: 0, count: 256)
        while (try? sink.withUnsafeMutableBytes { try wakeup.read(into: $0) }) ?? 0 > 0 {}
        return monitor.locked {
            defer { replies.removeAll() }
            return replies
        }
    }

    private func next(_ lane: Lane, worker index: Int) -> Examination {
        monitor.locked {
            let state = lanes[lane.rawValue]
            while state.queue.isEmpty { monitor.wait() }
            state.busy += 1
            let job = state.removeNext()
            state.running[index] = job
            state.workers[index] = WorkerState(
                busy: true, method: job.request.method.rawValue,
                runtime: lane == .fast ? nil : job.request.python ?? defaultRuntime, busySinceNs: monotonicNs())
            publish()
            return job
        }
    }

    /// The detonation lane's figures for the metrics (the static lane is in `snapshot`). Inside the monitor.
    private func publish() {
        let state = lanes[Lane.detonation.rawValue]
        metrics.setQueue(state.queue.count, busy: state.busy)
    }
}
