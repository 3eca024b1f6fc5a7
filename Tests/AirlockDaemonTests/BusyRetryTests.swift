import AirlockDaemon
import AirlockSystem
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The client's back-off for `busy` (docs/protocol.md, "busy is retryable"), without a daemon.
@Suite("busy retry")
struct BusyRetryTests {
    final class Count: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func add() {
            lock.lock()
            n += 1
            lock.unlock()
        }
        var value: Int {
            lock.lock()
            defer { lock.unlock() }
            return n
        }
    }

    @Test("busy is retried until it goes away; the wait is announced once")
    func retriesBusy() throws {
        let attempts = Count()
        let notices = Count()
        let retry = BusyRetry(seconds: 10, onWaiting: { _, _ in notices.add() })
        let value = try retry.run { () throws(ClientError) -> Int in
            attempts.add()
            if attempts.value < 5 { throw ClientError("busy", "airlockd: busy") }
            return 42
        }
        #expect(value == 42 && attempts.value == 5)
        #expect(notices.value == 1)
    }

    @Test("an error after the request was accepted is never retried: no file is examined twice")
    func acceptedIsNotRetried() {
        for code in ["internal", "timeout", "io", "file-busy", "shutting-down", "protocol"] {
            let attempts = Count()
            let retry = BusyRetry(seconds: 10)
            #expect(throws: ClientError.self) {
                try retry.run { () throws(ClientError) -> Int in
                    attempts.add()
                    throw ClientError(code, code)
                }
            }
            #expect(attempts.value == 1, "\(code) was sent \(attempts.value) times")
        }
    }

    @Test("retries stop when the time is spent, with busy as the error")
    func deadline() {
        let start = Date()
        let attempts = Count()
        var thrown: ClientError?
        do {
            _ = try BusyRetry(seconds: 0.6).run { () throws(ClientError) -> Int in
                attempts.add()
                throw ClientError("busy", "busy")
            }
        } catch { thrown = error }
        let elapsed = Date().timeIntervalSince(start)
        #expect(thrown?.code == "busy")
        #expect(elapsed >= 0.6 && elapsed < 3, "\(elapsed) s")
        #expect(attempts.value >= 3, "\(attempts.value) attempts")
    }

    @Test("the back-off is full jitter below an exponential bound capped at 2 s")
    func backOff() {
        let retry = BusyRetry(seconds: 60)
        for attempt in 0..<40 {
            let bound = min(2.0, 0.05 * pow(2, Double(attempt)))
            let delays = (0..<200).map { _ in retry.delay(attempt: attempt) }
            #expect(delays.allSatisfy { $0 >= 0 && $0 <= bound }, "attempt \(attempt)")
            #expect(Set(delays).count > 100, "attempt \(attempt): not jittered")
        }
    }

    @Test("a full backlog at connect is retried; a refused connect is not")
    func connectErrors() {
        var full = ClientError("connect", "cannot connect", errno: nil)
        #expect(!full.isRetryable)
        full = ClientError("connect", "cannot connect: EAGAIN", errno: .init(EAGAIN))
        #expect(full.isRetryable)
        #expect(!ClientError("connect", "refused", errno: .init(ECONNREFUSED)).isRetryable)
    }
}
