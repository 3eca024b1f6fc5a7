internal import AirlockJSON
internal import AirlockProbe
internal import AirlockSystem
internal import CDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// One client connection, owned by the I/O thread.
final class Connection {
    let fd: FileDescriptor
    let id: UInt64
    let peer: Peer
    var reader: Wire.Reader
    /// Descriptors received and not yet given to a request, each with the stream offset just past the bytes
    /// they arrived with: they belong to the message that holds that byte.
    var fds: [(end: UInt64, fd: FileDescriptor)] = []
    /// Bytes received on the connection, and bytes of the messages taken out of `reader`.
    var received: UInt64 = 0
    var consumed: UInt64 = 0
    var out = Wire.Outbox()
    var lastActivity: UInt64
    /// Whole seconds since the last byte in or out, for messages.
    var idleSeconds: UInt64 { (monotonicNs() - lastActivity) / 1_000_000_000 }
    var partialSince: UInt64?
    var stalledSince: UInt64?
    /// When the reply being sent must be out: set when a reply starts waiting in `out` (`ioTimeout` plus its size at
    /// `Connection.minimumReplyRate`), cleared when `out` empties. Partial sends do not move it, so a client that
    /// reads a byte now and then cannot hold a large reply (and its memory) for ever.
    var replyDeadline: UInt64?
    /// The slowest a client may read its reply, in bytes per second: 1 MiB/s.
    static let minimumReplyRate = 1 << 20
    var inFlight = false
    var closing = false

    init(fd: FileDescriptor, id: UInt64, peer: Peer, maxMessage: Int, now: UInt64) {
        self.fd = fd
        self.id = id
        self.peer = peer
        reader = Wire.Reader(maxMessage: maxMessage)
        lastActivity = now
    }

    /// One best-effort write of `message`, for a connection about to be closed.
    func sendNow(_ message: JSON) {
        Connection.sendNow(fd, message)
    }

