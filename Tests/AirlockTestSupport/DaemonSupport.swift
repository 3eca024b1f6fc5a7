import AirlockDaemon
package import AirlockJSON
package import Foundation

#if canImport(Glibc)
    import Glibc
#endif

package struct DaemonTestError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// One `airlockd` started by a test on a socket in a fresh directory; `stop` (also on deinit) SIGKILLs it if it is
/// still running and removes the directory.
package final class TestDaemon: @unchecked Sendable {
    package let dir: String
    package let socket: String
    package let process = Process()
    private let logPath: String
    private var stopped = false

    /// Starts `airlockd --socket DIR/airlockd.sock [--config DIR/config.json] ARGUMENTS` and waits until the socket
    /// accepts. `directory` reuses a directory (and its socket path) instead of making one; `binary` is the debug
    /// build's airlockd unless given (the release smoke test passes `.build/release/airlockd`).
    package init(
        _ arguments: [String] = [], config: [String: Any]? = nil, directory: String? = nil,
        binary: String = airlockdBinary
    ) throws {
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
        process.executableURL = URL(fileURLWithPath: binary)
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

    package var pid: Int32 { process.processIdentifier }

    /// What the daemon wrote on stderr.
    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Polls until a connection to the socket succeeds.
    package func waitUntilAccepting(timeout: Double = 30) throws {
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
    package func waitForExit(timeout: Double) -> Bool {
        waitFor(timeout) { !process.isRunning }
    }

    package func stop() {
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
package func withDetonationDaemon(
    _ arguments: [String] = [], config: [String: Any]? = nil,
    _ body: (_ dir: String, _ daemon: TestDaemon) throws -> Void
) throws {
    try withSamples("detonations.py") { dir, _ in
        let daemon = try TestDaemon(arguments, config: config)
        defer { daemon.stop() }
        try body(dir, daemon)
    }
}

/// Runs the CLI with `$AIRLOCK_SOCKET` set for it alone (not in this process: other suites run the CLI locally).
package func runCLI(_ arguments: [String], socketVariable: String) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    try runProgram(airlockBinary, arguments, environment: ["AIRLOCK_SOCKET": socketVariable])
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
@discardableResult
package func waitFor(_ timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if condition() { return true }
        if Date() >= deadline { return false }
        usleep(20_000)
    }
}

/// The client side of the protocol by hand, for what DaemonClient would never send.
package enum RawClient {
    /// A connected Unix socket, or -1 (errno set).
    package static func connect(_ path: String) -> Int32 {
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
    package static func setTimeout(_ fd: Int32, _ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends all of `bytes`; false when the daemon closed (EPIPE, ECONNRESET) or the send timed out.
    @discardableResult
    package static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
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
    package static func send(_ sock: Int32, _ bytes: [UInt8], descriptors fds: [Int32]) -> Int {
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

    package static func header(_ n: Int) -> [UInt8] {
        [
            UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8),
            UInt8(truncatingIfNeeded: n),
        ]
    }

    package static func frame(_ body: [UInt8]) -> [UInt8] { header(body.count) + body }

    package static func frame(_ text: String) -> [UInt8] { frame(Array(text.utf8)) }

    /// How reading ended.
    package enum End: Equatable {
        /// EOF, or ECONNRESET after the daemon closed with our bytes unread.
        case closed
        case timeout
        case failed(Int32)
        /// A frame that is not a JSON object.
        case garbage
    }

    /// Reads exactly `count` bytes.
    package static func readExactly(_ fd: Int32, _ count: Int) -> Result<[UInt8], EndError> {
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

    package struct EndError: Error { package let end: End }

    /// The next message, or how reading ended.
    package static func readMessage(_ fd: Int32) -> Result<[String: Any], EndError> {
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
    package static func readAll(_ fd: Int32, timeout: Double) -> (messages: [[String: Any]], end: End) {
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
    package static func request(_ fd: Int32, _ json: String, timeout: Double = 10) -> [String: Any]? {
        setTimeout(fd, timeout)
        guard sendAll(fd, frame(json)) else { return nil }
        if case .success(let m) = readMessage(fd) { return m }
        return nil
    }
}

/// The error code of a reply, nil when it is `ok`.
package func errorCode(_ reply: [String: Any]) -> String? {
    guard reply["ok"] as? Bool == false else { return nil }
    return (reply["error"] as? [String: Any])?["code"] as? String
}

/// A DaemonClient reply as Foundation objects.
package func foundation(_ reply: [(String, JSON)]) -> [String: Any] {
    let text = JSON.object(reply).serialized()
    return ((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]) ?? [:]
}

/// What one probe through the daemon came to.
package struct ProbeOutcome: Sendable, CustomStringConvertible {
    /// nil when the reply was ok; the daemon's error code or DaemonClient's ("connect", "io", "timeout", …).
    package var code: String?
    package var message = ""
    package var verdicts: [String] = []
    package var rules: [String] = []
    /// From sending to the reply.
    package var seconds: Double = 0
    /// When the reply (or error) arrived.
    package var finished = Date()

    package var description: String {
        code.map { "error \($0) after \(seconds) s: \(message)" } ?? "ok \(verdicts) \(rules) after \(seconds) s"
    }
}

/// Probes `path` through the daemon at `socket` with a fresh connection.
package func probeThroughDaemon(
    _ socket: String, _ path: String, timeout: Double? = nil, client clientTimeout: Double = 60
)
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
package func daemonStatus(_ socket: String) throws -> [String: Any] {
    let client = try DaemonClient(path: socket)
    return foundation(try client.call("status", timeout: 10))["status"] as? [String: Any] ?? [:]
}

/// Results appended from many threads.
package final class Collector<T: Sendable>: @unchecked Sendable {
    private let lock = NSCondition()
    private var items: [T] = []

    package init() {}

    package func append(_ item: T) {
        lock.lock()
        items.append(item)
        lock.broadcast()
        lock.unlock()
    }

    /// Waits until `count` items arrived or `timeout` seconds passed; returns what arrived.
    package func wait(count: Int, timeout: Double) -> [T] {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while items.count < count && lock.wait(until: deadline) {}
        return items
    }

    package var snapshot: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

/// Runs `body` on `count` threads started together; collects what each returns.
package func onThreads<T: Sendable>(_ count: Int, into results: Collector<T>, _ body: @escaping @Sendable (Int) -> T) {
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
package struct HostProcess {
    package let pid: Int32
    package let ppid: Int32
    package let state: Character
    package let cmdline: String
}

package func hostProcess(_ pid: Int32) -> HostProcess? {
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
package func descendants(of root: Int32) -> [HostProcess] {
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

/// Whether a host process is a sandboxed loader (`python3 /srv/NAME/serve.py`, its settings on a descriptor).
package func isLoader(_ p: HostProcess) -> Bool {
    p.cmdline.hasSuffix("/serve.py ") && p.cmdline.contains(" /srv/") && p.state != "Z"
}

/// Whether a loader is a warm one still waiting for its model: it holds its socket at descriptor 6, which the
/// model's descriptor replaces at the handoff (docs/sandbox.md, "Warm start"); a cold one has its model there.
package func isWaitingLoader(_ pid: Int32) -> Bool {
    // No descriptor 6: a cold loader whose model is a file at ~/models (docs/probe.md), holding it.
    let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/6")) ?? ""
    return target.hasPrefix("socket:")
}

/// The sandboxed loaders under the daemon `pid` that hold a model: cold ones, and warm ones once handed theirs.
package func loaders(under pid: Int32) -> [Int32] {
    descendants(of: pid).filter { isLoader($0) && !isWaitingLoader($0.pid) }.map(\.pid)
}

/// Whether `pid` exists and is not a zombie.
package func running(_ pid: Int32) -> Bool {
    guard let p = hostProcess(pid) else { return false }
    return p.state != "Z" && p.state != "X"
}

/// How many descriptors `pid` holds open.
package func openDescriptors(_ pid: Int32) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
}

/// A `/proc/PID/status` field in kB (VmRSS, VmHWM).
package func memoryKB(_ pid: Int32, _ field: String) -> Int {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") where line.hasPrefix("\(field):") {
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
    }
    return 0
}

/// A virtual environment made by the system's interpreter (`/usr/bin/python3 -m venv --system-site-packages`) in a
/// fresh directory under /tmp, so it sees Debian's numpy, torch, sklearn; the caller removes it.
package func makeVenv() throws -> String {
    let dir = "/tmp/airlock-venv-\(getpid())-\(UUID().uuidString.prefix(8))"
    let made = try runProgram("/usr/bin/python3", ["-m", "venv", "--system-site-packages", "--without-pip", dir])
    guard made.status == 0, FileManager.default.isExecutableFile(atPath: dir + "/bin/python3") else {
        throw DaemonTestError("python3 -m venv \(dir) failed (\(made.status)): \(made.stderr)")
    }
    return dir
}

/// A harmless pickle (`pickle.dumps({"a": [1, 2, 3]}, protocol=2)`), written to `path`: detonated, clean.
package func writePlainPickle(_ path: String) throws {
    let bytes: [UInt8] =
        [0x80, 0x02, 0x7D, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01, 0x5D, 0x71, 0x02, 0x28]
        + [0x4B, 0x01, 0x4B, 0x02, 0x4B, 0x03, 0x65, 0x73, 0x2E]
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
