import AirlockDaemon
import AirlockJSON
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif


struct DaemonTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One `airlockd` started by a test on a socket in a fresh directory; `stop` (also on deinit) SIGKILLs it if it is
/// still running and removes the directory.
final class TestDaemon: @unchecked Sendable {
    let dir: String
    let socket: String
    let process = Process()
    private let logPath: String
    private var stopped = false

    /// Starts `airlockd --socket DIR/airlockd.sock [--config DIR/config.json] ARGUMENTS` and waits until the socket
    /// accepts. `directory` reuses a directory (and its socket path) instead of making one.
    init(_ arguments: [String] = [], config: [String: Any]? = nil, directory: String? = nil) throws {
        if let directory {
            dir = directory
        } else {
            dir = "/tmp/airlockd-test-\(getpid())-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        chmod(dir, 0o755)  // other users (the uid 65534 client) must reach the socket inside
        socket = "\(dir)/airlockd.sock"
        logPath = "\(dir)/airlockd-\(UUID().uuidString.prefix(4)).log"
        var args = ["--socket", socket]
        if let config {
            let path = "\(dir)/config.json"
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
            args += ["--config", path]
        }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: airlockdBinary)
        process.arguments = args + arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()
        do {
            try waitUntilAccepting()
        } catch {
            stop()
            throw error
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// What the daemon wrote on stderr.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Polls until a connection to the socket succeeds.
    func waitUntilAccepting(timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard process.isRunning else {
                throw DaemonTestError("airlockd exited (\(process.terminationStatus)) before accepting: \(log)")
            }
            let fd = RawClient.connect(socket)
            if fd >= 0 {
                close(fd)
                return
            }
            usleep(20_000)
        }
        throw DaemonTestError("airlockd did not accept on \(socket) within \(timeout) s: \(log)")
    }

    /// Waits up to `timeout` seconds for the process to exit; whether it did.
    func waitForExit(timeout: Double) -> Bool {
        waitFor(timeout) { !process.isRunning }
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }

    deinit { stop() }
}

/// Runs `body` with the samples of detonations.py and an airlockd started with `arguments` and `config`, which is
/// stopped before the samples are removed and their bait checked.
func withDetonationDaemon(_ arguments: [String] = [], config: [String: Any]? = nil, _ body: (_ dir: String, _ daemon: TestDaemon) throws -> Void) throws {
    try ProbeTests.withSamples("detonations.py") { dir, _ in
        let daemon = try TestDaemon(arguments, config: config)
        defer { daemon.stop() }
        try body(dir, daemon)
    }
}

/// Runs the CLI with `$AIRLOCK_SOCKET` set for it alone (not in this process: other suites run the CLI locally).
func runCLI(_ arguments: [String], socketVariable: String) throws -> (status: Int32, stdout: String, stderr: String) {
    try runProgram(airlockBinary, arguments, environment: ["AIRLOCK_SOCKET": socketVariable])
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
@discardableResult
func waitFor(_ timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if condition() { return true }
        if Date() >= deadline { return false }
        usleep(20_000)
    }
}

/// The client side of the protocol by hand, for what DaemonClient would never send.
enum RawClient {
    /// A connected Unix socket, or -1 (errno set).
    static func connect(_ path: String) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            errno = e
            return -1
        }
        return fd
    }

    /// Send and receive timeouts.
    static func setTimeout(_ fd: Int32, _ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends all of `bytes`; false when the daemon closed (EPIPE, ECONNRESET) or the send timed out.
    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    /// One sendmsg of `bytes` with `fds` attached as SCM_RIGHTS; bytes sent or -1.
    static func send(_ sock: Int32, _ bytes: [UInt8], descriptors fds: [Int32]) -> Int {
        let header = MemoryLayout<cmsghdr>.size
        let align = MemoryLayout<Int>.size
        let dataLength = fds.count * MemoryLayout<Int32>.size
        var control = [UInt8](repeating: 0, count: header + (dataLength + align - 1) / align * align)
        control.withUnsafeMutableBytes { raw in
            var c = cmsghdr()
            c.cmsg_len = header + dataLength
            c.cmsg_level = SOL_SOCKET
            c.cmsg_type = Int32(SCM_RIGHTS)
            raw.storeBytes(of: c, as: cmsghdr.self)
            for (i, fd) in fds.enumerated() { raw.storeBytes(of: fd, toByteOffset: header + 4 * i, as: Int32.self) }
        }
        var data = bytes
        return data.withUnsafeMutableBytes { body in
            control.withUnsafeMutableBytes { ctl in
                var iov = iovec(iov_base: body.baseAddress, iov_len: body.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = ctl.baseAddress
                    msg.msg_controllen = ctl.count
                    return sendmsg(sock, &msg, Int32(MSG_NOSIGNAL))
                }
            }
        }
    }

    static func header(_ n: Int) -> [UInt8] {
        [
            UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8),
            UInt8(truncatingIfNeeded: n),
        ]
    }

    static func frame(_ body: [UInt8]) -> [UInt8] { header(body.count) + body }

    static func frame(_ text: String) -> [UInt8] { frame(Array(text.utf8)) }

    /// How reading ended.
    enum End: Equatable {
        /// EOF, or ECONNRESET after the daemon closed with our bytes unread.
        case closed
        case timeout
        case failed(Int32)
        /// A frame that is not a JSON object.
        case garbage
    }

    /// Reads exactly `count` bytes.
    static func readExactly(_ fd: Int32, _ count: Int) -> Result<[UInt8], EndError> {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .failure(EndError(end: .timeout)) }
            if n < 0 && errno == ECONNRESET { return .failure(EndError(end: .closed)) }
            if n < 0 { return .failure(EndError(end: .failed(errno))) }
            if n == 0 { return .failure(EndError(end: .closed)) }
            got += n
        }
        return .success(buffer)
    }

    struct EndError: Error { let end: End }

    /// The next message, or how reading ended.
    static func readMessage(_ fd: Int32) -> Result<[String: Any], EndError> {
        let header: [UInt8]
        switch readExactly(fd, 4) {
        case .success(let h): header = h
        case .failure(let e): return .failure(e)
        }
        let n = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard n > 0 && n <= 64 << 20 else { return .failure(EndError(end: .garbage)) }
        switch readExactly(fd, n) {
        case .success(let body):
            guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
                return .failure(EndError(end: .garbage))
            }
            return .success(object)
        case .failure(let e):
            return .failure(e)
        }
    }

    /// Every message until the connection ends (or `timeout` seconds pass with nothing).
    static func readAll(_ fd: Int32, timeout: Double) -> (messages: [[String: Any]], end: End) {
        setTimeout(fd, timeout)
        var messages: [[String: Any]] = []
        while true {
            switch readMessage(fd) {
            case .success(let m): messages.append(m)
            case .failure(let e): return (messages, e.end)
            }
        }
    }

    /// Sends one request and reads one reply.
    static func request(_ fd: Int32, _ json: String, timeout: Double = 10) -> [String: Any]? {
        setTimeout(fd, timeout)
        guard sendAll(fd, frame(json)) else { return nil }
        if case .success(let m) = readMessage(fd) { return m }
        return nil
    }
}

