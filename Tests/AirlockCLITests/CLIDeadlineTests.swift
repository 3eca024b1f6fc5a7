import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `airlock probe --timeout` bounds the static stage too: a sparse file of a terabyte (hours of hashing) is an error
/// naming the deadline after about that long, exit 2. `airlock scan` has no timeout (the local run is the user's).
@Suite("CLI: deadline of the static stage")
struct CLIDeadlineTests {
    @Test("airlock probe --timeout 2 of a 1 TiB sparse file: an error naming the deadline, exit 2")
    func probeTimeoutBoundsTheStaticStage() throws {
        let dir = "/var/tmp/airlock-cli-deadline-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let huge = "\(dir)/huge.bin"
        #expect(FileManager.default.createFile(atPath: huge, contents: nil))
        #expect(truncate(huge, 1 << 40) == 0)
        let start = Date()
        // The hang guard: a run that hashes the whole file is killed after 60 s (and fails the test).
        let run = try runProgram("/usr/bin/timeout", ["60", airlockBinary, "probe", "--timeout", "2", huge])
        let seconds = Date().timeIntervalSince(start)
        #expect(run.status == 2, "exit \(run.status): \(run.stdout) \(run.stderr)")
        #expect(seconds < 20, "took \(seconds) s")
        #expect(run.stdout.contains("ERROR"), "\(run.stdout)")
        #expect(run.stdout.contains("the deadline (2.0 s) passed"), "\(run.stdout)")
    }

    @Test(
        "airlock probe --timeout 2 of a folder of three 1 TiB sparse files: each an error, the hashing threads stop too"
    )
    func probeTimeoutBoundsAFolder() throws {
        let dir = "/var/tmp/airlock-cli-deadline-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for i in 1...3 {
            #expect(FileManager.default.createFile(atPath: "\(dir)/w\(i).bin", contents: nil))
            #expect(truncate("\(dir)/w\(i).bin", 1 << 40) == 0)
        }
        let start = Date()
        // The hang guard: hashing threads that ignored the deadline would hold the walk for hours.
        let run = try runProgram("/usr/bin/timeout", ["120", airlockBinary, "probe", "--timeout", "2", dir])
        let seconds = Date().timeIntervalSince(start)
        #expect(run.status == 2, "exit \(run.status): \(run.stdout) \(run.stderr)")
        #expect(seconds < 60, "took \(seconds) s")
        #expect(run.stdout.components(separatedBy: "the deadline (2.0 s) passed").count == 4, "\(run.stdout)")
    }
}
