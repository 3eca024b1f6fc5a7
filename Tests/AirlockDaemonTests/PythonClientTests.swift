import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The Python client (`clients/python`, package `airlock-client`) as a user gets it: installed offline into a fresh
/// virtual environment by pip, and its own tests (`clients/python/tests`, unittest) run with that installation against
/// an airlockd of this build.
@Suite("The Python client against airlockd", .serialized)
struct PythonClientTests {
    /// A scratch folder for the venv and a copy of the client's sources (pip builds in the source folder, which must
    /// not leave `build/` or `*.egg-info` in the repository).
    static func scratch() throws -> String {
        let dir = "/tmp/airlock-pyclient-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            try FileManager.default.copyItem(atPath: "\(repositoryRoot)/clients/python", toPath: "\(dir)/src")
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
        return dir
    }

    /// `python3 -m venv --system-site-packages` (the ML libraries and Debian's setuptools come from the system) and
    /// `pip install --no-build-isolation --no-index` of the client: no network.
    static func install(_ dir: String) throws -> String {
        let venv = "\(dir)/venv"
        // Without pip of its own: the system's pip (visible through --system-site-packages) installs into the venv.
        let made = try runProgram("/usr/bin/python3", ["-m", "venv", "--without-pip", "--system-site-packages", venv])
        try #require(made.status == 0, "python3 -m venv: \(made.stderr)")
        let pip = try runProgram(
            "\(venv)/bin/python3",
            ["-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps", "--quiet", "\(dir)/src"],
            environment: ["PIP_DISABLE_PIP_VERSION_CHECK": "1"], directory: dir)
        try #require(pip.status == 0, "pip install ./clients/python: \(pip.stdout)\(pip.stderr)")
        return venv
    }

    @Test("pip installs clients/python offline, and its tests pass against a running airlockd with no test skipped")
    func clientSuite() throws {
        let dir = try PythonClientTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let venv = try PythonClientTests.install(dir)
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        // One connection at most: the busy test holds it and the client retries until it is free.
        let crowded = try TestDaemon(config: ["maxConnections": 1])
        defer { crowded.stop() }
        // Run from the scratch folder with the tests' folder as the top: `import airlock_client` can only find the
        // installed package, never the sources.
        let run = try runProgram(
            "\(venv)/bin/python3",
            ["-m", "unittest", "discover", "-s", "\(dir)/src/tests", "-t", "\(dir)/src/tests", "-v"],
            environment: [
                "AIRLOCK_SOCKET": daemon.socket, "AIRLOCK_BUSY_SOCKET": crowded.socket, "PYTHONDONTWRITEBYTECODE": "1",
            ], directory: dir)
        let output = run.stdout + run.stderr
        #expect(run.status == 0, "the Python client's tests failed:\n\(output)\n--- airlockd:\n\(daemon.log)")
        #expect(output.contains("airlock_client from \(venv)/lib/"), "the tests did not use the installed package")
        #expect(!output.contains("skipped"), "a Python test was skipped:\n\(output)")
        let ran = output.split(separator: "\n").first { $0.hasPrefix("Ran ") }
        let count = ran.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        #expect(count >= 40, "only \(count) Python tests ran")
        // The malicious pickles' payload must not have run anywhere on the host either.
        #expect(!output.contains("payload ran"))
    }

    @Test("the installed client reports a daemon that is not running as DaemonUnavailable")
    func daemonDown() throws {
        let dir = try PythonClientTests.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let venv = try PythonClientTests.install(dir)
        let script = """
            import sys, airlock_client
            try:
                airlock_client.pickle_load(sys.argv[1], socket=sys.argv[2])
            except airlock_client.DaemonUnavailable as error:
                print("unavailable:", error)
            """
        let model = "\(dir)/m.pkl"
        FileManager.default.createFile(atPath: model, contents: Data([0x80, 0x04, 0x4E, 0x2E]))
        let run = try runProgram("\(venv)/bin/python3", ["-c", script, model, "\(dir)/no-daemon.sock"], directory: dir)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("unavailable: cannot connect to airlockd at \(dir)/no-daemon.sock"))
    }
}