/// The error code of a reply, nil when it is `ok`.
func errorCode(_ reply: [String: Any]) -> String? {
    guard reply["ok"] as? Bool == false else { return nil }
    return (reply["error"] as? [String: Any])?["code"] as? String
}

/// A DaemonClient reply as Foundation objects.
func foundation(_ reply: [(String, JSON)]) -> [String: Any] {
    let text = JSON.object(reply).serialized()
    return ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]) ?? [:]
}

/// What one probe through the daemon came to.
struct ProbeOutcome: Sendable, CustomStringConvertible {
    /// nil when the reply was ok; the daemon's error code or DaemonClient's ("connect", "io", "timeout", …).
    var code: String?
    var message = ""
    var verdicts: [String] = []
    var rules: [String] = []
    /// From sending to the reply.
    var seconds: Double = 0
    /// When the reply (or error) arrived.
    var finished = Date()

    var description: String {
        code.map { "error \($0) after \(seconds) s: \(message)" } ?? "ok \(verdicts) \(rules) after \(seconds) s"
    }
}

/// Probes `path` through the daemon at `socket` with a fresh connection.
func probeThroughDaemon(_ socket: String, _ path: String, timeout: Double? = nil, client clientTimeout: Double = 60)
    -> ProbeOutcome
{
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return ProbeOutcome(code: "open", message: "cannot open \(path)") }
    defer { close(fd) }
    let start = Date()
    var params: [(String, JSON)] = [("name", .string(path))]
    if let timeout { params.append(("timeout", .double(timeout))) }
    do throws(ClientError) {
        let client = try DaemonClient(path: socket)
        let reply = foundation(try client.call("probe", params: params, descriptor: fd, timeout: clientTimeout))
        let reports = reply["reports"] as? [[String: Any]] ?? []
        return ProbeOutcome(
            code: nil,
            verdicts: reports.map { $0["verdict"] as? String ?? "?" },
            rules: reports.flatMap { ($0["findings"] as? [[String: Any]] ?? []).map { $0["rule"] as? String ?? "?" } },
            seconds: Date().timeIntervalSince(start)
        )
    } catch {
        return ProbeOutcome(code: error.code, message: error.message, seconds: Date().timeIntervalSince(start))
    }
}

/// The daemon's status through a fresh DaemonClient.
func daemonStatus(_ socket: String) throws -> [String: Any] {
    let client = try DaemonClient(path: socket)
    return foundation(try client.call("status", timeout: 10))["status"] as? [String: Any] ?? [:]
}

/// Results appended from many threads.
final class Collector<T: Sendable>: @unchecked Sendable {
    private let lock = NSCondition()
    private var items: [T] = []

    func append(_ item: T) {
        lock.lock()
        items.append(item)
        lock.broadcast()
        lock.unlock()
    }

    /// Waits until `count` items arrived or `timeout` seconds passed; returns what arrived.
    func wait(count: Int, timeout: Double) -> [T] {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while items.count < count && lock.wait(until: deadline) {}
        return items
    }

    var snapshot: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

/// Runs `body` on `count` threads started together; collects what each returns.
func onThreads<T: Sendable>(_ count: Int, into results: Collector<T>, _ body: @escaping @Sendable (Int) -> T) {
    let gate = DispatchSemaphore(value: 0)
    for i in 0..<count {
        let thread = Thread {
            gate.wait()
            results.append(body(i))
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    for _ in 0..<count { gate.signal() }
}

/// A host process: pid, parent, state (`R`, `S`, `Z`, …) and command line.
struct HostProcess {
    let pid: Int32
    let ppid: Int32
    let state: Character
    let cmdline: String
}

func hostProcess(_ pid: Int32) -> HostProcess? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 2, let state = fields[0].first, let ppid = Int32(fields[1]) else { return nil }
    let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
    return HostProcess(
        pid: pid, ppid: ppid, state: state, cmdline: String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self))
}

/// Every process below `root` (children, grandchildren, …).
func descendants(of root: Int32) -> [HostProcess] {
    let all = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).compactMap(
        hostProcess)
    var children: [Int32: [HostProcess]] = [:]
    for p in all { children[p.ppid, default: []].append(p) }
    var out: [HostProcess] = []
    var stack = [root]
    while let next = stack.popLast() {
        for c in children[next] ?? [] {
            out.append(c)
            stack.append(c.pid)
        }
    }
    return out
}

/// The sandboxed loaders (`python3 … /airlock/harness/load.py …`) under the daemon `pid`.
func loaders(under pid: Int32) -> [Int32] {
    descendants(of: pid).filter { $0.cmdline.contains("airlock/harness/load.py") && $0.state != "Z" }.map(\.pid)
}

/// Whether `pid` exists and is not a zombie.
func running(_ pid: Int32) -> Bool {
    guard let p = hostProcess(pid) else { return false }
    return p.state != "Z" && p.state != "X"
}

/// How many descriptors `pid` holds open.
func openDescriptors(_ pid: Int32) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
}

/// A `/proc/PID/status` field in kB (VmRSS, VmHWM).
func memoryKB(_ pid: Int32, _ field: String) -> Int {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") where line.hasPrefix("\(field):") {
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
    }
    return 0
}

/// Reproducible random bytes (SplitMix64).
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

/// airlockd end to end: the debug daemon on a socket in a fresh directory, asked by the CLI, by DaemonClient, by hand
/// and by another user; killed, its workers killed, stopped under load.
@Suite("airlockd", .serialized)
struct DaemonTests {
    /// Parses `airlock probe --format json` output: path → (verdict, sha256).
    static func verdicts(_ jsonLines: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in jsonLines.split(separator: "\n") {
            guard let r = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                let target = r["target"] as? [String: Any], let path = target["path"] as? String
            else {
                Issue.record("not a report: \(line.prefix(200))")
                continue
            }
            out[path] = "\(r["verdict"] as? String ?? "?") \(target["sha256"] as? String ?? "-")"
        }
        return out
    }

