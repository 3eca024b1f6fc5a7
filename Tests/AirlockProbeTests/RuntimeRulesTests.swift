import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import Testing
import AirlockTestSupport

/// The rules around the consumer's runtime on synthetic data (no root, no sandbox): what the harness imports at
/// start-up, which loader reads a pickle, and when a detonation resolves an unknown import as observed harmless.
@Suite struct RuntimeRulesTests {
    static func runtime(_ installed: [String: String] = ["sklearn": "1.2.1", "torch": "1.13.1", "numpy": "1.24.2"])
        -> PythonRuntime
    {
        PythonRuntime(
            name: nil, interpreter: "/usr/bin/python3", mounts: [], trees: [], version: "3.11.2",
            implementation: "cpython", prefix: "/usr", basePrefix: "/usr", searchPath: [],
            distributions: installed.mapValues { PythonRuntime.Distribution(name: "dist-\($0)", version: $0) })
    }

    @Test("start-up imports only the consumer's libraries that are installed, never a module the model names otherwise")
    func imports() {
        let modules: Set<String> = [
            "sklearn.ensemble._forest", "os", "antigravity", "subprocess", "torch;rm -rf", "pandas.core.frame",
            "numpy.core.multiarray", "sklearn..x", "evil.sklearn",
        ]
        let plan = ConsumerPlan(format: .pickle, modules: modules, runtime: Self.runtime())
        #expect(plan.imports == ["numpy.core.multiarray", "sklearn.ensemble._forest"])
        #expect(plan.consumer == .pandas)  // pandas objects are read with pandas.read_pickle
        let torch = ConsumerPlan(format: .pytorchZip, modules: ["torch._utils"], runtime: Self.runtime())
        #expect(torch.imports == ["torch", "torch._utils"])
        #expect(ConsumerPlan(format: .joblib, modules: [], runtime: nil).imports.isEmpty)
        #expect(ConsumerPlan(format: .joblib, modules: [], runtime: Self.runtime(["numpy": "1"])).imports == ["numpy"])
        #expect(!ConsumerPlan.isModuleName("a,b") && !ConsumerPlan.isModuleName("") && !ConsumerPlan.isModuleName("1a"))
        #expect(ConsumerPlan.isModuleName("_private.mod2"))
    }

    @Test("the harness's command line carries the consumer and the imports only when needed")
    func argv() {
        let plain = HarnessProtocol.arguments(format: .pickle, descriptor: 6, probe: true)
        #expect(plain == ["pickle", "fd:6"])
        let full = HarnessProtocol.arguments(
            format: .pickle, descriptor: 6, probe: false, consumer: .dill, imports: ["a", "b.c"])
        #expect(full.suffix(5) == ["--no-probe", "--consumer", "dill", "--import", "a,b.c"])
    }

    @Test("versions compare by their leading numbers; too old a library is refused")
    func versions() throws {
        #expect(PythonRuntime.leadingNumbers("1.13.0a0+gitunknown") == [1, 13, 0])
        #expect(PythonRuntime.leadingNumbers("2.0") == [2, 0])
        #expect(PythonRuntime.leadingNumbers("abc").isEmpty)
        #expect(throws: PythonRuntimeError.self) { try Self.runtime(["torch": "0.4.1"]).checkSupported() }
        var old = Self.runtime()
        old.version = "3.6.9"
        #expect(throws: PythonRuntimeError.self) { try old.checkSupported() }
        try Self.runtime().checkSupported()
    }

    static func unknown(_ global: String) -> Finding {
        Finding(
            rule: "pickle.unknown-import", severity: .medium, message: "imports \(global)",
            evidence: Evidence(global: global))
    }

    /// A detonation with the runtime that reached `last` with `events` in the trace and `stderr` from the harness.
    static func detonation(
        reaching last: HarnessPhase = .end, _ events: [TraceEvent] = [], stderr: String = "",
        runtime: PythonRuntime? = runtime(), exitCode: Int32? = 0
    ) -> Detonation {
        var result = SandboxResult(
            exitCode: exitCode, signal: nil, timedOut: false, stdout: [], stdoutDropped: 0,
            stderr: Array(stderr.utf8), stderrDropped: 0, trace: VerdictRulesTests.trace(reaching: last, events),
            traceDropped: 0, durationNs: 5_000_000)
        result.commandPid = 2
        return Detonation(
            argv: ["python3"], phases: HarnessPhase.sequence(probe: true), result: result, durationMs: 5,
            runtime: runtime, linePrefix: "[t] ")
    }

