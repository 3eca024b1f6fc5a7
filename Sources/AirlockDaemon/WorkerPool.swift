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

/// One lane of workers: "static" (answered without a sandbox) or "detonation".
struct LaneSnapshot: Sendable {
    let name: String
    let workers: [WorkerState]
    let capacity: Int
    /// Waiting requests by runtime name ("" when the request names none and the lane runs no Python).
    let queuedByRuntime: [String: Int]
}

/// A fixed number of worker threads taking examinations from a bounded queue. Each worker handles one at a time and
/// hands its reply back to the I/O thread, which owns every connection, through a wake-up pipe: the I/O thread never
/// waits for a worker, and a worker never touches a connection.
final class WorkerPool: @unchecked Sendable {
    /// Worker threads.
    let workers: Int
    /// Examinations that may wait for a worker.
    let capacity: Int
    /// Readable when replies are ready (`takeReplies`): the I/O loop polls it.
    let wakeup: FileDescriptor
    private let wakeWrite: FileDescriptor
    private let metrics: Metrics
    private let monitor = Monitor()
    private var queue: [Examination] = []
    private var busy = 0
    private var replies: [(connection: UInt64, frame: [UInt8])] = []
    /// Each worker thread's state, by index.
    private var states: [WorkerState]
    /// The runtime a probe that names none gets, for the per-runtime figures.
    private let defaultRuntime: String

    /// Makes the wake-up pipe; `start` starts the threads.
    init(workers: Int, capacity: Int, metrics: Metrics, defaultRuntime: String = "") throws(ConfigError) {
        self.workers = workers
        self.capacity = capacity
        self.metrics = metrics
        self.defaultRuntime = defaultRuntime
        states = [WorkerState](repeating: .idle, count: workers)
        var pipeFDs: [Int32] = [0, 0]
        guard airlock_wake_pipe(&pipeFDs) == 0 else {
            let error = SystemCallError("pipe2")
            throw ConfigError(error.description, errno: error.errno)
        }
        wakeup = FileDescriptor(pipeFDs[0])
        wakeWrite = FileDescriptor(pipeFDs[1])
    }

    /// Starts the worker threads, each running `work` on one examination at a time.
    func start(_ work: @escaping @Sendable (Examination) -> JSON) {
        for index in 0..<workers {
            startThread { [self] in
                while true {
                    let job = next(index)
                    let reply = work(job)
                    monitor.locked {
                        busy -= 1
                        states[index] = .idle
                        metrics.setQueue(queue.count, busy: busy)
                    }
                    finish(job.connection, reply)
                }
            }
        }
    }

    /// Queues `job`; false when every worker is busy and the queue is full (the caller answers `busy`).
    func submit(_ job: Examination) -> Bool {
        monitor.locked { () -> Bool in
            guard queue.count < capacity + (workers - busy) else { return false }
            queue.append(job)
            metrics.setQueue(queue.count, busy: busy)
            monitor.broadcast()
            return true
        }
    }

    /// Takes every examination not yet started (on shutdown: they will not start).
    func cancelWaiting() -> [Examination] {
        monitor.locked {
            defer {
                queue.removeAll()
                metrics.setQueue(0, busy: busy)
            }
            return queue
        }
    }

    /// Whether no examination runs or waits.
    var isIdle: Bool { monitor.locked { busy == 0 && queue.isEmpty } }

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

    /// The lane's workers and what waits, by runtime (one lane, "detonation", in this pool).
    func snapshot() -> [LaneSnapshot] {
        monitor.locked {
            var queued: [String: Int] = [:]
            for job in queue { queued[runtimeName(job), default: 0] += 1 }
            return [LaneSnapshot(name: "detonation", workers: states, capacity: capacity, queuedByRuntime: queued)]
        }
    }

    /// The runtime a job loads with: the one it names, the default for a probe naming none, "" for a scan.
    private func runtimeName(_ job: Examination) -> String {
        job.request.method == .probe ? job.request.python ?? defaultRuntime : ""
    }

    private func next(_ index: Int) -> Examination {
        monitor.locked {
            while queue.isEmpty { monitor.wait() }
            busy += 1
            let job = queue.removeFirst()
            states[index] = WorkerState(
                busy: true, method: job.request.method.rawValue, runtime: runtimeName(job), busySinceNs: monotonicNs())
            metrics.setQueue(queue.count, busy: busy)
            return job
        }
    }
}
