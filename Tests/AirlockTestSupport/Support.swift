package import AirlockSandbox
package import Foundation
package import AirlockTrace

#if canImport(Glibc)
    import Glibc
#endif

// Helpers every test target shares (a target of its own: test targets cannot depend on each other).

/// The repository's root, found from this file's path.
package let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The shipped default profile, loaded once.
package func defaultProfile() throws -> Profile {
    try Profile.load("\(repositoryRoot)/Profiles/default.json")
}

/// The default profile with its JSON edited by `edit`.
package func editedProfile(_ edit: (inout [String: Any]) -> Void) throws -> Profile {
    let data = try Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Profiles/default.json"))
    var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    edit(&object)
    let edited = try JSONSerialization.data(withJSONObject: object)
    return try Profile(json: Array(edited), name: "edited")
}

/// Edits the `airlock` section of a profile object.
package func editSection(_ object: inout [String: Any], _ edit: (inout [String: Any]) -> Void) {
    var section = object["airlock"] as! [String: Any]
    edit(&section)
    object["airlock"] = section
}

/// The default profile with `mounts` appended to its `airlock.mounts`.
package func profileAddingMounts(_ mounts: [[String: Any]]) throws -> Profile {
    try editedProfile { object in
        editSection(&object) { section in
            section["mounts"] = (section["mounts"] as! [[String: Any]]) + mounts
        }
    }
}

/// The default profile with its `network` rule refusing (EACCES) instead of answering through the emulated
/// network: for tests of how socket calls are decoded and judged.
package func networkDenyingProfile() throws -> Profile {
    try editedProfile { object in
        editSection(&object) { section in
            var rules = section["notify"] as! [[String: Any]]
            for i in rules.indices where rules[i]["id"] as? String == "network" { rules[i]["action"] = "deny" }
            section["notify"] = rules
        }
    }
}

/// Merges `limits` into a profile section's `limits`.
package func setLimits(_ section: inout [String: Any], _ limits: [String: Any]) {
    section["limits"] = (section["limits"] as! [String: Any]).merging(limits) { $1 }
}

/// Runs Python code in a sandbox (the sandbox's /usr/bin/python3).
package func runPython(
    _ code: String, profile: Profile? = nil, timeout: Double = 20, mounts: [MountSpec] = []
) throws -> SandboxResult {
    try Sandbox.run(
        SandboxRequest(
            argv: ["python3", "-c", code], profile: profile ?? defaultProfile(), timeoutSeconds: timeout,
            extraMounts: mounts))
}

extension SandboxResult {
    package var out: String { String(decoding: stdout, as: UTF8.self) }
    package var err: String { String(decoding: stderr, as: UTF8.self) }

    package func events(_ syscall: String) -> [TraceEvent] { trace.filter { $0.syscall == syscall } }
}

/// A fresh host directory that the test owns, removed by the caller. World-writable, so that only the sandbox (its
/// read-only mount), not file permissions, keeps a payload from writing into it.
package func makeHostDirectory() throws -> String {
    let path = "/tmp/airlock-test-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    chmod(path, 0o777)
    return path
}

/// A TCP listener on 127.0.0.1 owned by the test: it records whether anything ever connects.
package final class LoopbackListener {
    package let fd: Int32
    package let port: UInt16

    package init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = UInt16(bigEndian: addr.sin_port)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Whether a connection is waiting to be accepted.
    package func sawConnection() -> Bool {
        let c = accept(fd, nil, nil)
        if c >= 0 {
            close(c)
            return true
        }
        return false
    }

    deinit { close(fd) }
}

/// PIDs of host processes whose command line contains `marker`.
package func hostProcesses(containing marker: String) -> [Int32] {
    let me = getpid()
    var found: [Int32] = []
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(entry), pid != me,
            let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
        else { continue }
        let text = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        if text.contains(marker) && !text.contains("airlock exec") { found.append(pid) }
    }
    return found
}

/// The `airlock` executable built beside the test bundle.
package let airlockBinary: String = {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var candidates = [bundle.appendingPathComponent("airlock").path]
    candidates.append("\(repositoryRoot)/.build/debug/airlock")
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}()

/// The `airlockd` executable built beside `airlock` (`swift build`).
package let airlockdBinary: String = {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [bundle.appendingPathComponent("airlockd").path, "\(repositoryRoot)/.build/debug/airlockd"]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
}()

/// Runs the CLI; returns its exit status, stdout and stderr.
package func runCLI(_ arguments: [String], timeout: TimeInterval = 60) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    try runProgram(airlockBinary, arguments)
}

/// A finished program: its exit status, or the signal that ended it (then `status` is the signal number), and its
/// output.
package struct ProgramRun {
    package let status: Int32
    package let signal: Int32?
    package let stdout: String
    package let stderr: String
}

/// Runs a program to its end, with extra environment variables and a working directory if given; returns its exit
/// status, stdout and stderr.
package func runProgram(
    _ path: String, _ arguments: [String], environment extra: [String: String] = [:], directory: String? = nil
) throws -> (status: Int32, stdout: String, stderr: String) {
    let run = try runToEnd(path, arguments, environment: extra, directory: directory)
    return (run.status, run.stdout, run.stderr)
}

/// `runProgram`, telling an exit from a death by signal.
package func runToEnd(
    _ path: String, _ arguments: [String], environment extra: [String: String] = [:], directory: String? = nil
) throws -> ProgramRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if !extra.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProgramRun(
        status: process.terminationStatus,
        signal: process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil,
        stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}
