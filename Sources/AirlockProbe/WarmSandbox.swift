public import AirlockSandbox
internal import AirlockAnalysis
internal import AirlockJSON
internal import AirlockSystem
internal import AirlockTrace

#if canImport(Glibc)
    import Glibc
#endif

/// Where a detonation may find a warm sandbox: airlockd's pool (`ProbeOptions.warmStart`).
public protocol WarmStartSource: AnyObject, Sendable {
    /// A ready warm sandbox for the runtime of `options` whose start-up `plan` serves (`ConsumerPlan.serves`), taken
    /// for one model, or nil (the detonation then starts cold at once: a caller never waits for a warm sandbox). The
    /// caller detonates with it exactly once.
    func take(for options: ProbeOptions, plan: ConsumerPlan) -> WarmSandbox?
}

/// A detonation sandbox started before its model (docs/sandbox.md, "Warm start"): built like any other (every
/// namespace, the profile's mounts, filter and limits, the runtime and the harness mounted read-only), its harness
/// has started the consumer's interpreter, imported some of the runtime's libraries (`template`, one of
/// `ConsumerPlan.templates`) in phase `startup`, and waits for one model on a socket that is its passed descriptor 5
/// (`serve.py` with `--wait fd:6` in its settings). It is a `SandboxHold`: until handed its model it may wait `idleSeconds`. It is used only
/// for a model whose plan imports at least those libraries (`ConsumerPlan.serves`), so its start-up is a cold one's.
///
/// `detonate` hands it the model: the harness's arguments (what a cold detonation's command line says) and the
/// model's sealed descriptor, in one message; the daemon's end of the socket is closed right after, and nothing is
/// ever read from it once a model is in the sandbox. The harness puts the model at descriptor 5 (closing the socket)
/// and goes on exactly as a cold detonation with those arguments. Each warm sandbox serves one model and ends with
/// it; one that dies or misbehaves before is never handed anything.
public final class WarmSandbox: @unchecked Sendable {
    /// How a warm sandbox ended, for its pool.
    public enum Ending: Sendable, Equatable {
        /// It loaded a model (whatever became of the detonation).
        case served
        /// It waited past its idle bound, or was discarded, before any model.
        case expired
        /// It could not be built, or ended on its own before any model: the message says how.
        case failed(String)
    }

    /// The runtime it serves (`WarmSandbox.key(_:)`).
    public let key: String
    /// The libraries its start-up imported.
    public let template: [String]
    /// When it was started (monotonic ns).
    public let startedNs: UInt64
    /// How long it may wait for its model, seconds.
    public let idleSeconds: Double
    private let hold: SandboxHold
    /// This sandbox's harness settings (markers, line prefix, folder), drawn when it starts: it serves one model.
    private let settings = HarnessSettings.draw()
    /// The pool's end of the socket (the other end is the sandbox's descriptor 5).
    private let channel: FileDescriptor
    private let monitor = Monitor()
    private var result: Result<SandboxResult, SandboxError>? = nil
    private var ready = false
    /// Its socket said something else than ready, or closed, before any model.
    private var misbehaved = false
    private var taken = false
    private var channelClosed = false

    /// The byte the harness sends once its start-up is over.
    static let readyByte = UInt8(ascii: "R")
    /// The harness's option that makes it wait for its model (`--wait fd:N` in its settings).
    static let waitOption = "--wait"
    /// A sandbox is not handed a model in the last moments of its idle bound: seconds kept in reserve.
    static let idleReserve = 5.0

    /// The key of the runtime `options` detonate with, and of the world they detonate in: the interpreter's command
    /// line and the world's name (a warm sandbox is started in its world: the clock, devices and environment are
    /// set at spawn).
    public static func key(_ options: ProbeOptions) -> String {
        ([options.runtime?.name ?? ""] + options.interpreter + [options.world?.name ?? ""]).joined(separator: "\u{0}")
    }

