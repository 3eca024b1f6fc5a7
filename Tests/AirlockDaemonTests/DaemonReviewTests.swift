import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// What the adversarial review of issue 16 found in airlockd's request path, each failing on the code it reviewed.
@Suite("airlockd: the review of lanes and back-pressure", .serialized)
struct DaemonReviewTests {
    /// A small, valid safetensors file: one F32 tensor of one element.
    static func writeSafetensors(_ path: String) throws {
        let header = Array(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.utf8)
        var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
        bytes += [0, 0, 0x80, 0x3F]
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test("two scans of huge sparse files hold no static worker: a small probe of another client is answered at once")
    func hugeFilesLeaveTheStaticLane() throws {
        let daemon = try TestDaemon(config: ["warm": 0, "shutdownGraceSeconds": 1])
        defer { daemon.stop() }
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for i in 0..<2 {
            let path = "\(daemon.dir)/huge\(i).bin"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            #expect(ftruncate(fd, 8 << 30) == 0, "a sparse file of 8 GiB")
            let sock = RawClient.connect(daemon.socket)
            held += [fd, sock]
            let request = RawClient.frame(#"{"airlock":1,"id":\#(i),"method":"scan","params":{"name":"huge.bin"}}"#)
            #expect(RawClient.send(sock, request, descriptors: [fd]) == request.count)
        }
        // Both are taken by workers (hashing gigabytes of zeros) before the small probe arrives.
        usleep(300_000)
        let small = "\(daemon.dir)/small.safetensors"
        try Self.writeSafetensors(small)
        let fd = open(small, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let start = Date()
        let client = try DaemonClient(path: daemon.socket)
        let reply = try client.call(
            "probe", params: [("name", .string("small.safetensors"))], descriptor: fd, timeout: 60)
        let seconds = Date().timeIntervalSince(start)
        #expect(seconds < 5, "the small probe waited \(seconds) s behind the scans of huge files")
        #expect("\(reply)".contains("clean"), "\(reply)")
    }

    @Test("a client that reads its large reply a little at a time is dropped once the reply's deadline has passed")
    func slowReaderDropped() throws {
        let daemon = try TestDaemon(config: ["warm": 0, "ioTimeoutSeconds": 2])
        defer { daemon.stop() }
        let folder = "\(daemon.dir)/many"
        mkdir(folder, 0o755)
        for i in 0..<4000 {
            let fd = open("\(folder)/file-with-a-long-name-\(i).bin", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            close(fd)
        }
        let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(dir) }
        let sock = RawClient.connect(daemon.socket)
        defer { close(sock) }
        let request = RawClient.frame(#"{"airlock":1,"id":1,"method":"scan","params":{"name":"many"}}"#)
        #expect(RawClient.send(sock, request, descriptors: [dir]) == request.count)
        // 16 KiB a second: far below 1 MiB/s, yet never silent for ioTimeoutSeconds.
        RawClient.setTimeout(sock, 1)
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        var total = 0
        var closed = false
        // From the reply's first bytes: the scan before it takes what it takes on a loaded machine.
        var first: Date? = nil
        let start = Date()
        while Date().timeIntervalSince(first ?? start) < 30 {
            let n = buffer.withUnsafeMutableBytes { recv(sock, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
                closed = true
                break
            }
            if n > 0 {
                total += n
                first = first ?? Date()
            }
            usleep(1_000_000)
        }
        let seconds = Date().timeIntervalSince(first ?? start)
        #expect(total > 64 << 10, "the reply (\(total) bytes read) is not large enough to test anything")
        #expect(closed && seconds < 15, "still connected after \(seconds) s, \(total) bytes read")
    }

    @Test("a request id is at most 1024 bytes of JSON")
    func largeIDRefused() throws {
        let long = String(repeating: "x", count: 2000)
        let body = Array(#"{"airlock":1,"id":"\#(long)","method":"status"}"#.utf8)
        switch DaemonRequest.parse(body, descriptors: [], maxTimeout: 60) {
        case .success:
            Issue.record("a 2000-byte id was accepted")
        case .failure(let refusal):
            #expect(refusal.code == .badRequest && refusal.id == .null, "\(refusal.message)")
        }
        let fine = Array(#"{"airlock":1,"id":"\#(String(repeating: "x", count: 900))","method":"status"}"#.utf8)
        if case .failure(let refusal) = DaemonRequest.parse(fine, descriptors: [], maxTimeout: 60) {
            Issue.record("a 900-byte id was refused: \(refusal.message)")
        }
    }

    @Test("a client that leaves takes its waiting requests out of the queue")
    func departedClientsLeaveTheQueue() throws {
        try withSamples("detonations.py") { dir, _ in
            let daemon = try TestDaemon(["--max-concurrent", "1"], config: ["warm": 0, "worlds": 1])
            defer { daemon.stop() }
            let model = "\(dir)/cpu_loop.pkl"
            let fd = open(model, O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            // One probe holds the only detonation worker; a second client's waits behind it, then hangs up.
            let first = RawClient.connect(daemon.socket)
            defer { close(first) }
            // Its deadline outlasts every wait below, so an empty queue can only mean the departed request was dropped.
            let hold = RawClient.frame(#"{"airlock":1,"id":1,"method":"probe","params":{"name":"a.pkl","timeout":40}}"#)
            #expect(RawClient.send(first, hold, descriptors: [fd]) == hold.count)
            func detonationQueue() -> Int? {
                let status = (try? daemonStatus(daemon.socket)) ?? [:]
                let lane = (status["lanes"] as? [[String: Any]])?.first { $0["name"] as? String == "detonation" }
                return lane?["queueDepth"] as? Int
            }
            let second = RawClient.connect(daemon.socket)
            let wait = RawClient.frame(#"{"airlock":1,"id":2,"method":"probe","params":{"name":"b.pkl","timeout":8}}"#)
            #expect(RawClient.send(second, wait, descriptors: [fd]) == wait.count)
            #expect(waitFor(10) { detonationQueue() == 1 }, "the second probe never waited")
            // shutdown, not only close: a process another test spawns meanwhile may have inherited the descriptor.
            shutdown(second, Int32(SHUT_RDWR))
            close(second)
            #expect(waitFor(15) { detonationQueue() == 0 }, "the departed client's probe is still queued")
        }
    }

    @Test("a daemon that stops leaves alone a socket file that is no longer its own")
    func stopKeepsANewerSocket() throws {
        let daemon = try TestDaemon(config: ["warm": 0])
        // A newer daemon took the path over (as it does with a stale file): another socket is bound there now.
        unlink(daemon.socket)
        let newer = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(newer) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(daemon.socket.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(newer, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0, "cannot bind \(daemon.socket): errno \(errno)")
        // SIGTERM: the daemon stops as it does under systemd, removing what it thinks is its socket file.
        kill(daemon.pid, SIGTERM)
        #expect(daemon.waitForExit(timeout: 20), "airlockd did not stop on SIGTERM")
        defer { daemon.stop() }
        var st = stat()
        #expect(lstat(daemon.socket, &st) == 0, "the stopping daemon removed the newer daemon's socket file")
    }
}
