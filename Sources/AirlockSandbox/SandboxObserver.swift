import AirlockSystem
import AirlockTrace
#if canImport(Glibc)
    import Glibc
#endif

/// Asks the supervisor to watch what a command leaves running once its own work is done (`SandboxRequest.observation`).
///
/// The command says where it is with phase markers (`PhaseMarker`). Its work ends when it announces `endPhase`, or
/// when its process exits, whichever comes first. From then on the supervisor keeps the sandbox for at most
/// `windowSeconds` while anything else in it still runs, and records what it sees from outside: processes of the
/// sandbox's PID namespace other than PID 1 and the command, threads and timer signal handlers the command did not
/// have at `baselinePhase`, POSIX timers. Nothing of this is read from the command's own output.
public struct SandboxObservation: Sendable, Equatable {
    /// The phase at whose announcement the command's threads and signal handlers are taken as its own (the
    /// runtime's); anything added later is the model's.
    public var baselinePhase: String
    /// The phase that says the command's work is done.
    public var endPhase: String
    /// Longest time the sandbox is kept, after the work ended, while something else still runs. Nothing waits when
    /// nothing is left: the sandbox ends as soon as the command has exited and PID 1 has no child.
    public var windowSeconds: Double

    /// Creates an observation request.
    public init(baselinePhase: String, endPhase: String, windowSeconds: Double) {
        self.baselinePhase = baselinePhase
        self.endPhase = endPhase
        self.windowSeconds = windowSeconds
    }
}

/// Watches one sandbox from outside: the command's threads, signal handlers and timers, and the members of the
/// sandbox's PID namespace, read through the sandbox's own procfs (opened by the supervisor, through the command's
/// root, while the command is blocked announcing the baseline phase). The model cannot forge any of it: the kernel
/// writes these files, the mount tree cannot change (mounts are refused), and the descriptor is the supervisor's.
final class SandboxObserver {
    /// Most entries kept in `ObservationReport.left`.
    static let maxEntries = 64
    /// Most processes or threads looked at in one sweep (the profile's process limit is far lower).
    static let maxScan = 1024
    /// Timer signals whose handlers count as pending timers: SIGALRM, SIGVTALRM, SIGPROF.
    static let timerSignals: [Int32] = [SIGALRM, SIGVTALRM, SIGPROF]

    let config: SandboxObservation
    let procMount: String?
    private let start: UInt64
    private var procFd: Int32 = -1
    private var commandHostPid: pid_t = 0
    private var commandPid: pid_t = 0
    private var baselineTids: Set<Int32>? = nil
    private var baselineCaught: UInt64 = 0
    private var seen = Set<String>()
    private(set) var report = ObservationReport()

    /// `procMount` is where the profile mounts the sandbox's procfs (`/proc`), nil when it mounts none.
    init(config: SandboxObservation, procMount: String?, start: UInt64) {
        self.config = config
        self.procMount = procMount
        self.start = start
    }

    deinit { if procFd >= 0 { close(procFd) } }

    /// When the work ended: the end of the window is this plus `windowSeconds`.
    var workEnded: UInt64? { report.workEndedNs.map { start + $0 } }

    /// A phase was announced by the thread `hostPid` (still blocked in the announcing call); `command` is the
    /// command's host PID and PID in the sandbox, from its launch.
    func phase(_ name: String, announcer hostPid: pid_t, command: (host: pid_t, inside: pid_t)) {
        if commandHostPid == 0 && command.host > 0 {
            commandHostPid = command.host
            commandPid = command.inside
            openProc()
        }
        if name == config.baselinePhase && baselineTids == nil {
            baselineTids = Set(threads())
            baselineCaught = caughtSignals()
        }
        if name == config.endPhase && report.endAnnouncedNs == nil {
            // Only the command's main thread ends its work; an announcement from anywhere else is the model's own,
            // and the phase moving on does not stop the supervisor from treating the command as still at work.
            guard hostPid == commandHostPid else { return }
            let now = monotonicNow() - start
            report.endAnnouncedNs = now
            if report.workEndedNs == nil { report.workEndedNs = now }
            fireTimers(sweep(commandAlive: true))
        }
    }

    /// The command's process ended.
    func commandExited() {
        if report.workEndedNs == nil { report.workEndedNs = monotonicNow() - start }
    }

    /// Records what runs now besides PID 1 and the command (and, while it lives, what the command added); returns
    /// the timer signals the command has new handlers for.
    @discardableResult
    func sweep(commandAlive: Bool) -> [Int32] {
        for (pid, name) in processes() { note(.process, pid, name) }
        guard commandAlive else { return [] }
        if let base = baselineTids {
            for tid in threads() where !base.contains(tid) && tid != commandPid {
                note(.thread, tid, comm(command("task/\(tid)/comm")))
            }
        }
        let handlers = newTimerHandlers()
        for sig in handlers { note(.timer, commandPid, "\(SyscallDecoder.signalName(UInt64(sig))) handler") }
        let timers = posixTimers()
        if timers > 0 { note(.timer, commandPid, "\(timers) POSIX timer\(timers == 1 ? "" : "s")") }
        return handlers
    }

    /// PID 1 reported children left when the command ended. That comes from the kernel (PID 1 reaps every orphan of
    /// the namespace), so it holds even for a process too quick for the sweeps, or one that forks and exits in a
    /// loop to be never where a sweep looks.
    func processesRemained() {
        if !report.left.contains(where: { $0.kind == .process }) {
            note(.process, 0, "unidentified: PID 1 still had children")
        }
    }

