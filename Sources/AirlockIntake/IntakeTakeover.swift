internal import AirlockSystem
import AirlockNames

#if canImport(Glibc)
    import Glibc
#endif

/// What this worker saw of the other workers' leases: each lease's bytes and when they were first seen unchanged.
final class LeaseSightings: @unchecked Sendable {
    private let monitor = Monitor()
    private var seen: [String: (lease: String, since: UInt64)] = [:]

    /// Records `lease` for `worker`; returns for how many seconds it has been seen unchanged.
    func unchanged(_ worker: String, _ lease: String) -> Double {
        monitor.locked {
            let now = IntakeLease.now()
            if let s = seen[worker], s.lease == lease { return Double(now - s.since) / 1e9 }
            seen[worker] = (lease, now)
            return 0
        }
    }

    /// Forgets the workers not in `present`.
    func keep(_ present: Set<String>) { monitor.locked { seen = seen.filter { present.contains($0.key) } } }
}

/// Lease recovery: a worker whose lease expired is taken over by one survivor, which moves the dead worker's folder
/// into its own `takeover/` with one `rename` (the claim: a second survivor gets ENOENT), adopts the unfinished
/// models of its journal (their deliveries into its own `delivered/`, their records into its own journal) and then
/// finishes or rolls back each of them as after a crash of its own.
extension Intake {
    /// Most worker folders looked at in one pass, and most takeover folders adopted in one pass.
    static let maxWorkersPerPass = 4096

    /// Takes over every other worker of the root that is dead: its lease unchanged for a lease's length (seen by this
    /// worker's monotonic clock, so clocks need not agree), written more than two lease lengths ago by the wall
    /// clock (only when its lock cannot tell: another kernel), or, on this kernel, its lock free. Queues what it adopted for examination; returns the names taken over.
    @discardableResult
    func takeOverDead() -> [String] {
        guard lease.lost == nil else { return [] }
        var taken: [String] = []
        var present = Set<String>()
        for entry in IntakeRoot.list(lease.workers).prefix(Intake.maxWorkersPerPass) {
            let other = entry.escaped
            guard other != lease.name, IntakeLease.isValidName(other) else { continue }
            present.insert(other)
            guard let why = deadReason(other) else { continue }
            guard (try? lease.fence()) != nil else { return taken }
            let claim = "\(other).\(Intake.newID())"
            let claimed = other.withCString { from in
                claim.withCString { to in FileSystem.renameNoReplace(lease.workers, from, takeover, to) }
            }
            guard claimed else { continue }  // another survivor claimed it first (ENOENT), or it came back
            _ = fsync(lease.workers)
            _ = fsync(takeover)
            log("worker \(other) is gone (\(why)): taking over its models")
            taken.append(other)
        }
        sightings.keep(present)
        if !taken.isEmpty {
            let records = (try? adoptTakeovers()) ?? []
            let again = recover(records)
            queueRecovered(again)
        }
        return taken
    }

