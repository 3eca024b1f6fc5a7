internal import AirlockJSON
internal import AirlockAnalysis
internal import AirlockFormats
internal import AirlockProbe
internal import AirlockSystem
internal import CDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// Who is on the other end of a connection (SO_PEERCRED, SO_PEERGROUPS at connect time).
struct Peer: Sendable {
    let uid: uid_t
    let gid: gid_t
    let groups: [gid_t]
    /// The process id, for the log only (it may be reused once the client is gone).
    var pid: pid_t = 0
}

extension Peer {
    /// The credentials the kernel recorded for the other end of a connected Unix socket (`SO_PEERCRED`,
    /// `SO_PEERGROUPS`), or nil when they cannot be read whole: opens are later made with exactly these groups, so a
    /// list that did not fit must never stand for the peer's (a buffer left unfilled would read as group 0).
    init?(socket fd: FileDescriptor) {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard airlock_peer_credentials(fd.rawValue, &pid, &uid, &gid) == 0 else { return nil }
        var groups = [gid_t](repeating: 0, count: 1024)
        var count = airlock_peer_groups(fd.rawValue, &groups, Int32(groups.count))
        if count > Int32(groups.count) {
            // More than fit: the kernel said how many (at most NGROUPS_MAX, 65536). Ask again with room for them.
            groups = [gid_t](repeating: 0, count: Int(min(count, 65536)))
            count = airlock_peer_groups(fd.rawValue, &groups, Int32(groups.count))
        }
        guard count >= 0, count <= Int32(groups.count) else { return nil }
        self.init(uid: uid, gid: gid, groups: Array(groups.prefix(Int(count))), pid: pid)
    }
}

/// One probe or scan a client asked for, with the descriptor it passed: what a worker thread carries out.
///
/// Everything the daemon opens for a client (the reopen of its descriptor, a folder's entries) is opened with the
/// client's file-system identity (`ClientIdentity.withClient`): an O_PATH or write-only descriptor, or a folder the
/// client may list, must not let the daemon's root read what the client could not. Examining an open descriptor (and
/// building a sandbox for it) runs with the daemon's own identity.
struct Examination: Sendable {
    /// The connection the reply goes to.
    let connection: UInt64
    let peer: Peer
    let request: DaemonRequest
    /// The client's descriptor; the examination closes it.
    let fd: FileDescriptor
    /// When the request arrived (monotonic ns), for the latency figures.
    let received: UInt64
    /// Set when the client's connection closes (`WorkerPool.cancel(connection:)`): its static work stops, and no
    /// hand-over or detonation starts for it.
    var cancellation = Cancellation()

    /// The name shown in reports and logs.
    var name: String { request.name ?? "fd" }

    /// What the worker needs besides the request: the same for every examination.
    struct Context: Sendable {
        let options: ProbeOptions
        /// The Python runtimes a request may name.
        let runtimes: DaemonRuntimes
        /// The deadline when the client asks for none.
        let requestTimeout: Double
        let metrics: Metrics
        /// The daemon's supplementary groups, which a worker thread takes back after acting as a client.
        let daemonGroups: [gid_t]
        /// The folder budget (`folderMaxEntries`, `folderBudgetSeconds`): a request may ask for less, never more.
        var folderBudget = FolderBudget(maxEntries: 10_000, seconds: 60)
    }

    /// The budget of this request's folder walk: the daemon's, lowered where the request asks for less.
    func folderBudget(_ daemon: FolderBudget, deadline: ScanDeadline? = nil) -> FolderBudget {
        var budget = daemon
        budget.deadline = deadline
        if let asked = request.maxEntries { budget.maxEntries = min(budget.maxEntries, asked) }
        if let asked = request.folderBudget { budget.seconds = min(budget.seconds ?? asked, asked) }
        return budget
    }

    /// Handles the request in `lane`: a regular file (under a read lease while it is mapped) or a directory. Returns
    /// the reply; or, in the static lane, `.detonate` for a probe that needs a sandbox, with the client's descriptor
    /// left open for the detonation lane, which examines the file from the start (docs/daemon.md, "Lanes"). The reply
    /// is a refusal (`busy`, reason `uid-range-exhausted`) when a sandbox it needed got no host identity of its own.
    func run(_ context: Context, lane: Lane = .detonation) -> ExaminationOutcome {
        let (outcome, _) = SandboxIdentities.noticingExhaustion { examine(context, lane: lane) }
        if case .reply = outcome { fd.close() }
        return outcome
    }

