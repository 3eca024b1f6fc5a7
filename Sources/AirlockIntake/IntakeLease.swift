internal import AirlockSystem
internal import AirlockJSON

#if canImport(Glibc)
    import Glibc
#endif

/// One intake worker's place on a shared root (`.airlock/workers/NAME/`) and the lease that says it is alive.
///
/// The folder holds the worker's `lock` (`flock`: two processes of one name on one host refuse each other), its
/// `lease` (a line of JSON with a counter the worker rewrites every `seconds / 6`), its `journal` and `delivered/`
/// (the deliveries it claimed). Another worker that sees the lease unchanged for `seconds` takes the whole folder over
/// by one `rename` (`IntakeTakeover`), so two survivors cannot both recover it.
///
/// A worker checks its lease before every move that another worker could also make (`fence()`): the folder must
/// still be `.airlock/workers/NAME` (the same inode) and renewed less than half a lease ago, renewing first when it
/// was not (a process stopped or starved for a while). Once lost, a lease stays lost: every later move is refused and
/// the process should exit.
final class IntakeLease: @unchecked Sendable {
    /// The worker's name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    let name: String
    /// How long a lease lasts without being renewed.
    let seconds: Double
    /// `.airlock/workers/`.
    let workers: Int32
    /// `.airlock/workers/NAME/`.
    let folder: Int32
    private let lockFD: Int32
    private let leaseFD: Int32
    private let identity: (dev: UInt64, ino: UInt64)
    private let monitor = Monitor()
    private var counter: UInt64 = 0
    /// The lease as this process last wrote it: anything else found there means a second process has this name.
    private var written: [UInt8] = []
    private var renewedAt: UInt64 = 0
    private var lostReason: String?
    private var stopped = false

    /// Longest worker name.
    static let maxNameLength = 64