    /// One best-effort write of `message` on `fd`, about to be closed.
    static func sendNow(_ fd: FileDescriptor, _ message: JSON) {
        let frame = Wire.frame(message)
        _ = frame.withUnsafeBytes { send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    /// Whether the connection may be closed to make room for another (docs/daemon.md, "Back-pressure"): nothing in
    /// flight, no reply or message half way, no descriptor held, and nothing sent that the loop has not read yet
    /// (a request still in the socket would be lost; its client would be told to retry, but need not be). A
    /// connection its client has closed is idle.
    var isIdle: Bool {
        guard !inFlight && !closing && out.isEmpty && partialSince == nil && fds.isEmpty && !reader.hasPartial else {
            return false
        }
        var byte: UInt8 = 0
        let n = recv(fd.rawValue, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        // End of input: the client left and the loop has not seen it yet; nothing is lost by closing.
        return n == 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    }

    /// Closes the descriptors received and not given to a request.
    func closeFDs() {
        for (_, fd) in fds { fd.close() }
        fds.removeAll()
    }
}

/// The I/O thread's loop: accept, read, frame, parse, queue, reply, expire. One poll over the stop signals, the
/// workers' wake-up pipe, the listening socket and every connection.
extension Server {
    /// Polls until a stop signal and then until nothing is in flight or the grace period is over.
    func serve() {
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
            var pfds = [
                pollfd(fd: signals.descriptor.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: pool.wakeup.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(
                    fd: stopping || now < acceptPausedUntil ? -1 : listener.fd.rawValue, events: Int16(POLLIN),
                    revents: 0),
            ]
            for (id, c) in connections {
                var events: Int16 = 0
                // Nothing more is read from a client until it has taken its last reply.
                if !c.inFlight && !c.closing && c.out.isEmpty { events |= Int16(POLLIN) }
                if !c.out.isEmpty { events |= Int16(POLLOUT) }
                pfds.append(pollfd(fd: c.fd.rawValue, events: events, revents: 0))
                order.append(id)
            }
            let timeoutMs: Int32 = watchdog.map { Int32(min(1000, $0 / 1_000_000)) } ?? 1000
            let n = poll(&pfds, nfds_t(pfds.count), timeoutMs)
            if n < 0 && errno != EINTR {
                Log.write(.err, "\(SystemCallError("poll"))")
                break
            }
            if pfds[0].revents != 0 { readSignals() }
            if pfds[1].revents != 0 { deliverReplies() }
            if pfds[2].revents & Int16(POLLIN) != 0 { acceptAll() }
            for (i, id) in order.enumerated() {
                guard let c = connections[id] else { continue }
                let r = pfds[3 + i].revents
                if r & Int16(POLLIN) != 0 { receive(c) }
                if r & Int16(POLLOUT) != 0 {
                    flush(c)
                    if connections[id] != nil && c.out.isEmpty { process(c) }  // requests it sent before
                }
                if r & Int16(POLLERR | POLLNVAL) != 0 {
                    drop(c)
                } else if r & Int16(POLLHUP) != 0 && r & Int16(POLLIN) == 0 {
                    drop(c)
                }
            }
            expire(monotonicNs())
            metrics.setConnections(connections.count)
        }
    }

    // MARK: - Connections

    private func acceptAll() {
        while true {
            guard let fd = listener.accept() else {
                // Out of descriptors: the pending connection stays in the backlog and the socket stays readable, so
                // polling it again at once would spin. Wait for connections to close instead.
                let e = Errno.current
                if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(e.rawValue) {
                    if acceptPausedUntil == 0 || monotonicNs() >= acceptPausedUntil + 10_000_000_000 {
                        Log.write(
                            .warning,
                            "cannot accept connections: \(e.text) (\(connections.count) open; raise LimitNOFILE or lower maxConnections)"
                        )
                    }
                    acceptPausedUntil = monotonicNs() + 100_000_000
                }
                return
            }
            guard let peer = Peer(socket: fd) else {
                Log.write(.warning, "refused a connection whose credentials cannot be read whole")
                fd.close()
                continue
            }
            let (pid, uid) = (peer.pid, peer.uid)
            if !allowed(peer) {
                Log.write(.warning, "refused a connection from uid \(uid) (pid \(pid))")
                metrics.refused(method: "connect", code: .forbidden)
                let uids =
                    config.allowUIDs.isEmpty ? "" : "uids \(config.allowUIDs.map(String.init).joined(separator: ",")), "
                Connection.sendNow(
                    fd,
                    Reply.error(
                        id: .null, .forbidden,
                        "uid \(uid) may not use airlockd: allowed are root, uid \(geteuid()), \(uids)and members of \(config.allowGroups.joined(separator: ", "))"
                    ))
                fd.close()
                continue
            }
            guard makeRoom(for: peer, fd: fd) else {
                fd.close()
                continue
            }
            let id = nextConnection
            nextConnection += 1
            connections[id] = Connection(fd: fd, id: id, peer: peer, maxMessage: config.maxMessage, now: monotonicNs())
            connectionsPerUid[uid, default: 0] += 1
        }
    }

    /// Admits a connection of `peer` within the per-uid and the global cap: at a cap, the longest-idle connection
    /// (of that uid, or of anyone at the global cap) is closed with a `busy` notice, which a client answers by
    /// connecting again; when none is idle, the new connection is refused with `busy` on `fd` (false). Root and the
    /// daemon's own uid are capped like everyone: a root client is as able to hoard connections as any other.
    private func makeRoom(for peer: Peer, fd: FileDescriptor) -> Bool {
        let perUid = config.effectiveMaxConnectionsPerUid
        if connectionsPerUid[peer.uid, default: 0] >= perUid {
            let mine = connections.values.filter { $0.peer.uid == peer.uid }
            guard let victim = longestIdle(mine) else {
                metrics.refused(method: "connect", code: .busy, reason: "peer-connections")
                Connection.sendNow(
                    fd,
                    Reply.busy(
                        id: .null, "uid \(peer.uid) has \(perUid) connections, none of them idle: try again later",
                        reason: "peer-connections"))
                return false
            }
            evict(
                victim,
                "closed after \(victim.idleSeconds) s idle to admit another connection of uid \(peer.uid) (at most \(perUid) per uid)",
                reason: "peer-connections")
        }
        if connections.count >= config.maxConnections {
            guard let victim = longestIdle(connections.values) else {
                metrics.refused(method: "connect", code: .busy, reason: "connections")
                Connection.sendNow(
                    fd,
                    Reply.busy(
                        id: .null,
                        "too many connections (\(config.maxConnections)), none of them idle: try again later",
                        reason: "connections"))
                return false
            }
            evict(
                victim,
                "closed after \(victim.idleSeconds) s idle to admit another connection (at most \(config.maxConnections))",
                reason: "connections")
        }
        return true
    }

    private func longestIdle<S: Sequence>(_ candidates: S) -> Connection? where S.Element == Connection {
        var best: Connection? = nil
        for c in candidates where best.map({ c.lastActivity < $0.lastActivity }) ?? true && c.isIdle { best = c }
        return best
    }

    /// Closes an idle connection to make room, telling its client why with a `busy` notice (`"id": null`).
    private func evict(_ c: Connection, _ message: String, reason: String) {
        Log.write(.info, "connection of uid \(c.peer.uid) (pid \(c.peer.pid)) \(message)")
        c.sendNow(Reply.busy(id: .null, message, reason: reason))
        drop(c)
    }

    private func allowed(_ peer: Peer) -> Bool {
        peer.uid == 0 || peer.uid == geteuid() || config.allowUIDs.contains(peer.uid) || allowedGIDs.contains(peer.gid)
            || peer.groups.contains { allowedGIDs.contains($0) }
    }

    private func receive(_ c: Connection) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var fds = [Int32](repeating: -1, count: Int(AIRLOCK_MAX_MESSAGE_FDS))
        var count: Int32 = 0
        var truncated: Int32 = 0
        let n = buffer.withUnsafeMutableBytes {
            airlock_recv_with_fds(c.fd.rawValue, $0.baseAddress, $0.count, &fds, &count, &truncated)
        }
        let e = Errno.current
        // recvmsg returns the bytes that carried descriptors last (it stops after them), so the descriptors
        // belong to the message holding the last byte received here, not to an earlier one still buffered.
        if n > 0 { c.received += UInt64(n) }
        c.fds += fds.prefix(Int(count)).map { (c.received, FileDescriptor($0)) }
        if n == 0 {
            drop(c)
            return
        }
        guard n > 0 else {
            if e.rawValue != EAGAIN && e.rawValue != EWOULDBLOCK { drop(c) }
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
        var tookOne = false
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
                fail(
                    c, n == 0 ? .badRequest : .tooLarge,
                    n == 0 ? "empty message" : "message of \(n) bytes is larger than \(config.maxMessage)")
                return
            }
            c.consumed += UInt64(4 + body.count)
            tookOne = true
            let mine = c.fds.filter { $0.end <= c.consumed }.map(\.fd)
            c.fds.removeAll { $0.end <= c.consumed }
            handle(c, body, fds: mine)
        }
        // Only a message whose rest has yet to arrive is timed, not whole requests waiting behind one in flight. A
        // message completed here restarts the clock: the partial one now waiting began after it, so a client
        // streaming many requests whose reads split messages is not timed out for the stream's length.
        c.partialSince = waitingForBytes ? (tookOne ? monotonicNs() : (c.partialSince ?? monotonicNs())) : nil
    }

    /// Replies with an error, then closes the connection once the reply is out (the stream cannot be trusted).
    private func fail(_ c: Connection, _ code: ReplyCode, _ message: String) {
        metrics.refused(method: "frame", code: code)
        c.out.append(Wire.frame(Reply.error(id: .null, code, message)))
        c.closing = true
        c.closeFDs()
        flush(c)
    }

    /// Handles one message; `fds` are the descriptors that arrived with its bytes (handle closes or keeps them).
    private func handle(_ c: Connection, _ body: [UInt8], fds: [FileDescriptor]) {
        func answer(_ reply: JSON) {
            for fd in fds { fd.close() }
            c.out.append(Wire.frame(reply))
            flush(c)
        }
        let request: DaemonRequest
        switch DaemonRequest.parse(
            body, descriptors: fds, maxTimeout: config.requestTimeout, runtimes: runtimeNames)
        {
        case .failure(let refusal):
            metrics.refused(method: refusal.method, code: refusal.code)
            return answer(Reply.error(id: refusal.id, refusal.code, refusal.message))
        case .success(let parsed):
            request = parsed
        }
        let id = request.id
        let method = request.method.rawValue
        switch request.method {
        case .status:
            answer(
                Reply.ok(
                    id: id, "status",
                    metrics.status(
                        version: version,
                        adding: [
                            ("runtimes", context.runtimes.json),
                            ("sandboxIds", (context.options.identities as? SandboxIdentities)?.statusJSON ?? .null),
                        ])))
        case .metrics:
            answer(Reply.ok(id: id, "metrics", .string(metrics.prometheus(maxAge: Metrics.renderSeconds))))
        case .probe, .scan:
            if stopping {
                metrics.refused(method: method, code: .shuttingDown)
                return answer(Reply.error(id: id, .shuttingDown, "airlockd is stopping"))
            }
            // Every probe and scan enters the static lane, whose workers hand what needs a sandbox on
            // (docs/daemon.md, "Lanes"): the I/O thread never touches the client's file, which could block it.
            let job = Examination(connection: c.id, peer: c.peer, request: request, fd: fds[0], received: monotonicNs())
            if let refused = pool.submit(job, to: .fast) {
                answer(pool.busyReply(job, refused, lane: .fast))
            } else {
                c.inFlight = true
            }
        }
    }

    private func flush(_ c: Connection) {
        if !c.out.isEmpty && c.replyDeadline == nil {
            c.replyDeadline =
                monotonicNs() + UInt64(config.ioTimeout * 1e9)
                + UInt64(c.out.count) * 1_000_000_000 / UInt64(Connection.minimumReplyRate)
        }
        defer { if c.out.isEmpty { c.replyDeadline = nil } }
        while !c.out.isEmpty {
            let n = c.out.send { send(c.fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
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

    func drop(_ c: Connection) {
        guard connections.removeValue(forKey: c.id) != nil else { return }
        // Its requests still waiting for a worker will not be answered: they leave the queues; a running one is
        // cancelled (its static work stops, no detonation starts for it) and its reply finds nobody.
        pool.cancel(connection: c.id)
        for job in pool.cancelWaiting(connection: c.id) { job.fd.close() }
        let left = connectionsPerUid[c.peer.uid, default: 1] - 1
        connectionsPerUid[c.peer.uid] = left > 0 ? left : nil
        c.closeFDs()
        c.fd.close()
    }

    /// Closes idle connections, and those whose message or reply does not move.
    private func expire(_ now: UInt64) {
        let idle = UInt64(config.idleTimeout * 1e9)
        let io = UInt64(config.ioTimeout * 1e9)
        for c in Array(connections.values) {
            if let since = c.partialSince, now - since > io {
                fail(c, .timeout, "the message did not arrive whole within \(config.ioTimeout) s")
            } else if let since = c.stalledSince, now - since > io {
                drop(c)
            } else if let deadline = c.replyDeadline, now > deadline, !c.out.isEmpty {
                drop(c)
            } else if !c.inFlight && c.out.isEmpty && c.partialSince == nil && now - c.lastActivity > idle {
                drop(c)
            }
        }
    }

    // MARK: - Replies from the workers

    private func deliverReplies() {
        for (id, frame) in pool.takeReplies() {
            guard let c = connections[id] else { continue }  // the client left: the reply has nobody to go to
            c.inFlight = false
            c.out.append(frame)
            flush(c)
            if connections[id] != nil { process(c) }
        }
    }
}
