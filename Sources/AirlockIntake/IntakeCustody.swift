internal import AirlockSystem
import AirlockNames
internal import AirlockFormats
internal import AirlockJSON
internal import AirlockProvenance

#if canImport(Glibc)
    import Glibc
#endif

/// The intake's custody of each model (docs/intake.md, "What an uploader can do after delivery"): the delivery is
/// kept aside while a copy of fresh, read-only inodes of the intake's own is made, examined and released; the copy is
/// checked against the examined digests before an approval is released; the delivery is discarded after the release.
extension Intake {
    /// The name of a copy being made in quarantine/ID/, renamed to NAME once complete.
    static let copying = FileName(".copy")

    var limits: Custody.Limits { Custody.Limits(maxBytes: policy.maxBytes) }

    func openDelivered(_ id: String) -> Int32? {
        let fd = openat(root.delivered, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    /// Copies the delivery (`.airlock/delivered/ID/NAME`) to `quarantine/ID/NAME` (via `quarantine/ID/.copy`, so that
    /// NAME appears only complete and durable).
    func takeOwnership(_ taken: Taken) throws(IntakeError) {
        guard let q = openQuarantine(taken.id) else {
            throw IntakeError.system("cannot open quarantine/\(taken.id)")
        }
        defer { FileDescriptor(q).close() }
        guard let held = openDelivered(taken.id) else {
            throw IntakeError.system("cannot open .airlock/delivered/\(taken.id)")
        }
        defer { FileDescriptor(held).close() }
        Custody.remove(q, Intake.copying, limits: limits)  // a copy a crash cut short
        do {
            _ = try Custody.copy(
                from: held, taken.name, into: q, as: Intake.copying, leaveOut: [FileName(Arrival.marker)],
                limits: limits)
        } catch {
            Custody.remove(q, Intake.copying, limits: limits)
            throw IntakeError("cannot copy it into quarantine: \(error.message)", errno: error.errno)
        }
        CrashPoint.hit("copied")
        // A worker that lost its lease does not name a copy: the worker that took over makes its own.
        try lease.fence()
        let named = Intake.copying.withCString { copying in
            taken.name.withCString { FileSystem.renameNoReplace(q, copying, q, $0) }
        }
        guard named else {
            throw IntakeError.system("cannot name the copy quarantine/\(taken.id)/\(taken.name)")
        }
        try IntakeRoot.sync(q)
        CrashPoint.hit("owned")
    }

    /// Recovery of a model whose last journaled step is `take` (or `taken`, `journaled`): finishes the copy when it
    /// was cut short and returns the model to examine; nil when it never left incoming/ or went back there.
    func resumeTake(_ taken: Taken, journaled: Bool) throws(IntakeError) -> Taken? {
        let q = openQuarantine(taken.id)
        let copied = q.map { IntakeRoot.exists($0, taken.name) } ?? false
        if let q { FileDescriptor(q).close() }
        let keeping = openDelivered(taken.id)
        let held = keeping.map { IntakeRoot.exists($0, taken.name) } ?? false
        if let keeping { FileDescriptor(keeping).close() }
        if !journaled && !copied && !held {
            _ = unlinkat(root.quarantine, taken.id, AT_REMOVEDIR)
            _ = unlinkat(root.delivered, taken.id, AT_REMOVEDIR)
            try journal.append(
                JournalRecord(
                    op: .done, id: taken.id, name: taken.name.escaped, note: "not taken: interrupted before the move")
            )
            log(
                "recovered \(taken.name) (\(taken.id)): the move into quarantine had not happened; it stays in incoming/"
            )
            return nil
        }
        if copied && keeping == nil {
            // An intake from before custody moved the uploader's inode itself into quarantine/ID/NAME: keep that
            // aside as the delivery and examine a copy, as for any model taken now.
            guard mkdirat(root.delivered, taken.id, 0o700) == 0 || errno == EEXIST, let fresh = openDelivered(taken.id)
            else {
                throw IntakeError.system("cannot create .airlock/delivered/\(taken.id)")
            }
            defer { FileDescriptor(fresh).close() }
            guard let q = openQuarantine(taken.id) else {
                throw IntakeError.system("cannot open quarantine/\(taken.id)")
            }
            defer { FileDescriptor(q).close() }
            guard taken.name.withCString({ FileSystem.renameNoReplace(q, $0, fresh, $0) }) else {
                throw IntakeError.system("cannot move \(taken.name) aside into .airlock/delivered/\(taken.id)")
            }
            try IntakeRoot.sync(q)
            try IntakeRoot.sync(fresh)
            log(
                "recovered \(taken.name) (\(taken.id)): taken by an earlier intake as the uploader's own inode; copying it"
            )
        }
        if !copied || keeping == nil {
            do {
                try takeOwnership(taken)
            } catch {
                rollBack(taken, because: error.message)
                return nil
            }
        }
        if !journaled { try journal.append(JournalRecord(op: .taken, id: taken.id, name: taken.name.escaped)) }
        return taken
    }

    /// Journals a rollback of a take that could not be finished and moves the delivery back to incoming/.
    func rollBack(_ taken: Taken, because why: String) {
        log("cannot take \(taken.name), it goes back to incoming/: \(why)")
        do {
            try journal.append(JournalRecord(op: .rollback, id: taken.id, name: taken.name.escaped, note: why))
            CrashPoint.hit("rollback-journaled")
            if try !finishRollback(taken, reason: why) {
                log("\(taken.name) (\(taken.id)) stays in quarantine: incoming/ has a new \(taken.name)")
            }
        } catch {
            log(
                "cannot move \(taken.name) back to incoming/, it stays in the intake's keeping (\(taken.id)) until the next start: \(error.message)"
            )
        }
    }

    /// Why the model in quarantine/ID may not be approved, or nil: the copy must be the intake's own and read-only,
    /// and every file must hash as the manifest written when it was examined says, with no file more or less.
    func releaseProblem(_ taken: Taken) -> String? {
        guard let q = openQuarantine(taken.id) else {
            return "cannot open quarantine/\(taken.id): \(Errno.current.text)"
        }
        defer { FileDescriptor(q).close() }
        do {
            try Custody.checkOwned(q, taken.name, limits: limits)
        } catch {
            return error.message
        }
        let examined: Manifest
        let mfd = openat(q, "manifest.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard mfd >= 0 else { return "cannot open the examined manifest: \(Errno.current.text)" }
        do {
            defer { FileDescriptor(mfd).close() }
            examined = try Manifest.parse(
                try BoundedFile.read(fd: mfd, limit: Manifest.maxBytes, name: "manifest.json"), name: "manifest.json")
        } catch let error as BoundedFile.Failure {
            return error.description
        } catch let error as ProvenanceError {
            return error.message
        } catch {
            return "\(error)"
        }
        let fd = taken.name.withCString { openat(q, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
        guard fd >= 0 else { return "cannot open \(taken.name): \(Errno.current.text)" }
        defer { FileDescriptor(fd).close() }
        let now: ModelInventory
        do {
            // The same files examination hashed: the marker and the signature are left out there too. A single
            // file is listed under its entry's bytes, as examination listed it.
            now = try ModelInventory.take(
                fd: fd, display: taken.name.escaped, name: taken.name,
                options: .init(threads: 1, ignore: [Arrival.marker, policy.signatureFile]))
        } catch {
            return "cannot hash it again: \(error.message)"
        }
        if let (path, why) = now.problems.first { return "\(path): \(why)" }
        // Compared by bytes: two names that display alike are two files.
        var current: [FileName: InventoryFile] = [:]
        for file in now.files { current[file.name] = file }
        for file in examined.files {
            guard let found = current.removeValue(forKey: file.name) else { return "\(file.path) is gone" }
            if found.sha256 != file.sha256 || found.size != file.size {
                return
                    "\(file.path) is \(found.size) bytes with SHA-256 \(found.sha256); the examined file was \(file.size) bytes with SHA-256 \(file.sha256)"
            }
        }
        if let extra = current.keys.sorted().first { return "\(extra) was not examined" }
        return nil
    }

    /// Replaces the decision and reason in quarantine/ID/report.json (written by `examine`).
    func rewriteReport(_ taken: Taken, decision: String, reason: String) throws(IntakeError) {
        guard let q = openQuarantine(taken.id) else {
            throw IntakeError.system("cannot open quarantine/\(taken.id)")
        }
        defer { FileDescriptor(q).close() }
        let fd = openat(q, "report.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw IntakeError.system("cannot open quarantine/\(taken.id)/report.json")
        }
        var document: JSON
        do {
            defer { FileDescriptor(fd).close() }
            document = try JSON.parse(try BoundedFile.read(fd: fd, limit: 1 << 30, name: "report.json"), maxDepth: 256)
        } catch let error as BoundedFile.Failure {
            throw IntakeError("cannot read quarantine/\(taken.id)/report.json: \(error.description)")
        } catch {
            throw IntakeError("cannot read quarantine/\(taken.id)/report.json: \(error)")
        }
        guard case .object(var members) = document, let i = members.firstIndex(where: { $0.0 == "intake" }),
            case .object(var intake) = members[i].1
        else {
            throw IntakeError("quarantine/\(taken.id)/report.json is not an intake report")
        }
        for (key, value) in [("decision", decision), ("reason", reason)] {
            if let j = intake.firstIndex(where: { $0.0 == key }) {
                intake[j].1 = .string(value)
            } else {
                intake.append((key, .string(value)))
            }
        }
        members[i].1 = .object(intake)
        document = .object(members)
        do {
            try AtomicFile.write(Array(document.pretty().utf8), to: "report.json", in: q)
        } catch {
            throw IntakeError(error.message)
        }
    }

    /// Makes report.json and manifest.json in quarantine/ID read-only, the intake's group.
    func sealReports(_ taken: Taken) throws(IntakeError) {
        guard let q = openQuarantine(taken.id) else {
            throw IntakeError.system("cannot open quarantine/\(taken.id)")
        }
        defer { FileDescriptor(q).close() }
        for name in ["report.json", "manifest.json"] {
            let fd = openat(q, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { FileDescriptor(fd).close() }
            try Custody.seal(fd, mode: 0o444, display: "quarantine/\(taken.id)/\(name)")
            guard fsync(fd) == 0 else {
                throw IntakeError.system("cannot sync quarantine/\(taken.id)/\(name)")
            }
        }
    }

    /// Makes a released folder read-only (0555), the intake's group, durably.
    func sealRelease(_ fd: Int32, display: String) throws(IntakeError) {
        try Custody.seal(fd, mode: 0o555, display: display)
        try IntakeRoot.sync(fd)
    }

    /// Removes the original delivery of a released model: renamed `ID.discard` first (so that what a crash or a
    /// still-writing uploader leaves is known to be garbage), then removed as far as it can be.
    func discardDelivery(_ taken: Taken) {
        let trash = FileName(taken.id + ".discard")
        if IntakeRoot.exists(root.delivered, taken.id) {
            Custody.remove(root.delivered, trash, limits: limits)
            guard trash.withCString({ renameat(root.delivered, taken.id, root.delivered, $0) }) == 0 else {
                log(
                    "cannot discard the original delivery of \(taken.name) (.airlock/delivered/\(taken.id)): \(Errno.current.text)"
                )
                return
            }
        }
        if !Custody.remove(root.delivered, trash, limits: limits) {
            log(
                "the original delivery of \(taken.name) could not be removed entirely (does its uploader still add to it?): .airlock/delivered/\(trash) is removed again at the next start"
            )
        }
    }

    /// The deliveries this worker still holds in its `.airlock/delivered/` (not discarded): after a pass, each is a
    /// model stuck in the intake's keeping (`--once` exits non-zero while there is one).
    public func heldDeliveries() -> [String] {
        IntakeRoot.list(root.delivered).filter { !$0.hasSuffix(".discard") }.map { $0.escaped }
    }

    /// At start: removes the deliveries discarded earlier, and reports those the journal does not know (`known`: the
    /// journal's ids).
    func removeDiscarded(known: Set<FileName>) {
        for entry in IntakeRoot.list(root.delivered) {
            if entry.hasSuffix(".discard") {
                if !Custody.remove(root.delivered, entry, limits: limits) {
                    log("cannot remove .airlock/delivered/\(entry) (an original delivery already released)")
                }
            } else if !known.contains(entry) {
                log(".airlock/delivered/\(entry) is not in the journal: left alone")
            }
        }
    }
}