    /// Whether `name` is a worker name: a safe file name (`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`).
    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= maxNameLength else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) }
        return alnum(first) && bytes.allSatisfy { alnum($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    /// The default worker name: this host's name (made safe) and the process id, `HOST-PID`.
    static func defaultName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buf, buf.count - 1) == 0 ? String(cString: buf) : "intake"
        var safe = String(
            host.unicodeScalars.prefix(40).map { s -> Character in
                s.isASCII && (isalnum(Int32(s.value)) != 0 || s == "." || s == "_" || s == "-") ? Character(s) : "-"
            })
        if safe.isEmpty || !isValidName(safe + "-1") { safe = "intake" }
        return "\(safe)-\(getpid())"
    }

    /// This kernel's boot id: two workers with the same one share a kernel, so `flock` tells whether the other is
    /// alive.
    /// `AIRLOCK_INTAKE_BOOT_ID` replaces it (the tests simulate a second host on this kernel with it).
    static let bootID: String = {
        if let v = getenv("AIRLOCK_INTAKE_BOOT_ID"), v.pointee != 0 { return String(cString: v) }
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        let bytes = FileSystem.readPrefix(fd, upTo: 64) ?? []
        return String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
    }()

    /// Monotonic nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Creates (or reopens) `.airlock/workers/NAME/` under `state` (`.airlock/`), takes its lock and writes the first
    /// lease. Throws when another process holds the name on this host.
    init(state: Int32, name: String, seconds: Double, display: String) throws(IntakeError) {
        guard IntakeLease.isValidName(name) else {
            throw IntakeError(
                "worker name \(name.debugDescription): expected 1 to 64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"
            )
        }
        guard seconds >= 1 && seconds <= 3600 else {
            throw IntakeError("lease of \(seconds) s: expected 1 to 3600 seconds")
        }
        self.name = name
        self.seconds = seconds
        if mkdirat(state, "workers", 0o700) != 0 && errno != EEXIST {
            throw IntakeError.system("cannot create \(display)/workers")
        }
        let workers = openat(state, "workers", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard workers >= 0 else { throw IntakeError.system("cannot open \(display)/workers (a folder, not a link)") }
        if mkdirat(workers, name, 0o700) != 0 && errno != EEXIST {
            close(workers)
            throw IntakeError.system("cannot create \(display)/workers/\(name)")
        }
        let folder = openat(workers, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard folder >= 0 else {
            close(workers)
            throw IntakeError.system("cannot open \(display)/workers/\(name) (a folder, not a link)")
        }
        func fail(_ e: IntakeError, _ fds: Int32...) -> IntakeError {
            for fd in fds + [folder, workers] { close(fd) }
            return e
        }
        let lock = openat(folder, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lock >= 0 else { throw fail(.system("cannot open \(display)/workers/\(name)/lock")) }
        // Another worker's `deadReason` holds this lock for an instant when it checks a dead worker of this name:
        // tried again a few times over half a second before the name counts as taken.
        var locked = FileSystem.tryLock(lock)
        for _ in 0..<5 where !locked {
            usleep(100_000)
            locked = FileSystem.tryLock(lock)
        }
        guard locked else {
            let e = Errno.current
            let holder = IntakeLease.readLease(folder)?["pid"] ?? "?"
            throw fail(
                IntakeError(
                    "another airlock intake (pid \(holder)) works on this root as worker \(name): one process per worker name",
                    errno: e), lock)
        }
        let lease = openat(folder, "lease", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lease >= 0 else { throw fail(.system("cannot open \(display)/workers/\(name)/lease"), lock) }
        var st = stat()
        _ = fstat(folder, &st)
        identity = (UInt64(st.st_dev), UInt64(st.st_ino))
        self.workers = workers
        self.folder = folder
        lockFD = lock
        leaseFD = lease
        if let previous = IntakeLease.readLease(folder) {
            if let n = UInt64(previous["counter"] ?? "") { counter = n }
            // Written on another kernel (another host, or this one before a reboot) lately: the name may be alive
            // there, where this host's lock cannot tell. Wait for a lease's length to see whether it changes.
            if let boot = previous["boot"], boot != IntakeLease.bootID,
                let time = Double(previous["time"] ?? ""), Intake.wallClock() - time < 2 * seconds
            {
                let first = IntakeLease.readLease(folder)
                let deadline = IntakeLease.now() + UInt64(seconds * 1e9)
                while IntakeLease.now() < deadline {
                    usleep(200_000)
                    if IntakeLease.readLease(folder) != first {
                        // (deinit closes the descriptors)
                        throw IntakeError(
                            "worker \(name) is alive on another host (pid \(previous["pid"] ?? "?"), boot id \(boot)): one process per worker name"
                        )
                    }
                }
                if let n = UInt64(IntakeLease.readLease(folder)?["counter"] ?? "") { counter = n }
            }
        }
        guard renew() else {
            throw IntakeError("cannot write the lease \(display)/workers/\(name)/lease: \(lostReason ?? "")")
        }
    }

    deinit {
        for fd in [leaseFD, lockFD, folder, workers] { close(fd) }
    }

    /// Why the lease was lost, or nil while it is held.
    var lost: String? { monitor.locked { lostReason } }

    /// Whether the folder open as `folder` is still `.airlock/workers/NAME`.
    private func stillMine() -> Bool {
        var st = stat()
        guard fstatat(workers, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        return UInt64(st.st_dev) == identity.dev && UInt64(st.st_ino) == identity.ino
    }

    /// Rewrites the lease (a new counter, the wall time); false, with the lease lost, when the folder was taken
    /// over or the last renewal is so old that another worker may be taking it over.
    @discardableResult
    func renew() -> Bool {
        monitor.locked {
            if lostReason != nil { return false }
            let now = IntakeLease.now()
            if renewedAt != 0 && Double(now - renewedAt) / 1e9 > seconds * 0.9 {
                lostReason =
                    "not renewed for \(Int(Double(now - renewedAt) / 1e9)) s (lease \(Int(seconds)) s): another worker may be recovering its models"
                return false
            }
            guard stillMine() else {
                lostReason = "its folder .airlock/workers/\(name) was taken over by another worker"
                return false
            }
            if !written.isEmpty, let now = FileSystem.readPrefix(leaseFD, upTo: written.count + 1), now != written {
                lostReason =
                    "another process (\(String(decoding: now.prefix(120), as: UTF8.self))) writes its lease: two workers with one name"
                return false
            }
            counter += 1
            var wall = timespec()
            clock_gettime(CLOCK_REALTIME, &wall)
            let json = JSON.object([
                ("pid", .string(String(getpid()))), ("boot", .string(IntakeLease.bootID)),
                ("counter", .string(String(counter))), ("time", .string(String(wall.tv_sec))),
                ("seconds", .string(String(Int(seconds)))),
            ])
            // Padded to a fixed size, so a rewrite never leaves the tail of a longer one.
            var line = Array(json.serialized().utf8)
            line += [UInt8](repeating: 0x20, count: max(0, 255 - line.count)) + [0x0A]
            let n = line.withUnsafeBytes { pwrite(leaseFD, $0.baseAddress, $0.count, 0) }
            if n == line.count { written = line }
            guard n == line.count, fdatasync(leaseFD) == 0 else {
                // A failed write is not a lost lease yet: the next renewal tries again, and the age decides.
                return true
            }
            renewedAt = now
            return true
        }
    }

    /// Throws unless this worker still holds its lease; renews it first when the last renewal is half a lease old.
    /// Called before every move another worker could make too.
    func fence() throws(IntakeError) {
        let (reason, age): (String?, Double) = monitor.locked {
            (lostReason, Double(IntakeLease.now() - renewedAt) / 1e9)
        }
        if let reason { throw IntakeError("worker \(name) lost its lease (\(reason)): it stops touching the root") }
        if age > seconds / 2 || !stillMine() {
            if !renew() {
                throw IntakeError("worker \(name) lost its lease (\(lost ?? "")): it stops touching the root")
            }
        }
    }

    /// Renews the lease from a thread every `seconds / 6` until `stop()`.
    func startRenewing() {
        let interval = max(0.05, min(10, seconds / 6))
        startThread(stackBytes: 256 << 10) { [self] in
            while !monitor.locked({ stopped || lostReason != nil }) {
                var ts = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - Double(Int(interval))) * 1e9))
                var rest = timespec()
                while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
                if monitor.locked({ stopped }) { return }
                renew()
            }
        }
    }

    /// Stops renewing (the worker is leaving).
    func stop() { monitor.locked { stopped = true } }

    /// Removes the worker's folder when nothing is left in it but its lock, lease, empty journal and empty
    /// `delivered/` and `takeover/`: a worker leaving cleanly leaves no trace. Returns whether it did.
    @discardableResult
    func removeIfIdle() -> Bool {
        stop()
        guard lost == nil, stillMine() else { return false }
        for sub in ["delivered", "takeover"] {
            let fd = openat(folder, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if fd >= 0 {
                let names = IntakeRoot.list(fd)
                close(fd)
                if !names.isEmpty { return false }
            }
        }
        var st = stat()
        if fstatat(folder, "journal", &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size > 0 { return false }
        for file in ["journal", "lease", "lock"] { _ = unlinkat(folder, file, 0) }
        for sub in ["delivered", "takeover"] { _ = unlinkat(folder, sub, AT_REMOVEDIR) }
        return unlinkat(workers, name, AT_REMOVEDIR) == 0
    }

    /// The members of the lease in the worker folder `folder` (at most 4 KiB read), or nil.
    static func readLease(_ folder: Int32) -> [String: String]? {
        let fd = openat(folder, "lease", O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let bytes = FileSystem.readPrefix(fd, upTo: 4096),
            case .object(let members)? = try? JSON.parse(Array(bytes.prefix { $0 != 0x0A && $0 != 0x20 }))
        else { return nil }
        var out: [String: String] = [:]
        for (k, v) in members { if case .string(let s) = v { out[k] = s } }
        return out
    }
}

extension Intake {
    /// Whether `name` may name a worker (`--worker`): `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    public static func isValidWorkerName(_ name: String) -> Bool { IntakeLease.isValidName(name) }
}