    /// Why worker `other` counts as dead, or nil while it may be alive.
    private func deadReason(_ other: String) -> String? {
        let fd = other.withCString { openat(lease.workers, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let theirs = IntakeLease.readLease(fd)
        let length = max(lease.seconds, Double(theirs?["seconds"] ?? "") ?? 0)
        var lockHeld = false
        if let theirs, let boot = theirs["boot"], !boot.isEmpty, boot == IntakeLease.bootID {
            // Same kernel: its lock says exactly whether its process is alive.
            let lock = openat(fd, "lock", O_RDWR | O_NOFOLLOW | O_CLOEXEC)
            guard lock >= 0 else { return nil }
            defer { close(lock) }
            if FileSystem.tryLock(lock) { return "its process (pid \(theirs["pid"] ?? "?")) ended" }
            // Alive, or stopped or hung: only the lease unchanged for a lease's length (monotonic) decides, never the
            // wall clock (a clock set wrong must not take a live worker over).
            lockHeld = true
        }
        var st = stat()
        _ = fstat(fd, &st)
        let key = theirs.map { "\($0["counter"] ?? "")/\($0["time"] ?? "")" } ?? "none/\(st.st_ino)"
        let still = sightings.unchanged(other, key)
        if still >= length { return "its lease was not renewed for \(Int(still)) s" }
        if lockHeld { return nil }
        // The lease file's mtime, not the time its writer wrote in it: a file server sets mtimes from its own clock,
        // so only this host's and the server's clocks need to agree (within a lease), never two workers' hosts.
        var leaseStat = stat()
        let written =
            fstatat(fd, "lease", &leaseStat, AT_SYMLINK_NOFOLLOW) == 0
            ? Double(leaseStat.st_mtim.tv_sec) : Double(st.st_mtim.tv_sec)
        if Intake.wallClock() - written > 2 * length {
            return "its lease was last written \(Int(Intake.wallClock() - written)) s ago"
        }
        return nil
    }

    /// Adopts every folder in this worker's `takeover/`: the deliveries of its unfinished models move into this
    /// worker's `delivered/`, then their records into this worker's journal, then its journal is deleted (in that
    /// order, so that a crash at any point is finished by the next pass and nothing is adopted twice). Deliveries the
    /// dead worker's journal does not know (a take it did after it lost its lease) go back to incoming/. Returns the
    /// adopted records. A journal that is not an intake journal is left alone (logged), or with `strict` (at start)
    /// refused, as a worker's own is.
    func adoptTakeovers(strict: Bool = false) throws(IntakeError) -> [JournalRecord] {
        var adopted: [JournalRecord] = []
        for _ in 0..<Intake.maxWorkersPerPass {
            guard let entry = IntakeRoot.list(takeover).first else { break }
            let fd = entry.withCString { openat(takeover, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard fd >= 0 else {
                log("cannot open .airlock/workers/\(lease.name)/takeover/\(entry): left alone")
                break
            }
            defer { close(fd) }
            let result = adopt(fd, display: ".airlock/workers/\(lease.name)/takeover/\(entry)")
            if strict, case .failure(let error) = result { throw error }
            guard case .success(let records) = result else { break }
            adopted += records
            // A dead worker that had itself taken others over: those are adopted next, as folders of our own.
            let nested = openat(fd, "takeover", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if nested >= 0 {
                for inner in IntakeRoot.list(nested) {
                    let to = inner.appending(suffix: ".\(Intake.newID())")
                    _ = inner.withCString { a in
                        to.withCString { b in FileSystem.renameNoReplace(nested, a, takeover, b) }
                    }
                }
                close(nested)
            }
            for leftover in ["lock", "lease", "journal"] { _ = unlinkat(fd, leftover, 0) }
            for leftover in ["delivered", "takeover"] { _ = unlinkat(fd, leftover, AT_REMOVEDIR) }
            guard entry.withCString({ unlinkat(takeover, $0, AT_REMOVEDIR) }) == 0 else {
                log("cannot remove takeover/\(entry) (\(Errno.current)): left alone, looked at again at the next start")
                break
            }
            _ = fsync(takeover)
        }
        return adopted
    }

    /// Adopts one taken-over worker folder; a failure leaves it for the next pass.
    private func adopt(_ fd: Int32, display: String) -> Result<[JournalRecord], IntakeError> {
        var st = stat()
        let records: [JournalRecord]
        if fstatat(fd, "journal", &st, AT_SYMLINK_NOFOLLOW) == 0 {
            do {
                records = try IntakeJournal.open(dirfd: fd, name: "journal", display: display + "/journal").1
            } catch {
                log("cannot adopt \(display): \(error.message); left alone")
                return .failure(error)
            }
        } else {
            records = []
        }
        var lastOp: [String: JournalRecord.Op] = [:]
        for r in records { lastOp[r.id] = r.op }
        let unfinished = Set(lastOp.filter { $0.value != .done }.keys)
        let fresh = unfinished.filter { !journal.knows($0) }
        // 1. The deliveries, into this worker's keeping.
        let delivered = openat(fd, "delivered", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if delivered >= 0 {
            defer { close(delivered) }
            for id in IntakeRoot.list(delivered) {
                let text = id.escaped
                if id.hasSuffix(".discard") {
                    Custody.remove(delivered, id, limits: limits)
                } else if unfinished.contains(text) || journal.knows(text) {
                    let moved = id.withCString { FileSystem.renameNoReplace(delivered, $0, root.delivered, $0) }
                    if !moved {
                        let e = IntakeError.system("cannot move \(display)/delivered/\(id) into this worker's keeping")
                        log(e.message)
                        return .failure(e)
                    }
                } else if !returnUnjournaled(delivered, id, display: display) {
                    return .failure(
                        IntakeError("cannot move the unjournaled deliveries of \(display) back to incoming/"))
                }
            }
            _ = fsync(delivered)
            _ = fsync(root.delivered)
        }
        // 2. Their records, into this worker's journal.
        let adopted = records.filter { fresh.contains($0.id) }
        do {
            try lease.fence()
            try journal.append(all: adopted)
        } catch {
            log("cannot adopt the journal of \(display): \(error.message); left alone")
            return .failure(error)
        }
        // 3. Their journal is no more.
        _ = unlinkat(fd, "journal", 0)
        _ = fsync(fd)
        return .success(adopted)
    }

    /// Moves what `delivered/ID` holds back to incoming/ (a take its worker did not journal before it lost its
    /// lease: no copy of it was examined); false when something stays.
    private func returnUnjournaled(_ delivered: Int32, _ id: FileName, display: String) -> Bool {
        let fd = id.withCString { openat(delivered, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { return true }
        defer { close(fd) }
        for name in IntakeRoot.list(fd) {
            guard (try? lease.fence()) != nil,
                name.withCString({ FileSystem.renameNoReplace(fd, $0, root.incoming, $0) })
            else {
                log("cannot move \(display)/delivered/\(id)/\(name) back to incoming/ (\(Errno.current)): left there")
                return false
            }
            log("\(name): taken by a worker after it lost its lease, never examined: moved back to incoming/")
        }
        _ = fsync(root.incoming)
        _ = id.withCString { unlinkat(delivered, $0, AT_REMOVEDIR) }
        Custody.remove(root.quarantine, id, limits: limits)
        return true
    }

    /// Claims the journal and deliveries of an intake from before workers (`.airlock/journal`,
    /// `.airlock/delivered/`), as a takeover folder, so that they are adopted like a dead worker's.
    func claimLegacy() {
        var st = stat()
        guard fstatat(root.state, "journal", &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        let claim = "legacy.\(Intake.newID())"
        guard mkdirat(takeover, claim, 0o700) == 0 else { return }
        let fd = openat(takeover, claim, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        // The journal first: whoever moved it owns the deliveries too.
        guard FileSystem.renameNoReplace(root.state, "journal", fd, "journal") else {
            _ = unlinkat(takeover, claim, AT_REMOVEDIR)
            return
        }
        _ = FileSystem.renameNoReplace(root.state, "delivered", fd, "delivered")
        _ = fsync(root.state)
        _ = fsync(fd)
        log("adopting the journal and deliveries of an intake from before workers (.airlock/journal)")
    }
}