    /// Starts a warm sandbox for the runtime of `options` on a thread of its own that supervises it; `onEnd` is
    /// called on that thread once the sandbox is gone (after its detonation when it served one).
    public static func start(
        options: ProbeOptions, template: [String], idleSeconds: Double,
        onEnd: @escaping @Sendable (WarmSandbox, Ending) -> Void
    ) throws(SandboxError) -> WarmSandbox {
        let hold = try SandboxHold(idleSeconds: idleSeconds)
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw SandboxError(.supervisor, "socketpair for a warm sandbox", errno: .current)
        }
        let inside = FileDescriptor(ends[1])
        let warm = WarmSandbox(
            key: key(options), template: template, hold: hold, channel: FileDescriptor(ends[0]),
            idleSeconds: idleSeconds, world: options.drawWorld())
        let request: SandboxRequest
        let config: FileDescriptor
        do throws(SandboxError) {
            (request, config) = try warm.request(options: options, inside: inside)
        } catch {
            inside.close()
            warm.closeChannel()
            throw error
        }
        startThread { [warm] in
            let outcome = Result { () throws(SandboxError) in try Sandbox.run(request, program: options.program) }
            inside.close()
            config.close()
            let served = warm.finish(outcome)
            onEnd(warm, served)
        }
        return warm
    }

    /// The host this sandbox pretends to be, drawn when it starts (before its model is known).
    let world: HostWorld?

    private init(
        key: String, template: [String], hold: SandboxHold, channel: FileDescriptor, idleSeconds: Double,
        world: HostWorld?
    ) {
        self.world = world
        self.key = key
        self.template = template
        self.hold = hold
        self.channel = channel
        self.idleSeconds = idleSeconds
        startedNs = monotonicNs()
    }

    deinit { closeChannel() }

    /// The sandbox's request: the harness waiting on descriptor 6 (its settings on 5), with the template's libraries to import, and
    /// everything else as `Detonation.run` builds it.
    /// Also returns the settings' descriptor, which the caller closes once the sandbox is gone.
    private func request(
        options: ProbeOptions, inside: FileDescriptor
    ) throws(SandboxError) -> (SandboxRequest, FileDescriptor) {
        let imports = template
        let argv = options.serviceInterpreter + [settings.entryPoint]
        let arguments =
            [WarmSandbox.waitOption, HarnessProtocol.descriptorPrefix + String(HarnessSettings.descriptor + 1)]
            + (imports.isEmpty ? [] : [HarnessProtocol.importOption, imports.joined(separator: ",")])
        let config = try settings.descriptor(arguments: arguments)
        let mounts: [MountSpec]
        do throws(SandboxError) {
            mounts = try Detonation.mounts(options, settings: settings)
        } catch {
            config.close()
            throw error
        }
        var request = SandboxRequest(
            argv: argv, profile: options.profile, timeoutSeconds: options.timeoutSeconds, extraMounts: mounts,
            phases: HarnessPhase.sequence(probe: true).map(\.rawValue), passedFDs: [config, inside],
            observation: Detonation.observation(options),
            runtimeTrees: (options.runtime?.trees ?? []) + [settings.appDirectory], hold: hold)
        request.phaseMarkers = settings.phaseMarkers
        // Start-up as a cold detonation's: continued by the kernel, counted, not listed (its refusals are listed).
        request.quietPhase = HarnessPhase.startup.rawValue
        request.world = world
        request.identities = options.identities
        Detonation.disguise(&request)
        return (request, config)
    }

    /// Whether it can be handed a model now: its harness said it is ready, it still waits, and its idle bound is not
    /// about to pass. Reads the harness's ready byte without waiting; anything else on the socket, or its end, makes
    /// the sandbox unusable (`discard` it).
    public var isReady: Bool {
        monitor.locked { () -> Bool in
            guard !taken, !channelClosed, !misbehaved, hold.isWaiting else { return false }
            let age = Double(monotonicNs() - startedNs) / 1e9
            if age > idleSeconds - min(WarmSandbox.idleReserve, idleSeconds / 2) { return false }
            var bytes = [UInt8](repeating: 0, count: 16)
            let n = bytes.withUnsafeMutableBytes {
                recv(channel.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return ready }
            // Exactly one ready byte, once; anything else (more, other bytes, the end) is not a harness waiting.
            if n == 1 && bytes[0] == WarmSandbox.readyByte && !ready {
                ready = true
            } else {
                misbehaved = true
            }
            return ready && !misbehaved
        }
    }

    /// Whether it can no longer be used: handed a model, given up, or over.
    public var isUnusable: Bool { monitor.locked { taken || channelClosed || misbehaved || !hold.isWaiting } }

    /// Gives it up before any model: its supervisor kills it.
    public func discard() {
        monitor.locked { taken = true }
        hold.discard()
        closeChannel()
    }

    /// Detonates the file open as `fd` in this sandbox, as `Detonation.run` would cold. Nil when the sandbox could
    /// not take the model (it ended, or never reached `load`): the caller then detonates cold. Throws what sealing
    /// the model throws, as a cold detonation would.
    func detonate(
        fd: Int32, format: HarnessFormat, plan: ConsumerPlan, options: ProbeOptions
    ) throws(SandboxError) -> Detonation? {
        guard
            monitor.locked({ () -> Bool in
                defer { taken = true }
                return !taken
            })
        else { return nil }
        let started = StaticScanner.now()
        let phases = HarnessPhase.sequence(probe: options.probePhase)
        let argv = options.serviceInterpreter + [settings.entryPoint]
        let arguments = HarnessProtocol.arguments(
            format: format, descriptor: HarnessSettings.descriptor + 1, probe: options.probePhase,
            consumer: plan.consumer, imports: plan.imports, compression: plan.compression)
        let model = try ModelSeal.passableDescriptor(
            FileDescriptor(fd), profile: options.profile, identities: options.identities)
        defer { model.close() }
        let message = JSON.object([("arguments", .array(arguments.map(JSON.string)))]).serialized()
        let release = SandboxHold.Release(timeoutSeconds: options.timeoutSeconds, phases: phases.map(\.rawValue))
        guard hold.release(release) else {
            closeChannel()
            return nil
        }
        let sent = send(Array(message.utf8), descriptor: model.rawValue)
        closeChannel()
        if !sent { Log.write(.warning, "a warm sandbox could not be handed its model: \(Errno.current.text)") }
        let outcome = awaitResult()
        guard case .success(let result) = outcome, WarmSandbox.reachedLoad(result) else {
            Log.write(.warning, "a warm sandbox ended before it loaded its model: detonating cold")
            return nil
        }
        var detonation = Detonation(
            argv: argv, phases: phases, result: result, durationMs: StaticScanner.ms(since: started),
            runtime: options.runtime, linePrefix: settings.linePrefix, arguments: arguments)
        detonation.warm = true
        detonation.world = world
        return detonation
    }

    /// One message with the model's descriptor attached (SCM_RIGHTS), without waiting.
    private func send(_ bytes: [UInt8], descriptor: Int32) -> Bool {
        let header = MemoryLayout<cmsghdr>.size
        let align = MemoryLayout<Int>.size
        let payload = MemoryLayout<Int32>.size
        var control = [UInt8](repeating: 0, count: header + (payload + align - 1) / align * align)
        control.withUnsafeMutableBytes { raw in
            var c = cmsghdr()
            c.cmsg_len = header + payload
            c.cmsg_level = SOL_SOCKET
            c.cmsg_type = Int32(SCM_RIGHTS)
            raw.storeBytes(of: c, as: cmsghdr.self)
            raw.storeBytes(of: descriptor, toByteOffset: header, as: Int32.self)
        }
        var data = bytes
        let n = data.withUnsafeMutableBytes { body in
            control.withUnsafeMutableBytes { ctl in
                var iov = iovec(iov_base: body.baseAddress, iov_len: body.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = ctl.baseAddress
                    msg.msg_controllen = ctl.count
                    return sendmsg(channel.rawValue, &msg, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
            }
        }
        return n == bytes.count
    }

    private func closeChannel() {
        monitor.locked {
            if !channelClosed { channel.close() }
            channelClosed = true
        }
    }

    /// The sandbox's run ended (on its supervising thread): keeps the result for `detonate` and says how it ended.
    private func finish(_ outcome: Result<SandboxResult, SandboxError>) -> Ending {
        monitor.locked { () -> Ending in
            result = outcome
            monitor.broadcast()
            switch outcome {
            case .success(let run) where WarmSandbox.reachedLoad(run): return .served
            case .success(let run) where run.releasedNs != nil:
                return .failed("it ended after the handoff, before it loaded its model: detonated cold instead")
            case .success(let run) where run.timedOut || taken: return .expired
            case .success(let run):
                let how = run.exitCode.map { "exit code \($0)" } ?? run.signal ?? "no exit status"
                let said = String(decoding: run.stderr.suffix(300), as: UTF8.self)
                    .split(separator: "\n").suffix(2).joined(separator: " / ")
                return .failed("its harness ended before any model (\(how))\(said.isEmpty ? "" : ": \(said)")")
            case .failure(let error):
                return .failed("\(error)")
            }
        }
    }

    /// Whether the harness announced `load`: it took the model.
    static func reachedLoad(_ result: SandboxResult) -> Bool {
        result.trace.contains { $0.rule == .phase && $0.phase == HarnessPhase.load.rawValue }
    }

    private func awaitResult() -> Result<SandboxResult, SandboxError> {
        monitor.locked {
            while result == nil { monitor.wait() }
            return result!
        }
    }
}
