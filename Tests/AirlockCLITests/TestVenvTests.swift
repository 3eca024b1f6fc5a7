import Foundation
import Testing
import AirlockTestSupport

/// `make test-venvs` (Tests/Venvs/venv.sh): the PyPI environments are made once per machine in a shared cache and
/// linked from `.build-deps`, so a new clone, or a run while PyPI does not answer, reuses them. Offline here: the
/// requirement is pip itself, which every new venv already has, with `PIP_NO_INDEX` set.
@Suite("test environments from PyPI, cached per machine")
struct TestVenvTests {
    static func venv(_ link: String, cache: String, requirement: String, tries: String = "5") throws -> ProgramRun {
        try runToEnd(
            "/bin/bash",
            ["\(repositoryRoot)/Tests/Venvs/venv.sh", link, "/usr/bin/python3", "import pip", requirement],
            environment: ["AIRLOCK_VENV_CACHE": cache, "PIP_NO_INDEX": "1", "AIRLOCK_VENV_TRIES": tries])
    }

    @Test("made once, reused by another clone, remade when unfinished, never left half-made")
    func cachedAndLinked() throws {
        let root = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = "\(root)/cache"
        let first = "\(root)/clone1/.build-deps/tool", second = "\(root)/clone2/.build-deps/tool"
        let fm = FileManager.default

        let made = try Self.venv(first, cache: cache, requirement: "pip")
        #expect(made.status == 0 && made.stderr.contains("making"), "\(made.stderr)")
        let env = try fm.destinationOfSymbolicLink(atPath: first)
        #expect(env.hasPrefix("\(cache)/tool-") && fm.fileExists(atPath: "\(env)/.airlock-complete"), "\(env)")

        // Another clone, where an older Makefile made the environment in place: linked to the cached one, not remade.
        try fm.createDirectory(atPath: second, withIntermediateDirectories: true)
        let reused = try Self.venv(second, cache: cache, requirement: "pip")
        #expect(reused.status == 0 && !reused.stderr.contains("making"), "\(reused.stderr)")
        #expect(try fm.destinationOfSymbolicLink(atPath: second) == env)
        #expect(try runProgram("\(second)/bin/python3", ["-c", "import pip"]).status == 0)

        // An environment whose making did not finish is made again.
        try fm.removeItem(atPath: "\(env)/.airlock-complete")
        let remade = try Self.venv(first, cache: cache, requirement: "pip")
        #expect(remade.status == 0 && remade.stderr.contains("making"), "\(remade.stderr)")
        #expect(fm.fileExists(atPath: "\(env)/.airlock-complete"))

        // A requirement pip cannot get (no index here, as when PyPI does not answer): an error naming the cache and
        // what needs it, no link, and nothing left in the cache under that name.
        let third = "\(root)/clone3/.build-deps/other"
        let failed = try Self.venv(third, cache: cache, requirement: "airlock-no-such-distribution==1.0", tries: "1")
        #expect(failed.status == 1, "\(failed.stderr)")
        #expect(failed.stderr.contains("PyPI did not answer") && failed.stderr.contains(cache), "\(failed.stderr)")
        #expect((try? fm.destinationOfSymbolicLink(atPath: third)) == nil)
        #expect(try fm.contentsOfDirectory(atPath: cache).filter { $0.hasPrefix("other-") }.isEmpty)
    }
}
