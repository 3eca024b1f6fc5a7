import AirlockNames
public import AirlockJSON
internal import AirlockAnalysis
internal import AirlockFormats
public import AirlockProbe
internal import AirlockSandbox
internal import CDaemon

#if canImport(Glibc)
import Glibc
#endif

/// airlockd: answers probe, scan, status and metrics requests on a Unix socket (docs/protocol.md).
///
/// One I/O thread (the caller of `run`) owns the listening socket and every connection: it reads messages, checks
/// them, answers status requests itself and queues probe and scan requests for a fixed pool of worker threads, which
/// each handle one request at a time and hand the reply back through a wake-up pipe. Nothing a client sends can
/// make the I/O thread block or hold more than one bounded message per connection.
public final class Server: @unchecked Sendable {
    /// Who is on the other end of a connection (SO_PEERCRED, SO_PEERGROUPS at connect time).
    struct Peer: Sendable {
        let uid: uid_t
        let gid: gid_t
        let groups: [gid_t]
    }

    /// One queued probe or scan.
    struct Job {
        let connection: UInt64
        let peer: Peer
        let id: JSON
        let method: String
        let fd: Int32
        let name: String
        let timeout: Double
        let probePhase: Bool
        let received: UInt64
    }

    /// One client connection, owned by the I/O thread.
    final class Connection {
        let fd: Int32
        let id: UInt64
        let peer: Peer
        var reader: Wire.Reader
        /// Descriptors received and not yet given to a request, each with the stream offset just past the bytes
        /// they arrived with: they belong to the message that holds that byte.
        var fds: [(end: UInt64, fd: Int32)] = []
        /// Bytes received on the connection, and bytes of the messages taken out of `reader`.
        var received: UInt64 = 0
        var consumed: UInt64 = 0
        var out = Wire.Outbox()
        var lastActivity: UInt64
        var partialSince: UInt64?
        var stalledSince: UInt64?
        var inFlight = false
        var closing = false

        init(fd: Int32, id: UInt64, peer: Peer, maxMessage: Int, now: UInt64) {
            self.fd = fd
            self.id = id
            self.peer = peer
            reader = Wire.Reader(maxMessage: maxMessage)
            lastActivity = now
        }
    }

    let config: DaemonConfig
    let options: ProbeOptions
    let version: String
    /// Counters for status and metrics.
    public let metrics: Metrics
    private let listenFD: Int32
    private let ownsSocket: Bool
    private let allowedGIDs: Set<gid_t>
    private let signalFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32

    /// The daemon's supplementary groups, which a worker thread takes back after acting as a client.
    private let daemonGroups: [gid_t] = {
        var groups = [gid_t](repeating: 0, count: 65536)
        let n = getgroups(Int32(groups.count), &groups)
        return n > 0 ? Array(groups.prefix(Int(n))) : []
    }()

    private let monitor = Monitor()
    private var jobs: [Job] = []
    private var busy = 0
    private var completions: [(UInt64, [UInt8])] = []

    private var connections: [UInt64: Connection] = [:]
    private var nextConnection: UInt64 = 1
    private var stopping = false
    private var graceDeadline: UInt64 = 0
    /// While the descriptor table is full, the listening socket is not polled until then (monotonic ns).
    private var acceptPausedUntil: UInt64 = 0

    /// Sets up signals, the listening socket (or takes systemd's) and the wake-up pipe; `run` starts the workers.
    /// Call from the main thread before any other thread exists: SIGTERM, SIGINT and SIGHUP are blocked here, so
    /// that every later thread inherits the mask and the I/O loop reads them from a signalfd.
    public init(config: DaemonConfig, options: ProbeOptions, version: String) throws(ConfigError) {
        self.config = config
        self.options = options
        self.version = version
        metrics = Metrics(workers: config.maxConcurrent, queueCapacity: config.queue)

        // systemd's default soft descriptor limit (1024) is below the default maxConnections (1024) plus what
        // workers and sandboxes hold. The daemon polls, never selects, so the hard limit is safe to use; each
        // sandbox sets its own (the profile's openFiles).
        var files = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0 && files.rlim_cur < files.rlim_max {
            files.rlim_cur = files.rlim_max
            _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)
        }
        signal(SIGPIPE, SIG_IGN)
        signal(SIGIO, SIG_IGN)  // lease breaks: the writer waits for the lease to go, nothing to do here
        signalFD = airlock_stop_signals_fd()
        guard signalFD >= 0 else { throw ConfigError("signalfd: \(String(cString: strerror(errno)))") }

