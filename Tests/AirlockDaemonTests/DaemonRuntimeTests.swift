import AirlockDaemon
import AirlockJSON
import AirlockSystem
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd's named Python runtimes: chosen by name, never by path; resolved once at start, where one that cannot be
/// used stops the daemon (exit 2).
@Suite("airlockd: named Python runtimes", .serialized)
struct DaemonRuntimeTests {
    /// The runtime of the first report of a probe reply: (name, interpreter).
    static func runtime(_ reply: [String: Any]) -> (name: String?, interpreter: String?) {
        let report = (reply["reports"] as? [[String: Any]])?.first
        let runtime = (report?["detonation"] as? [String: Any])?["runtime"] as? [String: Any]
        return (runtime?["name"] as? String, runtime?["interpreter"] as? String)
    }

    /// Probes `model` through `socket` with `params` added; the reply, or the error's code and message.
    static func probe(_ socket: String, _ model: String, _ params: [(String, JSON)]) -> Result<
        [String: Any], ClientError
    > {
        let fd = open(model, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        do throws(ClientError) {
            let client = try DaemonClient(path: socket)
            return .success(
                foundation(
                    try client.call("probe", params: [("name", .string(model))] + params, descriptor: fd, timeout: 120)
                ))
        } catch {
            return .failure(error)
        }
    }

    @Test("two named runtimes: each probe is detonated with the one it names, the default without a name")
    func twoRuntimes() throws {
        let venv = try makeVenv()
        defer { try? FileManager.default.removeItem(atPath: venv) }
        let daemon = try TestDaemon(["--python", "system=/usr/bin/python3", "--python", "venv=\(venv)"])
        defer { daemon.stop() }
        let model = daemon.dir + "/plain.pkl"
        try writePlainPickle(model)

        let cases: [(String?, String, String)] = [
            ("venv", "venv", venv + "/bin/python3"), ("system", "system", "/usr/bin/python3"),
            (nil, "system", "/usr/bin/python3"),
        ]
        for (asked, name, interpreter) in cases {
            let params: [(String, JSON)] = asked.map { [("python", .string($0))] } ?? []
            let reply = try DaemonRuntimeTests.probe(daemon.socket, model, params).get()
            let used = DaemonRuntimeTests.runtime(reply)
            #expect(used.name == name && used.interpreter == interpreter, "asked \(asked ?? "nothing"): \(used)")
            let verdict = (reply["reports"] as? [[String: Any]])?.first?["verdict"] as? String
            #expect(verdict == "clean", "asked \(asked ?? "nothing"): \(verdict ?? "no report")")
        }

        // The CLI sends --python as the name.
        let cli = try runCLI(["--socket", daemon.socket, "probe", "--python", "venv", "--format", "json", model])
        #expect(cli.status == 0, "\(cli.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any]
        let runtime = (report?["detonation"] as? [String: Any])?["runtime"] as? [String: Any]
        #expect(runtime?["name"] as? String == "venv" && runtime?["interpreter"] as? String == venv + "/bin/python3")

        // status lists both, the default marked, with their libraries (Debian's numpy is in both).
        let status = try runCLI(["--socket", daemon.socket, "status", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        let runtimes = object?["runtimes"] as? [[String: Any]] ?? []
        #expect(runtimes.map { $0["name"] as? String } == ["system", "venv"], "\(status.stdout)")
        #expect(runtimes.map { $0["default"] as? Bool } == [true, false])
        #expect(runtimes.last?["interpreter"] as? String == venv + "/bin/python3")
        for r in runtimes {
            #expect((r["version"] as? String)?.hasPrefix("3.") == true, "\(r)")
            #expect((r["libraries"] as? [String: Any])?["numpy"] is String, "\(r)")
        }
        let text = try runCLI(["--socket", daemon.socket, "status"])
        #expect(text.stdout.contains("runtimes     system (default): /usr/bin/python3, cpython 3."), "\(text.stdout)")
        #expect(text.stdout.contains("venv: \(venv)/bin/python3, cpython 3."), "\(text.stdout)")
        #expect(text.stdout.contains("numpy "), "\(text.stdout)")
    }

    @Test("an unknown name, or a path sent as the name, is unknown-runtime listing the names; nothing is resolved")
    func unknownNames() throws {
        let daemon = try TestDaemon(["--python", "torch=/usr/bin/python3"])
        defer { daemon.stop() }
        let model = daemon.dir + "/plain.pkl"
        try writePlainPickle(model)
        // /usr/bin/python3 and the venv's folder would resolve at once were the daemon to take paths.
        let venv = try makeVenv()
        defer { try? FileManager.default.removeItem(atPath: venv) }
        let long = String(repeating: "a", count: 5000)
        for name in ["numpy", "/usr/bin/python3", venv, "python3", "Torch", "torch/", "../torch", long, ""] {
            switch DaemonRuntimeTests.probe(daemon.socket, model, [("python", .string(name))]) {
            case .success(let reply):
                Issue.record("\(name.prefix(80)) was accepted: \(DaemonRuntimeTests.runtime(reply))")
            case .failure(let error):
                #expect(error.code == "unknown-runtime", "\(name.prefix(80)): \(error.code) \(error.message)")
                #expect(error.message.contains("this daemon has system, torch"), "\(error.message)")
                #expect(error.message.utf8.count < 400, "the message repeats what was sent: \(error.message.count)")
            }
        }
        #expect(loaders(under: daemon.pid).isEmpty)
        // A runtime asked for in a form the daemon does not read is refused, never replaced by the default.
        for value: JSON in [.int(3), .bool(true), .array([.string("torch")])] {
            switch DaemonRuntimeTests.probe(daemon.socket, model, [("python", value)]) {
            case .success: Issue.record("python \(value.serialized()) was accepted")
            case .failure(let error): #expect(error.code == "bad-request", "\(value.serialized()): \(error.code)")
            }
        }
        let status = try daemonStatus(daemon.socket)
        #expect((status["refused"] as? [String: Int])?["unknown-runtime"] == 9, "\(status)")
        #expect(status["verdicts"] as? [String: Int] == ["clean": 0, "error": 0, "malicious": 0, "suspicious": 0])
        // The daemon still serves a name it has.
        let reply = try DaemonRuntimeTests.probe(daemon.socket, model, [("python", .string("torch"))]).get()
        #expect(DaemonRuntimeTests.runtime(reply).name == "torch")
        // And the CLI: a path is sent as a name and refused, exit 2.
        let cli = try runCLI(["--socket", daemon.socket, "probe", "--python", "/usr/bin/python3", model])
        #expect(cli.status == 2 && cli.stderr.contains("no runtime named \"/usr/bin/python3\""), "\(cli)")
    }

    @Test("a configured default is the default, and no built-in system runtime is added beside it")
    func configuredDefault() throws {
        let venv = try makeVenv()
        defer { try? FileManager.default.removeItem(atPath: venv) }
        let daemon = try TestDaemon(config: ["python": ["default": venv, "plain": "/usr/bin/python3"]])
        defer { daemon.stop() }
        let model = daemon.dir + "/plain.pkl"
        try writePlainPickle(model)
        let reply = try DaemonRuntimeTests.probe(daemon.socket, model, []).get()
        #expect(DaemonRuntimeTests.runtime(reply) == ("default", venv + "/bin/python3"))
        let runtimes = try daemonStatus(daemon.socket)["runtimes"] as? [[String: Any]] ?? []
        #expect(runtimes.map { $0["name"] as? String } == ["default", "plain"])
        if case .failure(let error) = DaemonRuntimeTests.probe(daemon.socket, model, [("python", .string("system"))]) {
            #expect(error.code == "unknown-runtime")
        } else {
            Issue.record("system exists beside a configured default")
        }
    }

    @Test("a bad name, a relative path, a missing or non-Python runtime: airlockd exits 2 at start naming it")
    func startupErrors() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/config.json"
        let cases: [([String], String?, String)] = [
            (["--python", "Torch=/usr/bin/python3"], nil, "--python Torch=/usr/bin/python3: a runtime name is"),
            (["--python", "torch"], nil, "--python torch: expected NAME=PATH"),
            (["--python", "torch=venv/bin/python"], nil, "expected the absolute path"),
            (["--python", "a=/usr/bin/python3", "--python", "a=/usr/bin/python3"], nil, "--python a: given twice"),
            (["--python", "gone=\(dir)/nowhere/python3"], nil, "python runtime gone (\(dir)/nowhere/python3):"),
            (["--python", "sh=/bin/sh"], nil, "python runtime sh (/bin/sh): /bin/sh is not a Python 3 interpreter"),
            (["--python", "etc=/etc"], nil, "python runtime etc (/etc):"),
            ([], #"{"python": {"my torch": "/usr/bin/python3"}}"#, "field python.my torch: a runtime name is"),
            ([], #"{"python": {"torch": 3}}"#, "field python.torch: expected a string"),
            ([], #"{"python": ["/usr/bin/python3"]}"#, "field python: expected an object"),
            ([], #"{"python": {"torch": "/nonexistent/python3"}}"#, "python runtime torch (/nonexistent/python3)"),
            // The built-in default is resolved like any other: a daemon whose only runtime is broken never starts.
            ([], #"{"python": {"default": "\#(dir)/nowhere"}}"#, "python runtime default"),
        ]
        for (arguments, json, message) in cases {
            var args = ["--socket", dir + "/airlockd.sock"] + arguments
            if let json {
                try json.write(toFile: config, atomically: true, encoding: .utf8)
                args += ["--config", config]
            }
            let run = try runToEnd(airlockdBinary, args)
            #expect(
                run.status == 2 && run.signal == nil && run.stderr.contains(message),
                "\(args): \(run.status) \(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/airlockd.sock"), "\(args) listened")
        }
    }

    @Test("the plan: default is `default` when configured, else `system`, built in unless configured")
    func plan() {
        func names(_ configured: [String: String]) -> String {
            let (runtimes, chosen) = DaemonRuntimes.plan(configured)
            return runtimes.map { "\($0.name)=\($0.path)" }.joined(separator: " ") + " -> \(chosen)"
        }
        #expect(names([:]) == "system=/usr/bin/python3 -> system")
        #expect(names(["torch": "/t"]) == "system=/usr/bin/python3 torch=/t -> system")
        #expect(names(["system": "/s", "torch": "/t"]) == "system=/s torch=/t -> system")
        #expect(names(["default": "/d", "torch": "/t"]) == "default=/d torch=/t -> default")
        #expect(names(["default": "/d", "system": "/s"]) == "default=/d system=/s -> default")
        for good in ["a", "torch", "torch-2.1", "py3.11_cuda", "0", String(repeating: "x", count: 64)] {
            #expect(DaemonRuntimes.isName(good), "\(good)")
        }
        for bad in [
            "", "Torch", "-torch", ".torch", "_t", "a/b", "/usr/bin/python3", "a b", "ü",
            String(repeating: "x", count: 65),
        ] {
            #expect(!DaemonRuntimes.isName(bad), "\(bad)")
        }
    }

    @Test("DaemonRequest.parse: python is read for probe only, as a configured name")
    func parse() throws {
        let file = try FileDescriptor.open("/proc/self/exe", O_RDONLY)
        defer { file.close() }
        func parse(_ method: String, _ python: String) -> Result<DaemonRequest, DaemonRequest.Refusal> {
            let body = #"{"airlock": 1, "id": 1, "method": "\#(method)", "params": {"python": \#(python)}}"#
            let copy = FileDescriptor(dup(file.rawValue))
            defer { copy.close() }
            return DaemonRequest.parse(
                Array(body.utf8), descriptors: [copy], maxTimeout: 60, runtimes: ["system", "torch"])
        }
        #expect((try? parse("probe", #""torch""#).get())?.python == "torch")
        #expect((try? parse("probe", "null").get()).map { $0.python == nil } == true)
        for (value, code) in [
            (#""numpy""#, ReplyCode.unknownRuntime), (#""/usr/bin/python3""#, .unknownRuntime),
            (#""TORCH""#, .unknownRuntime), ("3", .badRequest), (#"["torch"]"#, .badRequest),
        ] {
            switch parse("probe", value) {
            case .success: Issue.record("\(value) accepted")
            case .failure(let refusal): #expect(refusal.code == code, "\(value): \(refusal.code)")
            }
        }
        // A scan runs no Python: the parameter is not read.
        #expect((try? parse("scan", #""/usr/bin/python3""#).get()).map { $0.python == nil } == true)
        // A client writes it for probe only.
        #expect(DaemonRequest(method: .probe, python: "torch").params.contains { $0.0 == "python" })
        #expect(!DaemonRequest(method: .scan, python: "torch").params.contains { $0.0 == "python" })
    }
}
