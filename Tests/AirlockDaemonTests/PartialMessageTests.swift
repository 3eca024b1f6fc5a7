import AirlockDaemon
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The partial-message clock (`ioTimeoutSeconds`) times each message from its first byte, not a stream of requests
/// whose reads happen to split messages.
@Suite("airlockd: the partial-message clock", .serialized)
struct PartialMessageTests {
    @Test("3 s of requests, every send ending mid-message, with ioTimeoutSeconds 1: every one answered")
    func streamLongerThanTheClock() throws {
        let daemon = try TestDaemon(config: ["warm": 0, "ioTimeoutSeconds": 1, "idleTimeoutSeconds": 5])
        defer { daemon.stop() }
        let fd = RawClient.connect(daemon.socket)
        defer { close(fd) }
        let one = RawClient.frame("{\"airlock\":1,\"id\":1,\"method\":\"status\"}")
        // Ten sends 0.3 s apart: each completes the message the last one began and begins another.
        let stream = (0..<11).flatMap { _ in one }
        let cut = one.count / 2
        var sent = 0
        var answered = 0
        RawClient.setTimeout(fd, 5)
        for i in 0..<10 {
            let end = i == 9 ? stream.count : cut + i * one.count
            #expect(RawClient.sendAll(fd, Array(stream[sent..<end])), "send \(i)")
            sent = end
            let expected = i == 9 ? 11 : i
            while answered < expected {
                guard case .success(let reply) = RawClient.readMessage(fd) else { break }
                #expect(reply["ok"] as? Bool == true, "reply \(answered): \(reply)")
                answered += 1
            }
            usleep(300_000)
        }
        #expect(answered == 11, "\(answered) of 11 answered")
    }
}
