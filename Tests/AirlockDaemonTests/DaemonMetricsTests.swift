import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd's status and metrics as an operator reads them: per-runtime queues, what each worker does, sandbox memory
/// peaks, refusals by reason, Prometheus text a real parser accepts, and the optional HTTP endpoint. Only the wire
/// (JSON, Prometheus text, HTTP) is used here, nothing of the daemon's Swift API.
@Suite("airlockd: status and metrics", .serialized)
struct DaemonMetricsTests {
    /// Starts a probe of `model` on a thread of its own (with `params`); its outcome lands in `results`.
    static func probeLater(
        _ socket: String, _ model: String, _ params: [(String, JSON)], into results: Collector<String>
    ) {
        let thread = Thread {
            let fd = open(model, O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            do throws(ClientError) {
                let client = try DaemonClient(path: socket)
                _ = try client.call("probe", params: [("name", .string(model))] + params, descriptor: fd, timeout: 120)
                results.append("ok")
            } catch {
                results.append(error.code)
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// The `metrics` reply's text.
    static func prometheusText(_ socket: String) throws -> String {
        let client = try DaemonClient(path: socket)
        return foundation(try client.call("metrics", timeout: 10))["metrics"] as? String ?? ""
    }

    /// Parses Prometheus text with `prometheus_client.parser` (python3-prometheus-client) and checks what the
    /// format requires of families and histograms; returns the parser's view (`families`: name → type, `samples`:
    /// "name{labels}" → value) and the problems found.
    static func parse(_ text: String) throws -> (
        families: [String: String], samples: [String: Double], problems: [String]
    ) {
        let dir = "/tmp/airlock-prom-\(getpid())-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try text.write(toFile: "\(dir)/metrics.txt", atomically: true, encoding: .utf8)
        let script = """
            import json, sys, collections
            from prometheus_client.parser import text_string_to_metric_families
            text = open(sys.argv[1]).read()
            problems = []
            types = collections.Counter(l.split()[2] for l in text.splitlines() if l.startswith('# TYPE '))
            helps = collections.Counter(l.split()[2] for l in text.splitlines() if l.startswith('# HELP '))
            problems += ['TYPE twice: ' + n for n, c in types.items() if c > 1]
            problems += ['HELP twice: ' + n for n, c in helps.items() if c > 1]
            problems += ['no HELP: ' + n for n in types if n not in helps]
            families, samples = {}, {}
            for f in text_string_to_metric_families(text):
                families[f.name] = f.type
                if f.type == 'counter' and not f.name.startswith('airlockd_'):
                    problems.append('bad counter name ' + f.name)
                groups = collections.defaultdict(list)
                for s in f.samples:
                    labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))
                    samples['%s{%s}' % (s.name, labels)] = s.value
                    if f.type == 'histogram':
                        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != 'le'))
                        groups[key].append(s)
                for key, ss in groups.items():
                    buckets = [(float(s.labels['le']), s.value) for s in ss if s.name.endswith('_bucket')]
                    count = [s.value for s in ss if s.name.endswith('_count')]
                    total = [s.value for s in ss if s.name.endswith('_sum')]
                    if not buckets or buckets[-1][0] != float('inf'):
                        problems.append('%s %s: no +Inf bucket last' % (f.name, key))
                    if [b[0] for b in buckets] != sorted(b[0] for b in buckets):
                        problems.append('%s %s: le not ascending' % (f.name, key))
                    if any(a[1] > b[1] for a, b in zip(buckets, buckets[1:])):
                        problems.append('%s %s: buckets not cumulative' % (f.name, key))
                    if len(count) != 1 or len(total) != 1:
                        problems.append('%s %s: no single _sum and _count' % (f.name, key))
                    elif buckets and count[0] != buckets[-1][1]:
                        problems.append('%s %s: _count %s != +Inf %s' % (f.name, key, count[0], buckets[-1][1]))
            print(json.dumps({'families': families, 'samples': samples, 'problems': problems}))
            """
        try script.write(toFile: "\(dir)/parse.py", atomically: true, encoding: .utf8)
        let run = try runProgram("/usr/bin/python3", ["\(dir)/parse.py", "\(dir)/metrics.txt"])
        guard run.status == 0,
            let out = (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any]
        else {
            return ([:], [:], ["prometheus_client could not parse the text (\(run.status)): \(run.stderr.suffix(800))"])
        }
        return (
            out["families"] as? [String: String] ?? [:],
            (out["samples"] as? [String: Any] ?? [:]).compactMapValues { ($0 as? NSNumber)?.doubleValue },
            out["problems"] as? [String] ?? []
        )
    }

    @Test("while a slow detonation runs: status shows the busy worker's method and runtime and the queue by runtime")
    func workersAndQueues() throws {
        try withSamples("detonations.py") { dir, _ in
            let daemon = try TestDaemon(
                ["--max-concurrent", "1", "--python", "system=/usr/bin/python3", "--python", "alt=/usr/bin/python3"],
                config: ["warm": 0, "worlds": 1])
            defer { daemon.stop() }
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<String>()
            DaemonMetricsTests.probeLater(daemon.socket, model, [("timeout", .double(4))], into: results)
            var status: [String: Any] = [:]
            let busy = waitFor(10) {
                status = (try? daemonStatus(daemon.socket)) ?? [:]
                let lane = (status["lanes"] as? [[String: Any]])?.first { $0["name"] as? String == "detonation" }
                let worker = (lane?["workers"] as? [[String: Any]])?.first
                return worker?["state"] as? String == "busy"
            }
            #expect(busy, "no busy worker in \(status)")
            // Two more wait behind it: one naming "alt", one naming none (the default, "system").
            DaemonMetricsTests.probeLater(
                daemon.socket, model, [("timeout", .double(1)), ("python", .string("alt"))], into: results)
            DaemonMetricsTests.probeLater(daemon.socket, model, [("timeout", .double(1))], into: results)
            let queued = waitFor(5) {
                status = (try? daemonStatus(daemon.socket)) ?? [:]
                return (status["queueByRuntime"] as? [String: Int]) == ["alt": 1, "system": 1]
            }
            #expect(queued, "queue by runtime: \(status)")
            let all = status["lanes"] as? [[String: Any]] ?? []
            #expect(all.compactMap { $0["name"] as? String } == ["static", "detonation"], "\(all)")
            let lanes = all.filter { $0["name"] as? String == "detonation" }
            #expect(lanes.first?["queuedByRuntime"] as? [String: Int] == ["alt": 1, "system": 1], "\(lanes)")
            #expect(lanes.first?["queueDepth"] as? Int == 2 && lanes.first?["busyWorkers"] as? Int == 1, "\(lanes)")
            let worker = (lanes.first?["workers"] as? [[String: Any]])?.first ?? [:]
            #expect(
                worker["state"] as? String == "busy" && worker["method"] as? String == "probe"
                    && worker["runtime"] as? String == "system" && (worker["busySeconds"] as? Double ?? -1) >= 0,
                "\(worker)")
            // The same in `airlock status`'s text.
            let shown = try runCLI(["status", "--socket", daemon.socket], socketVariable: daemon.socket)
            #expect(shown.status == 0, "\(shown.stderr)")
            #expect(shown.stdout.contains("lane         detonation: 1 busy, 2 waiting of"), "\(shown.stdout)")
            #expect(shown.stdout.contains("waiting by runtime: alt 1, system 1"), "\(shown.stdout)")
            #expect(shown.stdout.contains(": probe with runtime system"), "\(shown.stdout)")
            // The same in Prometheus' text.
            let parsed = try DaemonMetricsTests.parse(try DaemonMetricsTests.prometheusText(daemon.socket))
            #expect(parsed.problems.isEmpty, "\(parsed.problems)")
            #expect(parsed.samples["airlockd_lane_queue_depth{lane=detonation,runtime=alt}"] == 1, "\(parsed.samples)")
            #expect(parsed.samples["airlockd_lane_workers{lane=detonation,state=busy}"] == 1)

            let done = results.wait(count: 3, timeout: 60)
            #expect(done == ["ok", "ok", "ok"], "\(done)")
            // Memory peaks, from the three reports' cgroups: by runtime, and as a histogram.
            status = try daemonStatus(daemon.socket)
            let memory = status["sandboxMemory"] as? [String: [String: Any]] ?? [:]
            #expect(memory.keys.sorted() == ["alt", "system"], "\(status)")
            let system = memory["system"] ?? [:]
            let maxBytes = system["maxBytes"] as? Int ?? 0
            #expect(system["detonations"] as? Int == 2 && system["samples"] as? Int == 2, "\(system)")
            #expect(maxBytes > 1 << 20 && maxBytes < 8 << 30, "\(system)")
            #expect((system["p50Bytes"] as? Int ?? 0) > 0 && (system["p99Bytes"] as? Int ?? 0) <= maxBytes, "\(system)")
            let after = try DaemonMetricsTests.parse(try DaemonMetricsTests.prometheusText(daemon.socket))
            #expect(after.problems.isEmpty, "\(after.problems)")
            #expect(after.families["airlockd_sandbox_memory_peak_bytes"] == "histogram", "\(after.families)")
            #expect(after.samples["airlockd_sandbox_memory_peak_bytes_count{runtime=system}"] == 2, "\(after.samples)")
            #expect(after.samples["airlockd_sandbox_memory_peak_max_bytes{runtime=system}"] == Double(maxBytes))
            #expect(after.samples["airlockd_request_latency_seconds_count{lane=detonation,method=probe}"] == 3)
            #expect(
                after.samples["airlockd_lane_workers{lane=detonation,state=idle}"] == 1
                    && after.samples["airlockd_lane_workers{lane=detonation,state=busy}"] == 0)
        }
    }

    @Test("refusals are counted by code and reason; a hostile method name cannot add labels or lines")
    func refusalsByReason() throws {
        try withSamples("detonations.py") { dir, _ in
            let daemon = try TestDaemon(["--max-concurrent", "1", "--queue", "0"], config: ["warm": 0, "worlds": 1])
            defer { daemon.stop() }
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<String>()
            DaemonMetricsTests.probeLater(daemon.socket, model, [("timeout", .double(3))], into: results)
            #expect(
                waitFor(10) { ((try? daemonStatus(daemon.socket))?["busyWorkers"] as? Int) == 1 },
                "the worker never got busy")
            DaemonMetricsTests.probeLater(daemon.socket, model, [("timeout", .double(1))], into: results)
            #expect(results.wait(count: 1, timeout: 10) == ["busy"], "\(results.snapshot)")
            // Methods a client makes up, some of which would break the text format if written as they are.
            let fd = RawClient.connect(daemon.socket)
            defer { close(fd) }
            for method in ["x\\\"} 1\\nairlockd_fake_total 1\\n#", String(repeating: "m", count: 5000)] {
                for extra in ["", ",\"params\":5"] {
                    let reply = RawClient.request(fd, "{\"airlock\":1,\"id\":1,\"method\":\"\(method)\"\(extra)}")
                    #expect(reply.flatMap(errorCode) != nil, "\(String(describing: reply))")
                }
            }
            let status = try daemonStatus(daemon.socket)
            let reasons = status["refusedReasons"] as? [String: [String: Int]] ?? [:]
            #expect(reasons["busy"] == ["queue-full": 1], "\(status)")
            #expect(reasons["unknown-method"] == ["unknown-method": 2], "\(status)")
            #expect(reasons["bad-request"] == ["bad-request": 2], "\(status)")
            // The old member stays as it was: refusals by code.
            #expect((status["refused"] as? [String: Int])?["busy"] == 1, "\(status)")
            let text = try DaemonMetricsTests.prometheusText(daemon.socket)
            let parsed = try DaemonMetricsTests.parse(text)
            #expect(parsed.problems.isEmpty, "\(parsed.problems)")
            #expect(parsed.samples["airlockd_refusals_total{code=busy,reason=queue-full}"] == 1, "\(parsed.samples)")
            #expect(parsed.samples["airlockd_requests_total{method=?,outcome=bad-request}"] == 2, "\(parsed.samples)")
            #expect(!text.contains("airlockd_fake") && !text.contains("mmmm"), "\(text)")
            #expect(results.wait(count: 2, timeout: 30).sorted() == ["busy", "ok"])
        }
    }

    @Test("Prometheus text: one HELP and TYPE per family, counters end in _total, summary and histograms complete")
    func prometheusFormat() throws {
        let daemon = try TestDaemon(config: ["warm": 0])
        defer { daemon.stop() }
        let model = daemon.dir + "/plain.pkl"
        try writePlainPickle(model)
        for method in ["scan", "scan", "probe"] {
            let fd = open(model, O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            let client = try DaemonClient(path: daemon.socket)
            _ = try client.call(method, params: [("name", .string("plain.pkl"))], descriptor: fd, timeout: 60)
        }
        let parsed = try DaemonMetricsTests.parse(try DaemonMetricsTests.prometheusText(daemon.socket))
        #expect(parsed.problems.isEmpty, "\(parsed.problems)")
        // prometheus_client names counter families without _total; every sample of one carries it.
        for (name, type) in parsed.families where type == "counter" {
            #expect(!parsed.samples.keys.contains { $0.hasPrefix(name + "{") }, "\(name) has a sample without _total")
        }
        #expect(parsed.families["airlockd_requests"] == "counter", "\(parsed.families)")
        #expect(parsed.families["airlockd_request_duration_seconds"] == "summary")
        #expect(parsed.samples["airlockd_request_duration_seconds_count{}"] == 3, "\(parsed.samples)")
        #expect((parsed.samples["airlockd_request_duration_seconds_sum{}"] ?? 0) > 0)
        #expect(parsed.families["airlockd_request_latency_seconds"] == "histogram")
        #expect(parsed.samples["airlockd_request_latency_seconds_count{lane=static,method=scan}"] == 2)
        #expect(parsed.samples["airlockd_request_latency_seconds_bucket{lane=detonation,le=+Inf,method=probe}"] == 1)
    }

    /// One HTTP exchange with `127.0.0.1:port` (or `[::1]`): the status code, the head and the body.
    static func http(_ port: Int, _ request: String, v6: Bool = false) -> (code: Int, head: String, body: String) {
        let fd = DaemonMetricsTests.tcpConnect(port, v6: v6)
        guard fd >= 0 else { return (-1, "connect: \(String(cString: strerror(errno)))", "") }
        defer { close(fd) }
        RawClient.setTimeout(fd, 5)
        _ = RawClient.sendAll(fd, Array(request.utf8))
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return (0, text, "") }
        let head = String(text[..<split.lowerBound])
        let code = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (code, head, String(text[split.upperBound...]))
    }

    static func tcpConnect(_ port: Int, v6: Bool = false) -> Int32 {
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var rc: Int32
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = UInt16(port).bigEndian
            a.sin6_addr.__in6_u.__u6_addr8.15 = 1
            rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(port).bigEndian
            a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if rc != 0 {
            let e = errno
            close(fd)
            errno = e
            return -1
        }
        return fd
    }

    /// The inodes of the TCP sockets listening on this host (/proc/net/tcp and tcp6, state 0A).
    static func listeningInodes() -> Set<String> {
        var out = Set<String>()
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                if f.count > 9 && f[3] == "0A" { out.insert(String(f[9])) }
            }
        }
        return out
    }

    /// The inodes of the sockets `pid` holds.
    static func socketInodes(_ pid: Int32) -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return Set(
            fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
                .filter { $0.hasPrefix("socket:[") }.map { String($0.dropFirst(8).dropLast()) })
    }

    @Test("off by default: no TCP socket listens, and status says metricsListen null")
    func endpointOffByDefault() throws {
        let daemon = try TestDaemon(config: ["warm": 0])
        defer { daemon.stop() }
        let status = try daemonStatus(daemon.socket)
        #expect(status.keys.contains("metricsListen") && status["metricsListen"] is NSNull, "\(status)")
        #expect(DaemonMetricsTests.socketInodes(daemon.pid).isDisjoint(with: DaemonMetricsTests.listeningInodes()))
    }

    @Test("--metrics-listen: GET /metrics parses, other methods and paths refused, slow clients bounded")
    func endpoint() throws {
        let daemon = try TestDaemon(["--metrics-listen", "127.0.0.1:0"], config: ["warm": 0])
        defer { daemon.stop() }
        let status = try daemonStatus(daemon.socket)
        let address = status["metricsListen"] as? String ?? ""
        let port = Int(address.split(separator: ":").last ?? "") ?? 0
        #expect(address.hasPrefix("127.0.0.1:") && port > 0, "\(status)")
        #expect(!DaemonMetricsTests.socketInodes(daemon.pid).isDisjoint(with: DaemonMetricsTests.listeningInodes()))

        let ok = DaemonMetricsTests.http(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n")
        #expect(ok.code == 200, "\(ok.head)")
        #expect(ok.head.lowercased().contains("content-type: text/plain; version=0.0.4"), "\(ok.head)")
        let parsed = try DaemonMetricsTests.parse(ok.body)
        #expect(parsed.problems.isEmpty && parsed.families["airlockd_uptime_seconds"] == "gauge", "\(parsed)")
        #expect(DaemonMetricsTests.http(port, "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi").code == 405)
        #expect(DaemonMetricsTests.http(port, "HEAD /metrics HTTP/1.1\r\n\r\n").code == 405)
        #expect(DaemonMetricsTests.http(port, "GET / HTTP/1.1\r\n\r\n").code == 404)
        #expect(
            DaemonMetricsTests.http(port, "GET /metrics HTTP/1.1\r\nHost: evil.example:\(port)\r\n\r\n").code == 403)
        #expect(DaemonMetricsTests.http(port, "GET /metrics/../x HTTP/1.1\r\n\r\n").code == 404)
        #expect(DaemonMetricsTests.http(port, "\u{1}\u{2}garbage\r\n\r\n").code == 400)
        let huge = DaemonMetricsTests.http(port, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20000))
        #expect(huge.code == 431 || huge.code == -1 || huge.code == 0, "\(huge.head)")

        // Slowloris: 60 clients that send a byte now and then. The endpoint holds at most a few of them, a scrape
        // still gets through at once, and each slow one is closed within its deadline.
        let baseline = openDescriptors(daemon.pid)
        var slow: [Int32] = []
        defer { for fd in slow { close(fd) } }
        for _ in 0..<60 {
            let fd = DaemonMetricsTests.tcpConnect(port)
            if fd >= 0 {
                _ = RawClient.sendAll(fd, Array("G".utf8))
                slow.append(fd)
            }
        }
        usleep(300_000)
        #expect(openDescriptors(daemon.pid) <= baseline + 20, "\(openDescriptors(daemon.pid)) open, \(baseline) before")
        let started = Date()
        let scrape = DaemonMetricsTests.http(port, "GET /metrics HTTP/1.0\r\n\r\n")
        #expect(scrape.code == 200 && Date().timeIntervalSince(started) < 2, "\(scrape.head)")
        for fd in slow { _ = RawClient.sendAll(fd, Array("E".utf8)) }
        // Every slow connection ends: closed when a newer one came, or at its deadline (5 s).
        let closedAll = waitFor(10) {
            slow.allSatisfy { fd in
                var byte: UInt8 = 0
                let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
                return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            }
        }
        #expect(closedAll, "slow clients still connected after 10 s")
        #expect(waitFor(3) { openDescriptors(daemon.pid) <= baseline }, "\(openDescriptors(daemon.pid)) vs \(baseline)")
        // And the daemon still answers on its socket.
        #expect((try daemonStatus(daemon.socket))["version"] is String)
    }

    @Test("--metrics-listen [::1]:0 serves over IPv6; a host name or a bad port stops the daemon with status 2")
    func endpointAddresses() throws {
        let daemon = try TestDaemon(["--metrics-listen", "[::1]:0"], config: ["warm": 0])
        defer { daemon.stop() }
        let address = try daemonStatus(daemon.socket)["metricsListen"] as? String ?? ""
        let port = Int(address.split(separator: ":").last ?? "") ?? 0
        #expect(address.hasPrefix("[::1]:") && port > 0, "\(address)")
        #expect(DaemonMetricsTests.http(port, "GET /metrics HTTP/1.1\r\n\r\n", v6: true).code == 200)
        for bad in ["localhost:9464", "127.0.0.1:65536", "::1:9464", "127.0.0.1:", "127.0.0.1:-1"] {
            let run = try runProgram(airlockdBinary, ["--socket", daemon.dir + "/other.sock", "--metrics-listen", bad])
            #expect(run.status == 2 && run.stderr.contains("metrics-listen"), "\(bad): \(run.status) \(run.stderr)")
        }
    }
}
