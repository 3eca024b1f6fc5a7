import AirlockSystem
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The system layer's small types: errno names both ways, one message shape for failed calls, descriptors that close.
@Suite struct SystemTypesTests {
    @Test(arguments: [("EACCES", EACCES), ("ENOENT", ENOENT), ("ENOSYS", ENOSYS), ("EXDEV", EXDEV)])
    func errnoNamesRoundTrip(name: String, value: Int32) {
        #expect(Errno(name: name)?.rawValue == value)
        #expect(Errno(value).name == name)
    }

    @Test func unknownErrnoIsItsNumber() {
        #expect(Errno(name: "ENOTANERRNO") == nil)
        #expect(Errno(4095).name == "4095")
    }

    @Test func errnoDescriptionHasNameAndText() {
        #expect(Errno(EACCES).description == "EACCES (Permission denied)")
    }

    @Test func systemCallErrorNamesTheOperation() throws {
        let error = #expect(throws: SystemCallError.self) {
            _ = try FileDescriptor.open("/nonexistent/airlock-test", O_RDONLY)
        }
        #expect(error?.errno == Errno(ENOENT))
        #expect(error?.code == "system")
        #expect(error?.description == "open /nonexistent/airlock-test: ENOENT (No such file or directory)")
    }

    @Test func closeAfterClosesOnThrow() throws {
        struct Stop: Error {}
        let fd = try FileDescriptor.open("/dev/null", O_RDONLY)
        #expect(fcntl(fd.rawValue, F_GETFD) >= 0)
        #expect(throws: Stop.self) { try fd.closeAfter { _ throws(Stop) in throw Stop() } }
        #expect(fcntl(fd.rawValue, F_GETFD) == -1 && errno == EBADF)
    }

    @Test func descriptorsOpenCloseOnExec() throws {
        let fd = try FileDescriptor.open("/dev/null", O_RDONLY)
        defer { fd.close() }
        #expect(fcntl(fd.rawValue, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func writeAllAndReadBack() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let (r, w) = (FileDescriptor(ends[0]), FileDescriptor(ends[1]))
        defer { r.close() }
        try w.closeAfter { try $0.writeAll(Array("airlock".utf8)) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = try buffer.withUnsafeMutableBytes { try r.read(into: $0) }
        #expect(Array(buffer[..<n]) == Array("airlock".utf8))
    }
}
