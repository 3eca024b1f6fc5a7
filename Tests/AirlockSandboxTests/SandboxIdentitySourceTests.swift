import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `SandboxRequest.identities`: the host ids a sandbox maps to come from the source for the sandbox's life.
@Suite("Sandbox identities from a source")
struct SandboxIdentitySourceTests {
    /// A source handing out `ids` in order, recording what was given back and whether the sandbox was gone by then.
    final class Recorder: SandboxIdentitySource, @unchecked Sendable {
        let lock = NSLock()
        var ids: [SandboxHostIdentity]
        var released: [SandboxHostIdentity] = []
        /// Host processes running under the identity when it came back.
        var aliveAtRelease: [Int] = []
        init(_ ids: [SandboxHostIdentity]) { self.ids = ids }
        func acquire() throws(SandboxError) -> SandboxHostIdentity {
            lock.lock()
            defer { lock.unlock() }
            guard !ids.isEmpty else { throw SandboxError(.identities, "uid-range-exhausted: none left") }
            return ids.removeFirst()
        }
        func release(_ identity: SandboxHostIdentity) {
            let alive = processes(uid: identity.uid)
            lock.lock()
            released.append(identity)
            aliveAtRelease.append(alive)
            lock.unlock()
        }
        func mayHandOut(uid: UInt32) -> Bool { uid >= 1_810_000_000 && uid < 1_810_000_010 }
        func mayHandOut(gid: UInt32) -> Bool { gid >= 1_810_000_000 && gid < 1_810_000_010 }
    }

    /// Host processes whose real uid is `uid`.
    static func processes(uid: UInt32) -> Int {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return pids.filter { $0.allSatisfy(\.isNumber) }.filter { pid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
            let line = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
            return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first == Substring(String(uid))
        }.count
    }

    @Test("the sandbox maps its user to the source's identity, and gives it back once every process is gone")
    func mapsAndReleases() throws {
        let identity = SandboxHostIdentity(uid: 1_810_000_003, gid: 1_810_000_004)
        let source = Recorder([identity])
        // (The filter refuses a second program, so the command is cat itself.)
        var request = SandboxRequest(
            argv: ["/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map"],
            profile: try defaultProfile(), timeoutSeconds: 10)
        request.identities = source
        let result = try Sandbox.run(request)
        let out = String(decoding: result.stdout, as: UTF8.self)
        let maps = out.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        try #require(
            maps.count >= 2,
            "\(out) \(String(decoding: result.stderr, as: UTF8.self)) exit \(String(describing: result.exitCode))")
        #expect(maps[0] == ["1000", "1810000003", "1"], "\(out)")
        #expect(maps[1] == ["1000", "1810000004", "1"], "\(out)")
        #expect(source.released == [identity])
        #expect(source.aliveAtRelease == [0], "processes still ran under the identity when it was given back")
        #expect(SandboxIdentitySourceTests.processes(uid: identity.uid) == 0)
    }

    @Test("no identity, no sandbox: the source's refusal is the run's error, and nothing is released")
    func refusal() throws {
        let source = Recorder([])
        var request = SandboxRequest(argv: ["/bin/true"], profile: try defaultProfile(), timeoutSeconds: 10)
        request.identities = source
        #expect {
            _ = try Sandbox.run(request)
        } throws: { error in
            (error as? SandboxError)?.kind == .identities
                && (error as? SandboxError)?.message.contains("uid-range-exhausted") == true
        }
        #expect(source.released.isEmpty)
    }

    @Test("without a source the profile's host ids are mapped, as the CLI does (65534)")
    func profileIds() throws {
        let request = SandboxRequest(
            argv: ["/bin/cat", "/proc/self/uid_map"], profile: try defaultProfile(), timeoutSeconds: 10)
        let out = String(decoding: try Sandbox.run(request).stdout, as: UTF8.self)
        #expect(out.split(separator: " ").map(String.init).prefix(2) == ["1000", "65534"], "\(out)")
    }
}
