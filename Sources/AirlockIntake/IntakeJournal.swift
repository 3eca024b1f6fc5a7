internal import AirlockSystem
internal import AirlockJSON
internal import AirlockDaemon

#if canImport(Glibc)
    import Glibc
#endif

/// One step of one model's way through quarantine, as written to the journal.
struct JournalRecord: Sendable, Equatable {
    enum Op: String, Sendable {
        /// About to move `name` from incoming/ into quarantine/`id`/.
        case take
        /// The move is done; examination may start.
        case taken
        /// About to move quarantine/`id`/ to `to`/`dest`.
        case decide
        /// About to move the model back to incoming/ (examination could not be done).
        case rollback
        /// Finished: released, or rolled back; nothing left to do for `id`.
        case done
    }

    var op: Op
    var id: String
    var name: String = ""
    /// `approved` or `rejected` (decide).
    var to: String = ""
    /// The folder name under `to` (decide).
    var dest: String = ""
    /// Why (rollback, done after a rollback).
    var note: String = ""

    var json: JSON {
        var m: [(String, JSON)] = [("op", .string(op.rawValue)), ("id", .string(id))]
        if !name.isEmpty { m.append(("name", .string(name))) }
        if !to.isEmpty { m.append(("to", .string(to))) }
        if !dest.isEmpty { m.append(("dest", .string(dest))) }
        if !note.isEmpty { m.append(("note", .string(note))) }
        return .object(m)
    }

    init(op: Op, id: String, name: String = "", to: String = "", dest: String = "", note: String = "") {
        self.op = op
        self.id = id
        self.name = name
        self.to = to
        self.dest = dest
        self.note = note
    }

    init?(json: JSON) {
        guard case .object(let members) = json else { return nil }
        var values: [String: String] = [:]
        for (k, v) in members {
            guard case .string(let s) = v else { return nil }
            values[k] = s
        }
        guard let opText = values["op"], let op = Op(rawValue: opText), let id = values["id"] else { return nil }
        self.init(
            op: op, id: id, name: values["name"] ?? "", to: values["to"] ?? "", dest: values["dest"] ?? "",
            note: values["note"] ?? "")
    }
}

/// The intake's write-ahead journal: one JSON object per line, appended and `fdatasync`'d before the step it
/// announces is taken, so that after a crash at any point a restart knows what each model was doing and finishes or
/// rolls back every step exactly once.
///
/// A line cut short by a crash was never acknowledged, so its step never started: it is dropped when the journal is
/// opened. Once every model is finished, the journal is emptied.
final class IntakeJournal: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let monitor = Monitor()
    /// The last step of every model the journal holds.
    private var last: [String: JournalRecord.Op] = [:]

    /// Opens (creating) the journal `name` in the directory `dirfd`, returning it and the records it holds.
    static func open(dirfd: Int32, name: String, display: String) throws(IntakeError) -> (
        IntakeJournal, [JournalRecord]
    ) {
        let fd = openat(dirfd, name, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw IntakeError.system("cannot open the journal \(display)") }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            FileDescriptor(fd).close()
            throw IntakeError("the journal \(display) is not a regular file")
        }
        let size = Int(st.st_size)
        guard size <= 256 << 20 else {
            FileDescriptor(fd).close()
            throw IntakeError("the journal \(display) is larger than 256 MiB: not an intake journal")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = bytes[got...].withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        let complete = bytes[0..<got].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        if complete < got {
            // A torn last line: its step never started. Cut it off so the next record starts on a line of its own.
            guard ftruncate(fd, off_t(complete)) == 0, fdatasync(fd) == 0 else {
                let e = errno
                FileDescriptor(fd).close()
                throw IntakeError.system("cannot repair the journal \(display)", errno: Errno(e))
            }
        }
        var records: [JournalRecord] = []
        for line in bytes[0..<complete].split(separator: 0x0A) {
            guard let value = try? JSON.parse(Array(line)), let record = JournalRecord(json: value) else {
                FileDescriptor(fd).close()
                throw IntakeError(
                    "the journal \(display) has a line that is not an intake record: refusing to guess what happened (move it aside to start over)"
                )
            }
            records.append(record)
        }
        let journal = IntakeJournal(fd: fd, path: display)
        for r in records { journal.last[r.id] = r.op }
        return (journal, records)
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { FileDescriptor(fd).close() }

    /// Appends `record` and waits until it is on disk.
    func append(_ record: JournalRecord) throws(IntakeError) {
        let line = Array((record.json.serialized() + "\n").utf8)
        try monitor.locked { write(line, record) }.get()
    }

    /// `append`, with the monitor held.
    private func write(_ line: [UInt8], _ record: JournalRecord) -> Result<Void, IntakeError> {
        var st = stat()
        let before = fstat(fd, &st) == 0 ? st.st_size : -1
        var done = 0
        while done < line.count {
            let n = line[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                // A partial line must not stay: the next record would be glued to it.
                if before >= 0 { _ = ftruncate(fd, before) }
                return .failure(IntakeError.system("cannot write the journal \(path)", errno: Errno(e)))
            }
            done += n
        }
        guard fdatasync(fd) == 0 else {
            let e = errno
            if before >= 0 { _ = ftruncate(fd, before) }
            return .failure(IntakeError.system("cannot sync the journal \(path)", errno: Errno(e)))
        }
        last[record.id] = record.op
        return .success(())
    }

    /// Appends `records` with one flush (a takeover adopting another worker's unfinished models).
    func append(all records: [JournalRecord]) throws(IntakeError) {
        guard let last = records.last else { return }
        let line = Array(records.map { $0.json.serialized() + "\n" }.joined().utf8)
        try monitor.locked {
            let result = write(line, last)
            if case .success = result { for r in records { self.last[r.id] = r.op } }
            return result
        }.get()
    }

    /// Whether the journal holds a record of `id`.
    func knows(_ id: String) -> Bool { monitor.locked { last[id] != nil } }

    /// Empties the journal when every model it holds is done; says whether it did.
    @discardableResult
    func clearIfFinished() -> Bool {
        monitor.locked {
            guard !last.isEmpty, last.values.allSatisfy({ $0 == .done }) else { return false }
            guard ftruncate(fd, 0) == 0, fdatasync(fd) == 0 else { return false }
            last = [:]
            return true
        }
    }
}