    private func examine(_ context: Context, lane: Lane) -> ExaminationOutcome {
        let method = request.method.rawValue
        func refuse(_ code: ReplyCode, _ message: String) -> ExaminationOutcome {
            context.metrics.refused(method: method, code: code)
            return .reply(Reply.error(id: request.id, code, message))
        }
        // The static lane never starts a sandbox: a probe it cannot answer statically goes on to the detonation lane.
        let handsOver = lane == .fast && request.method == .probe
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else {
            return refuse(.badRequest, "the descriptor cannot be examined: \(Errno.current.text)")
        }
        // The static lane's few workers stay free for quick answers: a folder (thousands of entries) or a large file
        // (hashing alone takes seconds, or hours for a sparse file of terabytes) goes to the detonation lane, scan or
        // probe, where it waits its turn instead of holding every static worker (docs/daemon.md, "Lanes").
        if lane == .fast
            && (st.st_mode & S_IFMT == S_IFDIR
                || (st.st_mode & S_IFMT == S_IFREG && UInt64(max(0, st.st_size)) > StaticLane.maxFileBytes))
        {
            return .detonate
        }
        // Nobody waits for the answer any more: nothing starts (the reply finds no connection).
        if cancellation.isCancelled { return refuse(.timeout, "the client left before its request started") }
        var options = context.options
        options.timeoutSeconds = request.timeout ?? context.requestTimeout
        // The same deadline (capped by requestTimeoutSeconds when the request was read) bounds the static analysis
        // of each file in either lane, from when it starts, and the client's leaving stops it (docs/daemon.md,
        // "Deadlines of static work").
        options.staticTimeoutSeconds = options.timeoutSeconds
        options.cancellation = cancellation
        options.probePhase = request.probePhase
        // The daemon's `worlds` (its options) unless the client asked for a number.
        if let worlds = request.worlds { options.worlds = worlds }
        options.worldBudgetSeconds = request.worldBudget
        // The name was checked against the daemon's runtimes when the request was read.
        guard let runtime = context.runtimes.runtime(named: request.python) else {
            return refuse(.unknownRuntime, "no runtime named \"\(request.python ?? "")\"")
        }
        options.runtime = runtime
        let examine: (Int32, String) -> Report =
            request.method == .probe
            ? { Prober.probe(fd: $0, path: $1, options: options) }
            : { StaticScanner.scan(fd: $0, path: $1, budget: options.fileBudget()) }
        let identity = ClientIdentity(peer: peer, daemonGroups: context.daemonGroups)
        var reports: [Report] = []
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            // Our own open of the folder, checked for reading: the client's descriptor may be O_PATH (no listing).
            let walked = identity.withClient { () -> Errno? in
                guard let own = try? FileDescriptor.open("/proc/self/fd/\(fd.rawValue)", O_RDONLY | O_DIRECTORY) else {
                    return .current
                }
                defer { own.close() }
                // A repository with remote code is detonated once as a whole (probe only): its files are read
                // here, with the client's identity, and the sandbox runs with the daemon's.
                let repository =
                    request.method == .probe
                    ? RemoteCodeDetonation.examiner(options: options, detonating: { run in identity.withDaemon(run) })
                    : nil
                // Files beside a model (ONNX external data) are read as the client, like the folder itself.
                ModelFolder.$reading.withValue(ModelFolder.Reading { read in _ = identity.withClient(read) }) {
                    ModelWalk.walk(
                        fd: own.rawValue, isDirectory: true, path: name,
                        examine: { fd, path in identity.withDaemon { examine(fd, path) } }, repository: repository,
                        // Hashing threads would open the files with the daemon's identity, not the client's.
                        hashAhead: false,
                        budget: folderBudget(
                            context.folderBudget, deadline: ScanDeadline(seconds: nil, cancellation: cancellation))
                    ) { reports.append($0) }
                }
                return nil
            }
            switch walked {
            case .failure(let e):
                return refuse(.internalError, "cannot take on the client's file-system identity: \(e.text)")
            case .success(let e?):
                return refuse(.badRequest, "cannot open the folder for reading: \(e.text)")
            case .success(nil):
                break
            }
        case S_IFREG:
            // Our own read-only open of the file, with a read lease while it is analysed: a writer (or truncate)
            // then waits for us instead of pulling mapped pages away. A file open for writing anywhere cannot be
            // leased: it is still being written, and is refused.
            let opened = identity.withClient { () -> Result<FileDescriptor, SystemCallError> in
                Result { () throws(SystemCallError) in
                    try FileDescriptor.open("/proc/self/fd/\(fd.rawValue)", O_RDONLY | O_NOCTTY | O_NONBLOCK)
                }
            }
            let own: FileDescriptor
            switch opened {
            case .failure(let e):
                return refuse(.internalError, "cannot take on the client's file-system identity: \(e.text)")
            case .success(.failure(let error)):
                return refuse(.badRequest, "cannot reopen the file read-only: \(error.errnoValue.text)")
            case .success(.success(let fd)):
                own = fd
            }
            defer { own.close() }
            if !FileSystem.takeReadLease(own.rawValue) {
                let e = Errno.current
                if e.rawValue == EAGAIN || e.rawValue == EBUSY {
                    return refuse(.fileBusy, "\(name) is open for writing elsewhere: probe it once it is complete")
                }
                Log.write(.debug, "no read lease on \(name) (\(e.text)): analysed without one")
            }
            defer { FileSystem.releaseLease(own.rawValue) }
            if handsOver {
                // The same decision a probe takes (`Prober.probeWithoutSandbox`); the sniff only spares a static
                // analysis of files that are detonated anyway.
                guard StaticLane.mayAnswer(own.rawValue),
                    let report = Prober.probeWithoutSandbox(fd: own.rawValue, path: name, options: options)
                else { return .detonate }
                reports.append(report)
            } else {
                reports.append(examine(own.rawValue, name))
            }
        default:
            return refuse(.badRequest, "the descriptor is neither a regular file nor a directory")
        }
        if SandboxIdentities.exhaustion?.noted == true {
            // Reports of detonations that never ran would read as a verdict: the client is told to come back.
            context.metrics.refused(method: method, code: .busy, reason: SandboxIdentities.exhaustedReason)
            return .reply(
                Reply.error(
                    id: request.id, .busy,
                    "\(SandboxIdentities.exhaustedReason): every sandbox identity of the daemon's range (sandboxIds) is held by a live sandbox; try again once one ends"
                ))
        }
        if reports.last?.findings.contains(where: { $0.rule == FolderBudget.rule }) == true {
            context.metrics.partial(reason: "folder-budget")
            Log.write(.debug, "\(name): folder budget ran out; the rest is reported as not examined")
        }
        context.metrics.answered(
            method: method, verdicts: reports.map(\.verdict.rawValue),
            seconds: Double(monotonicNs() - received) / 1e9, lane: lane.name)
        context.metrics.detonated(reports)
        // Every verdict goes back: a reply that would pass the protocol's bound loses traces (then minor findings)
        // instead of failing. The members around the reports take little beyond the client's id.
        if !Report.fit(&reports, within: Wire.maxReply - 4096 - request.id.serializedCount) {
            Log.write(
                .warning,
                "the reply to \(name) (\(reports.count) reports) exceeds \(Wire.maxReply) bytes even without traces")
        }
        return .reply(ExaminationReply.members(reports, id: request.id))
    }
}

