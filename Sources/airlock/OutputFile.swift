import AirlockNames
import AirlockSystem
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// `-o FILE`: the output of scan, probe or verify written so that FILE holds the old content or the whole new one,
/// never a part. The bytes go to a file without a name in FILE's folder (`O_TMPFILE`: nothing to see for a walk of
/// that folder, nothing left behind whatever ends the process), or where the file system cannot do that to a hidden
/// `.airlock-output-PID-N` removed on error and on SIGINT, SIGTERM and SIGHUP; at the end it is synced, given a name
/// and renamed over FILE (mode 0644), with those signals held back in between.
final class OutputFile {
    /// FILE as given.
    let path: String
    private let dirfd: Int32
    private let name: String
    private let fd: Int32
    /// The fallback's temporary name while it exists; nil for an `O_TMPFILE`.
    private var temporary: String?
    private var failure: Int32 = 0

    /// Why FILE is refused (a `ValidationError`, exit 64) or cannot be written (exit 2).
    enum Problem: Error {
        case refused(String)
        case io(String)
    }

    /// Checks FILE and opens its temporary file. Refused: an existing folder, symbolic link or file that is not
    /// regular (a device, a FIFO), any of `inputs` (the same file, by device and inode: a hard link too) and an
    /// existing file inside a folder of `inputs` (it is examined; a new file there is not, it is named at the end).
    static func open(_ path: String, inputs: [String]) throws(Problem) -> OutputFile {
        let shown = FileName(path).escaped
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        if name.isEmpty || name == "." || name == ".." {
            throw .refused("-o \(shown) is a folder: name a file")
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFDIR: throw .refused("-o \(shown) is a folder: name a file")
            case S_IFLNK: throw .refused("-o \(shown) is a symbolic link: name the file itself, or remove the link")
            case S_IFREG: break
            default: throw .refused("-o \(shown) is not a regular file")
            }
            for input in inputs {
                var other = stat()
                guard stat(input, &other) == 0 else { continue }
                if other.st_dev == st.st_dev && other.st_ino == st.st_ino {
                    throw .refused(
                        "-o \(shown) is one of the inputs (\(FileName(input).escaped)): it would be replaced")
                }
                if other.st_mode & S_IFMT == S_IFDIR && ProvenanceCLI.relative(path, inside: input) != nil {
                    throw .refused(
                        "-o \(shown) is a file inside \(FileName(input).escaped), which is examined: it would be replaced; remove it first or write elsewhere"
                    )
                }
            }
        }
        let dirfd = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw .io("cannot open the folder of \(shown): \(Errno.current.text)") }
        // O_TMPFILE is __O_TMPFILE | O_DIRECTORY (Linux; the same value on x86-64 and arm64).
        var fd = openat(dirfd, ".", 0o20_000_000 | O_DIRECTORY | O_WRONLY | O_CLOEXEC, 0o644)
        var temporary: String?
        if fd < 0 && [EOPNOTSUPP, EISDIR, EINVAL].contains(errno) {
            let tmp = OutputFile.temporaryName()
            fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if fd >= 0 {
                temporary = tmp
                CleanUp.remember(dirfd: dirfd, name: tmp)
            }
        }
        guard fd >= 0 else {
            let error = Errno.current.text
            close(dirfd)
            throw .io("cannot write \(shown): \(error)")
        }
        _ = fchmod(fd, 0o644)
        return OutputFile(path: path, dirfd: dirfd, name: name, fd: fd, temporary: temporary)
    }

    private init(path: String, dirfd: Int32, name: String, fd: Int32, temporary: String?) {
        self.path = path
        self.dirfd = dirfd
        self.name = name
        self.fd = fd
        self.temporary = temporary
    }

    deinit {
        discard()
        close(fd)
        close(dirfd)
    }

    /// Appends `bytes`; the first write error is kept for `commit`.
    func append(_ bytes: [UInt8]) {
        var done = 0
        while failure == 0 && done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno != EINTR { failure = errno }
                continue
            }
            done += n
        }
    }

    /// Gives the complete output FILE's name (mode 0644), or throws and leaves FILE as it was.
    func commit() throws(Problem) {
        let shown = FileName(path).escaped
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        var held = sigset_t()
        var before = sigset_t()
        sigemptyset(&held)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&held, s) }
        pthread_sigmask(SIG_BLOCK, &held, &before)
        defer { pthread_sigmask(SIG_SETMASK, &before, nil) }
        var tmp = temporary
        if failure == 0 && tmp == nil {
            let named = OutputFile.temporaryName()
            var linked = linkat(AT_FDCWD, "/proc/self/fd/\(fd)", dirfd, named, AT_SYMLINK_FOLLOW) == 0
            if !linked { linked = linkat(fd, "", dirfd, named, 0x1000 /* AT_EMPTY_PATH */) == 0 }
            if linked { tmp = named } else { failure = errno }
        }
        temporary = tmp
        // FILE may have changed since the check: a folder or link put there now is refused as well.
        var st = stat()
        if failure == 0 && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT != S_IFREG {
            discard()
            throw .refused("-o \(shown) is no longer a regular file: not replaced")
        }
        if failure == 0, let tmp, renameat(dirfd, tmp, dirfd, name) != 0 { failure = errno }
        if failure != 0 {
            discard()
            throw .io("cannot write \(shown): \(Errno(failure).text)")
        }
        temporary = nil
        CleanUp.forget()
        _ = fsync(dirfd)
    }

    /// Removes the temporary file's name, if it has one; FILE is left as it was.
    func discard() {
        if let temporary { _ = unlinkat(dirfd, temporary, 0) }
        temporary = nil
        CleanUp.forget()
    }

    private static func temporaryName() -> String {
        // Not FILE's name: a name near NAME_MAX would make it too long.
        ".airlock-output-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Removes the fallback's temporary file when SIGINT, SIGTERM or SIGHUP ends the process, then dies of the signal.
    enum CleanUp {
        nonisolated(unsafe) static var dirfd: Int32 = -1
        nonisolated(unsafe) static var name: UnsafeMutablePointer<CChar>?

        static func remember(dirfd: Int32, name: String) {
            CleanUp.name = strdup(name)
            CleanUp.dirfd = dirfd
            for s in [SIGINT, SIGTERM, SIGHUP] {
                var action = sigaction()
                action.__sigaction_handler.sa_handler = { signal in
                    if let name = OutputFile.CleanUp.name { _ = unlinkat(OutputFile.CleanUp.dirfd, name, 0) }
                    Glibc.signal(signal, SIG_DFL)
                    raise(signal)
                }
                sigemptyset(&action.sa_mask)
                action.sa_flags = Int32(SA_RESETHAND)
                sigaction(s, &action, nil)
            }
        }

        static func forget() {
            guard let name else { return }
            CleanUp.name = nil
            free(name)
        }
    }
}

extension OutputFile.Problem {
    /// The refusal as ArgumentParser's usage error (exit 64), or the I/O error printed and exit status 2.
    var exit: any Error {
        switch self {
        case .refused(let why): return ValidationError(why)
        case .io(let why):
            writeStderr("airlock: \(why)\n")
            return ExitCode(2)
        }
    }
}
