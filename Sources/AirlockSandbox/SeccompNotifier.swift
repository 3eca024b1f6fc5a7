internal import CSandbox
internal import CSeccomp
#if canImport(Glibc)
import Glibc
#endif

/// Serves one sandbox's seccomp user notifications: receive, decode, decide, re-validate, answer, record.
///
/// Runs on the supervisor's thread (see `Sandbox.run`). Everything it reads from the caller is hostile.
final class SeccompNotifier {
    private let listener: Int32
    private let policy: NotifyPolicy
    private let arch: UInt32
    private let start: UInt64
    private let maxEvents: Int
    private let names = SyscallNames()
    private var request: UnsafeMutablePointer<seccomp_notif>?
    private var response: UnsafeMutablePointer<seccomp_notif_resp>?
    private let requestSize: Int
    private let responseSize: Int
    private var namespacePids: [pid_t: pid_t] = [:]
    private var launched = false
    private var seq = 0
    private let phases: [String]
    private var phase = 0

    /// Recorded events, in order.
    private(set) var events: [TraceEvent] = []
    /// Answered but not recorded (the trace was full).
    private(set) var dropped = 0
    /// Kinds of refused call already in the trace (rule, system call, action, phase). Past the bound, the first event
    /// of each new kind is still kept, so a payload cannot push the evidence of its behaviour out of the trace by
    /// flooding it with harmless calls first. Bounded by the rules × system calls × phases there are.
    private var refusedKinds = Set<String>()
    /// Most events kept past `maxEvents` for kinds of refusal not yet in the trace.
    static let refusedReserve = 1024
    /// The listener reported hang-up: no task uses the filter any more.
    private(set) var closed = false
    /// Called when a phase is accepted, with the announcing thread's host TID, before the announcement is answered:
    /// that thread is still blocked in it, so what the callee reads about it is the state at the announcement.
    var onPhase: ((_ phase: String, _ hostPid: pid_t) -> Void)?

    init(listener: Int32, policy: NotifyPolicy, arch: UInt32, start: UInt64, maxEvents: Int, phases: [String] = []) throws(SandboxError) {
        self.listener = listener
        self.phases = phases
        self.policy = policy
        self.arch = arch
        self.start = start
        self.maxEvents = maxEvents
        var req: UnsafeMutablePointer<seccomp_notif>? = nil
        var resp: UnsafeMutablePointer<seccomp_notif_resp>? = nil
        guard seccomp_notify_alloc(&req, &resp) == 0, req != nil, resp != nil else {
            throw SandboxError(.supervisor, "libseccomp: seccomp_notify_alloc failed")
        }
        request = req
        response = resp
        var n: UInt16 = 0, r: UInt16 = 0
        if airlock_notify_sizes(&n, &r) == 0 {
            requestSize = max(Int(n), MemoryLayout<seccomp_notif>.size)
            responseSize = max(Int(r), MemoryLayout<seccomp_notif_resp>.size)
        } else {
            requestSize = MemoryLayout<seccomp_notif>.size
            responseSize = MemoryLayout<seccomp_notif_resp>.size
        }
    }

    deinit { seccomp_notify_free(request, response) }

    /// Handles what poll reported on the listener.
    func serve(revents: Int16) {
        if revents & Int16(POLLIN) != 0 { receiveOne() }
        if revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && revents & Int16(POLLIN) == 0 { closed = true }
    }

