@testable import AirlockAnalysis
import AirlockFormats
import AirlockNames
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The folder walk under a budget (`FolderBudget`, `FolderMeter`): it stops at the first entry the budget does not
/// cover, names what it left at every level, and stays bounded against folders that are huge or keep growing.
@Suite("folder walk budgets", .serialized)
struct FolderBudgetWalkTests {
    /// A fresh folder in a tmpfs with `files` (relative paths; folders made on the way), removed after `body`.
    static func withFolder(_ files: [String], _ body: (String) throws -> Void) throws {
        let dir = "/dev/shm/airlock-walk-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for file in files {
            let path = "\(dir)/\(file)"
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        }
        try body(dir)
    }

    @Test("a budget of 3 entries in a nested folder: the folder counts, and what is left at each level is named")
    func nested() throws {
        try FolderBudgetWalkTests.withFolder(["a/1", "a/2", "a/3", "b", "c"]) { dir in
            let fd = open(dir, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            let meter = FolderMeter(FolderBudget(maxEntries: 3))
            var visited: [String] = []
            FolderWalk.walk(fd, meter: meter) { relative, _ in visited.append(relative.escaped) }
            #expect(visited == ["a/1", "a/2"])
            #expect(meter.exhausted == .entries)
            #expect(meter.notExamined == 3)
            #expect(meter.sample == ["a/3", "b", "c"])
        }
    }

    @Test("names out of the budget's reach are dropped from the folders above, and still counted as not examined")
    func trimmedAbove() throws {
        let files = (1...20).map { String(format: "a/f%02d", $0) } + (1...20).map { String(format: "z%02d", $0) }
        try FolderBudgetWalkTests.withFolder(files) { dir in
            let fd = open(dir, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            let meter = FolderMeter(FolderBudget(maxEntries: 5))
            var visited: [String] = []
            var held: [Int] = []
            FolderWalk.walk(fd, meter: meter) { relative, _ in
                visited.append(relative.escaped)
                held.append(meter.listings.reduce(0) { $0 + $1.names.count })
            }
            #expect(visited == ["a/f01", "a/f02", "a/f03", "a/f04"])
            #expect(meter.notExamined == 36)
            #expect(meter.sample.first == "a/f05")
            #expect(meter.sample.count == FolderBudget.maxSample)
            // The root's 21 names and a's 20 are never all held: what the budget cannot reach is let go.
            #expect(held.allSatisfy { $0 <= 4 + 1 + FolderBudget.maxSample + 1 }, "\(held)")
        }
    }

    @Test("a folder scan stops at its budget with a last report that is not clean; within it, no record")
    func scanRecord() throws {
        try FolderBudgetWalkTests.withFolder((0..<20).map { "m\($0 < 10 ? "0" : "")\($0)" }) { dir in
            var reports: [Report] = []
            ModelWalk.walk(
                paths: [dir], examine: { StaticScanner.scan(fd: $0, path: $1) }, budget: FolderBudget(maxEntries: 4)
            ) { reports.append($0) }
            #expect(reports.count == 5)
            #expect(reports.last?.verdict == .error)
            #expect(reports.last?.target.format == "folder")
            #expect(reports.last?.error?.code == "not-examined")
            let finding = reports.last?.findings.first { $0.rule == FolderBudget.rule }
            #expect(finding?.evidence.details.first { $0.0 == "notExamined" }?.1 == "16")
            #expect(finding?.evidence.details.first { $0.0 == "notExamined1" }?.1 == "m04")
            var whole: [Report] = []
            ModelWalk.walk(paths: [dir], examine: { StaticScanner.scan(fd: $0, path: $1) }) { whole.append($0) }
            #expect(whole.count == 20)
            #expect(whole.allSatisfy { $0.verdict == .clean })
        }
    }

    @Test("a folder that keeps growing while it is walked: the time budget still ends the walk")
    func growingFolder() throws {
        try FolderBudgetWalkTests.withFolder(["seed"]) { dir in
            let stop = Flag()
            let done = DispatchSemaphore(value: 0)
            let writer = Thread {
                var i = 0
                while !stop.isSet && i < 2_000_000 {
                    let fd = open("\(dir)/g\(i)", O_CREAT | O_WRONLY, 0o644)
                    if fd >= 0 { close(fd) }
                    i += 1
                }
                done.signal()
            }
            writer.start()
            defer {
                stop.set()
                done.wait()
            }
            usleep(200_000)
            let fd = open(dir, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            let meter = FolderMeter(FolderBudget(maxEntries: FolderBudget.maxEntriesLimit, seconds: 0.5))
            let start = Date()
            var visited = 0
            // Each entry takes a while, as examining a file does: the walk cannot finish within its budget.
            FolderWalk.walk(fd, meter: meter) { _, _ in
                visited += 1
                usleep(200)
            }
            let seconds = Date().timeIntervalSince(start)
            #expect(seconds < 5, "walked for \(seconds) s")
            #expect(meter.exhausted == .time, "\(visited) entries visited")
            #expect(meter.notExamined > 0)
        }
    }

    @Test("FIFOs, sockets and links are named, never opened or followed: a FIFO with no writer does not block")
    func specialFiles() throws {
        try FolderBudgetWalkTests.withFolder(["x"]) { dir in
            #expect(mkfifo("\(dir)/pipe", 0o644) == 0)
            #expect(symlink("/etc/shadow", "\(dir)/link") == 0)
            let fd = open(dir, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            var reports: [Report] = []
            let start = Date()
            ModelWalk.walk(
                paths: [dir], examine: { StaticScanner.scan(fd: $0, path: $1) }, budget: FolderBudget(maxEntries: 2)
            ) { reports.append($0) }
            #expect(Date().timeIntervalSince(start) < 5)
            #expect(reports.last?.error?.code == "not-examined")
        }
    }
}

/// A flag one thread sets and another reads.
private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
