@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// `ScanDeadline` in the static analysis: hashing, the pickle machine, the decompressors and folder walks stop at it,
/// the report is an error (`timeout`, `cancelled`), and nothing interrupted is cached or reported as a digest.
@Suite("Scan deadlines", .serialized)
struct ScanDeadlineTests {
    let root: String
    let cacheFolder: String
    let cache: DigestCache

    init() throws {
        root = try scratchFolder("deadline")
        cacheFolder = root + "/cache"
        cache = DigestCache(location: cacheFolder, settleSeconds: 0)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: root) }

    /// A deadline already past.
    static var past: ScanDeadline { ScanDeadline(seconds: 0) }

    static var cancelled: ScanDeadline {
        let cancellation = Cancellation()
        cancellation.cancel()
        return ScanDeadline(seconds: nil, cancellation: cancellation)
    }

    func digest(_ path: String, _ deadline: ScanDeadline?) -> Result<
        (digest: String, size: Int), FileDigest.DigestFailure
    > {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        return FileDigest.sha256(fd: fd, cache: cache, deadline: deadline)
    }

    @Test func expiredOrCancelledDigestIsAFailureAndNotCached() throws {
        defer { cleanup() }
        let file = root + "/model.bin"
        try writeFile(file, Array("weights".utf8))
        for (deadline, stop) in [(Self.past, ScanDeadline.Stop.timeout), (Self.cancelled, .cancelled)] {
            guard case .failure(let failure) = digest(file, deadline) else {
                Issue.record("a digest despite \(stop)")
                continue
            }
            #expect(failure.stop == stop)
            #expect(cache.lookup(try identity(file)) == nil)
            #expect(cacheEntries(cacheFolder).isEmpty)
        }
        // Without a deadline the same file is hashed and remembered.
        #expect(try digest(file, nil).get().digest == digestOf(Array("weights".utf8)))
        #expect(cacheEntries(cacheFolder).count == 1)
    }

    @Test func hugeSparseFileStopsAtItsDeadline() throws {
        defer { cleanup() }
        let file = root + "/huge.bin"
        try writeFile(file, [])
        #expect(truncate(file, 1 << 40) == 0)
        let start = Date()
        let result = digest(file, ScanDeadline(seconds: 0.5))
        #expect(Date().timeIntervalSince(start) < 20)
        guard case .failure(let failure) = result else {
            Issue.record("a digest of 1 TiB in \(Date().timeIntervalSince(start)) s")
            return
        }
        #expect(failure.stop == .timeout)
        #expect(cacheEntries(cacheFolder).isEmpty)
        // The mapped form: a scan whose budget carries the deadline is an error report without a digest.
        var budget = ScanBudget.standard
        budget.deadline = ScanDeadline(seconds: 0.5)
        let report = StaticScanner.scan(file: file, budget: budget)
        #expect(Date().timeIntervalSince(start) < 40)
        #expect(report.verdict == .error)
        #expect(report.error?.code == "timeout")
        #expect(report.target.sha256 == nil)
        #expect(report.target.size == 1 << 40)
    }

    @Test func cancelledScanIsAnErrorNeverClean() throws {
        defer { cleanup() }
        let file = root + "/small.safetensors"
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 8)
        try writeFile(file, bytes)
        #expect(StaticScanner.scan(file: file).verdict == .clean)
        var budget = ScanBudget.standard
        budget.deadline = Self.cancelled
        let report = StaticScanner.scan(file: file, budget: budget)
        #expect(report.verdict == .error)
        #expect(report.error?.code == "cancelled")
    }

    @Test func pickleMachineStopsAtTheDeadline() {
        // 200,000 BININT1/POP pairs: 400,001 opcodes.
        var bytes: [UInt8] = [0x80, 2]
        for _ in 0..<200_000 { bytes += [0x4B, 1, 0x30] }
        bytes.append(0x2E)
        let whole = PickleScanner.scan(ByteView(bytes))
        #expect(whole.opcodeCount > 400_000)
        var budget = ScanBudget.standard
        budget.deadline = Self.past
        let stopped = PickleScanner.scan(ByteView(bytes), budget: budget)
        #expect(stopped.opcodeCount <= 1 << 16)
        #expect(!stopped.complete)
        #expect(budget.deadline?.interrupted == .timeout)
    }

    @Test func decompressionStopsAtTheDeadline() throws {
        defer { cleanup() }
        let path = root + "/zeros.gz"
        let made = try runProgram(
            "/usr/bin/python3",
            ["-c", "import gzip, sys; open(sys.argv[1], 'wb').write(gzip.compress(bytes(64 << 20)))", path])
        #expect(made.status == 0, "\(made.stderr)")
        let view = try ByteView.map(path: path)
        let whole = Decompressor.decompress(view, .gzip, limit: 256 << 20)
        #expect(whole.complete && whole.data.count == 64 << 20)
        let stopped = ScanDeadline.$current.withValue(Self.past) {
            Decompressor.decompress(view, .gzip, limit: 256 << 20)
        }
        #expect(!stopped.complete)
        #expect(stopped.failure?.contains("deadline") == true)
        // Through the scanner: a compressed pickle stopped part-way is an error, not a verdict on what came out.
        var budget = ScanBudget.standard
        budget.deadline = Self.past
        #expect(StaticScanner.scan(file: path, budget: budget).error?.code == "timeout")
    }

    @Test func folderWalkStopsWhenCancelled() throws {
        defer { cleanup() }
        let folder = root + "/models"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for i in 0..<5 { try writeFile("\(folder)/w\(i).bin", Array("x".utf8)) }
        var folderBudget = FolderBudget.local
        folderBudget.deadline = Self.cancelled
        var reports: [Report] = []
        StaticScanner.scan(paths: [folder], folderBudget: folderBudget) { reports.append($0) }
        let record = try #require(reports.last)
        #expect(record.error?.code == "not-examined")
        #expect(record.findings.first?.message.contains("cancelled") == true, "\(record.findings)")
        #expect(reports.count == 1)
    }
}
