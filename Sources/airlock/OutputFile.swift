import AirlockNames
import AirlockSystem
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// `-o FILE`: the output of scan, probe or verify written so that FILE holds the old content or the whole new one,
/// never a part. The bytes go to a file without a name (`O_TMPFILE`) in FILE's folder — or, where that file system
/// cannot, in `$TMPDIR` or /tmp, copied into FILE's folder at the end — so a walk of that folder sees nothing and
/// nothing is left behind whatever ends the process. At the end it is synced, named `.airlock-output-PID-N` and
/// renamed over FILE (mode 0644), with SIGINT, SIGTERM and SIGHUP held back in between.
final class OutputFile {
    /// FILE as given.
    let path: String
    private let dirfd: Int32
    private let name: String
    private let fd: Int32
    /// Whether `fd` is a file without a name in FILE's folder (else elsewhere, copied at the end).
    private let inPlace: Bool
    /// The temporary name in FILE's folder while it exists (only while `commit` runs).
    private var temporary: String?
    private var failure: Int32 = 0

    /// Why FILE is refused (a usage error, exit 64) or cannot be written (exit 2).
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
            var folders: [(dev: UInt, ino: UInt, input: String)] = []
            for input in inputs {
                var other = stat()
                // "-" is standard input: the file it is (`airlock scan - -o F < F`), not a file named "-".
                guard (input == "-" ? fstat(0, &other) : stat(input, &other)) == 0 else { continue }
                if other.st_mode & S_IFMT == S_IFDIR && input != "-" {
                    folders.append((UInt(other.st_dev), UInt(other.st_ino), input))
                }
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
            if let input = try enclosingInput(folder, folders) {
                throw .refused(
                    "-o \(shown) is a file inside \(FileName(input).escaped), which is examined: it would be replaced; remove it first or write elsewhere"
                )
            }
        }
        let dirfd = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw .io("cannot open the folder of \(shown): \(Errno.current.text)") }
        // O_TMPFILE is __O_TMPFILE | O_DIRECTORY (Linux; the same value on x86-64 and arm64).
        let tmpfile = 0o20_000_000 | O_DIRECTORY | O_RDWR | O_CLOEXEC
        var fd = openat(dirfd, ".", tmpfile, 0o644)
        let inPlace = fd >= 0
        // Only a file system that cannot is worked around: a folder that may not be written is an error now, not
        // after the whole run.
        if !inPlace && ![EOPNOTSUPP, EISDIR, EINVAL].contains(errno) {
            let error = Errno.current.text
            close(dirfd)
            throw .io("cannot write \(shown): \(error)")
        }
        if !inPlace {
            // The file system cannot (NFS, overlayfs before Linux 6.6): a file without a name elsewhere, copied into
            // FILE's folder at the end.
            let tmp = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/tmp"
            fd = Glibc.open(tmp, tmpfile, 0o600)
            if fd < 0 { fd = Glibc.open("/tmp", tmpfile, 0o600) }
        }
        guard fd >= 0 else {
            let error = Errno.current.text
            close(dirfd)
            throw .io("cannot write \(shown): no temporary file (\(error))")
        }
        if inPlace { _ = fchmod(fd, 0o644) }
        return OutputFile(path: path, dirfd: dirfd, name: name, fd: fd, inPlace: inPlace)
    }

    /// The input folder that `folder` is, or is under, by device and inode: "..", opened by descriptor from
    /// `folder` up to /, so another path to an input folder (a bind mount of it, a link in a parent) is seen, which
    /// a comparison of the paths' text does not. A bind mount of a folder *under* an input folder is not seen from
    /// the other side (its ".." is the mount point's parent): that is a limit (docs/formats.md).
    private static func enclosingInput(
        _ folder: String, _ folders: [(dev: UInt, ino: UInt, input: String)]
    ) throws(Problem) -> String? {
        guard !folders.isEmpty else { return nil }
        var fd = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }  // reported when the folder is opened for writing
        defer { close(fd) }
        var level = stat()
        guard fstat(fd, &level) == 0 else { return nil }
        for _ in 0..<4096 {  // PATH_MAX / 2: no deeper path; a bound all the same
            if let hit = folders.first(where: { $0.dev == UInt(level.st_dev) && $0.ino == UInt(level.st_ino) }) {
                return hit.input
            }
            let parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard parent >= 0 else { return nil }
            var up = stat()
            guard fstat(parent, &up) == 0 else {
                close(parent)
                return nil
            }
            close(fd)
            fd = parent
            if up.st_dev == level.st_dev && up.st_ino == level.st_ino { return nil }  // "/": its own parent
            level = up
        }
        throw .refused("-o \(FileName(folder).escaped) is nested too deep to be checked")
    }

    private init(path: String, dirfd: Int32, name: String, fd: Int32, inPlace: Bool) {
        self.path = path
        self.dirfd = dirfd
        self.name = name
        self.fd = fd
        self.inPlace = inPlace
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

    /// Gives the complete output FILE's name (mode 0644), or throws and leaves FILE as it was. SIGINT, SIGTERM and
    /// SIGHUP wait until it is done: a name given is renamed over FILE, never left behind.
    func commit() throws(Problem) {
        let shown = FileName(path).escaped
        var held = sigset_t()
        var before = sigset_t()
        sigemptyset(&held)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&held, s) }
        pthread_sigmask(SIG_BLOCK, &held, &before)
        defer { pthread_sigmask(SIG_SETMASK, &before, nil) }
        if failure == 0 {
            let named = OutputFile.temporaryName()
            if inPlace {
                if fsync(fd) != 0 { failure = errno }
                var linked =
                    failure == 0 && linkat(AT_FDCWD, "/proc/self/fd/\(fd)", dirfd, named, AT_SYMLINK_FOLLOW) == 0
                if failure == 0 && !linked { linked = linkat(fd, "", dirfd, named, 0x1000 /* AT_EMPTY_PATH */) == 0 }
                if linked { temporary = named } else if failure == 0 { failure = errno }
            } else {
                copy(to: named)
            }
        }
        // FILE may have changed since the check: a folder or link put there now is refused as well.
        var st = stat()
        if failure == 0 && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT != S_IFREG {
            discard()
            throw .refused("-o \(shown) is no longer a regular file: not replaced")
        }
        if failure == 0, let temporary, renameat(dirfd, temporary, dirfd, name) != 0 { failure = errno }
        if failure != 0 {
            discard()
            throw .io("cannot write \(shown): \(Errno(failure).text)")
        }
        temporary = nil
        _ = fsync(dirfd)
    }

    /// The fallback: the bytes copied to `named` (created, 0644) in FILE's folder, synced; `temporary` set.
    private func copy(to named: String) {
        let out = openat(dirfd, named, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard out >= 0 else {
            failure = errno
            return
        }
        temporary = named
        defer { if close(out) != 0 && failure == 0 { failure = errno } }
        _ = fchmod(out, 0o644)
        var offset: off_t = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while failure == 0 {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno != EINTR { failure = errno }
                continue
            }
            if n == 0 { break }
            var done = 0
            while failure == 0 && done < n {
                let w = buffer[done..<n].withUnsafeBytes { Glibc.write(out, $0.baseAddress, $0.count) }
                if w < 0 {
                    if errno != EINTR { failure = errno }
                    continue
                }
                done += w
            }
            offset += off_t(n)
        }
        if failure == 0 && fsync(out) != 0 { failure = errno }
    }

    /// Removes the temporary file's name, if it has one; FILE is left as it was.
    func discard() {
        if let temporary { _ = unlinkat(dirfd, temporary, 0) }
        temporary = nil
    }

    private static func temporaryName() -> String {
        // Not FILE's name: a name near NAME_MAX would make it too long.
        ".airlock-output-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }
}

extension OutputFile.Problem {
    /// The refusal printed, exit status 64 (a usage error); the I/O error printed, exit status 2.
    var exit: any Error {
        switch self {
        case .refused(let why):
            writeStderr("airlock: \(why)\n")
            return ExitCode(64)
        case .io(let why):
            writeStderr("airlock: \(why)\n")
            return ExitCode(2)
        }
    }
}
