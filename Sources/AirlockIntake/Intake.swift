internal import AirlockSystem
import AirlockNames
public import AirlockAnalysis
internal import AirlockDaemon
internal import AirlockFormats
internal import AirlockJSON
internal import AirlockProvenance
import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// What happened to one model.
public struct IntakeOutcome: Sendable {
    /// The model's name in incoming/.
    public var name: String
    /// Its quarantine id.
    public var id: String
    /// `approved`, `rejected`, or nil when it could not be examined or released (it stays where it was).
    public var decision: String?
    /// Where it went, relative to the root (`approved/resnet.pt`), or where it stays.
    public var location: String
    /// The overall verdict, when examined.
    public var verdict: Verdict?
    /// Why it could not be finished, if it could not.
    public var error: String?
    /// Why it was approved or rejected (also in its report.json as `intake.reason`).
    public var reason: String?
}

/// The quarantine stage of model intake: models dropped in `ROOT/incoming` are moved atomically into
/// `ROOT/quarantine/ID/`, verified (manifest, signature) and probed, and released atomically to `ROOT/approved/` or
/// `ROOT/rejected/` as a folder holding the model, `report.json` and `manifest.json`.
///
/// Every move is announced in a journal (`ROOT/.airlock/journal`, fsync'd) before it happens, so a restart after a
/// crash at any point finishes or rolls back each model exactly once (`recover()`). One intake per root: a lock
/// (`ROOT/.airlock/lock`) refuses a second. A failing move (disk full, permissions) leaves the model where it was and
/// says why.
public final class Intake: @unchecked Sendable {
    /// Most bytes the reports in one report.json take (docs/intake.md); each report is bounded on its own too
    /// (the profile's `limits.traceBytes`), this bounds a folder of many.
    public static let maxReportBytes = 64 << 20
    let root: IntakeRoot
    let policy: IntakePolicy
    let journal: IntakeJournal
    let examiner: IntakeExaminer
    let log: @Sendable (String) -> Void
    /// Models recovery found in quarantine that still have to be examined.
    private var pending: [Taken] = []
    /// Models recovery released (their decision was journaled before the crash).
    private var recovered: [IntakeOutcome] = []
    private let monitor = Monitor()

    /// A model in quarantine.
    struct Taken: Sendable {
        let id: String
        /// Its name in incoming/ (and in quarantine/ID/), as the bytes the folder holds; the journal and reports
        /// hold it escaped (`FileName.escaped`), which is lossless.
        let name: FileName
    }

    /// The other workers' leases as this worker saw them (for takeovers).
    let sightings = LeaseSightings()
    /// This worker's lease.
    var lease: IntakeLease { root.lease }
    /// This worker's `takeover/` folder.
    var takeover: Int32 { root.takeover }
    /// The worker's name.
    public var worker: String { root.lease.name }
    /// Why this worker lost its lease (another worker took its models over), or nil while it holds it.
    public var leaseLost: String? { root.lease.lost }