    static func decide(_ findings: [Finding], _ d: Detonation) throws -> Report {
        Verdict.decide(
            static: VerdictRulesTests.staticReport(findings), dynamic: d, policy: try VerdictRulesTests.policy())
    }

    @Test("an unknown import the real library loaded, and the probe used, with nothing refused, is info with evidence")
    func resolves() throws {
        let report = try Self.decide(
            [Self.unknown("sklearn.ensemble._forest.RandomForestClassifier")], Self.detonation())
        #expect(report.verdict == .clean)
        let f = try #require(report.findings.first { $0.rule == "pickle.unknown-import" })
        #expect(f.severity == .info)
        #expect(f.evidence.details.contains { $0 == ("library", "dist-1.2.1 1.2.1") })
        #expect(f.message.contains("observed harmless"))
    }

    @Test("nothing is resolved without the real library, a finished probe phase, or a clean model phase")
    func keeps() throws {
        let sk = Self.unknown("sklearn.tree._classes.DecisionTreeClassifier")
        // Not installed in the runtime: a module the environment lacks.
        #expect(try Self.decide([Self.unknown("mylib.Model")], Self.detonation()).verdict == .suspicious)
        // Standard library, never a distribution.
        #expect(try Self.decide([Self.unknown("functools.partial")], Self.detonation()).verdict == .suspicious)
        // No runtime (stand-ins only).
        #expect(try Self.decide([sk], Self.detonation(runtime: nil)).verdict == .suspicious)
        // The stand-ins answered for the library.
        let standIn = Self.detonation(stderr: "[t] stand-ins sklearn\n")
        #expect(try Self.decide([sk], standIn).verdict == .suspicious)
        // The loader stopped in load (an exception), or never reached the probe phase.
        let failed = Self.detonation(
            reaching: .load, stderr: "[t] load-error ValueError: x\n", exitCode: 3)
        #expect(try Self.decide([sk], failed).findings.contains { $0.rule == sk.rule && $0.severity == .medium })
        // Something was refused in a model phase.
        let refused = VerdictRulesTests.event(0, "openat", rule: .notify("write-outside-tmp"), phase: .probe)
        let dirty = try Self.decide([sk], Self.detonation([refused]))
        #expect(dirty.findings.contains { $0.rule == sk.rule && $0.severity == .medium })
        // A plain function of an installed library: it may run what the file gave it on a later input.
        #expect(try Self.decide([Self.unknown("sklearn.utils.run_later")], Self.detonation()).verdict == .suspicious)
        #expect(
            try Self.decide([Self.unknown("torch.fx.graph_module.reduce_graph_module")], Self.detonation()).verdict
                != .clean)
        #expect(ObservedHarmless.isDataConstructor("sklearn.tree._tree.Tree"))
        #expect(ObservedHarmless.isDataConstructor("pandas.core.indexes.base._new_Index"))
        #expect(!ObservedHarmless.isDataConstructor("torch.fx.graph_module.reduce_graph_module"))
        // Never at start-up: a package's __main__ or its tests.
        #expect(!ConsumerPlan.importableAtStartup("numpy.f2py.__main__"))
        #expect(!ConsumerPlan.importableAtStartup("sklearn.tests.test_x"))
        #expect(ConsumerPlan.importableAtStartup("sklearn.ensemble._forest"))
        // A denylisted import is never lowered.
        let dangerous = Finding(
            rule: "pickle.dangerous-import", severity: .critical, message: "os.system",
            evidence: Evidence(global: "os.system"))
        #expect(try Self.decide([dangerous], Self.detonation()).verdict == .malicious)
    }

    @Test("a refusal in start-up is the runtime's: it does not stop the resolution")
    func startupRefusal() throws {
        let shm = VerdictRulesTests.event(0, "openat", rule: .notify("write-outside-tmp"), phase: .startup)
        var events = VerdictRulesTests.trace(reaching: .end)
        events.insert(shm, at: 1)
        for i in events.indices { events[i].seq = i + 1 }
        var result = SandboxResult(
            exitCode: 0, signal: nil, timedOut: false, stdout: [], stdoutDropped: 0, stderr: [], stderrDropped: 0,
            trace: events, traceDropped: 0, durationNs: 5_000_000)
        result.commandPid = 2
        let d = Detonation(
            argv: ["python3"], phases: HarnessPhase.sequence(probe: true), result: result, durationMs: 5,
            runtime: Self.runtime(), linePrefix: "[t] ")
        let report = try Self.decide([Self.unknown("torch.nn.modules.linear.Linear")], d)
        #expect(report.verdict == .clean, "\(report.findings.map { "\($0.rule) \($0.severity)" })")
    }
}
