import AirlockDaemon
import AirlockSystem
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The `worlds` and `worldBudget` parameters of a `probe` request (docs/protocol.md).
@Suite("airlockd: worlds parameters")
struct DaemonWorldsTests {
    static func parse(_ method: String, _ params: String) throws -> Result<DaemonRequest, DaemonRequest.Refusal> {
        let file = try FileDescriptor.open("/proc/self/exe", O_RDONLY)
        defer { file.close() }
        let body = #"{"airlock": 1, "id": 1, "method": "\#(method)", "params": {\#(params)}}"#
        return DaemonRequest.parse(Array(body.utf8), descriptors: [file], maxTimeout: 60)
    }

    @Test("worlds 1…5 and a positive worldBudget are read for probe; anything else is a bad request")
    func parse() throws {
        let read = try DaemonWorldsTests.parse("probe", #""worlds": 3, "worldBudget": 12.5"#).get()
        #expect(read.worlds == 3 && read.worldBudget == 12.5)
        #expect(try DaemonWorldsTests.parse("probe", #""worlds": null"#).get().worlds == nil)
        for bad in [
            #""worlds": 0"#, #""worlds": -1"#, #""worlds": 6"#, #""worlds": 1e30"#, #""worlds": 2.5"#,
            #""worlds": "3""#, #""worldBudget": 0"#, #""worldBudget": -1"#, #""worldBudget": 1e9"#,
            #""worldBudget": "9""#,
        ] {
            switch try DaemonWorldsTests.parse("probe", bad) {
            case .success: Issue.record("\(bad) accepted")
            case .failure(let refusal): #expect(refusal.code == .badRequest, "\(bad): \(refusal.code)")
            }
        }
        // A scan detonates nothing: not read.
        #expect(try DaemonWorldsTests.parse("scan", #""worlds": 0"#).get().worlds == nil)
        // A client writes them for probe only.
        let probe = DaemonRequest(method: .probe)
        var asked = probe
        asked.worlds = 2
        asked.worldBudget = 30
        #expect(asked.params.contains { $0.0 == "worlds" } && asked.params.contains { $0.0 == "worldBudget" })
        #expect(!probe.params.contains { $0.0 == "worlds" })
        var scan = DaemonRequest(method: .scan)
        scan.worlds = 2
        #expect(!scan.params.contains { $0.0 == "worlds" })
    }

    @Test("the daemon's worlds and warmWorlds: 1 to 5, worlds 3 and warmWorlds 1 by default")
    func config() throws {
        let defaults = DaemonConfig()
        #expect(defaults.worlds == 3 && defaults.warmWorlds == 1)
        let read = try DaemonConfig(json: Array(#"{"worlds": 1, "warmWorlds": 2}"#.utf8), name: "test")
        #expect(read.worlds == 1 && read.warmWorlds == 2)
        for bad in [#"{"worlds": 0}"#, #"{"worlds": 6}"#, #"{"warmWorlds": 0}"#, #"{"warmWorlds": 9}"#] {
            #expect(throws: ConfigError.self, "\(bad)") { try DaemonConfig(json: Array(bad.utf8), name: "test") }
        }
    }

    @Test("the client waits for the longer of the deadline and the worlds' budget")
    func replyTimeout() {
        #expect(DaemonBackend(socket: "s", timeout: 30).replyTimeout == 660)
        #expect(DaemonBackend(socket: "s", timeout: 30, worldBudget: 200).replyTimeout == 800)
        #expect(DaemonBackend(socket: "s", method: .scan, timeout: 30).replyTimeout == 600)
    }
}