    /// The window ended with something still running: a last look before the sandbox is killed.
    func expire(commandAlive: Bool) {
        sweep(commandAlive: commandAlive)
        if commandAlive { note(.command, commandPid, comm(command("comm"))) }
        report.windowExpired = true
    }

    // MARK: What the kernel shows

    private func note(_ kind: LeftBehind.Kind, _ pid: Int32, _ name: String) {
        guard seen.insert("\(kind.rawValue) \(pid) \(name)").inserted else { return }
        guard report.left.count < SandboxObserver.maxEntries else {
            report.leftDropped += 1
            return
        }
        report.left.append(LeftBehind(kind: kind, pid: pid, name: name, timeNs: monotonicNow() - start))
    }

    /// Opens the sandbox's procfs through the command's root. The path lies in the tree the supervisor built; the
    /// root is read-only and mounts are refused inside, so nothing in the sandbox can put something else there.
    private func openProc() {
        guard let procMount, procFd < 0 else { return }
        procFd = open("/proc/\(commandHostPid)/root\(procMount)", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
    }

    /// Live processes of the sandbox other than PID 1 and the command (zombies excluded), by PID inside, with their
    /// command names.
    private func processes() -> [(Int32, String)] {
        var out: [(Int32, String)] = []
        for pid in numericEntries(".") where pid != 1 && pid != commandPid {
            guard let stat = procRead("\(pid)/stat"), let paren = stat.lastIndex(of: UInt8(ascii: ")")) else {
                continue
            }
            let state = stat[(paren + 1)...].first { $0 != UInt8(ascii: " ") }
            if state == UInt8(ascii: "Z") || state == UInt8(ascii: "X") { continue }
            out.append((pid, comm("\(pid)/comm")))
        }
        return out
    }

    private func threads() -> [Int32] { numericEntries(command("task")) }

    /// A file of the command's below the sandbox's procfs, or the host's when the profile mounts none (thread ids are
    /// then the host's).
    private func command(_ file: String) -> String {
        procFd >= 0 ? "\(commandPid)/\(file)" : "/proc/\(commandHostPid)/\(file)"
    }

    /// Signals the command has handlers for (`SigCgt`), as a bit mask (bit N-1 for signal N).
    private func caughtSignals() -> UInt64 {
        guard let status = procRead(command("status")) else { return 0 }
        return status.withUnsafeBufferPointer { bytes -> UInt64 in
            let key: StaticString = "\nSigCgt:"
            let k = key.utf8Start, n = key.utf8CodeUnitCount
            var i = 0
            while i + n <= bytes.count {
                if memcmp(bytes.baseAddress! + i, k, n) == 0 { break }
                i += 1
            }
            var mask: UInt64 = 0
            i += n
            while i < bytes.count {
                let byte = bytes[i]
                i += 1
                if byte == UInt8(ascii: "\t") || byte == UInt8(ascii: " ") { continue }
                guard let digit = hexDigit(byte) else { break }
                mask = mask << 4 | digit
            }
            return mask
        }
    }

    private func hexDigit(_ byte: UInt8) -> UInt64? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte - UInt8(ascii: "a") + 10)
        default: nil
        }
    }

    private func newTimerHandlers() -> [Int32] {
        guard baselineTids != nil else { return [] }
        let added = caughtSignals() & ~baselineCaught
        return SandboxObserver.timerSignals.filter { added & (1 << UInt64($0 - 1)) != 0 }
    }

    private func posixTimers() -> Int {
        guard let text = procRead(command("timers")) else { return 0 }
        return String(decoding: text, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("ID:") }.count
    }

    /// Fast-forwards the timers whose handlers the model installed: the supervisor sends the signal itself while
    /// the command's main thread is still blocked announcing the end, so the handler runs as soon as it returns,
    /// under observation, whatever the harness (which the model can patch) does afterwards.
    private func fireTimers(_ handlers: [Int32]) {
        for sig in handlers where kill(commandHostPid, sig) == 0 {
            report.firedSignals.append(SyscallDecoder.signalName(UInt64(sig)))
        }
    }

    private func comm(_ path: String) -> String {
        guard let bytes = procRead(path) else { return "?" }
        return String(decoding: bytes.prefix(64), as: UTF8.self).trimmingWhitespace()
    }

    /// Reads a small file below the sandbox's procfs (an absolute path: the host's).
    private func procRead(_ path: String) -> [UInt8]? {
        guard procFd >= 0 || path.hasPrefix("/") else { return nil }
        let relativeTo = procFd >= 0 ? FileDescriptor(procFd) : nil
        guard let fd = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW, relativeTo: relativeTo) else { return nil }
        defer { fd.close() }
        var buffer = [UInt8](repeating: 0, count: 8192)
        var n = 0
        while n < buffer.count {
            let got = buffer.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress! + n, $0.count - n) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { break }
            n += got
        }
        return Array(buffer[0..<n])
    }

    /// Numeric names in a directory below the sandbox's procfs (an absolute path: the host's), at most `maxScan`.
    private func numericEntries(_ path: String) -> [Int32] {
        guard procFd >= 0 || path.hasPrefix("/") else { return [] }
        let fd = openat(procFd >= 0 ? procFd : AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        guard let dir = fdopendir(fd) else {
            close(fd)
            return []
        }
        defer { closedir(dir) }
        var out: [Int32] = []
        while out.count < SandboxObserver.maxScan, let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let n = Int32(name) { out.append(n) }
        }
        return out
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(
            drop { $0 == " " || $0 == "\t" || $0 == "\n" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\n" }
                .reversed())
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String { self[...].trimmingWhitespace() }
}
