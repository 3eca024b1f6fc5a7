import AirlockSystem
import AirlockTrace
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
    private let names = SyscallNames()
    private var request: UnsafeMutablePointer<seccomp_notif>?
    private var response: UnsafeMutablePointer<seccomp_notif_resp>?
    private let requestSize: Int
    private let responseSize: Int
    private var namespacePids: [pid_t: pid_t] = [:]
    private var launched = false
    private var seq = 0
    private var phases: [String]
    /// The marker paths (path → phase); empty: `PhaseMarker.prefix`.
    var phaseMarkers: [String: String] = [:]
    private var phase = 0

    /// The trace, within its budgets (events, bytes, each event's arguments); see `TraceRecorder`.
    private(set) var recorder: TraceRecorder
    /// The command's process as its launch (its first execve) showed it: host PID and PID inside (0 until read).
    private(set) var launchedProcess: (hostPid: pid_t, pid: pid_t)? = nil
    /// The listener reported hang-up: no task uses the filter any more.
    private(set) var closed = false
    /// Called when a phase is accepted, with the announcing thread's host TID, before the announcement is answered:
    /// that thread is still blocked in it, so what the callee reads about it is the state at the announcement.
    var onPhase: ((_ phase: String, _ hostPid: pid_t) -> Void)?

    /// The world's clock (`ClockEmulator`): the calls `ClockFilter` sends are answered by it, and every notification
    /// lets it patch a fresh image's vDSO first. Nil: the host's clocks, and no such calls arrive.
    var clock: ClockEmulator?

    /// Performs allowed calls on the callers' behalf (nil: every allowed call is continued, as for tests of the
    /// policy alone).
    private let emulator: CallEmulator?
    /// The runtime's start-up (`SandboxRequest.quietPhase`): before the command announces the phase after it, no code
    /// from the input runs (the model's bytes are not touched yet), so the calls it allows are continued by the kernel
    /// instead of performed here, and are counted rather than kept (`TraceRecorder.countQuiet`). Importing torch
    /// makes some 1,300 such opens.
    private let quietPhase: String?
    /// The sandbox's emulated network, which answers calls of `emulate` rules (nil: they are refused).
    private let network: NetworkSink?

    init(
        listener: FileDescriptor, policy: NotifyPolicy, arch: UInt32, start: UInt64, maxEvents: Int, maxBytes: Int,
        phases: [String] = [], emulator: CallEmulator? = nil, quietPhase: String? = nil, network: NetworkSink? = nil
    ) throws(SandboxError) {
        self.listener = listener.rawValue
        self.network = network
        self.emulator = emulator
        recorder = TraceRecorder(maxEvents: maxEvents, maxBytes: maxBytes)
        self.quietPhase = quietPhase
        self.phases = phases
        self.policy = policy
        self.arch = arch
        self.start = start
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
        if let clock {
            let listener = self.listener
            clock.sawCall(name, hostTid: hostPid) { seccomp_notify_id_valid(listener, notification.id) == 0 }
            // The clock's calls are answered apart from the trace; what the profile refuses stays refused.
            if clock.handles(name, args) && policy.refusal(name, args) == nil {
                answer(clock, notification.id, name, args, hostPid)
                return
            }
        }

        var decision: Decision
        var decoded: TraceArguments
        var operands = CallOperands()
        defer { if let copy = operands.descriptor { FileDescriptor(copy).close() } }
        let decoder = SyscallDecoder(hostPid: hostPid)
        if notification.data.nr < 0 || notification.data.nr > SyscallTable.native.highest || name.hasPrefix("syscall_")
        {
            // A number beyond libseccomp's table (SeccompProgram.unknownNumberGuard): nothing decided it.
            decision = Decision(action: .denied, errno: ENOSYS, rule: .unknownSyscall)
            decoded = TraceArguments()
            decoded.raw = args.map(SyscallDecoder.hex)
        } else if let refused = policy.refusal(name, args) {
            decision = refused
            decoded = decoder.decode(name, args)
        } else if !launched && (name == "execve" || name == "execveat") {
            // The first exec is the sandbox starting the requested command: nothing else runs before it.
            launched = true
            decision = Decision(action: .allowed, errno: 0, rule: .launch)
            decoded = decoder.decode(name, args)
        } else {
            // Everything the decision and the supervisor's own performing of the call need is read here, once.
            decoded = decoder.decode(name, args, operands: &operands)
            if let host = operands.signalTargetHost, !(emulator?.inSandbox(host) ?? true) {
                // A process outside the sandbox (the supervisor itself, named through SO_PEERPIDFD): no target the
                // rules could allow.
                decoded.target = nil
                decoded.unreadable = "signal target outside the sandbox"
            }
            if !phases.isEmpty, let marked = PhaseMarker.phase(name, decoded.path, markers: phaseMarkers) {
                decision = announce(marked)
                if decision.rule == .phase { onPhase?(phases[phase], hostPid) }
            } else {
                decision = policy.decide(name, args, decoded)
            }
        }
        // No emulated network (or no supervisor performing calls): the rule refuses, with its errno.
        if decision.emulated && (network == nil || emulator == nil) { decision.action = .denied }
        // Allowed in start-up: nothing racing it is the input's, so the kernel may perform it (see `quietPhase`).
        let quietlyAllowed =
            decision.action == .allowed && decision.rule != .launch && decision.rule != .phase && quietPhase != nil
            && !phases.isEmpty && phases[phase] == quietPhase
        // Read before answering: a denied caller may exit (and lose its /proc entry) the moment it is answered.
        let pid = quietlyAllowed ? 0 : namespacePid(hostPid)
        // What we read may belong to a task that is gone and a recycled PID: only answer a live notification.
        guard seccomp_notify_id_valid(listener, notification.id) == 0 else { return }

        // An allowed call is performed by the supervisor with what it read (CallEmulator): the kernel never reads
        // the caller's memory again after the decision.
        var performed: TraceEvent.Performed? = nil
        var returnValue: Int64 = 0
        if decision.action == .allowed && decision.rule != .launch && !quietlyAllowed, let emulator {
            // The sink's socket for the destination exists before the call is performed with the address read once
            // (the same bytes the decision saw; a racing thread changing its copy changes nothing here).
            if decision.emulated, let network, let socket = operands.descriptor, let address = operands.sockaddr {
                SeccompNotifier.prepare(network, socket: socket, address: address)
            }
            let policy = self.policy
            let caller = CallEmulator.Caller(id: notification.id, hostTid: hostPid, status: nil)
            switch emulator.perform(
                name, args, operands, trace: &decoded, caller: caller, recheck: { policy.decide(name, args, $0) })
            {
            case .passThrough:
                if name == "execve" || name == "execveat" { decoded.continued = true }
            case .refused(let d):
                decision = d
            case .returned(let v):
                performed = .returned(v)
                returnValue = v
            case .failed(let e):
                performed = .failed(Errno(e).name)
                decision = Decision(action: .allowed, errno: e, rule: decision.rule)
            }
        }

        if decision.action == .killed {
            // The whole process goes (KILL_THREAD included): a pidfd where the caller leads its thread group, else
            // kill(2) on its TID, which the pending notification keeps from being reused.
            let victim = airlock_pidfd_open(hostPid)
            if victim >= 0 {
                if seccomp_notify_id_valid(listener, notification.id) == 0 {
                    _ = airlock_pidfd_send_signal(victim, SIGKILL)
                }
                FileDescriptor(victim).close()
            } else if seccomp_notify_id_valid(listener, notification.id) == 0 {
                _ = kill(hostPid, SIGKILL)
            }
        }
        UnsafeMutableRawPointer(response).initializeMemory(as: UInt8.self, repeating: 0, count: responseSize)
        response.pointee.id = notification.id
        switch decision.action {
        case .allowed where performed != nil:
            if case .failed = performed {
                response.pointee.error = -decision.errno
            } else {
                response.pointee.val = returnValue
            }
        case .allowed:
            response.pointee.flags = UInt32(SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        case .denied, .killed:
            response.pointee.error = -decision.errno
        }
        _ = seccomp_notify_respond(listener, response)

        seq += 1
        let phaseName = phases.isEmpty ? nil : phases[phase]
        if decision.rule == .launch && launchedProcess == nil { launchedProcess = (hostPid, pid) }
        if quietlyAllowed {
            recorder.countQuiet()
            return
        }
        recorder.record(
            TraceEvent(
                seq: seq, timeNs: time, pid: pid, hostPid: hostPid, syscall: name,
                action: decision.action, errno: decision.action == .allowed ? nil : Errno(decision.errno).name,
                rule: decision.rule, phase: phaseName, args: decoded, performed: performed
            ))
    }

    /// Asks the sink for a listener (stream socket) or bound socket (datagram socket) on the port of `address`, an
    /// inet or inet6 socket address.
    private static func prepare(_ network: NetworkSink, socket: Int32, address: [UInt8]) {
        guard address.count >= 4 else { return }
        let family = Int32(UInt16(address[0]) | UInt16(address[1]) << 8)
        // AF_UNSPEC on a datagram socket is sent as AF_INET by the kernel: served the same.
        guard family == AF_INET || family == AF_INET6 || family == AF_UNSPEC else { return }
        let port = UInt16(address[2]) << 8 | UInt16(address[3])
        var type: Int32 = 0
        var size = socklen_t(4)
        guard getsockopt(socket, SOL_SOCKET, SO_TYPE, &type, &size) == 0, port != 0 else { return }
        if type == Int32(SOCK_STREAM.rawValue) {
            network.prepare(udp: false, port: port)
        } else if type == Int32(SOCK_DGRAM.rawValue) {
            network.prepare(udp: true, port: port)
        }
    }

    /// Answers a clock call (`ClockEmulator.answer`) once the notification is known to be live: the answer may write
    /// into the caller's memory.
    private func answer(_ clock: ClockEmulator, _ id: UInt64, _ name: String, _ args: [UInt64], _ hostPid: pid_t) {
        guard let response, seccomp_notify_id_valid(listener, id) == 0 else { return }
        let answer = clock.answer(name, args, memory: CallerMemory(hostTid: hostPid))
        UnsafeMutableRawPointer(response).initializeMemory(as: UInt8.self, repeating: 0, count: responseSize)
        response.pointee.id = id
        switch answer {
        case .value(let v): response.pointee.val = v
        case .error(let e): response.pointee.error = -e
        case .proceed: response.pointee.flags = UInt32(SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        }
        _ = seccomp_notify_respond(listener, response)
        clock.afterAnswer()
    }

    /// Replaces the phases the command may announce (a held sandbox's work decides them, `SandboxHold.Release`): the
    /// current phase stays current, and must be among `next`; nothing changes otherwise.
    func replacePhases(_ next: [String]) {
        guard !phases.isEmpty, let index = next.firstIndex(of: phases[phase]) else { return }
        phases = next
        phase = index
    }

    /// A phase announcement: phases only move forward, so code inside cannot move its own behaviour back into
    /// `startup` (which would make it look like the runtime's). The marker open fails with ENOENT either way.
    private func announce(_ name: String) -> Decision {
        guard let index = phases.firstIndex(of: name) else {
            return Decision(action: .denied, errno: ENOENT, rule: .phaseUnknown)
        }
        guard index > phase else {
            return Decision(action: .denied, errno: ENOENT, rule: .phaseRegression)
        }
        phase = index
        return Decision(action: .denied, errno: ENOENT, rule: .phase)
    }

    /// The caller's PID inside its namespace, from the last field of `NSpid:` in /proc/PID/status.
    private func namespacePid(_ hostPid: pid_t) -> pid_t {
        if let known = namespacePids[hostPid] { return known }
        guard let bytes = try? FileBytes.read("/proc/\(hostPid)/status", limit: 65536, what: "status") else { return 0 }
        let text = String(decoding: bytes, as: UTF8.self)
        var result: pid_t = 0
        for line in text.split(separator: "\n") where line.hasPrefix("NSpid:") {
            if let last = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last, let v = pid_t(last) {
                result = v
            }
        }
        // Bounded: a fork bomb must not grow the supervisor's memory without end.
        if namespacePids.count >= 4096 { namespacePids.removeAll(keepingCapacity: true) }
        namespacePids[hostPid] = result
        return result
    }
}