    private func receiveOne() {
        guard let request, let response else { return }
        UnsafeMutableRawPointer(request).initializeMemory(as: UInt8.self, repeating: 0, count: requestSize)
        // ENOENT: the caller was interrupted or died between poll and receive; nothing to answer.
        guard seccomp_notify_receive(listener, request) == 0 else { return }
        let notification = request.pointee
        let time = monotonicNow() - start
        let args = withUnsafeBytes(of: notification.data.args) { Array($0.bindMemory(to: UInt64.self)) }
        let name = names.name(notification.data.nr, arch: notification.data.arch)
        let hostPid = pid_t(bitPattern: notification.pid)

        var decision: Decision
        var decoded: TraceArguments
        let decoder = SyscallDecoder(hostPid: hostPid)
        if let refused = policy.refusal(name, args) {
            decision = refused
            decoded = decoder.decode(name, args)
        } else if !launched && (name == "execve" || name == "execveat") {
            // The first exec is the sandbox starting the requested command: nothing else runs before it.
            launched = true
            decision = Decision(action: .allowed, errno: 0, rule: "launch")
            decoded = decoder.decode(name, args)
        } else {
            decoded = decoder.decode(name, args)
            if !phases.isEmpty, let marked = PhaseMarker.phase(name, decoded.path) {
                decision = announce(marked)
                if decision.rule == "phase" { onPhase?(phases[phase], hostPid) }
            } else {
                decision = policy.decide(name, args, decoded)
            }
        }
        // Read before answering: a denied caller may exit (and lose its /proc entry) the moment it is answered.
        let pid = namespacePid(hostPid)
        // What we read may belong to a task that is gone and a recycled PID: only answer a live notification.
        guard seccomp_notify_id_valid(listener, notification.id) == 0 else { return }

        if decision.action == .killed {
            // The whole process goes (KILL_THREAD included): a pidfd where the caller leads its thread group, else
            // kill(2) on its TID, which the pending notification keeps from being reused.
            let victim = airlock_pidfd_open(hostPid)
            if victim >= 0 {
                if seccomp_notify_id_valid(listener, notification.id) == 0 { _ = airlock_pidfd_send_signal(victim, SIGKILL) }
                close(victim)
            } else if seccomp_notify_id_valid(listener, notification.id) == 0 {
                _ = kill(hostPid, SIGKILL)
            }
        }
        UnsafeMutableRawPointer(response).initializeMemory(as: UInt8.self, repeating: 0, count: responseSize)
        response.pointee.id = notification.id
        switch decision.action {
        case .allowed:
            response.pointee.flags = UInt32(SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        case .denied, .killed:
            response.pointee.error = -decision.errno
        }
        _ = seccomp_notify_respond(listener, response)

        seq += 1
        let phaseName = phases.isEmpty ? nil : phases[phase]
        if decision.action != .allowed || decision.rule == "phase" {
            let kind = "\(decision.rule)\u{0}\(name)\u{0}\(decision.action.rawValue)\u{0}\(phaseName ?? "")"
            let isNew = refusedKinds.insert(kind).inserted
            if events.count >= maxEvents && !(isNew && events.count < maxEvents + SeccompNotifier.refusedReserve) {
                dropped += 1
                return
            }
        } else if events.count >= maxEvents {
            dropped += 1
            return
        }
        events.append(TraceEvent(
            seq: seq, timeNs: time, pid: pid, hostPid: hostPid, syscall: name,
            action: decision.action, errno: decision.action == .allowed ? nil : ErrnoName.name(decision.errno),
            rule: decision.rule, phase: phaseName, args: decoded
        ))
    }

    /// A phase announcement: phases only move forward, so code inside cannot move its own behaviour back into
    /// `startup` (which would make it look like the runtime's). The marker open fails with ENOENT either way.
    private func announce(_ name: String) -> Decision {
        guard let index = phases.firstIndex(of: name) else {
            return Decision(action: .denied, errno: ENOENT, rule: "phase-unknown")
        }
        guard index > phase else {
            return Decision(action: .denied, errno: ENOENT, rule: "phase-regression")
        }
        phase = index
        return Decision(action: .denied, errno: ENOENT, rule: "phase")
    }

    /// The caller's PID inside its namespace, from the last field of `NSpid:` in /proc/PID/status.
    private func namespacePid(_ hostPid: pid_t) -> pid_t {
        if let known = namespacePids[hostPid] { return known }
        guard let bytes = try? FileBytes.read("/proc/\(hostPid)/status", limit: 65536, what: "status") else { return 0 }
        let text = String(decoding: bytes, as: UTF8.self)
        var result: pid_t = 0
        for line in text.split(separator: "\n") where line.hasPrefix("NSpid:") {
            if let last = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last, let v = pid_t(last) { result = v }
        }
        // Bounded: a fork bomb must not grow the supervisor's memory without end.
        if namespacePids.count >= 4096 { namespacePids.removeAll(keepingCapacity: true) }
        namespacePids[hostPid] = result
        return result
    }
}
