import AirlockAnalysis
import AirlockSystem
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// `-` as a path of `airlock scan` and `airlock probe`: the model is read from standard input. It is spooled, at
/// most `maxBytes`, into an anonymous file (`O_TMPFILE` in `$TMPDIR`, else `/tmp`; a file unlinked at once where
/// `O_TMPFILE` is not supported) that no other process can name, then analysed — locally, or sent to airlockd — by a
/// read-only descriptor, like any file. Its report names the target `-`. A file literally named `-` is `./-`.
enum StandardInput {
    /// The path that means standard input, and the name its report carries.
    static let name = "-"

    /// The most bytes read from standard input: 4 GiB, unless `AIRLOCK_STDIN_MAX_BYTES` says otherwise (1 byte to
    /// 1 TiB; any other value is an error, never ignored). More is refused with an error report, never analysed in
    /// part; so is an empty or closed standard input.
    static func maxBytes() -> Result<Int, SpoolError> {
        guard let text = getenv("AIRLOCK_STDIN_MAX_BYTES").map({ String(cString: $0) }) else {
            return .success(4 << 30)
        }
        guard let value = Int(text), (1...(1 << 40)).contains(value) else {
            return .failure(
                SpoolError(
                    code: "bad-setting",
                    message: "AIRLOCK_STDIN_MAX_BYTES must be a number of bytes from 1 to \(1 << 40), not '\(text)'"))
        }
        return .success(value)
    }

    /// Usage errors about `-`: given twice (standard input can be read only once), or standard input is a terminal.
    static func validate(_ paths: [String]) throws(ValidationError) {
        let count = paths.count { $0 == name }
        if count > 1 {
            throw ValidationError("- (standard input) is given \(count) times: it can be read only once")
        }
        if count == 1, isatty(0) == 1 {
            throw ValidationError(
                "- reads the model from standard input, which is a terminal: pipe or redirect a file into it "
                    + "(airlock scan - < model.pt); a file named - is ./-")
        }
    }

    /// `manifest` and `verify` pin and check a model's files by their names, which standard input does not have.
    static func refuse(_ path: String, by command: String) throws(ValidationError) {
        if path == name {
            throw ValidationError(
                "\(command) does not read standard input: it pins a model's files by name; give the model's path "
                    + "(./- for a file named -)")
        }
    }

    /// Calls `files` with each run of paths other than `-` (so folders are walked as before) and `stdin` with the
    /// spooled standard input, in the order given; a standard input that cannot be spooled gets an error report.
    static func examine(
        _ paths: [String], files: ([String]) -> Void, stdin: (Int32) -> Report, report: (Report) -> Void
    ) {
        var run: [String] = []
        for path in paths {
            guard path == name else {
                run.append(path)
                continue
            }
            if !run.isEmpty { files(run) }
            run = []
            switch spool() {
            case .success(let fd): report(fd.closeAfter { stdin($0.rawValue) })
            case .failure(let error): report(error.report)
            }
        }
        if !run.isEmpty { files(run) }
    }

    /// Why standard input could not be spooled; `report` is its error report.
    struct SpoolError: Error {
        var code: String
        var message: String

        var report: Report {
            Report(
                target: ReportTarget(path: StandardInput.name, size: 0, sha256: nil, format: "unknown"), findings: [],
                error: (code, message))
        }
    }

    /// Standard input copied into an anonymous file, open read-only at offset 0.
    static func spool() -> Result<FileDescriptor, SpoolError> {
        let limit: Int
        switch maxBytes() {
        case .success(let value): limit = value
        case .failure(let error): return .failure(error)
        }
        // Checked before any file is made: with descriptor 0 closed, the spool file itself would become "standard input".
        guard fcntl(0, F_GETFD) >= 0 else {
            return .failure(SpoolError(code: "io", message: "standard input is closed: nothing to read for -"))
        }
        let file: FileDescriptor
        switch anonymousFile() {
        case .success(let fd): file = fd
        case .failure(let error): return .failure(error)
        }
        defer { file.close() }
        var total = 0
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = Glibc.read(0, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {  // a non-blocking pipe: wait for it
                    var poller = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
                    _ = poll(&poller, 1, -1)
                    continue
                }
                return .failure(SpoolError(code: "io", message: "cannot read standard input: \(Errno.current.text)"))
            }
            if n == 0 { break }
            total += n
            if total > limit {
                return .failure(
                    SpoolError(
                        code: "too-large",
                        message:
                            "standard input is larger than \(limit) bytes, the most - reads (AIRLOCK_STDIN_MAX_BYTES): "
                            + "give the file's path instead"))
            }
            do {
                try file.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            } catch {
                return .failure(
                    SpoolError(code: "io", message: "cannot spool standard input: \(error.errnoValue.text)"))
            }
        }
        if total == 0 {
            return .failure(SpoolError(code: "empty", message: "standard input is empty: no model was given to -"))
        }
        // Read-only from here on: what is analysed (and mounted into a sandbox) cannot be written through it.
        do throws(SystemCallError) {
            return .success(try FileDescriptor.open("/proc/self/fd/\(file.rawValue)", O_RDONLY | O_NOCTTY))
        } catch {
            return .failure(
                SpoolError(code: "io", message: "cannot reopen the spooled standard input: \(error.errnoValue.text)"))
        }
    }

    /// A file without a name, readable and writable by this process only.
    private static func anonymousFile() -> Result<FileDescriptor, SpoolError> {
        var directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if directory.isEmpty { directory = "/tmp" }
        // O_TMPFILE is `__O_TMPFILE | O_DIRECTORY`, a macro Swift does not import.
        let tmpfile: Int32 = 0o20_000_000 | O_DIRECTORY
        if let fd = try? FileDescriptor.open(directory, tmpfile | O_RDWR | O_EXCL, mode: 0o600) {
            return .success(fd)
        }
        var template = Array((directory + "/airlock-stdin-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            return .failure(
                SpoolError(
                    code: "io",
                    message: "cannot make a file in \(directory) to spool standard input into: "
                        + Errno.current.text))
        }
        _ = template.withUnsafeBufferPointer { unlink($0.baseAddress!) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return .success(FileDescriptor(fd))
    }
}