    @Test("the daemon gives the same verdict as a local probe for every sample model, and for hf_repo as a folder")
    func sameVerdicts() throws {
        try ProbeTests.withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            var isDir: ObjCBool = false
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { "\(dir)/\($0)" }
                .filter { FileManager.default.fileExists(atPath: $0, isDirectory: &isDir) && !isDir.boolValue }
            let folder = "\(dir)/hf_repo"
            #expect(files.count >= 20, "models.py wrote \(files.count) files")
            #expect(FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) && isDir.boolValue)

            let remote = try runCLI(
                ["--socket", daemon.socket, "probe", "--format", "json"] + files + [folder], timeout: 120)
            let local = try runCLI(["probe", "--format", "json"] + files + [folder], timeout: 120)
            let remoteVerdicts = DaemonTests.verdicts(remote.stdout)
            let localVerdicts = DaemonTests.verdicts(local.stdout)
            #expect(
                remote.status == local.status,
                "exit \(remote.status) through the daemon, \(local.status) locally: \(remote.stderr)")
            #expect(localVerdicts.count == files.count + 4, "\(localVerdicts.keys.sorted())")
            #expect(localVerdicts.keys.contains { $0.hasPrefix("\(folder)/") })
            for path in Set(localVerdicts.keys).union(remoteVerdicts.keys).sorted() {
                #expect(
                    remoteVerdicts[path] == localVerdicts[path],
                    "\(path): daemon \(remoteVerdicts[path] ?? "none"), local \(localVerdicts[path] ?? "none")")
            }
            // The same through $AIRLOCK_SOCKET, for the folder alone.
            let viaEnv = try runCLI(["probe", "--format", "json", folder], socketVariable: daemon.socket)
            let envVerdicts = DaemonTests.verdicts(viaEnv.stdout)
            #expect(envVerdicts.count == 4)
            for (path, v) in envVerdicts { #expect(localVerdicts[path] == v, "\(path) via $AIRLOCK_SOCKET") }
            let status = try daemonStatus(daemon.socket)
            #expect(status["requests"] as? Int == files.count + 2, "\(status)")
        }
    }

    @Test("100 concurrent clients, 2 workers and a queue of 128: every one answered, clean")
    func hundredClients() throws {
        try ProbeTests.withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon(["--max-concurrent", "2", "--queue", "128"])
            defer { daemon.stop() }
            let socket = daemon.socket
            let model = "\(dir)/benign.pt"
            let results = Collector<ProbeOutcome>()
            onThreads(100, into: results) { _ in probeThroughDaemon(socket, model, client: 120) }
            let done = results.wait(count: 100, timeout: 120)
            #expect(done.count == 100, "\(100 - done.count) clients never heard back")
            for outcome in done {
                #expect(outcome.code == nil && outcome.verdicts == ["clean"], "\(outcome)")
            }
            let status = try daemonStatus(socket)
            #expect((status["verdicts"] as? [String: Int])?["clean"] == 100, "\(status)")
            #expect(status["queueDepth"] as? Int == 0 && status["busyWorkers"] as? Int == 0, "\(status)")
        }
    }

    @Test("a queue of 1: the clients beyond it are told busy at once, none hangs, the accepted ones are answered")
    func smallQueue() throws {
        try withDetonationDaemon(["--max-concurrent", "2", "--queue", "1"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            let started = Date()
            onThreads(60, into: results) { _ in probeThroughDaemon(socket, model, timeout: 1.5, client: 60) }
            let done = results.wait(count: 60, timeout: 30)
            #expect(done.count == 60, "\(60 - done.count) clients hang")
            let busy = done.filter { $0.code == "busy" }
            let answered = done.filter { $0.code == nil }
            #expect(busy.count + answered.count == done.count, "\(done.filter { $0.code != nil && $0.code != "busy" })")
            #expect(busy.count >= 40, "only \(busy.count) busy replies")
            #expect(answered.count >= 2 && answered.count <= 20, "\(answered.count) answered")
            for outcome in busy { #expect(outcome.seconds < 3, "busy only after \(outcome.seconds) s") }
            for outcome in answered {
                #expect(outcome.verdicts == ["suspicious"] && outcome.rules.contains("dynamic.timeout"), "\(outcome)")
            }
            #expect(Date().timeIntervalSince(started) < 30)
            let status = try daemonStatus(socket)
            #expect((status["refused"] as? [String: Int])?["busy"] == busy.count, "\(status)")
        }
    }

    @Test("garbage on the socket: each connection gets an error reply or is closed, and the daemon keeps answering")
    func garbage() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        let socket = daemon.socket
        let codes: Set<String> = ["bad-request", "too-large", "unknown-method", "no-descriptor", "timeout"]
        usleep(100_000)
        let baseline = openDescriptors(daemon.pid)

        // Random bytes, then end of input: error replies only, then the connection ends.
        var random = SplitMix(state: 0xA1F)
        for round in 0..<30 {
            let fd = RawClient.connect(socket)
            #expect(fd >= 0)
            let length = round == 0 ? 3 : Int(random.next() % 16384) + 1
            var bytes = random.bytes(length)
            if round % 3 == 1 { bytes[0] = 0 }  // a length the daemon may accept, then a body it must parse
            RawClient.setTimeout(fd, 5)
            RawClient.sendAll(fd, bytes)
            shutdown(fd, Int32(SHUT_WR))
            let (messages, end) = RawClient.readAll(fd, timeout: 5)
            #expect(end == .closed, "random round \(round): \(end)")
            for m in messages { #expect(errorCode(m).map(codes.contains) == true, "random round \(round): \(m)") }
            close(fd)
        }

        // A length of 0: bad-request, then closed.
        do {
            let fd = RawClient.connect(socket)
            RawClient.sendAll(fd, [0, 0, 0, 0] + Array("{}".utf8))
            let (messages, end) = RawClient.readAll(fd, timeout: 5)
            #expect(messages.count == 1 && errorCode(messages[0]) == "bad-request", "\(messages)")
            #expect(end == .closed)
            close(fd)
        }

        // 64 MiB of text on one line: its first four bytes are a huge length: too-large, then closed (the rest is
        // not read).
        do {
            let fd = RawClient.connect(socket)
            RawClient.setTimeout(fd, 10)
            let start = Date()
            var line = [UInt8](repeating: UInt8(ascii: "A"), count: 64 << 20)
            line[line.count - 1] = UInt8(ascii: "\n")
            let all = RawClient.sendAll(fd, line)
            #expect(!all, "the daemon read all 64 MiB")
            let (messages, end) = RawClient.readAll(fd, timeout: 5)
            #expect(messages.count == 1 && errorCode(messages[0]) == "too-large", "\(messages)")
            #expect(end == .closed)
            #expect(Date().timeIntervalSince(start) < 10)
            close(fd)
        }

        // A truncated frame, then the client leaves: nothing to answer, nothing breaks.
        do {
            let fd = RawClient.connect(socket)
            RawClient.sendAll(fd, RawClient.header(100) + Array("{\"airlock\":1,".utf8))
            close(fd)
            let fd2 = RawClient.connect(socket)
            RawClient.sendAll(fd2, RawClient.header(100) + Array("{\"airlock\":1,".utf8))
            shutdown(fd2, Int32(SHUT_WR))
            let (messages, end) = RawClient.readAll(fd2, timeout: 5)
            #expect(messages.isEmpty && end == .closed, "\(messages) \(end)")
            close(fd2)
        }

        // Invalid JSON, a wrong version, an unknown method, a probe without a descriptor: error replies that keep the
        // connection usable.
        do {
            let fd = RawClient.connect(socket)
            defer { close(fd) }
            let bad = RawClient.request(fd, "{\"airlock\":1,\"id\":1,\"method\":")
            #expect(bad.flatMap(errorCode) == "bad-request", "\(String(describing: bad))")
            let notObject = RawClient.request(fd, "[1,2,3]")
            #expect(notObject.flatMap(errorCode) == "bad-request", "\(String(describing: notObject))")
            let version = RawClient.request(fd, "{\"airlock\":2,\"id\":\"v\",\"method\":\"status\"}")
            #expect(
                version.flatMap(errorCode) == "bad-request" && version?["id"] as? String == "v",
                "\(String(describing: version))")
            let unknown = RawClient.request(fd, "{\"airlock\":1,\"id\":3,\"method\":\"detonate-everything\"}")
            #expect(
                unknown.flatMap(errorCode) == "unknown-method" && unknown?["id"] as? Int == 3,
                "\(String(describing: unknown))")
            let status = RawClient.request(fd, "{\"airlock\":1,\"id\":4,\"method\":\"status\"}")
            #expect(
                status?["ok"] as? Bool == true && status?["id"] as? Int == 4 && status?["status"] is [String: Any],
                "status after unknown-method: \(String(describing: status))")
            let noFD = RawClient.request(
                fd, "{\"airlock\":1,\"id\":5,\"method\":\"probe\",\"params\":{\"name\":\"x\"}}")
            #expect(
                noFD.flatMap(errorCode) == "no-descriptor" && noFD?["id"] as? Int == 5, "\(String(describing: noFD))")
            let scanNoFD = RawClient.request(fd, "{\"airlock\":1,\"id\":6,\"method\":\"scan\"}")
            #expect(scanNoFD.flatMap(errorCode) == "no-descriptor", "\(String(describing: scanNoFD))")
            let metrics = RawClient.request(fd, "{\"airlock\":1,\"id\":7,\"method\":\"metrics\"}")
            #expect((metrics?["metrics"] as? String)?.contains("airlockd_requests_total") == true)
        }

        // DaemonClient's probe without a descriptor.
        do {
            let client = try DaemonClient(path: socket)
            let error = #expect(throws: ClientError.self) {
                try client.call("probe", params: [("name", .string("x"))], timeout: 10)
            }
            #expect(error?.code == "no-descriptor", "\(String(describing: error))")
        }

        // Descriptors: two on a probe, five on a probe, a pipe, one on a status request.
        do {
            let path = "\(daemon.dir)/one-byte"
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
            let file = open(path, O_RDONLY | O_CLOEXEC)
            defer { close(file) }
            var pipeFDs: [Int32] = [-1, -1]
            #expect(pipe(&pipeFDs) == 0)
            defer { for fd in pipeFDs { close(fd) } }

            let fd = RawClient.connect(socket)
            defer { close(fd) }
            RawClient.setTimeout(fd, 10)
            let probe = RawClient.frame("{\"airlock\":1,\"id\":1,\"method\":\"probe\",\"params\":{\"name\":\"two\"}}")
            #expect(RawClient.send(fd, probe, descriptors: [file, file]) == probe.count)
            let two = try? RawClient.readMessage(fd).get()
            #expect(two.flatMap(errorCode) == "no-descriptor", "\(String(describing: two))")
            let status = RawClient.frame("{\"airlock\":1,\"id\":2,\"method\":\"status\"}")
            #expect(RawClient.send(fd, status, descriptors: [file]) == status.count)
            let withFD = try? RawClient.readMessage(fd).get()
            #expect(withFD?["ok"] as? Bool == true, "\(String(describing: withFD))")
            let piped = RawClient.frame("{\"airlock\":1,\"id\":3,\"method\":\"probe\",\"params\":{\"name\":\"pipe\"}}")
            #expect(RawClient.send(fd, piped, descriptors: [pipeFDs[0]]) == piped.count)
            let pipeReply = try? RawClient.readMessage(fd).get()
            #expect(
                pipeReply.flatMap(errorCode) == "bad-request" && pipeReply?["id"] as? Int == 3,
                "\(String(describing: pipeReply))")
            let scan = RawClient.frame(
                "{\"airlock\":1,\"id\":4,\"method\":\"scan\",\"params\":{\"name\":\"one-byte\"}}")
            #expect(RawClient.send(fd, scan, descriptors: [file]) == scan.count)
            let scanned = try? RawClient.readMessage(fd).get()
            #expect(
                scanned?["ok"] as? Bool == true && (scanned?["reports"] as? [Any])?.count == 1,
                "\(String(describing: scanned))")

            let many = RawClient.connect(socket)
            defer { close(many) }
            #expect(RawClient.send(many, probe, descriptors: [file, file, file, file, file]) == probe.count)
            let (messages, end) = RawClient.readAll(many, timeout: 5)
            #expect(messages.count == 1 && messages.first.flatMap(errorCode) == "bad-request", "\(messages)")
            #expect(end == .closed)
        }

        // 200 idle connections held open; another client is still answered.
        do {
            var idle: [Int32] = []
            for _ in 0..<200 {
                let fd = RawClient.connect(socket)
                #expect(fd >= 0, "connection \(idle.count): errno \(errno)")
                if fd >= 0 { idle.append(fd) }
            }
            defer { for fd in idle { close(fd) } }
            // One of them with half a message.
            RawClient.sendAll(idle[0], RawClient.header(50) + [UInt8(ascii: "{")])
            let start = Date()
            let status = try daemonStatus(socket)
            #expect(Date().timeIntervalSince(start) < 5)
            #expect((status["connections"] as? Int ?? 0) >= 200, "\(status)")
        }

        #expect(daemon.process.isRunning, "airlockd died: \(daemon.log)")
        // Every descriptor that came with the garbage, and every connection, was closed.
        #expect(
            waitFor(3) { openDescriptors(daemon.pid) <= baseline },
            "airlockd holds \(openDescriptors(daemon.pid)) descriptors, \(baseline) at the start")
        let status = try daemonStatus(socket)
        #expect(status["version"] as? String != nil)
        let refused = status["refused"] as? [String: Int] ?? [:]
        #expect(
            refused["unknown-method"] == 1 && refused["too-large"] ?? 0 >= 1 && refused["no-descriptor"] == 4,
            "\(refused)")
    }

    @Test("idleTimeoutSeconds and ioTimeoutSeconds from --config: idle connections and half messages are closed")
    func idleTimeout() throws {
        let daemon = try TestDaemon(config: ["idleTimeoutSeconds": 1, "ioTimeoutSeconds": 1.5])
        defer { daemon.stop() }
        let socket = daemon.socket

        let silent = RawClient.connect(socket)
        let talker = RawClient.connect(socket)
        let partial = RawClient.connect(socket)
        defer { for fd in [silent, talker, partial] { close(fd) } }
        #expect(RawClient.request(talker, "{\"airlock\":1,\"id\":1,\"method\":\"status\"}")?["ok"] as? Bool == true)
        RawClient.sendAll(partial, RawClient.header(100) + Array("{\"airlock\":".utf8))
        let start = Date()

        let (silentMessages, silentEnd) = RawClient.readAll(silent, timeout: 8)
        #expect(silentMessages.isEmpty && silentEnd == .closed, "\(silentMessages) \(silentEnd)")
        let waited = Date().timeIntervalSince(start)
        #expect(waited > 0.8 && waited < 4, "closed after \(waited) s")

        let (talkerMessages, talkerEnd) = RawClient.readAll(talker, timeout: 5)
        #expect(talkerMessages.isEmpty && talkerEnd == .closed, "\(talkerMessages) \(talkerEnd)")

        // A message that stopped half-way: timeout, then closed.
        let (partialMessages, partialEnd) = RawClient.readAll(partial, timeout: 6)
        #expect(
            partialMessages.count == 1 && partialMessages.first.flatMap(errorCode) == "timeout", "\(partialMessages)")
        #expect(partialEnd == .closed)

        // New connections are still served.
        #expect(try daemonStatus(socket)["version"] != nil)
    }

    @Test(
        "a client that sends requests and never reads the replies: the daemon stops reading it, stays small, drops it")
    func unreadReplies() throws {
        let daemon = try TestDaemon(config: ["ioTimeoutSeconds": 2])
        defer { daemon.stop() }
        let socket = daemon.socket
        let before = memoryKB(daemon.pid, "VmHWM")
        let fd = RawClient.connect(socket)
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        // Status requests as fast as the daemon takes them, for 2 s, never reading a reply.
        let chunk = [[UInt8]](repeating: RawClient.frame("{\"airlock\":1,\"id\":1,\"method\":\"status\"}"), count: 2000)
            .flatMap { $0 }
        var sent = 0
        let start = Date()
        flood: while Date().timeIntervalSince(start) < 2 {
            let n = chunk[(sent % chunk.count)...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            switch n {
            case 1...: sent += n
            case _ where errno == EAGAIN || errno == EINTR: usleep(1000)
            default: break flood
            }
        }
        // Others are still served.
        let other = Date()
        #expect(try daemonStatus(socket)["version"] != nil)
        #expect(Date().timeIntervalSince(other) < 2)
        let grown = memoryKB(daemon.pid, "VmHWM") - before
        #expect(
            grown < 16 << 10, "airlockd grew by \(grown / 1024) MiB holding the replies to \(sent) bytes of requests")
        // A client that does not take its replies is dropped after ioTimeoutSeconds.
        #expect(
            waitFor(5) { (try? daemonStatus(socket))?["connections"] as? Int == 1 },
            "the flooding client is still connected")
        #expect(daemon.process.isRunning)
    }

    @Test("a request sent behind a probe on the same connection is answered after it, however long the probe takes")
    func pipelined() throws {
        try withDetonationDaemon(config: ["ioTimeoutSeconds": 1, "idleTimeoutSeconds": 1]) { dir, daemon in
            let model = open("\(dir)/cpu_loop.pkl", O_RDONLY | O_CLOEXEC)
            defer { close(model) }
            let fd = RawClient.connect(daemon.socket)
            defer { close(fd) }
            // Each in a sendmsg of its own (docs/protocol.md): the probe with its descriptor, the status right behind.
            let probe = RawClient.frame(
                "{\"airlock\":1,\"id\":1,\"method\":\"probe\",\"params\":{\"name\":\"cpu_loop.pkl\",\"timeout\":2.5}}")
            let status = RawClient.frame("{\"airlock\":1,\"id\":2,\"method\":\"status\"}")
            #expect(RawClient.send(fd, probe, descriptors: [model]) == probe.count)
            #expect(RawClient.send(fd, status, descriptors: []) == status.count)
            RawClient.setTimeout(fd, 15)
            let first = try? RawClient.readMessage(fd).get()
            #expect(first?["id"] as? Int == 1 && first?["ok"] as? Bool == true, "\(String(describing: first))")
            let verdicts = (first?["reports"] as? [[String: Any]])?.map { $0["verdict"] as? String }
            #expect(verdicts == ["suspicious"], "\(String(describing: first))")
            let second = try? RawClient.readMessage(fd).get()
            #expect(second?["id"] as? Int == 2 && second?["status"] is [String: Any], "\(String(describing: second))")

            // 3000 requests in one go (more replies than the socket holds): all answered, in order.
            let burst = (0..<3000).flatMap {
                RawClient.frame("{\"airlock\":1,\"id\":\($0),\"method\":\"\($0 % 2 == 0 ? "status" : "metrics")\"}")
            }
            let writer = Collector<Bool>()
            onThreads(1, into: writer) { _ in RawClient.sendAll(fd, burst) }
            var ids: [Int] = []
            while ids.count < 3000, case .success(let m) = RawClient.readMessage(fd) {
                ids.append(m["id"] as? Int ?? -1)
            }
            #expect(ids == Array(0..<3000), "\(ids.count) replies")
            #expect(writer.wait(count: 1, timeout: 5) == [true])
        }
    }

    @Test("maxConnections from --config: the connection beyond it is told busy and closed")
    func maxConnections() throws {
        let daemon = try TestDaemon(config: ["maxConnections": 5])
        defer { daemon.stop() }
        var open: [Int32] = []
        defer { for fd in open { close(fd) } }
        for i in 0..<5 {
            let fd = RawClient.connect(daemon.socket)
            open.append(fd)
            #expect(
                RawClient.request(fd, "{\"airlock\":1,\"id\":\(i),\"method\":\"status\"}")?["ok"] as? Bool == true,
                "connection \(i)")
        }
        let extra = RawClient.connect(daemon.socket)
        defer { close(extra) }
        let (messages, end) = RawClient.readAll(extra, timeout: 5)
        #expect(messages.count == 1 && messages.first.flatMap(errorCode) == "busy", "\(messages)")
        #expect(end == .closed)
        close(open.removeLast())
        #expect(waitFor(3) { (try? daemonStatus(daemon.socket))?["version"] != nil }, "no room again after one left")
    }

    @Test(
        "the socket path: a live daemon's socket is not taken over, a file that is not a socket is not removed, no daemon is an error"
    )
    func socketPath() throws {
        let first = try TestDaemon()
        defer { first.stop() }
        let second = Process()
        second.executableURL = URL(fileURLWithPath: airlockdBinary)
        second.arguments = ["--socket", first.socket]
        let err = Pipe()
        second.standardError = err
        second.standardOutput = FileHandle.nullDevice
        try second.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        second.waitUntilExit()
        #expect(
            second.terminationStatus != 0 && text.contains("another airlockd is listening"),
            "\(second.terminationStatus) \(text)")
        #expect(try daemonStatus(first.socket)["version"] != nil, "the first daemon lost its socket")

        let plain = "\(first.dir)/not-a-socket"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: plain))
        let third = Process()
        third.executableURL = URL(fileURLWithPath: airlockdBinary)
        third.arguments = ["--socket", plain]
        let err3 = Pipe()
        third.standardError = err3
        third.standardOutput = FileHandle.nullDevice
        try third.run()
        let text3 = String(decoding: err3.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        third.waitUntilExit()
        #expect(
            third.terminationStatus != 0 && text3.contains("is not a socket"), "\(third.terminationStatus) \(text3)")
        #expect((try? String(contentsOfFile: plain, encoding: .utf8)) == "keep me")

        // The CLI with a socket named and no daemon behind it: exit 2, no local fallback.
        let none = try runCLI(["--socket", "\(first.dir)/nobody-home.sock", "probe", plain])
        #expect(none.status == 2 && none.stdout.isEmpty && none.stderr.contains("cannot connect"), "\(none)")
    }

    @Test(
        "SIGTERM with a probe that outlasts shutdownGraceSeconds: its client is told shutting-down, exit 0, the sandbox dies"
    )
    func sigtermPastGrace() throws {
        try withDetonationDaemon(config: ["shutdownGraceSeconds": 1]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, model, timeout: 40, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 1 }, "the loader never ran")
            let tree = descendants(of: daemon.pid).map(\.pid)
            let signalled = Date()
            kill(daemon.pid, SIGTERM)
            let done = results.wait(count: 1, timeout: 10)
            #expect(done.count == 1, "the client hangs")
            if let outcome = done.first {
                #expect(outcome.code == "shutting-down", "\(outcome)")
                #expect(outcome.finished.timeIntervalSince(signalled) < 4, "\(outcome)")
            }
            #expect(daemon.waitForExit(timeout: 5), "airlockd still running")
            if !daemon.process.isRunning {
                #expect(
                    daemon.process.terminationReason == .exit && daemon.process.terminationStatus == 0, "\(daemon.log)")
            }
            #expect(waitFor(2) { tree.allSatisfy { !running($0) } }, "left behind: \(tree.filter(running))")
            #expect(access(socket, F_OK) != 0)
        }
    }

    /// A Python client run as another user: connects, sends a status request, prints `{"replies": […], "end": …}`.
    static let pythonClient = """
        import json, socket, struct, sys
        out = {"replies": [], "end": None}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(sys.argv[1])
        except OSError as e:
            print(json.dumps({"connectErrno": e.errno}))
            sys.exit(0)
        body = json.dumps({"airlock": 1, "id": 7, "method": "status"}).encode()
        try:
            s.sendall(struct.pack(">I", len(body)) + body)
        except OSError as e:
            out["sendErrno"] = e.errno
        def exact(n):
            b = b""
            while len(b) < n:
                c = s.recv(n - len(b))
                if not c:
                    raise EOFError
                b += c
            return b
        try:
            while True:
                n = struct.unpack(">I", exact(4))[0]
                out["replies"].append(json.loads(exact(n)))
                if sys.argv[2] == "one":
                    out["end"] = "stopped"
                    break
        except EOFError:
            out["end"] = "eof"
        except ConnectionResetError:
            out["end"] = "reset"
        except socket.timeout:
            out["end"] = "timeout"
        print(json.dumps(out))
        """

    /// A Python client run as another user that sends a probe with a descriptor of `sys.argv[2]` opened with the
    /// flags named in `sys.argv[3]` ("path": O_PATH, "write": O_WRONLY, "read": O_RDONLY, "dir"), as the method in
    /// `sys.argv[4]` (default probe); prints the reply.
    static let pythonDescriptorClient = """
        import json, os, socket, struct, sys
        flags = {"path": os.O_PATH, "write": os.O_WRONLY, "read": os.O_RDONLY, "dir": os.O_RDONLY | os.O_DIRECTORY}[sys.argv[3]]
        method = sys.argv[4] if len(sys.argv) > 4 else "probe"
        try:
            fd = os.open(sys.argv[2], flags)
        except OSError as e:
            print(json.dumps({"openErrno": e.errno}))
            sys.exit(0)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(sys.argv[1])
        body = json.dumps({"airlock": 1, "id": 9, "method": method, "params": {"name": "secret"}}).encode()
        socket.send_fds(s, [struct.pack(">I", len(body)) + body], [fd])
        def exact(n):
            b = b""
            while len(b) < n:
                c = s.recv(n - len(b))
                if not c:
                    raise EOFError
                b += c
            return b
        n = struct.unpack(">I", exact(4))[0]
        print(json.dumps(json.loads(exact(n))))
        """

    /// Runs the Python client as uid/gid 65534 without supplementary groups.
    static func runAsNobody(
        _ socket: String, _ mode: String, groups: String? = nil, code: String = pythonClient, _ extra: [String] = []
    ) throws -> [String: Any] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments =
            ["--reuid", "65534", "--regid", "65534"] + (groups.map { ["--groups", $0] } ?? ["--clear-groups"])
            + ["/usr/bin/python3", "-I", "-c", code, socket, mode] + extra
        p.currentDirectoryURL = URL(fileURLWithPath: "/")
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "client as 65534: \(errText)")
        guard let result = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DaemonTestError("client as 65534 printed \(String(decoding: data, as: UTF8.self)) \(errText)")
        }
        return result
    }

    @Test("uid 65534 is refused with forbidden and nothing else; --allow-uid 65534 lets it in")
    func peerCheck() throws {
        do {
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            var st = stat()
            #expect(
                lstat(daemon.socket, &st) == 0 && st.st_mode & 0o777 == 0o600 && st.st_uid == 0,
                "socket mode \(String(st.st_mode & 0o777, radix: 8))")
            // Let the kernel allow the connect, so that SO_PEERCRED is what refuses.
            chmod(daemon.socket, 0o666)
            let result = try DaemonTests.runAsNobody(daemon.socket, "all")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(replies.count == 1, "\(result)")
            #expect(replies.first.flatMap(errorCode) == "forbidden", "\(result)")
            #expect(replies.first?["status"] == nil)
            #expect(["eof", "reset"].contains(result["end"] as? String ?? ""), "\(result)")
            #expect(daemon.log.contains("refused a connection from uid 65534"), "\(daemon.log)")
            let status = try daemonStatus(daemon.socket)
            #expect((status["refused"] as? [String: Int])?["forbidden"] == 1, "\(status)")
        }
        // Groups: nobody's primary group, then a supplementary group (SO_PEERGROUPS).
        do {
            let daemon = try TestDaemon(["--allow-group", "nogroup"])
            defer { daemon.stop() }
            chmod(daemon.socket, 0o666)
            let result = try DaemonTests.runAsNobody(daemon.socket, "one")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(replies.count == 1 && replies.first?["ok"] as? Bool == true, "--allow-group nogroup: \(result)")
        }
        do {
            let daemon = try TestDaemon(["--allow-group", "users"])
            defer { daemon.stop() }
            chmod(daemon.socket, 0o666)
            let refused = try DaemonTests.runAsNobody(daemon.socket, "all")
            #expect((refused["replies"] as? [[String: Any]])?.first.flatMap(errorCode) == "forbidden", "\(refused)")
            let result = try DaemonTests.runAsNobody(daemon.socket, "one", groups: "100")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(replies.count == 1 && replies.first?["ok"] as? Bool == true, "supplementary group users: \(result)")
        }
        do {
            let daemon = try TestDaemon(["--allow-uid", "65534"])
            defer { daemon.stop() }
            chmod(daemon.socket, 0o666)
            let result = try DaemonTests.runAsNobody(daemon.socket, "one")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(
                replies.count == 1 && replies.first?["ok"] as? Bool == true && replies.first?["id"] as? Int == 7,
                "\(result)")
            #expect(replies.first?["status"] is [String: Any], "\(result)")
        }
    }

    @Test("a client cannot have the daemon read a file it cannot read: O_PATH and write-only descriptors are refused")
    func descriptorAccess() throws {
        // One worker: the walks as uid 65534 and root's run on the same thread.
        let daemon = try TestDaemon(["--allow-uid", "65534", "--max-concurrent", "1"])
        defer { daemon.stop() }
        chmod(daemon.socket, 0o666)
        // Root's file, readable by root only; writable by everyone, so that nobody can open it write-only.
        let secret = "\(daemon.dir)/secret.pkl"
        try Data("cos\nsystem\n(S'id'\ntR.".utf8).write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o622)
        let denied = try DaemonTests.runAsNobody(
            daemon.socket, secret, code: DaemonTests.pythonDescriptorClient, ["read"])
        #expect(denied["openErrno"] as? Int == Int(EACCES), "nobody could open the secret for reading: \(denied)")
        for flags in ["path", "write"] {
            let reply = try DaemonTests.runAsNobody(
                daemon.socket, secret, code: DaemonTests.pythonDescriptorClient, [flags])
            #expect(errorCode(reply) == "bad-request", "\(flags) descriptor: \(reply)")
            #expect(reply["reports"] == nil, "the daemon read the secret through a \(flags) descriptor: \(reply)")
        }
        // A readable descriptor is fine.
        chmod(secret, 0o644)
        let reply = try DaemonTests.runAsNobody(
            daemon.socket, secret, code: DaemonTests.pythonDescriptorClient, ["read"])
        #expect(reply["ok"] as? Bool == true && (reply["reports"] as? [Any])?.count == 1, "\(reply)")

        // A folder the client may list: inside it, only what the client could open itself is read.
        let folder = "\(daemon.dir)/folder"
        try FileManager.default.createDirectory(atPath: "\(folder)/private", withIntermediateDirectories: true)
        chmod(folder, 0o755)
        chmod("\(folder)/private", 0o700)
        for (name, mode) in [("public.pkl", 0o644), ("secret.pkl", 0o600), ("private/inner.pkl", 0o644)]
            as [(String, mode_t)]
        {
            try Data("cos\nsystem\n(S'id'\ntR.".utf8).write(to: URL(fileURLWithPath: "\(folder)/\(name)"))
            chmod("\(folder)/\(name)", mode)
        }
        for method in ["scan", "probe"] {
            let walked = try DaemonTests.runAsNobody(
                daemon.socket, folder, code: DaemonTests.pythonDescriptorClient, ["dir", method])
            let reports = walked["reports"] as? [[String: Any]] ?? []
            let byPath = Dictionary(reports.map { (($0["target"] as? [String: Any])?["path"] as? String ?? "?", $0) }) {
                a, _ in a
            }
            #expect(
                walked["ok"] as? Bool == true && byPath["secret/public.pkl"]?["verdict"] as? String == "malicious",
                "\(method): \(byPath.keys.sorted())")
            if method == "probe" {
                // Detonated with the daemon's rights: the sandbox started and the payload was caught at load.
                let rules = (byPath["secret/public.pkl"]?["findings"] as? [[String: Any]] ?? []).compactMap {
                    $0["rule"] as? String
                }
                #expect(rules.contains("dynamic.exec"), "\(String(describing: byPath["secret/public.pkl"]))")
            }
            let leaked = byPath["secret/secret.pkl"].flatMap { ($0["target"] as? [String: Any])?["sha256"] as? String }
            #expect(
                leaked == nil,
                "\(method): the daemon read a file uid 65534 may not read: \(String(describing: byPath["secret/secret.pkl"]))"
            )
            #expect(
                !byPath.keys.contains { $0.contains("inner.pkl") },
                "\(method): the daemon listed a folder uid 65534 may not list: \(byPath.keys.sorted())")
            #expect(
                byPath["secret/private"]?["verdict"] as? String == "error",
                "\(method): a folder the client cannot enter is an error report, not silently empty: \(byPath.keys.sorted())")
        }
        // Root's own folder scan still reads everything.
        let rootDescriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootDescriptor) }
        let client = try DaemonClient(path: daemon.socket)
        let all = foundation(
            try client.call("scan", params: [("name", .string("f"))], descriptor: rootDescriptor, timeout: 30))
        let paths = (all["reports"] as? [[String: Any]] ?? []).compactMap {
            ($0["target"] as? [String: Any])?["sha256"] as? String
        }
        #expect(paths.count == 3, "\(all)")
        let probed = foundation(
            try client.call("probe", params: [("name", .string("f"))], descriptor: rootDescriptor, timeout: 30))
        let detonated = (probed["reports"] as? [[String: Any]] ?? []).filter {
            ($0["findings"] as? [[String: Any]] ?? []).contains { $0["rule"] as? String == "dynamic.exec" }
        }
        #expect(detonated.count == 3, "\(probed)")
    }

    @Test("read leases: a file open for writing is refused as file-busy; while it is probed, a writer must wait")
    func leases() throws {
        try withDetonationDaemon() { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let writer = open("\(dir)/resnetish.pt", O_WRONLY | O_CLOEXEC)
            #expect(writer >= 0)
            let busy = probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 30)
            #expect(busy.code == "file-busy", "\(busy)")
            close(writer)
            let after = probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 30)
            #expect(after.code == nil && after.verdicts == ["clean"], "\(after)")

            let results = Collector<ProbeOutcome>()
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, model, timeout: 2, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 1 }, "the loader never ran")
            let blocked = open(model, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            let blockedErrno = errno
            if blocked >= 0 { close(blocked) }
            #expect(
                blocked < 0 && blockedErrno == EWOULDBLOCK,
                "a writer opened the file under probe (errno \(blockedErrno))")
            let done = results.wait(count: 1, timeout: 20)
            #expect(done.first?.code == nil && done.first?.verdicts == ["suspicious"], "\(done)")
            let free = open(model, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            #expect(free >= 0, "the lease outlived the probe (errno \(errno))")
            if free >= 0 { close(free) }
        }
    }

    @Test("a worker's sandboxed loader killed mid-probe: the client hears promptly, the daemon serves the next request")
    func workerKilled() throws {
        try withDetonationDaemon(["--max-concurrent", "2"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, model, timeout: 40, client: 60) }
            var found: [Int32] = []
            #expect(
                waitFor(15) {
                    found = loaders(under: daemon.pid)
                    return !found.isEmpty
                }, "no loader under airlockd")
            try #require(!found.isEmpty)
            usleep(300_000)  // well inside the load
            let killed = Date()
            for pid in found { kill(pid, SIGKILL) }
            let done = results.wait(count: 1, timeout: 15)
            try #require(done.count == 1, "the client never heard back")
            let outcome = done[0]
            #expect(
                outcome.finished.timeIntervalSince(killed) < 5,
                "answered \(outcome.finished.timeIntervalSince(killed)) s after the kill")
            if outcome.code == nil {
                #expect(outcome.verdicts.count == 1 && outcome.verdicts != ["clean"], "\(outcome)")
                #expect(outcome.rules.contains("dynamic.crashed"), "\(outcome)")
            }
            #expect(daemon.process.isRunning)
            let next = probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 30)
            #expect(next.code == nil && next.verdicts == ["clean"], "\(next)")
            #expect(loaders(under: daemon.pid).isEmpty)
        }
    }

    @Test(
        "airlockd SIGKILLed mid-probe: its sandboxes die with it, the client gets an error, a new daemon takes the socket"
    )
    func daemonKilled() throws {
        try withDetonationDaemon(["--max-concurrent", "2"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(2, into: results) { _ in probeThroughDaemon(socket, model, timeout: 40, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 2 }, "two loaders never ran")
            let tree = descendants(of: daemon.pid).map(\.pid)
            #expect(tree.count >= 4, "sandbox processes: \(tree)")
            let killed = Date()
            kill(daemon.pid, SIGKILL)
            let done = results.wait(count: 2, timeout: 10)
            #expect(done.count == 2, "\(2 - done.count) clients hang")
            for outcome in done {
                #expect(outcome.code != nil, "\(outcome)")
                #expect(outcome.finished.timeIntervalSince(killed) < 3, "\(outcome)")
            }
            let gone = waitFor(2) { tree.allSatisfy { !running($0) } }
            let left = tree.compactMap(hostProcess).filter { $0.state != "Z" }
            #expect(gone, "left behind: \(left.map { "\($0.pid) \($0.cmdline)" })")
            #expect(!tree.compactMap(hostProcess).contains { $0.state != "Z" && $0.cmdline.contains("load.py") })

            // The stale socket file is replaced by the next daemon.
            #expect(daemon.waitForExit(timeout: 5))
            let next = try TestDaemon(directory: daemon.dir)
            defer { next.stop() }
            let outcome = probeThroughDaemon(next.socket, "\(dir)/resnetish.pt", client: 30)
            #expect(outcome.code == nil && outcome.verdicts == ["clean"], "\(outcome)")
        }
    }

    @Test("SIGTERM under load: requests in flight answered, queued and new ones refused, exit 0, socket removed")
    func sigtermUnderLoad() throws {
        try withDetonationDaemon(["--max-concurrent", "3"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(3, into: results) { _ in probeThroughDaemon(socket, model, timeout: 3, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 3 }, "three loaders never ran")
            // A fourth waits in the queue.
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 60) }
            #expect(
                waitFor(5) { ((try? daemonStatus(socket))?["queueDepth"] as? Int) == 1 },
                "the fourth request never queued")
            // A connection made (and accepted: it is answered) before the signal, used after it.
            let early = try DaemonClient(path: socket)
            _ = try early.call("status", timeout: 10)

            kill(daemon.pid, SIGTERM)
            #expect(waitFor(2) { access(socket, F_OK) != 0 }, "the socket file is still there")
            let refused = RawClient.connect(socket)
            #expect(refused < 0, "a new connection was accepted after SIGTERM")
            if refused >= 0 { close(refused) }
            let fd = open("\(dir)/resnetish.pt", O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            let late = #expect(throws: ClientError.self) {
                try early.call("probe", params: [("name", .string("late"))], descriptor: fd, timeout: 10)
            }
            #expect(late?.code == "shutting-down", "\(String(describing: late))")

            let done = results.wait(count: 4, timeout: 20)
            #expect(done.count == 4, "\(4 - done.count) clients hang")
            let answered = done.filter { $0.code == nil }
            let stopped = done.filter { $0.code == "shutting-down" }
            #expect(answered.count == 3, "\(done)")
            for outcome in answered {
                #expect(outcome.verdicts == ["suspicious"] && outcome.rules.contains("dynamic.timeout"), "\(outcome)")
            }
            #expect(stopped.count == 1, "\(done)")

            #expect(daemon.waitForExit(timeout: 20), "airlockd still running after SIGTERM")
            if !daemon.process.isRunning {
                #expect(
                    daemon.process.terminationReason == .exit && daemon.process.terminationStatus == 0,
                    "exit \(daemon.process.terminationStatus) \(daemon.process.terminationReason == .exit ? "" : "(signal)"): \(daemon.log)"
                )
            }
            #expect(access(socket, F_OK) != 0)
            #expect(waitFor(2) { descendants(of: daemon.pid).isEmpty })
        }
    }

    @Test("airlock status --json counts requests and verdicts; --prometheus prints airlockd_requests_total")
    func status() throws {
        try ProbeTests.withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon(["--max-concurrent", "2", "--queue", "7"])
            defer { daemon.stop() }
            let socket = daemon.socket
            let probe = try runCLI([
                "--socket", socket, "probe", "--format", "json", "\(dir)/benign.pt", "\(dir)/evil.pt",
                "\(dir)/model.safetensors",
            ])
            #expect(probe.status == 1, "\(probe.stderr)")
            let scan = try runCLI(["--socket", socket, "scan", "--format", "json", "\(dir)/hf_repo"])
            #expect(scan.status == 1, "\(scan.stderr)")
            let fd = RawClient.connect(socket)
            _ = RawClient.request(fd, "{\"airlock\":1,\"id\":1,\"method\":\"nope\"}")
            close(fd)

            let json = try runCLI(["status", "--socket", socket, "--json"])
            #expect(json.status == 0, "\(json.stderr)")
            let status = try #require(
                (try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) as? [String: Any], "\(json.stdout)")
            #expect(status["requests"] as? Int == 5, "\(status)")
            let verdicts = status["verdicts"] as? [String: Int] ?? [:]
            // probe: clean, malicious, clean; scan of hf_repo: config.json and modeling_custom.py suspicious, the
            // weights clean.
            #expect(verdicts == ["clean": 4, "malicious": 1, "suspicious": 2, "error": 0], "\(verdicts)")
            #expect((status["refused"] as? [String: Int]) == ["unknown-method": 1], "\(status)")
            #expect(status["workers"] as? Int == 2 && status["queueCapacity"] as? Int == 7, "\(status)")
            #expect((status["latencyMs"] as? [String: Any])?["samples"] as? Int == 4, "\(status)")

            let prometheus = try runCLI(["status", "--socket", socket, "--prometheus"])
            #expect(prometheus.status == 0, "\(prometheus.stderr)")
            #expect(prometheus.stdout.contains("# TYPE airlockd_requests_total counter"))
            #expect(
                prometheus.stdout.contains("airlockd_requests_total{method=\"probe\",outcome=\"ok\"} 3"),
                "\(prometheus.stdout)")
            #expect(
                prometheus.stdout.contains("airlockd_requests_total{method=\"scan\",outcome=\"ok\"} 1"),
                "\(prometheus.stdout)")
            #expect(
                prometheus.stdout.contains("airlockd_verdicts_total{verdict=\"malicious\"} 1"), "\(prometheus.stdout)")

            let text = try runCLI(["status"], socketVariable: socket)
            #expect(text.status == 0 && text.stdout.contains("requests     5"), "\(text.stdout) \(text.stderr)")
        }
    }
}