/// A worker thread acting, for file-system access, as a client (fsuid, fsgid and supplementary groups of this thread
/// only). Only a root daemon can and needs to: for root clients, and clients with the daemon's own uid, nothing
/// changes.
struct ClientIdentity: Sendable {
    let peer: Peer
    let daemonGroups: [gid_t]
    let active: Bool

    init(peer: Peer, daemonGroups: [gid_t]) {
        self.peer = peer
        self.daemonGroups = daemonGroups
        active = geteuid() == 0 && peer.uid != 0
    }

    /// Runs `body` with the client's file-system identity and returns to the daemon's afterwards. Fails, with the
    /// errno, when the identity did not take (the thread is then as before and `body` has not run).
    func withClient<T>(_ body: () -> T) -> Result<T, Errno> {
        guard active else { return .success(body()) }
        if let e = enter() { return .failure(e) }
        defer { leave() }
        return .success(body())
    }

    /// Inside `withClient`: runs `body` with the daemon's own identity, then takes the client's on again.
    func withDaemon<T>(_ body: () -> T) -> T {
        guard active else { return body() }
        leave()
        defer {
            // The thread must never go on as root where the client's identity belongs.
            if let e = enter() {
                Log.write(.err, "cannot take on the client's file-system identity again: \(e.text)")
                abort()
            }
        }
        return body()
    }

    /// Takes on the client's identity; the errno when it did not take (the thread is then as before).
    private func enter() -> Errno? {
        // The groups first: without CAP_SETGID this fails and nothing has changed.
        guard airlock_thread_setgroups(peer.groups, Int32(peer.groups.count)) == 0 else { return .current }
        guard airlock_thread_setfsgid(peer.gid) == peer.gid, airlock_thread_setfsuid(peer.uid) == peer.uid else {
            leave()
            return Errno(EPERM)
        }
        return nil
    }

    /// Back to the daemon's own identity. A thread that cannot return would build sandboxes with the client's ids:
    /// the daemon stops (systemd restarts it).
    private func leave() {
        guard airlock_thread_setfsuid(geteuid()) == geteuid(), airlock_thread_setfsgid(getegid()) == getegid(),
            airlock_thread_setgroups(daemonGroups, Int32(daemonGroups.count)) == 0
        else {
            Log.write(.err, "cannot return to the daemon's file-system identity: \(Errno.current.text)")
            abort()
        }
    }
}
