import AirlockAnalysis
import Foundation
import Testing
import AirlockTestSupport

/// Custody (issue 11, class 2): what is approved stays what was examined, whatever the uploader kept — a hard link, a
/// descriptor open for writing, a shared writable mapping, a descriptor of a delivered folder.
extension IntakeTests {
    /// The bytes of `path`.
    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// Writes `text` over the start of the file open as `fd` (or, with `truncate`, makes it the whole content).
    static func scribble(_ fd: Int32, _ text: String, truncate: Bool = false) -> Bool {
        if truncate && ftruncate(fd, 0) != 0 { return false }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == bytes.count
    }

    /// Runs `airlock intake --once` as uid/gid 65534 (the intake's own user, not the uploader), after giving it the root.
    static func onceAsNobody(_ setup: Setup, _ extra: [String] = [], environment: [String: String] = [:]) throws
        -> ProgramRun
    {
        for path in [setup.root, setup.incoming] { #expect(chown(path, 65534, 65534) == 0) }
        return try runToEnd(
            "/usr/bin/setpriv",
            [
                "--reuid", "65534", "--regid", "65534", "--clear-groups", airlockBinary,
                "intake", "--root", setup.root, "--policy", setup.policy, "--once",
            ] + extra,
            environment: environment)
    }

    /// A folder model an uploader (root here) delivers group-writable, so that the intake's user may move it.
    static func dropWritableFolder(_ setup: Setup, _ name: String) throws {
        let folder = setup.incoming + "/" + name
        try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: folder + "/sub/weights.safetensors")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        for path in [folder, folder + "/sub"] { #expect(chmod(path, 0o777) == 0) }
    }

    @Test(
        "as the intake's own user: a read-only copy cut short by kill -9 is made again; a rollback removes it and gives the delivery back"
    )
    func unprivilegedCrashAndRollback() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        try IntakeTests.dropWritableFolder(setup, "folder")
        // Killed with both copies complete (0444 files, 0555 folders) but not yet named: the restart removes them.
        let crashed = try IntakeTests.onceAsNobody(setup, environment: ["AIRLOCK_INTAKE_CRASH_AT": "copied"])
        #expect(crashed.signal == SIGKILL, "\(crashed.status) \(crashed.stderr)")
        // airlockd unreachable: the take is rolled back, the read-only copy removed, the delivery back in incoming/.
        let unreachable = try IntakeTests.onceAsNobody(setup, ["--socket", setup.root + ".no-daemon.sock"])
        #expect(unreachable.status == 2, "\(unreachable.stdout) \(unreachable.stderr)")
        #expect(
            setup.places()["model.safetensors"] == ["incoming"] && setup.places()["folder"] == ["incoming"],
            "\(setup.places()) \(unreachable.stderr)")
        var st = stat()
        #expect(
            stat(setup.incoming + "/folder/sub/weights.safetensors", &st) == 0 && st.st_uid == 0,
            "the delivery itself went back")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine")) ?? []).isEmpty)
        let run = try IntakeTests.onceAsNobody(setup)
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(
            setup, ["model.safetensors": "approved", "folder": "approved"], "as the intake's user", owner: 65534)
    }

    @Test("an uploader's hard link to a delivered file cannot rewrite the approved model")
    func hardLinkKept() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        let kept = setup.root + ".uploader-link"
        #expect(link(setup.incoming + "/model.safetensors", kept) == 0)
        defer { unlink(kept) }
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved"], "hard link kept")

        let fd = open(kept, O_WRONLY)
        #expect(fd >= 0 && IntakeTests.scribble(fd, "rewritten after approval", truncate: true))
        close(fd)
        let approved = setup.root + "/approved/model.safetensors/model.safetensors"
        #expect(
            try IntakeTests.bytes(approved) == (try IntakeTests.bytes(setup.samples + "/model.safetensors")),
            "the approved file was rewritten through the uploader's link")
        let verify = try runCLI([
            "verify", "--manifest", setup.root + "/approved/model.safetensors/manifest.json", approved,
        ])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test(
        "an uploader's descriptor open for writing and shared writable mapping cannot reach the approved model; released read-only, owned by the intake's user"
    )
    func writerKept() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        // A folder too, which the intake's user may move (an uploader's folder is group-writable in incoming/).
        try IntakeTests.dropWritableFolder(setup, "folder")
        let folder = setup.incoming + "/folder"

        // The intake runs as another user, which cannot take a lease on the uploader's file: it falls back to the
        // settle time (0 here) and takes the file while the uploader holds it open for writing and mapped.
        let fd = open(setup.incoming + "/model.safetensors", O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        #expect(map != MAP_FAILED)
        defer { if map != MAP_FAILED { munmap(map, size) } }
        let deep = open(folder + "/sub/weights.safetensors", O_RDWR)
        #expect(deep >= 0)
        defer { close(deep) }

        let run = try IntakeTests.onceAsNobody(setup)
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(
            setup, ["model.safetensors": "approved", "folder": "approved"], "writer kept", owner: 65534)

        #expect(IntakeTests.scribble(fd, "written through the kept descriptor"))
        if map != MAP_FAILED, let map {
            map.storeBytes(of: 0x41, toByteOffset: size - 1, as: UInt8.self)
            #expect(msync(map, size, MS_SYNC) == 0)
        }
        #expect(IntakeTests.scribble(deep, "written through a descriptor of a file in the folder"))
        let sample = try IntakeTests.bytes(setup.samples + "/model.safetensors")
        #expect(
            try IntakeTests.bytes(setup.root + "/approved/model.safetensors/model.safetensors") == sample,
            "the approved file was rewritten through a kept descriptor or mapping")
        #expect(
            try IntakeTests.bytes(setup.root + "/approved/folder/folder/sub/weights.safetensors") == sample,
            "a file of the approved folder was rewritten")
        // Released as the intake's: it alone could change modes; the uploader's user cannot write them.
        var st = stat()
        #expect(
            stat(setup.root + "/approved/folder/folder/sub/weights.safetensors", &st) == 0 && st.st_uid == 65534
                && st.st_gid == 65534)
    }

    @Test(
        "an uploader's descriptor of a delivered folder cannot change the approved folder (openat, renameat, mkdirat)")
    func folderDescriptorKept() throws {
        let setup = try Setup()
        let folder = setup.incoming + "/.part-folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: folder + "/model.safetensors")
        _ = FileManager.default.createFile(atPath: folder + "/.ready", contents: nil)
        let dfd = open(folder, O_RDONLY | O_DIRECTORY)
        #expect(dfd >= 0)
        defer { close(dfd) }
        #expect(rename(folder, setup.incoming + "/folder") == 0)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["folder": "approved"], "folder descriptor kept")

        // Through the descriptor: rewrite a file, add one, rename one, add a folder. (Each may fail: the delivered
        // folder is gone once the intake's copy is released. What matters is what they do to the approved folder.)
        let w = openat(dfd, "model.safetensors", O_WRONLY | O_TRUNC)
        if w >= 0 {
            _ = IntakeTests.scribble(w, "not a model")
            close(w)
        }
        let added = openat(dfd, "added.pkl", O_WRONLY | O_CREAT | O_EXCL, 0o644)
        if added >= 0 {
            _ = IntakeTests.scribble(added, "cos\nsystem\n")
            close(added)
        }
        _ = renameat(dfd, "model.safetensors", dfd, "renamed.safetensors")
        _ = mkdirat(dfd, "more", 0o755)

        let released = setup.root + "/approved/folder/folder"
        let entries = try FileManager.default.contentsOfDirectory(atPath: released).sorted()
        // The .ready marker is how the folder was delivered, not part of the model: it is not released.
        #expect(entries == ["model.safetensors"], "the approved folder changed: \(entries)")
        #expect(
            try IntakeTests.bytes(released + "/model.safetensors")
                == (try IntakeTests.bytes(setup.samples + "/model.safetensors")))
        let verify = try runCLI(["verify", "--manifest", setup.root + "/approved/folder/manifest.json", released])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test(
        "a model whose copy changes between examination and release is not approved",
        arguments: ["bytes", "link", "bytes, crash after the new decision"])
    func changedBeforeRelease(tamper: String) throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        // Examined and decided "approved", stopped before the release (a crash is the fault injection).
        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "decided"])
        #expect(crashed.signal == SIGKILL, "\(crashed.status) \(crashed.stderr)")
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: setup.root + "/quarantine").first)
        let copy = "\(setup.root)/quarantine/\(id)/model.safetensors"
        let extra = setup.root + ".extra-link"
        defer { unlink(extra) }
        if tamper == "link" {
            // Another name for the examined file: whoever holds it could change the model later.
            #expect(link(copy, extra) == 0)
        } else {
            // What only root (or a bug of the intake) could do to the intake's private copy.
            let fd = open(copy, O_WRONLY)
            #expect(fd >= 0)
            let x: [UInt8] = [0x58]
            #expect(x.withUnsafeBytes { pwrite(fd, $0.baseAddress, 1, off_t(Int(lseek(fd, 0, SEEK_END)) - 1)) } == 1)
            close(fd)
        }
        if tamper.hasPrefix("bytes, crash") {
            let again = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "redecided"])
            #expect(
                again.signal == SIGKILL,
                "the release did not turn the approval into a rejection: \(again.status) \(again.stderr)")
        }
        let run = try setup.once()
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        #expect(setup.places()["model.safetensors"] == ["rejected/model.safetensors"], "\(setup.places())")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: setup.root + "/approved")) ?? []).isEmpty)
        let intake = try #require(try setup.report("rejected", "model.safetensors")["intake"] as? [String: Any])
        #expect(intake["decision"] as? String == "rejected")
        let reason = intake["reason"] as? String ?? ""
        #expect(reason.hasPrefix("rejected: the model about to be released is not the one examined"), "\(reason)")
        #expect(reason.contains(tamper == "link" ? "2 hard links" : "SHA-256"), "\(reason)")
        try IntakeTests.checkSchema(setup)
    }

    @Test("a delivery opened for writing again before it is copied goes back to incoming/ until the writer is gone")
    func writerBeforeCopy() throws {
        let setup = try Setup()
        try setup.drop("model.safetensors")
        // Moved into the intake's keeping, not yet copied: a writer opens it there (deterministically, through a
        // crash; in life, a link or descriptor the uploader kept).
        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": "moved-in"])
        #expect(crashed.signal == SIGKILL, "\(crashed.status) \(crashed.stderr)")
        let delivered = try #require(IntakeTests.deliveredFolders(setup.root).first)
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: delivered).first)
        let writer = open("\(delivered)/\(id)/model.safetensors", O_RDWR)
        #expect(writer >= 0)
        let held = try setup.once()
        #expect(held.stderr.contains("model.safetensors is open for writing again"), "\(held.stderr)")
        #expect(held.stdout.contains("waiting   model.safetensors: open for writing"), "\(held.stdout)")
        #expect(setup.places()["model.safetensors"] == ["incoming"], "\(setup.places())")
        close(writer)
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved"], "writer before the copy")
    }

    @Test("a model an earlier intake moved into quarantine as the uploader's own inode is copied before it is examined")
    func takenBeforeCustody() throws {
        let setup = try Setup()
        _ = try setup.once()  // makes the root
        // What an intake before custody left after a crash: the uploader's inode itself in quarantine/ID/NAME.
        let id = "20261122T000000Z-00000000"
        try FileManager.default.createDirectory(
            atPath: "\(setup.root)/quarantine/\(id)", withIntermediateDirectories: false)
        try FileManager.default.copyItem(
            atPath: setup.samples + "/model.safetensors", toPath: "\(setup.root)/quarantine/\(id)/model.safetensors")
        let kept = setup.root + ".uploader-link"
        #expect(link("\(setup.root)/quarantine/\(id)/model.safetensors", kept) == 0)
        defer { unlink(kept) }
        try Data(
            #"{"op":"take","id":"\#(id)","name":"model.safetensors"}\#n{"op":"taken","id":"\#(id)","name":"model.safetensors"}\#n"#
                .utf8
        )
        .write(to: URL(fileURLWithPath: setup.root + "/.airlock/journal"))
        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(
            run.stderr.contains("taken by an earlier intake as the uploader's own inode; copying it"), "\(run.stderr)")
        try IntakeTests.checkReleased(setup, ["model.safetensors": "approved"], "taken before custody")
        let fd = open(kept, O_WRONLY)
        #expect(fd >= 0 && IntakeTests.scribble(fd, "rewritten", truncate: true))
        close(fd)
        #expect(
            try IntakeTests.bytes(setup.root + "/approved/model.safetensors/model.safetensors")
                == (try IntakeTests.bytes(setup.samples + "/model.safetensors")))
    }

    @Test(
        "what cannot be copied whole (a 1 TB sparse file, a FIFO in a folder) stays in incoming/ with the reason; a sparse file within the budget stays sparse"
    )
    func notCopied() throws {
        let setup = try Setup()
        try FileManager.default.createDirectory(
            atPath: setup.incoming + "/fifo-folder", withIntermediateDirectories: true)
        #expect(mkfifo(setup.incoming + "/fifo-folder/pipe", 0o600) == 0)
        _ = FileManager.default.createFile(atPath: setup.incoming + "/fifo-folder/.ready", contents: nil)
        _ = FileManager.default.createFile(atPath: setup.incoming + "/huge.bin", contents: nil)
        #expect(truncate(setup.incoming + "/huge.bin", 1 << 40) == 0)
        // 256 MiB apparent, a few bytes of data.
        _ = FileManager.default.createFile(atPath: setup.incoming + "/sparse.bin", contents: Data("not a model".utf8))
        #expect(truncate(setup.incoming + "/sparse.bin", 256 << 20) == 0)
        let run = try setup.once()
        #expect(run.stdout.contains("waiting   huge.bin: not taken: 1099511627776 bytes"), "\(run.stdout)")
        #expect(run.stdout.contains("byte budget (maxBytes 274877906944)"), "\(run.stdout)")
        #expect(run.stdout.contains("waiting   fifo-folder: not taken: fifo-folder/pipe is a FIFO"), "\(run.stdout)")
        #expect(setup.places()["huge.bin"] == ["incoming"] && setup.places()["fifo-folder"] == ["incoming"])
        // Not a model format: rejected.
        #expect(setup.places()["sparse.bin"] == ["rejected/sparse.bin"], "\(run.stdout) \(run.stderr)")
        var st = stat()
        #expect(stat(setup.root + "/rejected/sparse.bin/sparse.bin", &st) == 0 && st.st_size == 256 << 20)
        #expect(
            st.st_blocks * 512 <= 1 << 20,
            "the copy of a sparse file filled its holes: \(st.st_blocks * 512) bytes allocated")
    }
}
