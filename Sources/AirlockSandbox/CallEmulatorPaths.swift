import AirlockSystem
import AirlockTrace
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

// Calls on paths performed for a notified caller: opens and creation, resolution beneath the sandbox's root (and
// through the caller's magic links), the policy check on what was resolved, calls on two names, and changes of owner,
// times and attributes. Part of `CallEmulator`: its invariants (at the top of CallEmulator.swift) hold here.

private typealias Call = CallEmulator.Call

extension CallEmulator.Call {
    // MARK: Opens

    mutating func openFile() -> Result<Outcome, Stop> {
        guard let path = operands.path else { return .failure(.errno(EFAULT)) }
        let flags = Int32(truncatingIfNeeded: operands.flags)
        let tmpfile: Int32 = 0o20000000
        if name == "openat2" {
            // The kernel's own checks of open_how (unknown flags or resolve bits, mode without O_CREAT).
            let knownResolve =
                airlock_resolve_beneath() | airlock_resolve_in_root() | airlock_resolve_no_symlinks()
                | airlock_resolve_no_magiclinks() | airlock_resolve_no_xdev() | 0x20 /* RESOLVE_CACHED */
            if operands.resolve & ~knownResolve != 0 || operands.flags >> 32 != 0 { return .failure(.errno(EINVAL)) }
            if flags & (O_CREAT | tmpfile) == 0 && operands.mode != 0 { return .failure(.errno(EINVAL)) }
        }
        let creates = flags & O_CREAT != 0
        if creates || flags & tmpfile == tmpfile, operands.mode & 0o6000 != 0 {
            return .failure(.errno(EPERM))
        }
        if !creates && flags & (O_TRUNC | tmpfile) == 0 && flags & oPath == 0 {
            // Nothing an open without O_CREAT, O_TRUNC or O_TMPFILE does has an effect before the descriptor is
            // used (FIFOs and devices are opened non-blocking): open it at once, judge what was opened, and close
            // it unseen if the policy refuses.
            let direct = (flags & ~O_NOCTTY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
            let fd: Int32
            switch resolve(path, lookupFlags: direct) {
            case .success(let d): fd = d
            case .failure(let stop): return .failure(stop)
            }
            if case .refused(let d) = check(resolvedOf: fd) { return .success(.refused(d)) }
            if flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags & ~(O_NONBLOCK | O_ASYNC)) }
            return install(fd, cloexec: flags & O_CLOEXEC != 0)
        }
        for attempt in 0..<2 {
            // Step 1: find the object, with no effect on it (oPath).
            var lookup = oPath | O_CLOEXEC | (flags & (O_NOFOLLOW | O_DIRECTORY))
            if creates && flags & O_EXCL != 0 { lookup |= O_NOFOLLOW }
            let found = resolve(path, lookupFlags: lookup)
            var object: Int32
            switch found {
            case .success(let fd):
                object = fd
                if creates && flags & O_EXCL != 0 { return .failure(.errno(EEXIST)) }
            case .failure(let stop):
                guard creates, case .failed(ENOENT) = stop.outcome else { return .failure(stop) }
                // Step 2: create it, exclusively, in the directory resolved beneath the root.
                switch create(path, flags: flags) {
                case .success(let fd): return install(fd, cloexec: flags & O_CLOEXEC != 0)
                case .failure(let s):
                    if case .failed(EEXIST) = s.outcome, attempt == 0, flags & O_EXCL == 0 { continue }
                    return .failure(s)
                }
            }
            // Step 3: judge what the kernel found, then open it for real through the descriptor.
            if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
            var st = stat()
            guard fstat(object, &st) == 0 else { return .failure(.errno(errno)) }
            if st.st_mode & S_IFMT == S_IFLNK { return .failure(.errno(ELOOP)) }
            if flags & oPath != 0 {
                // ADDFD cannot install an O_PATH file (the kernel's fget skips them): the caller gets a read-only
                // descriptor of the same object, opened as the sandbox's user (docs/sandbox.md).
                let plain =
                    O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (st.st_mode & S_IFMT == S_IFDIR ? O_DIRECTORY : 0)
                let fd = CallEmulator.onMagic(object) { open($0, plain) }
                guard fd >= 0 else { return .failure(.errno(errno)) }
                owned.append(fd)
                return install(fd, cloexec: flags & O_CLOEXEC != 0)
            }
            var reopen = (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY)) | O_CLOEXEC | O_NOCTTY
            // A FIFO or a device could block the open, and so could a lease another process of the sandbox holds
            // on the file (O_NONBLOCK makes the lease break EWOULDBLOCK): this thread serves the whole sandbox.
            let addedNonBlock = flags & O_NONBLOCK == 0
            reopen |= O_NONBLOCK
            let createMode = mode_t(truncatingIfNeeded: operands.mode & 0o7777)
            let fd =
                flags & tmpfile == tmpfile
                ? withUmaskValue { CallEmulator.onMagic(object) { open($0, reopen, createMode) } }
                : CallEmulator.onMagic(object) { open($0, reopen) }
            guard fd >= 0 else { return .failure(.errno(errno == ENXIO && addedNonBlock ? ENXIO : errno)) }
            owned.append(fd)
            if addedNonBlock { _ = fcntl(fd, F_SETFL, flags & ~(O_NONBLOCK | O_ASYNC)) }
            return install(fd, cloexec: flags & O_CLOEXEC != 0)
        }
        return .failure(.errno(EEXIST))
    }

    /// Creates the file `path` names, exclusively, and returns it open.
    mutating func create(_ path: PathOperand, flags: Int32) -> Result<Int32, Stop> {
        let mode = mode_t(truncatingIfNeeded: operands.mode & 0o7777)
        var created: Int32 = -1
        let result = withUmask { call -> Result<Outcome, Stop> in
            call.onEntry(path, check: true) { parent, entry in
                let fd = airlock_openat2(
                    parent, entry,
                    UInt64(UInt32(bitPattern: (flags & ~O_NOFOLLOW) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)),
                    UInt64(mode), airlock_resolve_beneath() | airlock_resolve_no_symlinks()
                )
                created = fd
                return fd >= 0 ? 0 : -1
            }
        }
        if created >= 0 { owned.append(created) }
        switch result {
        case .success(.returned): return .success(created)
        case .success(let other): return .failure(Stop(outcome: other))
        case .failure(let s): return .failure(s)
        }
    }

    // MARK: Resolution

    /// Opens what `path` names with `lookupFlags` (oPath), resolved as the caller's kernel would: from the
    /// sandbox's root (`RESOLVE_IN_ROOT`), or scoped to the caller's own directory when it asked for that.
    mutating func resolve(_ path: PathOperand, lookupFlags: Int32) -> Result<Int32, Stop> {
        guard !path.truncated else { return .failure(.errno(ENAMETOOLONG)) }
        let passThrough =
            operands.resolve
            & (airlock_resolve_no_symlinks() | airlock_resolve_no_magiclinks() | airlock_resolve_no_xdev())
        let scoped = operands.resolve & (airlock_resolve_beneath() | airlock_resolve_in_root())
        let start: Int32
        var target: [UInt8]
        var resolveFlags: UInt64
        if scoped != 0 {
            switch directory(path.dirfd) {
            case .success(let d): start = d
            case .failure(let s): return .failure(s)
            }
            target = path.raw
            resolveFlags = scoped | passThrough
        } else {
            guard var absolute = path.absolute else { return .failure(.errno(path.raw.isEmpty ? ENOENT : ENOTDIR)) }
            switch magic(&absolute, lookupFlags: lookupFlags) {
            case .some(let r): return r
            case .none: break
            }
            start = emulator.rootFd
            target = absolute
            resolveFlags = airlock_resolve_in_root() | passThrough
        }
        if target.isEmpty { target = [UInt8(ascii: ".")] }
        let fd = CallEmulator.withPath(target) {
            airlock_openat2(start, $0, UInt64(UInt32(bitPattern: lookupFlags)), 0, resolveFlags)
        }
        guard fd >= 0 else { return .failure(.errno(errno)) }
        owned.append(fd)
        return .success(fd)
    }

    /// The caller's directory `dirfd` (or working directory), open oPath.
    mutating func directory(_ dirfd: Int32) -> Result<Int32, Stop> {
        let link = dirfd == Int32(AT_FDCWD) ? "/proc/\(caller.hostTid)/cwd" : "/proc/\(caller.hostTid)/fd/\(dirfd)"
        let fd = asSupervisor { open(link, oPath | O_CLOEXEC) }
        guard fd >= 0 else { return .failure(.errno(errno == ENOENT ? EBADF : errno)) }
        owned.append(fd)
        return .success(fd)
    }

    /// Paths through /proc's magic links name the *caller's* process (`/proc/self`, `/dev/fd/N`,
    /// `/proc/PID/fd/N`): the supervisor is not in the sandbox's PID namespace, so it rewrites them to the
    /// caller's PID and opens descriptor links from the host's /proc, whose ptrace checks then apply to the
    /// sandbox's user as they would inside. Returns nil when `path` is not such a path (it may be rewritten).
    mutating func magic(_ path: inout [UInt8], lookupFlags: Int32) -> Result<Int32, Stop>? {
        var parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map { Array($0) }
        func s(_ p: [UInt8]) -> String { String(decoding: p, as: UTF8.self) }
        guard parts.count >= 2, s(parts[0]) == "proc" || s(parts[0]) == "dev" else { return nil }
        guard let status = callerStatus() else { return .failure(.errno(ESRCH)) }
        let tgid = Array(String(status.nsTgid).utf8)
        switch (s(parts[0]), s(parts[1])) {
        case ("proc", "self"): parts[1] = tgid
        // procfs's other links into the caller's own directory.
        case ("proc", "net"), ("proc", "mounts"): parts.insert(tgid, at: 1)
        case ("proc", "thread-self"):
            parts.replaceSubrange(1...1, with: [tgid, Array("task".utf8), Array(String(status.nsTid).utf8)])
        case ("dev", "fd"): parts.replaceSubrange(0...1, with: [Array("proc".utf8), tgid, Array("fd".utf8)])
        case ("dev", "stdin"), ("dev", "stdout"), ("dev", "stderr"):
            let n = ["stdin": "0", "stdout": "1", "stderr": "2"][s(parts[1])]!
            parts.replaceSubrange(0...1, with: [Array("proc".utf8), tgid, Array("fd".utf8), Array(n.utf8)])
        default: break
        }
        let trailingSlash = path.last == UInt8(ascii: "/")
        path = parts.reduce(into: []) { $0 += [UInt8(ascii: "/")] + $1 }
        if trailingSlash { path.append(UInt8(ascii: "/")) }
        guard s(parts[0]) == "proc", parts.count >= 3, let pid = Int32(s(parts[1])) else { return nil }
        var i = 2
        if s(parts[2]) == "task", parts.count >= 5 { i = 4 }
        guard ["fd", "cwd", "root", "exe"].contains(s(parts[i])) else { return nil }
        // Another process's descriptors and directories: not something a model needs; refused rather than
        // opened from outside with the supervisor's view.
        guard pid == status.nsTgid else { return .failure(.errno(EACCES)) }
        let rest =
            parts.count > i + (s(parts[i]) == "fd" ? 2 : 1)
            ? Array(parts[(i + (s(parts[i]) == "fd" ? 2 : 1))...]) : []
        var base: [UInt8]
        switch s(parts[i]) {
        case "root":
            base = [UInt8(ascii: "/")]
        case "cwd":
            let hostTid = caller.hostTid
            guard let cwd = asSupervisor({ SyscallDecoder.link("/proc/\(hostTid)/cwd") }) else {
                return .failure(.errno(ENOENT))
            }
            base = cwd
        default:
            let hostLink =
                s(parts[i]) == "exe"
                ? "/proc/\(status.hostTgid)/exe"
                : (parts.count > i + 1 && Int32(s(parts[i + 1])) != nil
                    ? "/proc/\(status.hostTgid)/fd/\(s(parts[i + 1]))" : nil)
            guard let hostLink else { return nil }
            if rest.isEmpty {
                // The object itself, found through the caller's /proc link (O_PATH: no access to it yet), then
                // opened as the sandbox's user.
                if lookupFlags & O_NOFOLLOW != 0 && lookupFlags & oPath == 0 { return .failure(.errno(ELOOP)) }
                let object = asSupervisor { open(hostLink, oPath | O_CLOEXEC | (lookupFlags & O_NOFOLLOW)) }
                guard object >= 0 else { return .failure(.errno(errno)) }
                owned.append(object)
                if lookupFlags & oPath != 0 { return .success(object) }
                let fd = CallEmulator.onMagic(object) { open($0, lookupFlags & ~O_NOFOLLOW) }
                guard fd >= 0 else { return .failure(.errno(errno)) }
                owned.append(fd)
                return .success(fd)
            }
            guard let linked = asSupervisor({ SyscallDecoder.link(hostLink) }) else { return .failure(.errno(errno)) }
            guard linked.first == UInt8(ascii: "/"), !linked.hasSuffix(" (deleted)") else {
                return .failure(.errno(ENOTDIR))
            }
            base = linked
        }
        path = rest.reduce(into: base) { $0 += [UInt8(ascii: "/")] + $1 }
        if trailingSlash { path.append(UInt8(ascii: "/")) }
        return nil
    }

    /// The caller's ids and umask, from /proc/TID/status (read once per call).
    mutating func callerStatus() -> (hostTgid: pid_t, nsTgid: pid_t, nsTid: pid_t, umask: UInt32)? {
        if let s = caller.status { return s }
        guard let bytes = try? FileBytes.read("/proc/\(caller.hostTid)/status", limit: 65536, what: "status") else {
            return nil
        }
        var hostTgid: pid_t = 0, nsTgid: pid_t = 0, nsTid: pid_t = 0
        var mask: UInt32 = 0o022
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let last = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.map(String.init) ?? ""
            if line.hasPrefix("Tgid:") { hostTgid = pid_t(last) ?? 0 }
            if line.hasPrefix("NStgid:") { nsTgid = pid_t(last) ?? 0 }
            if line.hasPrefix("NSpid:") { nsTid = pid_t(last) ?? 0 }
            if line.hasPrefix("Umask:") { mask = UInt32(last, radix: 8) ?? 0o022 }
        }
        guard hostTgid > 0, nsTgid > 0, nsTid > 0 else { return nil }
        caller.status = (hostTgid, nsTgid, nsTid, mask)
        return caller.status
    }

    /// The parent directory of `path`, open oPath and resolved beneath the root, and the last component
    /// (with any trailing slash kept, which the kernel judges).
    mutating func parent(_ path: PathOperand) -> Result<(Int32, [UInt8]), Stop> {
        guard !path.truncated else { return .failure(.errno(ENAMETOOLONG)) }
        var raw = path.raw
        var trailing: [UInt8] = []
        while raw.count > 1 && raw.last == UInt8(ascii: "/") {
            raw.removeLast()
            trailing.append(UInt8(ascii: "/"))
        }
        guard !raw.isEmpty else { return .failure(.errno(ENOENT)) }
        let cut = raw.lastIndex(of: UInt8(ascii: "/"))
        let entry = Array(raw[(cut.map { $0 + 1 } ?? 0)...]) + trailing
        guard !entry.isEmpty, entry != [UInt8(ascii: "/")] else { return .failure(.errno(EBUSY)) }
        var directoryPath = path
        directoryPath.raw = cut.map { $0 == 0 ? [UInt8(ascii: "/")] : Array(raw[..<$0]) } ?? []
        switch resolve(directoryPath, lookupFlags: oPath | O_DIRECTORY | O_CLOEXEC) {
        case .success(let fd): return .success((fd, entry))
        case .failure(let s): return .failure(s)
        }
    }

    /// Performs `body(parent, entry)` on the entry `path` names, after checking the resolved name.
    mutating func onEntry(
        _ path: PathOperand?, check: Bool, _ body: (Int32, UnsafePointer<CChar>) -> Int32
    ) -> Result<Outcome, Stop> {
        guard let path else { return .failure(.errno(EFAULT)) }
        let parentFd: Int32, entry: [UInt8]
        switch parent(path) {
        case .success(let (p, e)): (parentFd, entry) = (p, e)
        case .failure(let s): return .failure(s)
        }
        if check, case .refused(let d) = checkEntry(parentFd, entry) { return .success(.refused(d)) }
        let rc = CallEmulator.withPath(entry) { body(parentFd, $0) }
        return Call.answer(rc, Int64(rc))
    }

    /// Performs `body(fd)` on the object `path` names, open oPath (following a final symlink when `follow`).
    mutating func onObject(_ path: PathOperand?, follow: Bool, _ body: (Int32) -> Int32) -> Result<Outcome, Stop> {
        guard let path else { return .failure(.errno(EFAULT)) }
        let object: Int32
        switch resolve(path, lookupFlags: oPath | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW)) {
        case .success(let fd): object = fd
        case .failure(let s): return .failure(s)
        }
        if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
        let rc = body(object)
        return Call.answer(rc, Int64(rc))
    }

    /// Performs `body(fd)` on the caller's directory descriptor itself (`AT_EMPTY_PATH` with an empty path).
    mutating func onDescriptorItself(_ body: (Int32) -> Int32) -> Result<Outcome, Stop> {
        let object: Int32
        switch directory(operands.path?.dirfd ?? Int32(AT_FDCWD)) {
        case .success(let fd): object = fd
        case .failure(let s): return .failure(s)
        }
        if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
        let rc = body(object)
        return Call.answer(rc, 0)
    }

    // MARK: Policy on what was resolved

    /// Applies the policy to the name of what the kernel resolved.
    mutating func check(resolvedOf fd: Int32, second: Bool = false) -> Outcome {
        let real = SyscallDecoder.link("/proc/thread-self/fd/\(fd)") ?? []
        return record(real, second: second)
    }

    mutating func checkEntry(_ parentFd: Int32, _ entry: [UInt8], second: Bool = false) -> Outcome {
        // `.` and `..` name the directory or its parent, not an entry: judge the directory's own name (a path
        // ending in `/tmp/d/..` is `/tmp`, and `/tmp/..` is `/`). Both stay inside the sandbox's mount tree.
        var name = entry
        while name.count > 1 && name.last == UInt8(ascii: "/") { name.removeLast() }
        if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] {
            let dir = CallEmulator.withPath(name) { openat(parentFd, $0, oPath | O_NOFOLLOW | O_CLOEXEC) }
            guard dir >= 0 else { return .refused(Decision(action: .denied, errno: errno, rule: .notifyDefault)) }
            owned.append(dir)
            return check(resolvedOf: dir, second: second)
        }
        var real = SyscallDecoder.link("/proc/thread-self/fd/\(parentFd)") ?? []
        if real != [UInt8(ascii: "/")] { real.append(UInt8(ascii: "/")) }
        real += entry
        return record(real, second: second)
    }

    mutating func record(_ real: [UInt8], second: Bool) -> Outcome {
        let text = PathText.display(real)
        if second { trace.resolved2 = text } else { trace.resolved = text }
        // The policy already judged the requested names: judge again only when what was resolved differs.
        if (trace.resolved ?? trace.path) == trace.path && (trace.resolved2 ?? trace.path2) == trace.path2 {
            return .returned(0)
        }
        var judged = trace
        judged.path = trace.resolved ?? trace.path
        judged.path2 = trace.resolved2 ?? trace.path2
        let decision = recheck(judged)
        return decision.action == .allowed ? .returned(0) : .refused(decision)
    }

    // MARK: Two names

    mutating func twoEntries() -> Result<Outcome, Stop> {
        guard let from = operands.path, let to = operands.path2 else { return .failure(.errno(EFAULT)) }
        let linking = name == "link" || name == "linkat"
        // A trailing slash on the old name follows it too (see changeTimes).
        let follow =
            linking
            && (Int32(truncatingIfNeeded: operands.flags) & AT_SYMLINK_FOLLOW != 0 || CallEmulator.endsWithSlash(from))
        if linking && Int32(truncatingIfNeeded: operands.flags) & atEmptyPath != 0 {
            return .failure(.errno(ENOENT))  // needs CAP_DAC_READ_SEARCH, which the sandbox does not have
        }
        var source: (Int32, [UInt8])? = nil
        var object: Int32 = -1
        if follow {
            switch resolve(from, lookupFlags: oPath | O_CLOEXEC) {
            case .success(let fd): object = fd
            case .failure(let s): return .failure(s)
            }
            if case .refused(let d) = check(resolvedOf: object) { return .success(.refused(d)) }
        } else {
            switch parent(from) {
            case .success(let p): source = p
            case .failure(let s): return .failure(s)
            }
            if case .refused(let d) = checkEntry(source!.0, source!.1) { return .success(.refused(d)) }
        }
        let target: (Int32, [UInt8])
        switch parent(to) {
        case .success(let p): target = p
        case .failure(let s): return .failure(s)
        }
        if case .refused(let d) = checkEntry(target.0, target.1, second: true) { return .success(.refused(d)) }
        let flags = UInt32(truncatingIfNeeded: operands.flags)
        let rc: Int32 = CallEmulator.withPath(target.1) { newName in
            if linking {
                if follow {
                    return CallEmulator.onMagic(object) { linkat(AT_FDCWD, $0, target.0, newName, AT_SYMLINK_FOLLOW) }
                }
                return CallEmulator.withPath(source!.1) { linkat(source!.0, $0, target.0, newName, 0) }
            }
            return CallEmulator.withPath(source!.1) {
                airlock_renameat2(source!.0, $0, target.0, newName, flags)
            }
        }
        return Call.answer(rc, 0)
    }

    // MARK: Owner, times, attributes

    mutating func changeOwner() -> Result<Outcome, Stop> {
        guard let (uid, gid) = operands.owner else { return .failure(.errno(EFAULT)) }
        // Ids inside the sandbox: only its own user and group are mapped; -1 means "unchanged".
        func host(_ v: UInt64, inside: UInt32, host: UInt32) -> UInt32? {
            let id = UInt32(truncatingIfNeeded: v)
            if id == UInt32.max { return id }
            return id == inside ? host : nil
        }
        guard let u = host(uid, inside: emulator.insideUid, host: emulator.hostUid),
            let g = host(gid, inside: emulator.insideGid, host: emulator.hostGid)
        else { return .failure(.errno(EINVAL)) }
        let flags = Int32(truncatingIfNeeded: operands.flags)
        if flags & atEmptyPath != 0, operands.path?.raw.isEmpty ?? true {
            return onDescriptorItself { fchownat($0, "", u, g, atEmptyPath) }
        }
        return onObject(operands.path, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { fchownat($0, "", u, g, atEmptyPath) }
    }

    mutating func changeTimes() -> Result<Outcome, Stop> {
        let decoder = SyscallDecoder(hostPid: caller.hostTid)
        var times = [timespec](repeating: timespec(tv_sec: 0, tv_nsec: airlock_utime_now()), count: 2)
        let address: UInt64
        switch name {
        case "utime": address = args[1]
        case "utimes": address = args[1]
        case "futimesat": address = args[2]
        default: address = args[2]
        }
        if address != 0 {
            let size = name == "utime" ? 16 : 32
            guard let raw = asSupervisor({ decoder.read(address, count: size) }), raw.count == size else {
                return .failure(.errno(EFAULT))
            }
            let w = raw.withUnsafeBytes { b in
                (0..<(size / 8)).map { b.loadUnaligned(fromByteOffset: $0 * 8, as: Int.self) }
            }
            switch name {
            case "utime":
                times = [timespec(tv_sec: w[0], tv_nsec: 0), timespec(tv_sec: w[1], tv_nsec: 0)]
            case "utimes", "futimesat":
                guard (0..<1_000_000).contains(w[1]), (0..<1_000_000).contains(w[3]) else {
                    return .failure(.errno(EINVAL))
                }
                times = [timespec(tv_sec: w[0], tv_nsec: w[1] * 1000), timespec(tv_sec: w[2], tv_nsec: w[3] * 1000)]
            default:
                times = [timespec(tv_sec: w[0], tv_nsec: w[1]), timespec(tv_sec: w[2], tv_nsec: w[3])]
            }
        }
        // A trailing slash makes the kernel follow the last component whatever the flags say, and the entry is
        // then resolved by the kernel from this thread's root, the host's: such a path goes the following way,
        // resolved beneath the sandbox's root.
        let noFollow =
            name == "utimensat" && Int32(truncatingIfNeeded: operands.flags) & AT_SYMLINK_NOFOLLOW != 0
            && !CallEmulator.endsWithSlash(operands.path)
        if noFollow {
            return onEntry(operands.path, check: true) { parent, entry in
                utimensat(parent, entry, times, AT_SYMLINK_NOFOLLOW)
            }
        }
        return onObject(operands.path, follow: true) { fd in
            CallEmulator.onMagic(fd) { utimensat(AT_FDCWD, $0, times, 0) }
        }
    }

    mutating func changeAttribute() -> Result<Outcome, Stop> {
        let decoder = SyscallDecoder(hostPid: caller.hostTid)
        guard let (attribute, cut) = asSupervisor({ decoder.bytes(args[1], max: 256) }), !cut else {
            return .failure(.errno(ERANGE))
        }
        let setting = name.hasSuffix("setxattr")
        var value: [UInt8] = []
        if setting {
            guard args[3] <= 65536 else { return .failure(.errno(E2BIG)) }
            let size = Int(args[3])
            if size > 0 {
                guard let v = asSupervisor({ decoder.read(args[2], count: size) }), v.count == size else {
                    return .failure(.errno(EFAULT))
                }
                value = v
            }
        }
        let flags = Int32(truncatingIfNeeded: args[4])
        // As for utimensat: a trailing slash follows, and must be resolved beneath the sandbox's root.
        let follow = !name.hasPrefix("l") || CallEmulator.endsWithSlash(operands.path)
        let body: (UnsafePointer<CChar>) -> Int32 = { path in
            CallEmulator.withPath(attribute) { a in
                if setting {
                    return value.withUnsafeBytes {
                        airlock_setxattr(path, a, $0.baseAddress, value.count, flags, follow ? 1 : 0)
                    }
                }
                return airlock_removexattr(path, a, follow ? 1 : 0)
            }
        }
        if follow { return onObject(operands.path, follow: true) { fd in CallEmulator.onMagic(fd, body) } }
        return onEntry(operands.path, check: true) { parent, entry in
            CallEmulator.withPath(Array("/proc/thread-self/fd/\(parent)/".utf8) + CallEmulator.bytes(entry)) {
                body($0)
            }
        }
    }
}

extension CallEmulator {
    /// Whether a path ends with `/` (after a name): the kernel then follows its last component.
    static func endsWithSlash(_ path: PathOperand?) -> Bool {
        guard let raw = path?.raw, raw.count > 1 else { return false }
        return raw.last == UInt8(ascii: "/")
    }

    static func withPath<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (bytes + [0]).withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { body($0) }
        }
    }

    static func bytes(_ p: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeBufferPointer(start: p, count: strlen(p))).map { UInt8(bitPattern: $0) }
    }

    /// `body` with the path of the supervisor's own descriptor `fd` through /proc, which the kernel follows to the
    /// object itself without resolving any name again.
    static func onMagic<T>(_ fd: Int32, _ body: (UnsafePointer<CChar>) -> T) -> T {
        "/proc/thread-self/fd/\(fd)".withCString(body)
    }
}
