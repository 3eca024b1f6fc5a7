@testable import AirlockAnalysis
import AirlockFormats
import AirlockJSON
import AirlockSystem
import Foundation
import Testing
import AirlockTestSupport

/// Folder scans that hash ahead on several threads, and several processes sharing one digest cache.
@Suite("Digest cache: parallel hashing and concurrent processes", .serialized)
struct DigestParallelTests {
    /// The JSON lines of a folder scan, timings left out (they differ from run to run).
    func folderReports(_ dir: String, threads: Int) throws -> [String] {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXError(.ENOENT) }
        defer { close(fd) }
        var out: [String] = []
        FolderScanner.scan(
            dirfd: fd, display: "folder", examine: { StaticScanner.scan(fd: $0, path: $1) }, hashThreads: threads
        ) { report in
            var r = report
            r.timings = []
            out.append(r.json.serialized())
        }
        return out
    }

    @Test func parallelFolderScanGivesTheSerialReports() throws {
        let dir = try generate("models")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Files of several sizes, some bigger than one read, so threads finish out of order.
        for (i, size) in [3 << 20, 17, 0, 1 << 20, 5 << 20].enumerated() {
            try writeFile(dir + "/blob\(i).bin", (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) })
        }
        let serial = try folderReports(dir, threads: 0)
        #expect(serial.count > 8)
        for threads in [1, 2, 8] {
            #expect(try folderReports(dir, threads: threads) == serial)
        }
        #expect(DigestPrefetch.handoff.isEmpty)
        // Every digest is the file's.
        for line in serial {
            guard case .object(let o) = try JSON.parse(Array(line.utf8)),
                case .object(let target)? = o.first(where: { $0.0 == "target" })?.1,
                case .string(let path)? = target.first(where: { $0.0 == "path" })?.1,
                case .string(let sha)? = target.first(where: { $0.0 == "sha256" })?.1
            else { continue }
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + path.dropFirst("folder".count))))
            #expect(sha == digestOf(bytes), "\(path)")
        }
    }

    /// Two `airlock scan` processes at once, three times over, on one cache, while a third party keeps rewriting one
    /// file in place: every digest reported is a digest the file had, every entry left is right, and the scan after
    /// the writer stops reports the final content.
    @Test func concurrentProcessesNeverLeaveAWrongEntry() throws {
        let root = try scratchFolder("concurrent")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let models = root + "/models", cacheDir = root + "/cache"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
        var contents: [String: [UInt8]] = [:]
        for i in 0..<12 {
            let bytes = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: ($0 >> 3) &* (i + 7)) }
            contents["f\(i).bin"] = bytes
            try writeFile(models + "/f\(i).bin", bytes)
        }
        let hot = models + "/hot.bin"
        var seen: Set<String> = []
        let environment = ["AIRLOCK_DIGEST_CACHE": cacheDir, "AIRLOCK_DIGEST_CACHE_SETTLE": "0"]
        for round in 0..<3 {
            var version = [UInt8](repeating: UInt8(round), count: 64 << 10)
            try writeFile(hot, version)
            seen.insert(digestOf(version))
            let scanners = (0..<2).map { _ in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: airlockBinary)
                p.arguments = ["scan", "--format", "json", models]
                p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
                let out = Pipe()
                p.standardOutput = out
                p.standardError = FileHandle.nullDevice
                return (p, out)
            }
            for (p, _) in scanners { try p.run() }
            // Rewrite in place (same size) while they hash.
            for k in 0..<20 {
                version[k % version.count] &+= 1
                let fd = open(hot, O_WRONLY)
                _ = version.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
                close(fd)
                seen.insert(digestOf(version))
                usleep(2000)
            }
            for (p, out) in scanners {
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                    let text = String(line)
                    for (name, bytes) in contents where text.contains("/\(name)\"") {
                        #expect(text.contains(digestOf(bytes)), "\(name)")
                    }
                    if text.contains("/hot.bin\""), let range = text.range(of: "\"sha256\":\"") {
                        let sha = String(text[range.upperBound...].prefix(64))
                        #expect(seen.contains(sha), "hot.bin reported with a digest it never had")
                    }
                }
            }
            let final = try runProgram(airlockBinary, ["scan", "--format", "json", hot], environment: environment)
            #expect(final.stdout.contains(digestOf(version)))
        }
        // Every entry left is well formed and right for the file of its identity.
        var checked = 0
        for name in cacheEntries(cacheDir) {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: cacheDir + "/" + name)))
            let record = try #require(DigestRecord.parse(bytes))
            for file in try FileManager.default.contentsOfDirectory(atPath: models) {
                let id = try identity(models + "/" + file)
                guard DigestCache.entryName(id) == name, record.matches(id) else { continue }
                let content = [UInt8](try Data(contentsOf: URL(fileURLWithPath: models + "/" + file)))
                #expect(record.sha256 == digestOf(content), "\(file)")
                checked += 1
            }
        }
        #expect(checked >= 12)
    }
}
