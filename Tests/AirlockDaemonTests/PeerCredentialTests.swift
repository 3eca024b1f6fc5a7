@testable import AirlockDaemon
import AirlockSystem
import AirlockTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What airlockd believes about a client: its opens are made with exactly these groups (`ClientIdentity`), so they
/// must be the client's, whole, or the connection is refused.
@Suite("Peer credentials")
struct PeerCredentialTests {
    /// Accepts one connection from a Python client that first takes `groups` supplementary groups; returns the peer.
    static func peer(withGroups groups: Int) throws -> Peer? {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/peer.sock"
        let address = try #require(UnixSocketAddress(path))
        let listener = try UnixSocketAddress.streamSocket()
        defer { listener.close() }
        #expect(address.bind(listener) && listen(listener.rawValue, 1) == 0)
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        client.arguments = [
            "-c",
            """
            import os, socket, sys, time
            os.setgroups(list(range(70000, 70000 + int(sys.argv[2]))))
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(5)
            """,
            path, String(groups),
        ]
        try client.run()
        defer {
            client.terminate()
            client.waitUntilExit()
        }
        let fd = FileDescriptor(accept(listener.rawValue, nil, nil))
        #expect(fd.rawValue >= 0)
        defer { fd.close() }
        return Peer(socket: fd)
    }

    @Test("a few groups are read as they are")
    func fewGroups() throws {
        let peer = try #require(try PeerCredentialTests.peer(withGroups: 3))
        #expect(peer.groups == [70000, 70001, 70002])
    }

    /// Before, a list longer than 1024 read as 1024 zeros: opens made "as the client" carried group 0 (root's).
    @Test("more groups than the first buffer holds are read whole, never as zeros")
    func manyGroups() throws {
        let peer = try #require(try PeerCredentialTests.peer(withGroups: 1500))
        #expect(peer.groups.count == 1500)
        #expect(!peer.groups.contains(0))
        #expect(peer.groups.first == 70000 && peer.groups.last == 71499)
    }
}
