internal import AirlockSystem
import AirlockNames
internal import AirlockProvenance

#if canImport(Glibc)
    import Glibc
#endif

/// The intake's last steps for a model, each journaled and restartable: its release to approved/ or rejected/, or its
/// way back to incoming/ when the intake itself failed.
extension Intake {
    /// Where a model was released, and why when that is not where it was decided to go.
    struct Release {
        let to: String
        /// The name it got in `to`/ (shown escaped, as the journal and reports hold it).
        let dest: FileName
        /// Set when an approval was turned into a rejection at release (the model was not the one examined).
        let reason: String?
    }

    /// Moves quarantine/ID to `to`/`dest` (another free name if `dest` was taken meanwhile), journaled, read-only
    /// (folders 0555, files 0444); then discards the original delivery. Done already when quarantine/ID is gone and
    /// `to`/`dest` holds the model.
    ///
    /// An approval is checked first (`releaseProblem`): the copy must be the intake's own, read-only, and hash to the
    /// manifest written when it was examined. If not, it is rejected instead, with the reason in its report.
    func finishRelease(_ taken: Taken, to decided: String, dest decidedDest: FileName) throws(IntakeError) -> Release {
        var to = decided
        var dest = decidedDest
        var reason: String? = nil
        try lease.fence()
        if !IntakeRoot.exists(root.quarantine, taken.id) {
            let there = dest.withCString {
                openat(root.destination(to), $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if there >= 0 {
                defer { FileDescriptor(there).close() }
                if IntakeRoot.exists(there, taken.name) {
                    try sealRelease(there, display: "\(to)/\(dest)")
                    discardDelivery(taken)
                    try journal.append(JournalRecord(op: .done, id: taken.id, name: taken.name.escaped))
                    return Release(to: to, dest: dest, reason: nil)
                }
            }
            throw IntakeError(
                "\(taken.name) (\(taken.id)) is neither in quarantine/\(taken.id) nor in \(to)/\(dest): moved by hand?")
        }
        if to == "approved", let problem = releaseProblem(taken) {
            let why = "rejected: the model about to be released is not the one examined: \(problem)"
            try rewriteReport(taken, decision: "rejected", reason: why)
            to = "rejected"
            dest = freeName(taken, in: to)
            try journal.append(
                JournalRecord(op: .decide, id: taken.id, name: taken.name.escaped, to: to, dest: dest.escaped))
            CrashPoint.hit("redecided")
            log("not approving \(taken.name) (\(taken.id)): \(problem)")
            reason = why
        }
        try sealReports(taken)
        let target = root.destination(to)
        // A worker that lost its lease must not release: the worker that took its models over does. (If both get
        // here, the rename of quarantine/ID happens once: the second sees ENOENT.)
        try lease.fence()
        while dest.withCString({ !FileSystem.renameNoReplace(root.quarantine, taken.id, target, $0) }) {
            let e = errno
            try lease.fence()
            guard e == EEXIST || e == ENOTEMPTY else {
                throw IntakeError.system("cannot move quarantine/\(taken.id) to \(to)/\(dest)", errno: Errno(e))
            }
            dest = freeName(taken, in: to)
            try journal.append(
                JournalRecord(op: .decide, id: taken.id, name: taken.name.escaped, to: to, dest: dest.escaped))
        }
        try IntakeRoot.sync(root.quarantine)
        try IntakeRoot.sync(target)
        CrashPoint.hit("released")
        // Made read-only only now: moving a folder to another parent needs write permission on it.
        let released = dest.withCString { openat(target, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard released >= 0 else { throw IntakeError.system("cannot open \(to)/\(dest)") }
        defer { FileDescriptor(released).close() }
        try sealRelease(released, display: "\(to)/\(dest)")
        discardDelivery(taken)
        CrashPoint.hit("discarded")
        try journal.append(JournalRecord(op: .done, id: taken.id, name: taken.name.escaped))
        CrashPoint.hit("done")
        return Release(to: to, dest: dest, reason: reason)
    }

    /// Moves the original delivery back to incoming/ and removes the intake's copy and its quarantine folder; false
    /// when incoming/ has a new entry of the same name meanwhile and the complete copy is still there (the model then
    /// stays in quarantine, to be examined again). Without a complete copy it is never copied again: with a new
    /// entry of its name in incoming/, the delivery goes back as `incoming/NAME.ID` (`moveAside`).
    func finishRollback(_ taken: Taken, reason: String) throws(IntakeError) -> Bool {
        try lease.fence()
        let held = openDelivered(taken.id)
        let q = openQuarantine(taken.id)
        defer {
            if let held { FileDescriptor(held).close() }
            if let q { FileDescriptor(q).close() }
        }
        /// Keeps the model in quarantine, to be examined again, when its complete copy is there; false otherwise.
        func keepCopy() throws(IntakeError) -> Bool {
            guard let q, IntakeRoot.exists(q, taken.name) else { return false }
            try journal.append(JournalRecord(op: .taken, id: taken.id, name: taken.name.escaped))
            return true
        }
        /// Moves the delivery in `dir` back to incoming/ under a name of its own (incoming/ has NAME again):
        /// `NAME.ID`, its NAME cut to fit a file name, then `NAME.ID-2` … `NAME.ID-9`.
        func moveAside(from dir: Int32) throws(IntakeError) {
            let suffix = "." + taken.id
            let room = max(1, 255 - suffix.utf8.count - 2)
            let base = FileName(bytes: taken.name.bytes.prefix(room)).appending(suffix: suffix)
            for attempt in 1...9 {
                try lease.fence()
                let aside = attempt == 1 ? base : base.appending(suffix: "-\(attempt)")
                let moved = taken.name.withCString { from in
                    aside.withCString { FileSystem.renameNoReplace(dir, from, root.incoming, $0) }
                }
                if moved {
                    try IntakeRoot.sync(dir)
                    try IntakeRoot.sync(root.incoming)
                    log("\(taken.name) (\(taken.id)) went back to incoming/\(aside): incoming/ has a new \(taken.name)")
                    return
                }
                let e = errno
                guard e == EEXIST || e == ENOTEMPTY else {
                    throw IntakeError.system("cannot move \(taken.name) back to incoming/\(aside)", errno: Errno(e))
                }
            }
            throw IntakeError("cannot move \(taken.name) back to incoming/: the names \(base) to \(base)-9 are taken")
        }
        /// Moves the delivery in `dir` back to incoming/, durably; false when incoming/ has that name again.
        func moveBack(from dir: Int32) throws(IntakeError) -> Bool {
            try lease.fence()
            guard taken.name.withCString({ FileSystem.renameNoReplace(dir, $0, root.incoming, $0) }) else {
                let e = errno
                if e == EEXIST || e == ENOTEMPTY { return false }
                throw IntakeError.system("cannot move \(taken.name) back to incoming/", errno: Errno(e))
            }
            try IntakeRoot.sync(dir)
            try IntakeRoot.sync(root.incoming)
            CrashPoint.hit("moved-back")
            return true
        }
        if let held, IntakeRoot.exists(held, taken.name) {
            if IntakeRoot.exists(root.incoming, taken.name), try keepCopy() { return false }
            // The copy goes first: the model is then in one place at every moment (the delivery, kept aside).
            if let q {
                Custody.remove(q, taken.name, limits: limits)
                Custody.remove(q, Intake.copying, limits: limits)
            }
            // No complete copy any more (or never): the copy is not tried again, whatever is in incoming/ now.
            if try !moveBack(from: held) { try moveAside(from: held) }
        } else if held == nil, let q, IntakeRoot.exists(q, taken.name) {
            // An intake from before custody moved the uploader's inode itself into quarantine/ID/NAME: that goes back.
            if try !moveBack(from: q) { try moveAside(from: q) }
        }
        if let q {
            for leftover in IntakeRoot.list(q)
            where leftover == taken.name || leftover == Intake.copying
                || Arrival.reserved.contains(leftover) || leftover.hasPrefix(".tmp-")
            {
                Custody.remove(q, leftover, limits: limits)
            }
        }
        _ = unlinkat(root.quarantine, taken.id, AT_REMOVEDIR)
        _ = unlinkat(root.delivered, taken.id, AT_REMOVEDIR)
        try journal.append(
            JournalRecord(op: .done, id: taken.id, name: taken.name.escaped, note: "rolled back: \(reason)"))
        return true
    }
}