    /// Opens the root (creating its folders), sets up worker `worker`'s folder and lease (`.airlock/workers/NAME/`,
    /// refused when another process has that name), reads its journal, adopts what dead workers left (and the
    /// journal of an intake from before workers), and prepares detonations: locally with the policy's profile, or
    /// through airlockd at `socket` (or the policy's) when one is named.
    public init(
        root path: String, policy: IntakePolicy, socket: String? = nil, worker: String? = nil,
        leaseSeconds: Double = 60, log: @escaping @Sendable (String) -> Void
    ) throws(IntakeError) {
        self.policy = policy
        self.log = log
        // Lease breaks: the intake takes a read lease for an instant to see whether a file is open for writing
        // (Arrival, Custody); a writer opening it in that instant makes the kernel signal SIGIO, whose default
        // action would end the intake. The writer waits for the lease to go: nothing to do here.
        signal(SIGIO, SIG_IGN)
        var keys: [[UInt8]] = []
        for key in policy.publicKeys {
            do {
                keys.append(try BoundedFile.read(key, limit: 1 << 20, what: "public key"))
            } catch {
                throw IntakeError(error.description, errno: error.errno)
            }
            do {
                _ = try ModelSigning.fingerprint(publicKeyPEM: keys[keys.count - 1])
            } catch {
                throw IntakeError("public key \(key): \(error.message)")
            }
        }
        if let dir = policy.manifests {
            // A mistyped folder would silently pin nothing.
            var st = stat()
            guard stat(dir, &st) == 0 else { throw IntakeError.system("the policy's manifests folder \(dir)") }
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw IntakeError("the policy's manifests folder \(dir) is not a folder")
            }
        }
        let backend = try IntakeExaminer.backend(policy: policy, socket: socket ?? policy.socket)
        examiner = IntakeExaminer(policy: policy, keys: keys, backend: backend)
        // The root last: a policy that cannot be used leaves no worker folder behind.
        let name = worker ?? IntakeLease.defaultName()
        root = try IntakeRoot(path: path, worker: name, leaseSeconds: leaseSeconds)
        let records: [JournalRecord]
        do {
            (journal, records) = try IntakeJournal.open(
                dirfd: root.lease.folder, name: "journal", display: path + "/.airlock/workers/\(name)/journal")
        }
        root.lease.startRenewing()
        claimLegacy()
        let adopted = try adoptTakeovers(strict: true)
        pending = recover(records + adopted)
        takeOverDead()
    }

    /// Leaves the root: stops renewing the lease and removes this worker's folder when nothing is left in it.
    public func leave() {
        root.lease.removeIfIdle()
    }

    /// Hands `again` to the examination (`takePending`).
    func queueRecovered(_ again: [Taken]) {
        monitor.locked { pending += again }
    }

    // MARK: - Recovery

    /// Finishes or rolls back every model the journal shows unfinished; returns those to examine again.
    func recover(_ records: [JournalRecord]) -> [Taken] {
        var last: [String: JournalRecord] = [:]
        var order: [String] = []
        for r in records {
            if last[r.id] == nil { order.append(r.id) }
            last[r.id] = r
        }
        var again: [Taken] = []
        for id in order {
            guard let r = last[id], r.op != .done else { continue }
            let escapedName = records.first { $0.id == id && $0.op == .take }?.name ?? r.name
            guard let name = FileName(escaped: escapedName) else {
                log(
                    "recovery of \(FileName(escapedName)) (\(id)) failed, it stays where it is: the journal's name is not in the escaped form"
                )
                continue
            }
            do throws(IntakeError) {
                try lease.fence()
                switch r.op {
                case .take:
                    if let taken = try resumeTake(Taken(id: id, name: name), journaled: false) {
                        log("recovered \(name) (\(id)): it was moved into the intake's keeping; examining its copy")
                        again.append(taken)
                    }
                case .taken:
                    if let taken = try resumeTake(Taken(id: id, name: name), journaled: true) {
                        log("recovered \(name) (\(id)): examining it again")
                        again.append(taken)
                    }
                case .decide:
                    guard let dest = FileName(escaped: r.dest) else {
                        throw IntakeError("the journal's destination \(FileName(r.dest)) is not in the escaped form")
                    }
                    let release = try finishRelease(Taken(id: id, name: name), to: r.to, dest: dest)
                    let recovered = IntakeOutcome(
                        name: name.escaped, id: id, decision: release.to, location: "\(release.to)/\(release.dest)",
                        verdict: nil, error: nil,
                        reason: release.reason ?? "released after a restart (decided before it)")
                    monitor.locked { self.recovered.append(recovered) }
                    log("recovered \(name) (\(id)): released to \(release.to)/\(release.dest)")
                case .rollback:
                    if try finishRollback(Taken(id: id, name: name), reason: r.note) {
                        log("recovered \(name) (\(id)): moved back to incoming/")
                    } else {
                        again.append(Taken(id: id, name: name))
                    }
                case .done:
                    break
                }
            } catch {
                log("recovery of \(name) (\(id)) failed, it stays where it is: \(error.message)")
            }
        }
        journal.clearIfFinished()
        let journaled = Set(last.keys.map { FileName($0) })
        // Other workers' models are in quarantine/ too: strays are told only when this worker is alone.
        if IntakeRoot.list(lease.workers).count <= 1 {
            for stray in IntakeRoot.list(root.quarantine) where !journaled.contains(stray) {
                log("quarantine/\(stray) is not in the journal: left alone (not put there by this intake)")
            }
        }
        removeDiscarded(known: journaled)
        return again
    }

    // MARK: - One pass

    /// Takes every model that has arrived and examines and releases them, `workers` at a time; returns what happened
    /// to each, and the entries still arriving or left alone, with the reason.
    public func runOnce() -> (outcomes: [IntakeOutcome], waiting: [(String, String)]) {
        var work = takePending()
        let (ready, waitingAtStart) = arrivals()
        var outcomes = takeRecovered()
        for name in ready {
            switch take(name) {
            case .success(let taken): work.append(taken)
            case .failure(let error) where Intake.isClaimedElsewhere(error): continue
            case .failure(let error):
                outcomes.append(
                    IntakeOutcome(
                        name: name.escaped, id: "", decision: nil, location: "incoming/\(name)", verdict: nil,
                        error: error.message))
            }
        }
        outcomes += process(work)
        journal.clearIfFinished()
        // What another worker took meanwhile is not waiting.
        let waiting = waitingAtStart.filter { IntakeRoot.exists(root.incoming, $0.0) }
        return (outcomes, waiting.map { ($0.0.escaped, $0.1) })
    }

    /// The models recovery released (each handed out once).
    func takeRecovered() -> [IntakeOutcome] {
        monitor.locked {
            defer { recovered = [] }
            return recovered
        }
    }

    /// The models recovery left to examine (each handed out once).
    func takePending() -> [Taken] {
        monitor.locked {
            defer { pending = [] }
            return pending
        }
    }

    /// Entries of incoming/ that have arrived, and those that have not (or are left alone) with the reason.
    func arrivals() -> (ready: [FileName], waiting: [(FileName, String)]) {
        var ready: [FileName] = []
        var waiting: [(FileName, String)] = []
        let now = Intake.wallClock()
        for name in IntakeRoot.list(root.incoming) {
            switch Arrival.check(root.incoming, name, settleSeconds: policy.settleSeconds, now: now) {
            case .ready:
                // What the intake could not copy whole (over the byte budget, a FIFO inside) waits here, said so,
                // instead of being moved in and back every pass.
                do {
                    _ = try Custody.survey(root.incoming, name, limits: limits)
                    ready.append(name)
                } catch {
                    waiting.append((name, "not taken: \(error.message)"))
                }
            case .waiting(let why): waiting.append((name, why))
            case .ignored(let why): if !name.hasPrefix(".") { waiting.append((name, why)) }
            }
        }
        return (ready, waiting)
    }

    /// Examines and releases `work`, `workers` at a time.
    func process(_ work: [Taken]) -> [IntakeOutcome] {
        guard !work.isEmpty else { return [] }
        let batch = Batch(count: work.count)
        let workers = min(work.count, policy.workers > 0 ? policy.workers : ModelInventory.onlineCPUs)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let i = batch.take() {
                batch.set(i, self.examineAndRelease(work[i]))
            }
        }
        return batch.all()
    }

    // MARK: - Steps

    /// Takes `name` from incoming/, journaled: moves the delivery into the intake's keeping
    /// (`.airlock/delivered/ID/NAME`), copies it into fresh inodes of the intake's own (`quarantine/ID/NAME`,
    /// `Custody`), and journals `taken`. A delivery that cannot be copied goes back to incoming/.
    func take(_ name: FileName) -> Result<Taken, IntakeError> {
        let id = Intake.newID()
        do {
            try journal.append(JournalRecord(op: .take, id: id, name: name.escaped))
        } catch {
            log("cannot take \(name), it stays in incoming/: \(error.message)")
            return .failure(error)
        }
        CrashPoint.hit("take-journaled")
        var made = (quarantine: false, delivered: false)
        func undo(_ error: IntakeError, quiet: Bool = false) -> Result<Taken, IntakeError> {
            let why = error.message
            // Only what this take made: an id another worker drew too is that worker's.
            if made.quarantine { _ = unlinkat(root.quarantine, id, AT_REMOVEDIR) }
            if made.delivered { _ = unlinkat(root.delivered, id, AT_REMOVEDIR) }
            if quiet {
                try? journal.append(JournalRecord(op: .done, id: id, name: name.escaped, note: "not taken: \(why)"))
                return .failure(error)
            }
            try? journal.append(JournalRecord(op: .done, id: id, name: name.escaped, note: "not taken: \(why)"))
            log("cannot take \(name), it stays in incoming/: \(why)")
            return .failure(IntakeError("cannot take \(name): \(why)", errno: error.errno))
        }
        // 0700: the copy is made and examined where no one else can reach it.
        guard mkdirat(root.quarantine, id, 0o700) == 0 else { return undo(.system("cannot create quarantine/\(id)")) }
        made.quarantine = true
        guard mkdirat(root.delivered, id, 0o700) == 0 else {
            return undo(.system("cannot create .airlock/delivered/\(id)"))
        }
        made.delivered = true
        CrashPoint.hit("quarantine-created")
        guard let held = openDelivered(id) else { return undo(.system("cannot open .airlock/delivered/\(id)")) }
        defer { FileDescriptor(held).close() }
        do {
            try lease.fence()
        } catch {
            return undo(error)
        }
        // The claim: of several workers renaming one arrival, one wins; the others get ENOENT and move on.
        guard name.withCString({ FileSystem.renameNoReplace(root.incoming, $0, held, $0) }) else {
            if errno == ENOENT { return undo(Intake.claimedElsewhere(name), quiet: true) }
            return undo(.system("cannot move it into the intake's keeping"))
        }
        do {
            try IntakeRoot.sync(root.incoming)
            try IntakeRoot.sync(held)
            try IntakeRoot.sync(root.delivered)
            try IntakeRoot.sync(root.quarantine)
        } catch {
            // The move happened; the journal still says "take", which recovery resolves by looking.
            log("moved \(name) into .airlock/delivered/\(id) but cannot sync the folders: \(error.message)")
        }
        CrashPoint.hit("moved-in")
        // What the rename claimed need not be what `arrivals` looked at: an uploader may have swapped the name for a
        // link, a FIFO or a device meanwhile. Such a thing is not copied: it goes back to incoming/.
        var st = stat()
        let kind = name.withCString { fstatat(held, $0, &st, AT_SYMLINK_NOFOLLOW) } == 0 ? st.st_mode & S_IFMT : 0
        guard kind == S_IFREG || kind == S_IFDIR else {
            let why =
                "\(Custody.kindText(kind)) was swapped in for it before the claim: only files and folders are taken"
            rollBack(Taken(id: id, name: name), because: why)
            return .failure(IntakeError("cannot take \(name): \(why)"))
        }
        do {
            try takeOwnership(Taken(id: id, name: name))
        } catch {
            let failure = IntakeError("cannot take \(name): \(error.message)", errno: error.errno)
            rollBack(Taken(id: id, name: name), because: error.message)
            return .failure(failure)
        }
        do {
            try journal.append(JournalRecord(op: .taken, id: id, name: name.escaped))
        } catch {
            // Recovery at the next start sees the copy in quarantine and goes on from there.
            log("took \(name) into quarantine/\(id) but cannot journal it: \(error.message)")
            return .failure(error)
        }
        CrashPoint.hit("taken")
        log("took \(name) into quarantine/\(id)")
        return .success(Taken(id: id, name: name))
    }

    /// The error of a take another worker won (its rename came first): not a failure, nothing to report.
    static func claimedElsewhere(_ name: FileName) -> IntakeError {
        IntakeError("\(name) was taken by another worker", errno: Errno(ENOENT))
    }

    /// Whether `error` says another worker took the model (`claimedElsewhere`).
    static func isClaimedElsewhere(_ error: IntakeError) -> Bool {
        error.errno?.rawValue == ENOENT && error.message.hasSuffix(" was taken by another worker")
    }

    /// Examines a model in quarantine and releases it; on a failure of the intake itself (not of the model), moves it
    /// back to incoming/.
    func examineAndRelease(_ taken: Taken) -> IntakeOutcome {
        var outcome = IntakeOutcome(
            name: taken.name.escaped, id: taken.id, decision: nil, location: "quarantine/\(taken.id)/\(taken.name)",
            verdict: nil, error: nil)
        let examined: Examined
        do {
            examined = try examine(taken)
        } catch {
            outcome.error = error.message
            log("cannot examine \(taken.name) (\(taken.id)): \(error.message)")
            do {
                try journal.append(
                    JournalRecord(op: .rollback, id: taken.id, name: taken.name.escaped, note: error.message))
                CrashPoint.hit("rollback-journaled")
                if try finishRollback(taken, reason: error.message) { outcome.location = "incoming/\(taken.name)" }
            } catch let rollbackError {
                log(
                    "cannot move \(taken.name) back to incoming/, it stays in quarantine/\(taken.id): \(rollbackError.message)"
                )
            }
            return outcome
        }
        outcome.verdict = examined.verdict
        outcome.reason = examined.reason
        let to = examined.approved ? "approved" : "rejected"
        let dest = freeName(taken, in: to)
        do {
            try journal.append(
                JournalRecord(op: .decide, id: taken.id, name: taken.name.escaped, to: to, dest: dest.escaped))
            CrashPoint.hit("decided")
            let release = try finishRelease(taken, to: to, dest: dest)
            outcome.decision = release.to
            outcome.location = "\(release.to)/\(release.dest)"
            if let reason = release.reason { outcome.reason = reason }
            log(
                "\(release.to) \(taken.name) (\(taken.id)): verdict \(examined.verdict.rawValue) → \(release.to)/\(release.dest)"
            )
        } catch {
            outcome.error = error.message
            log(
                "cannot release \(taken.name) (\(taken.id)), it stays in quarantine/\(taken.id) with its report: \(error.message)"
            )
        }
        return outcome
    }

    struct Examined {
        /// The worst of the provenance and probe verdicts.
        let verdict: Verdict
        /// Provenance clean and the probe verdict one the policy passes.
        let approved: Bool
        /// Why, in a sentence.
        let reason: String
    }

    /// Examines the model in quarantine/ID/ (`IntakeExaminer`), and writes report.json and manifest.json beside it.
    func examine(_ taken: Taken) throws(IntakeError) -> Examined {
        guard let q = openQuarantine(taken.id) else { throw IntakeError.system("cannot open quarantine/\(taken.id)") }
        defer { FileDescriptor(q).close() }
        // An examination a crash cut short may have left a temporary report behind: it must not be released.
        for leftover in IntakeRoot.list(q) where leftover.hasPrefix(".tmp-") { IntakeRoot.removeTree(q, leftover) }
        let fd = taken.name.withCString { openat(q, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else { throw IntakeError.system("cannot open quarantine/\(taken.id)/\(taken.name)") }
        defer { FileDescriptor(fd).close() }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IntakeError.system("cannot stat \(taken.name)") }
        let report = try examiner.examine(
            fd: fd, isFolder: st.st_mode & S_IFMT == S_IFDIR, name: taken.name, id: taken.id)
        // The folder open as `q` may have been released by a worker that took this one's models over.
        try lease.fence()
        do {
            try AtomicFile.write(Array(report.json.pretty().utf8), to: "report.json", in: q)
        } catch {
            throw IntakeError(error.message)
        }
        CrashPoint.hit("report-written")
        try lease.fence()
        do {
            try AtomicFile.write(Array(report.manifest.json.pretty().utf8), to: "manifest.json", in: q)
        } catch {
            throw IntakeError(error.message)
        }
        CrashPoint.hit("reports-written")
        return Examined(verdict: report.verdict, approved: report.approved, reason: report.reason)
    }

    // MARK: - Helpers

    func openQuarantine(_ id: String) -> Int32? {
        let fd = openat(root.quarantine, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    /// `name` if `to`/`name` is free, else `name.ID`.
    func freeName(_ taken: Taken, in to: String) -> FileName {
        let target = root.destination(to)
        if !IntakeRoot.exists(target, taken.name) { return taken.name }
        let withID = taken.name.appending(suffix: ".\(taken.id)")
        if !IntakeRoot.exists(target, withID) { return withID }
        return withID.appending(suffix: ".\(Intake.newID())")
    }

    /// A new quarantine id: UTC time and 32 random bits (`20261122T043000Z-1a2b3c4d`).
    static func newID() -> String {
        var r = SystemRandomNumberGenerator()
        let n = UInt32.random(in: .min ... .max, using: &r)
        let hex = String(n, radix: 16)
        return compactTimestamp() + "-" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    static func wallClock() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func utc() -> tm {
        var t = time(nil)
        var parts = tm()
        gmtime_r(&t, &parts)
        return parts
    }

    private static func pad(_ v: Int32, _ width: Int = 2) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// `2026-11-22T04:30:00Z`.
    static func timestamp() -> String {
        let t = utc()
        return
            "\(pad(t.tm_year + 1900, 4))-\(pad(t.tm_mon + 1))-\(pad(t.tm_mday))T\(pad(t.tm_hour)):\(pad(t.tm_min)):\(pad(t.tm_sec))Z"
    }

    private static func compactTimestamp() -> String {
        let t = utc()
        return
            "\(pad(t.tm_year + 1900, 4))\(pad(t.tm_mon + 1))\(pad(t.tm_mday))T\(pad(t.tm_hour))\(pad(t.tm_min))\(pad(t.tm_sec))Z"
    }

}

/// The models of one pass, handed out once each, and what happened to them.
private final class Batch: @unchecked Sendable {
    private let monitor = Monitor()
    private var next = 0
    private var outcomes: [IntakeOutcome?]

    init(count: Int) { outcomes = Array(repeating: nil, count: count) }

    func take() -> Int? {
        monitor.locked {
            guard next < outcomes.count else { return nil }
            next += 1
            return next - 1
        }
    }

    func set(_ i: Int, _ o: IntakeOutcome) { monitor.locked { outcomes[i] = o } }

    func all() -> [IntakeOutcome] { monitor.locked { outcomes.compactMap { $0 } } }
}

/// Fault injection for the crash tests: `AIRLOCK_INTAKE_CRASH_AT=STEP` makes the intake SIGKILL itself right after
/// STEP (take-journaled, quarantine-created, moved-in, copied, owned, taken, report-written, reports-written,
/// decided, released, discarded, done; an approval turned into a rejection at release: redecided; on the way back to
/// incoming/: rollback-journaled, moved-back), as a power cut or `kill -9` would. Unset, it costs one environment
/// lookup per step.
enum CrashPoint {
    static let target: String? = {
        guard let v = getenv("AIRLOCK_INTAKE_CRASH_AT"), v.pointee != 0 else { return nil }
        return String(cString: v)
    }()

    /// `AIRLOCK_INTAKE_HOLD_AT=STEP:SECONDS`: the intake sleeps that long right after STEP (saying so on standard
    /// error), as a slow disk or a long detonation would; the lease is renewed meanwhile. For the scale-out tests.
    static let hold: (step: String, seconds: Double)? = {
        guard let v = getenv("AIRLOCK_INTAKE_HOLD_AT"), v.pointee != 0 else { return nil }
        let parts = String(cString: v).split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let seconds = Double(parts[1]), seconds >= 0, seconds <= 600 else { return nil }
        return (String(parts[0]), seconds)
    }()

    static func hit(_ step: String) {
        if let target, target == step { kill(getpid(), SIGKILL) }
        if let hold, hold.step == step {
            let line = Array("airlock intake: test hold at \(step) for \(hold.seconds) s\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            var ts = timespec(tv_sec: Int(hold.seconds), tv_nsec: Int((hold.seconds - Double(Int(hold.seconds))) * 1e9))
            var rest = timespec()
            while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
        }
    }
}