        var pipeFDs: [Int32] = [0, 0]
        guard airlock_wake_pipe(&pipeFDs) == 0 else { throw ConfigError("pipe2: \(String(cString: strerror(errno)))") }
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]

        var gids = Set<gid_t>()
        for name in config.allowGroups {
            if let g = getgrnam(name) {
                gids.insert(g.pointee.gr_gid)
            } else {
                Log.write(.warning, "group \(name) does not exist: its members cannot be allowed")
            }
        }
        allowedGIDs = gids

        if let fd = Systemd.listenFD() {
            // Anything but a listening Unix stream socket (Accept=yes passes a connected one, ListenDatagram= or
            // ListenStream=PORT other kinds) would leave poll reporting it readable while accept fails: a spin.
            guard Server.isListeningUnixStream(fd) else {
                throw ConfigError("the socket systemd passed (descriptor 3) is not a listening Unix stream socket: the socket unit needs ListenStream=/path and Accept=no")
            }
            listenFD = fd
            ownsSocket = false
            Log.write(.info, "listening on the socket systemd passed (descriptor 3)")
        } else {
            listenFD = try Server.listen(path: config.socketPath, group: gids.first)
            ownsSocket = true
            Log.write(.info, "listening on \(config.socketPath)")
        }
    }

    /// Whether `fd` is a Unix stream socket in the listening state.
    static func isListeningUnixStream(_ fd: Int32) -> Bool {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        return option(SO_DOMAIN) == AF_UNIX && option(SO_TYPE) == Int32(SOCK_STREAM.rawValue) && option(SO_ACCEPTCONN) == 1
    }

    /// Creates the socket file: a stale one is replaced, a live one is an error. Mode 0660 with the `airlock` group
    /// when it exists (0600 otherwise), matching who may connect.
    static func listen(path: String, group: gid_t?) throws(ConfigError) -> Int32 {
        let parent = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !parent.isEmpty { _ = mkdir(parent, 0o755) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw ConfigError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        func withAddress<T>(_ body: (UnsafePointer<sockaddr>) -> T) -> T {
            withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw ConfigError("\(path) exists and is not a socket") }
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let live = withAddress { connect(probe, $0, length) } == 0
            close(probe)
            if live { throw ConfigError("another airlockd is listening on \(path)") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw ConfigError("socket: \(String(cString: strerror(errno)))") }
        let old = umask(0o177)
        let bound = withAddress { bind(fd, $0, length) }
        umask(old)
        guard bound == 0 else {
            let e = errno
            close(fd)
            throw ConfigError("cannot bind \(path): \(String(cString: strerror(e)))")
        }
        if let group, chown(path, uid_t.max, group) == 0 { chmod(path, 0o660) }
        guard Glibc.listen(fd, 256) == 0 else {
            close(fd)
            throw ConfigError("listen: \(String(cString: strerror(errno)))")
        }
        return fd
    }

    // MARK: - The I/O loop

    /// Serves until SIGTERM (or SIGINT, SIGHUP); returns the exit status.
    public func run() -> Int32 {
        for _ in 0..<config.maxConcurrent { startThread { [self] in workLoop() } }
        Systemd.notify("READY=1\nSTATUS=answering on \(ownsSocket ? config.socketPath : "the systemd socket")")
        let watchdog = Systemd.watchdogIntervalNs()
        var lastWatchdog = monotonicNs()
        while true {
            let now = monotonicNs()
            if let watchdog, now - lastWatchdog >= watchdog {
                Systemd.notify("WATCHDOG=1")
                lastWatchdog = now
            }
            if stopping && (idle() || now >= graceDeadline) { break }
            var order: [UInt64] = []
            var pfds = [pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            pfds.append(pollfd(fd: stopping || now < acceptPausedUntil ? -1 : listenFD, events: Int16(POLLIN), revents: 0))
            for (id, c) in connections {
                var events: Int16 = 0
                // Nothing more is read from a client until it has taken its last reply.
                if !c.inFlight && !c.closing && c.out.isEmpty { events |= Int16(POLLIN) }
                if !c.out.isEmpty { events |= Int16(POLLOUT) }
                pfds.append(pollfd(fd: c.fd, events: events, revents: 0))
                order.append(id)
            }
            let timeoutMs: Int32 = watchdog.map { Int32(min(1000, $0 / 1_000_000)) } ?? 1000
            let n = poll(&pfds, nfds_t(pfds.count), timeoutMs)
            if n < 0 && errno != EINTR {
                Log.write(.err, "poll: \(String(cString: strerror(errno)))")
                break
            }
            if pfds[0].revents != 0 { readSignals() }
            if pfds[1].revents != 0 { deliverCompletions() }
            if pfds[2].revents & Int16(POLLIN) != 0 { acceptAll() }
            for (i, id) in order.enumerated() {
                guard let c = connections[id] else { continue }
                let r = pfds[3 + i].revents
                if r & Int16(POLLIN) != 0 { receive(c) }
                if r & Int16(POLLOUT) != 0 {
                    flush(c)
                    if connections[id] != nil && c.out.isEmpty { process(c) }  // requests it sent before
                }
                if r & Int16(POLLERR | POLLNVAL) != 0 { drop(c) }
                else if r & Int16(POLLHUP) != 0 && r & Int16(POLLIN) == 0 { drop(c) }
            }
            expire(monotonicNs())
            metrics.setConnections(connections.count)
        }
        shutdown()
        return 0
    }

    private func idle() -> Bool {
        monitor.locked { busy == 0 && jobs.isEmpty } && connections.values.allSatisfy { $0.out.isEmpty && !$0.inFlight }
    }

    private func readSignals() {
        while true {
            let signo = airlock_read_signal(signalFD)
            guard signo > 0 else { return }
            guard !stopping else { continue }
            stopping = true
            graceDeadline = monotonicNs() + UInt64(config.shutdownGrace * 1e9)
            Log.write(.notice, "signal \(signo): no new requests; waiting up to \(config.shutdownGrace) s for those in flight")
            Systemd.notify("STOPPING=1\nSTATUS=finishing the requests in flight")
            if ownsSocket { unlink(config.socketPath) }
            close(listenFD)
            // Requests still queued will not start: tell their clients now.
            let waiting = monitor.locked { () -> [Job] in
                let w = jobs
                jobs.removeAll()
                metrics.setQueue(0, busy: busy)
                return w
            }
            for job in waiting {
                close(job.fd)
                metrics.refused(method: job.method, code: .shuttingDown)
                complete(job.connection, Reply.error(id: job.id, .shuttingDown, "airlockd is stopping"))
            }
        }
    }

    private func shutdown() {
        for c in connections.values where c.inFlight {
            // Past the grace period: the request's sandbox dies with this process; its client hears why.
            let frame = Wire.frame(Reply.error(id: .null, .shuttingDown, "airlockd stopped before the request finished"))
            _ = frame.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        }
        for c in connections.values { drop(c) }
        Log.write(.notice, "stopped")
    }

    // MARK: - Connections

    private func acceptAll() {
        while true {
            let fd = airlock_accept(listenFD)
            guard fd >= 0 else {
                // Out of descriptors: the pending connection stays in the backlog and the socket stays readable, so
                // polling it again at once would spin. Wait for connections to close instead.
                if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) {
                    if acceptPausedUntil == 0 || monotonicNs() >= acceptPausedUntil + 10_000_000_000 {
                        Log.write(.warning, "cannot accept connections: \(String(cString: strerror(errno))) (\(connections.count) open; raise LimitNOFILE or lower maxConnections)")
                    }
                    acceptPausedUntil = monotonicNs() + 100_000_000
                }
                return
            }
            var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
            guard airlock_peer_credentials(fd, &pid, &uid, &gid) == 0 else {
                close(fd)
                continue
            }
            var groups = [gid_t](repeating: 0, count: 1024)
            let n = airlock_peer_groups(fd, &groups, Int32(groups.count))
            let peer = Peer(uid: uid, gid: gid, groups: n > 0 ? Array(groups.prefix(Int(min(n, 1024)))) : [])
            if !allowed(peer) {
                Log.write(.warning, "refused a connection from uid \(uid) (pid \(pid))")
                metrics.refused(method: "connect", code: .forbidden)
                sendNow(fd, Reply.error(id: .null, .forbidden, "uid \(uid) may not use airlockd: allowed are root, uid \(geteuid()), \(config.allowUIDs.isEmpty ? "" : "uids \(config.allowUIDs.map(String.init).joined(separator: ",")), ")and members of \(config.allowGroups.joined(separator: ", "))"))
                close(fd)
                continue
            }
            if connections.count >= config.maxConnections {
                metrics.refused(method: "connect", code: .busy)
                sendNow(fd, Reply.error(id: .null, .busy, "too many connections (\(config.maxConnections))"))
                close(fd)
                continue
            }
            let id = nextConnection
            nextConnection += 1
            connections[id] = Connection(fd: fd, id: id, peer: peer, maxMessage: config.maxMessage, now: monotonicNs())
        }
    }

    private func allowed(_ peer: Peer) -> Bool {
        peer.uid == 0 || peer.uid == geteuid() || config.allowUIDs.contains(peer.uid) || allowedGIDs.contains(peer.gid)
            || peer.groups.contains { allowedGIDs.contains($0) }
    }

    /// One best-effort write on a descriptor about to be closed.
    private func sendNow(_ fd: Int32, _ message: JSON) {
        let frame = Wire.frame(message)
        _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    private func receive(_ c: Connection) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var fds = [Int32](repeating: -1, count: Int(AIRLOCK_MAX_MESSAGE_FDS))
        var count: Int32 = 0, truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { airlock_recv_with_fds(c.fd, $0.baseAddress, $0.count, &fds, &count, &truncated) }
        // recvmsg returns the bytes that carried descriptors last (it stops after them), so the descriptors
        // belong to the message holding the last byte received here, not to an earlier one still buffered.
        if n > 0 { c.received += UInt64(n) }
        c.fds += fds.prefix(Int(count)).map { (c.received, $0) }
        if n == 0 {
            drop(c)
            return
        }
        guard n > 0 else {
            if errno != EAGAIN && errno != EWOULDBLOCK { drop(c) }
            return
        }
        c.lastActivity = monotonicNs()
        c.reader.append(buffer[0..<n])
        if truncated != 0 || c.fds.count > Int(AIRLOCK_MAX_MESSAGE_FDS) {
            fail(c, .badRequest, "too many descriptors: a request carries one")
            return
        }
        process(c)
    }

    /// Handles the complete messages a connection has sent, one request in flight at a time, and none while a reply
    /// is still waiting to be taken: a client that sends and never reads makes the daemon hold one reply, not one per
    /// request.
    private func process(_ c: Connection) {
        var waitingForBytes = false
        while !c.inFlight && !c.closing && c.out.isEmpty {
            let body: [UInt8]
            do {
                guard let next = try c.reader.next() else {
                    waitingForBytes = c.reader.hasPartial
                    break
                }
                body = next
            } catch {
                guard case .badLength(let n) = error else { return }
                fail(c, n == 0 ? .badRequest : .tooLarge, n == 0 ? "empty message" : "message of \(n) bytes is larger than \(config.maxMessage)")
                return
            }
            c.consumed += UInt64(4 + body.count)
            let mine = c.fds.filter { $0.end <= c.consumed }.map(\.fd)
            c.fds.removeAll { $0.end <= c.consumed }
            handle(c, body, fds: mine)
        }
        // Only a message whose rest has yet to arrive is timed, not whole requests waiting behind one in flight.
        c.partialSince = waitingForBytes ? (c.partialSince ?? monotonicNs()) : nil
    }

    /// Replies with an error, then closes the connection once the reply is out (the stream cannot be trusted).
    private func fail(_ c: Connection, _ code: ReplyCode, _ message: String) {
        metrics.refused(method: "frame", code: code)
        c.out.append(Wire.frame(Reply.error(id: .null, code, message)))
        c.closing = true
        closeFDs(c)
        flush(c)
    }

    private func closeFDs(_ c: Connection) {
        for (_, fd) in c.fds { close(fd) }
        c.fds.removeAll()
    }

    /// Handles one message; `fds` are the descriptors that arrived with its bytes (handle closes or keeps them).
    private func handle(_ c: Connection, _ body: [UInt8], fds: [Int32]) {
        func answer(_ reply: JSON) {
            for fd in fds { close(fd) }
            c.out.append(Wire.frame(reply))
            flush(c)
        }
        guard let message = try? JSON.parse(body, maxDepth: 16), case .object(let members) = message else {
            metrics.refused(method: "?", code: .badRequest)
            return answer(Reply.error(id: .null, .badRequest, "not a JSON object"))
        }
        let field = { (key: String) in members.first { $0.0 == key }?.1 }
        let id = field("id") ?? .null
        guard case .number(let v)? = field("airlock"), Int(v) == Wire.version else {
            metrics.refused(method: "?", code: .badRequest)
            return answer(Reply.error(id: id, .badRequest, "\"airlock\": \(Wire.version) is required (this daemon speaks protocol version \(Wire.version))"))
        }
        guard case .string(let method)? = field("method") else {
            metrics.refused(method: "?", code: .badRequest)
            return answer(Reply.error(id: id, .badRequest, "\"method\" (a string) is required"))
        }
        var params: [(String, JSON)] = []
        if let p = field("params") {
            guard case .object(let m) = p else {
                metrics.refused(method: method, code: .badRequest)
                return answer(Reply.error(id: id, .badRequest, "\"params\" must be an object"))
            }
            params = m
        }
        let param = { (key: String) in params.first { $0.0 == key }?.1 }
        switch method {
        case "status":
            answer(Reply.ok(id: id, "status", metrics.status(version: version)))
        case "metrics":
            answer(Reply.ok(id: id, "metrics", .string(metrics.prometheus())))
        case "probe", "scan":
            guard fds.count == 1 else {
                metrics.refused(method: method, code: .noDescriptor)
                return answer(Reply.error(id: id, .noDescriptor, "a \(method) request carries exactly one open file or directory descriptor (SCM_RIGHTS), not \(fds.count)"))
            }
            // The descriptor stands for the client's right to read the file: an O_PATH or write-only one does not,
            // and reopening it read-only (as work does) would read with the daemon's rights instead.
            guard airlock_fd_readable(fds[0]) == 1 else {
                metrics.refused(method: method, code: .badRequest)
                return answer(Reply.error(
                    id: id, .badRequest, "the descriptor must be open for reading (not O_PATH, not write-only)"))
            }
            var name = "fd"
            if case .string(let s)? = param("name"), !s.isEmpty, s.utf8.count <= 4096 {
                // Shown in reports and in the daemon's log: a client must not write a newline or an escape sequence
                // there. Names in the escaped form (what airlock and the intake send) are kept as they are.
                name = FileName(escaped: s) != nil ? s : FileName(s).escaped
            }
            var timeout = config.requestTimeout
            if case .number(let t)? = param("timeout"), let seconds = Double(t) {
                guard seconds > 0 && seconds <= config.requestTimeout else {
                    metrics.refused(method: method, code: .badRequest)
                    return answer(Reply.error(id: id, .badRequest, "timeout must be more than 0 and at most \(config.requestTimeout) seconds"))
                }
                timeout = seconds
            }
            var probePhase = true
            if case .bool(let b)? = param("probePhase") { probePhase = b }
            if stopping {
                metrics.refused(method: method, code: .shuttingDown)
                return answer(Reply.error(id: id, .shuttingDown, "airlockd is stopping"))
            }
            let job = Job(connection: c.id, peer: c.peer, id: id, method: method, fd: fds[0], name: name, timeout: timeout,
                          probePhase: probePhase, received: monotonicNs())
            let accepted = monitor.locked { () -> Bool in
                guard jobs.count < config.queue + (config.maxConcurrent - busy) else { return false }
                jobs.append(job)
                metrics.setQueue(jobs.count, busy: busy)
                monitor.broadcast()
                return true
            }
            if accepted {
                c.inFlight = true
            } else {
                metrics.refused(method: method, code: .busy)
                answer(Reply.error(id: id, .busy, "all \(config.maxConcurrent) workers are busy and \(config.queue) requests are waiting: try again later"))
            }
        default:
            metrics.refused(method: "?", code: .unknownMethod)
            answer(Reply.error(id: id, .unknownMethod, "unknown method \"\(method.prefix(64))\": probe, scan, status or metrics"))
        }
    }

    private func flush(_ c: Connection) {
        while !c.out.isEmpty {
            let n = c.out.send { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 {
                c.stalledSince = nil
                c.lastActivity = monotonicNs()
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if c.stalledSince == nil { c.stalledSince = monotonicNs() }
                return
            }
            drop(c)
            return
        }
        if c.closing { drop(c) }
    }

    private func drop(_ c: Connection) {
        guard connections.removeValue(forKey: c.id) != nil else { return }
        closeFDs(c)
        close(c.fd)
    }

    /// Closes idle connections, and those whose message or reply does not move.
    private func expire(_ now: UInt64) {
        let idle = UInt64(config.idleTimeout * 1e9), io = UInt64(config.ioTimeout * 1e9)
        for c in Array(connections.values) {
            if let since = c.partialSince, now - since > io {
                fail(c, .timeout, "the message did not arrive whole within \(config.ioTimeout) s")
            } else if let since = c.stalledSince, now - since > io {
                drop(c)
            } else if !c.inFlight && c.out.isEmpty && c.partialSince == nil && now - c.lastActivity > idle {
                drop(c)
            }
        }
    }

    // MARK: - Workers

    private func complete(_ connection: UInt64, _ reply: JSON) {
        let frame = Wire.frame(reply)
        monitor.locked { completions.append((connection, frame)) }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func deliverCompletions() {
        var sink = [UInt8](repeating: 0, count: 256)
        while read(wakeRead, &sink, sink.count) > 0 {}
        let done = monitor.locked { () -> [(UInt64, [UInt8])] in
            let d = completions
            completions.removeAll()
            return d
        }
        for (id, frame) in done {
            guard let c = connections[id] else { continue }  // the client left: the reply has nobody to go to
            c.inFlight = false
            c.out.append(frame)
            flush(c)
            if connections[id] != nil { process(c) }
        }
    }

    private func workLoop() {
        while true {
            let job = monitor.locked { () -> Job in
                while jobs.isEmpty { monitor.wait() }
                busy += 1
                let j = jobs.removeFirst()
                metrics.setQueue(jobs.count, busy: busy)
                return j
            }
            let reply = work(job)
            monitor.locked {
                busy -= 1
                metrics.setQueue(jobs.count, busy: busy)
            }
            complete(job.connection, reply)
        }
    }

    /// Handles one probe or scan: a regular file (under a read lease while it is mapped) or a directory.
    func work(_ job: Job) -> JSON {
        defer { close(job.fd) }
        var st = stat()
        guard fstat(job.fd, &st) == 0 else {
            metrics.refused(method: job.method, code: .badRequest)
            return Reply.error(id: job.id, .badRequest, "the descriptor cannot be examined: \(String(cString: strerror(errno)))")
        }
        var options = self.options
        options.timeoutSeconds = job.timeout
        options.probePhase = job.probePhase
        let examine: (Int32, String) -> Report = job.method == "probe"
            ? { Prober.probe(fd: $0, path: $1, options: options) }
            : { StaticScanner.scan(fd: $0, path: $1, budget: options.budget) }
        // Everything the daemon opens for a client (the reopen of its descriptor, a folder's entries) is opened with
        // the client's file-system identity, on this thread only: an O_PATH or write-only descriptor, or a folder
        // the client may list, must not let the daemon's root read what the client could not. Examining an open
        // descriptor (and building a sandbox for it) runs with the daemon's own identity.
        let identity = ClientIdentity(peer: job.peer, daemonGroups: daemonGroups)
        guard identity.enter() else {
            metrics.refused(method: job.method, code: .internalError)
            return Reply.error(id: job.id, .internalError, "cannot take on the client's file-system identity: \(String(cString: strerror(errno)))")
        }
        var reports: [Report] = []
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            // Our own open of the folder, checked for reading: the client's descriptor may be O_PATH (no listing).
            let own = open("/proc/self/fd/\(job.fd)", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard own >= 0 else {
                let e = errno
                identity.leave()
                metrics.refused(method: job.method, code: .badRequest)
                return Reply.error(id: job.id, .badRequest, "cannot open the folder for reading: \(String(cString: strerror(e)))")
            }
            defer { close(own) }
            ModelWalk.walk(fd: own, isDirectory: true, path: job.name, examine: { fd, path in
                identity.leave()
                defer { identity.reenter() }
                return examine(fd, path)
            }) { reports.append($0) }
            identity.leave()
        case S_IFREG:
            // Our own read-only open of the file, with a read lease while it is analysed: a writer (or truncate)
            // then waits for us instead of pulling mapped pages away. A file open for writing anywhere cannot be
            // leased: it is still being written, and is refused.
            let own = open("/proc/self/fd/\(job.fd)", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
            let openErrno = errno
            identity.leave()
            errno = openErrno
            guard own >= 0 else {
                metrics.refused(method: job.method, code: .badRequest)
                return Reply.error(id: job.id, .badRequest, "cannot reopen the file read-only: \(String(cString: strerror(errno)))")
            }
            defer { close(own) }
            if airlock_set_read_lease(own) != 0 {
                if errno == EAGAIN || errno == EBUSY {
                    metrics.refused(method: job.method, code: .fileBusy)
                    return Reply.error(id: job.id, .fileBusy, "\(job.name) is open for writing elsewhere: probe it once it is complete")
                }
                Log.write(.debug, "no read lease on \(job.name) (\(String(cString: strerror(errno)))): analysed without one")
            }
            defer { _ = airlock_release_lease(own) }
            reports.append(examine(own, job.name))
        default:
            identity.leave()
            metrics.refused(method: job.method, code: .badRequest)
            return Reply.error(id: job.id, .badRequest, "the descriptor is neither a regular file nor a directory")
        }
        metrics.answered(method: job.method, verdicts: reports.map(\.verdict.rawValue),
                         seconds: Double(monotonicNs() - job.received) / 1e9)
        // Every verdict goes back: a reply that would pass the protocol's bound loses traces (then minor findings)
        // instead of failing. The members around the reports take little beyond the client's id.
        if !Report.fit(&reports, within: Wire.maxReply - 4096 - job.id.serializedCount) {
            Log.write(.warning, "the reply to \(job.name) (\(reports.count) reports) exceeds \(Wire.maxReply) bytes even without traces")
        }
        return .object([
            ("airlock", .int(Wire.version)), ("id", job.id), ("ok", .bool(true)),
            ("reports", .array(reports.map(\.json))),
            ("traceLines", .array(reports.map { .array($0.traceLines.map(JSON.string)) })),
        ])
    }
}

/// A worker thread acting, for file-system access, as a client (fsuid, fsgid and supplementary groups of this thread
/// only). Only a root daemon can and needs to: for root clients, and clients with the daemon's own uid, nothing
/// changes.
struct ClientIdentity {
    let peer: Server.Peer
    let daemonGroups: [gid_t]
    let active: Bool

    init(peer: Server.Peer, daemonGroups: [gid_t]) {
        self.peer = peer
        self.daemonGroups = daemonGroups
        active = geteuid() == 0 && peer.uid != 0
    }

    /// Takes on the client's identity; false when it did not take (the thread is then as before).
    func enter() -> Bool {
        guard active else { return true }
        // The groups first: without CAP_SETGID this fails and nothing has changed.
        guard airlock_thread_setgroups(peer.groups, Int32(peer.groups.count)) == 0 else { return false }
        guard airlock_thread_setfsgid(peer.gid) == peer.gid, airlock_thread_setfsuid(peer.uid) == peer.uid else {
            leave()
            errno = EPERM
            return false
        }
        return true
    }

    /// Takes it on again after `leave`; the thread must never go on as root where the client's identity belongs.
    func reenter() {
        guard active else { return }
        guard enter() else {
            Log.write(.err, "cannot take on the client's file-system identity again: \(String(cString: strerror(errno)))")
            abort()
        }
    }

    /// Back to the daemon's own identity. A thread that cannot return would build sandboxes with the client's ids:
    /// the daemon stops (systemd restarts it).
    func leave() {
        guard active else { return }
        guard airlock_thread_setfsuid(geteuid()) == geteuid(), airlock_thread_setfsgid(getegid()) == getegid(),
              airlock_thread_setgroups(daemonGroups, Int32(daemonGroups.count)) == 0 else {
            Log.write(.err, "cannot return to the daemon's file-system identity: \(String(cString: strerror(errno)))")
            abort()
        }
    }
}
