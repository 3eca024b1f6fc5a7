@testable import AirlockDaemon
import AirlockJSON
import Testing

/// The metrics' parts without a daemon: histograms, bounded label sets, escaping, the endpoint's address and HTTP
/// parsing.
@Suite("airlockd: metrics parts")
struct MetricsUnitTests {
    @Test("a histogram's buckets are cumulative, +Inf equals the count, le is inclusive, NaN is ignored")
    func histogram() {
        var h = Histogram(bounds: [1, 0.5, 2, 2])
        for v in [0.5, 0.7, 1, 3, 100, .nan, .infinity] { h.observe(v) }
        let c = h.cumulative
        #expect(c.map(\.le) == ["0.5", "1", "2", "+Inf"])
        #expect(c.map(\.count) == [1, 3, 3, 5])
        #expect(h.count == 5 && abs(h.sum - 105.2) < 1e-9 && h.max == 100)
    }

    @Test("recent values keep their capacity; quantiles are nearest-rank")
    func recent() {
        var r = RecentValues(capacity: 100)
        for i in 1...1000 { r.append(Double(i)) }
        #expect(r.values.count == 100)
        #expect(r.quantiles([0.5, 0.99, 1]) == [950, 999, 1000])
        #expect(RecentValues(capacity: 4).quantiles([0.5]) == [0])
    }

    @Test("label values are escaped; help text keeps to one line")
    func escaping() {
        #expect(PrometheusText.labels([("a", "x\"y\\z\nw")]) == "{a=\"x\\\"y\\\\z\\nw\"}")
        var t = PrometheusText()
        t.family("m", "gauge", "one\nline", [([], "1")])
        #expect(t.text == "# HELP m one\\nline\n# TYPE m gauge\nm 1\n")
    }

    @Test("10 000 distinct reasons and methods: the families stay bounded")
    func bounded() {
        let m = Metrics(workers: 1, queueCapacity: 1)
        for i in 0..<10_000 {
            m.refused(method: "m\(i)", code: .busy, reason: "r\(i)" + String(repeating: "x", count: i % 200))
            m.partial(reason: "p\(i)")
            m.answered(method: "probe", verdicts: ["clean"], seconds: 0.01, lane: "lane\(i)")
        }
        #expect((m.refusalReasons["busy"]?.count ?? 0) <= Metrics.maxLabelValues + 1)
        #expect(m.refusalReasons["busy"]?["other"] ?? 0 > 9000)
        #expect(m.refusalReasons["busy"]?.keys.allSatisfy { $0.utf8.count <= Metrics.maxLabelBytes } == true)
        #expect(m.partials.count <= Metrics.maxLabelValues + 1)
        #expect(m.requests.keys.sorted() == ["? busy", "probe ok"])
        #expect(m.latencyByLane.count <= Metrics.maxLabelValues)
        #expect(m.prometheus().utf8.count < 200_000)
    }

    @Test("metricsListen: address literals with a port, a port alone for loopback; names and bad ports refused")
    func addresses() throws {
        #expect(MetricsAddress("127.0.0.1:9464")?.description == "127.0.0.1:9464")
        #expect(MetricsAddress("9464")?.description == "127.0.0.1:9464")
        #expect(MetricsAddress("[::1]:9464")?.isIPv6 == true && MetricsAddress("[::1]:9464")?.isLoopback == true)
        #expect(MetricsAddress("10.0.0.5:9464")?.isLoopback == false)
        #expect(MetricsAddress("0.0.0.0:0")?.port == 0)
        for bad in [
            "localhost:9464", "::1:9464", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:+1", "[::1]9464", "[::1]",
            "", ":9464", "127.0.0.1:9464 ", "1.2.3:80", "[127.0.0.1]:80",
        ] {
            #expect(MetricsAddress(bad) == nil, "\(bad)")
        }
        let config = try DaemonConfig(json: Array(#"{"metricsListen": "[::1]:9100"}"#.utf8), name: "t")
        #expect(config.metricsListen?.description == "[::1]:9100")
        #expect(try DaemonConfig(json: Array("{}".utf8), name: "t").metricsListen == nil)
        #expect(throws: ConfigError.self) {
            try DaemonConfig(json: Array(#"{"metricsListen": "example.com:80"}"#.utf8), name: "t")
        }
    }

    @Test("HTTP: a head split anywhere is answered once whole; only GET /metrics gets the text")
    func http() {
        let request = Array("GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        for cut in 1..<request.count {
            #expect(MetricsEndpoint.answer(Array(request[..<cut]), from: max(0, cut - 4), metrics: { "M" }) == nil)
        }
        let whole = String(decoding: MetricsEndpoint.answer(request, metrics: { "M" }) ?? [], as: UTF8.self)
        #expect(whole.hasPrefix("HTTP/1.1 200 OK\r\n") && whole.hasSuffix("\r\n\r\nM"), "\(whole)")
        func code(_ text: String) -> String {
            String(
                decoding: (MetricsEndpoint.answer(Array(text.utf8), metrics: { "M" }) ?? []).prefix(12), as: UTF8.self)
        }
        #expect(code("PUT /metrics HTTP/1.1\n\n") == "HTTP/1.1 405")
        #expect(code("GET /other HTTP/1.1\r\n\r\n") == "HTTP/1.1 404")
        #expect(code("GET /metrics\r\n\r\n") == "HTTP/1.1 400")
        #expect(code("GET /metrics HTTP/2.0\r\n\r\n") == "HTTP/1.1 400")
        // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own name as Host.
        for host in ["127.0.0.1:9464", "localhost", "LOCALHOST:1", "[::1]:9464", "127.8.9.10"] {
            #expect(code("GET /metrics HTTP/1.1\r\nHost: \(host)\r\n\r\n") == "HTTP/1.1 200", "\(host)")
        }
        for host in ["evil.example:9464", "evil.example", "127.0.0.1.evil.example", "[::2]:1", "localhost:x", ""] {
            #expect(code("GET /metrics HTTP/1.1\r\nhost: \(host)\r\n\r\n") == "HTTP/1.1 403", "\(host)")
        }
        let remote = MetricsEndpoint.answer(
            Array("GET /metrics HTTP/1.1\r\nHost: node1:9464\r\n\r\n".utf8), loopbackOnly: false, metrics: { "M" })
        #expect(String(decoding: (remote ?? []).prefix(12), as: UTF8.self) == "HTTP/1.1 200")
    }
}
