import AirlockAnalysis
import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Names are bytes: `w\xff.pkl` (not UTF-8) and `w\xef\xbf\xbd.pkl` (the UTF-8 of U+FFFD, what a decoder puts in
/// place of `\xff`) are two files. Every walk — scan, probe, airlockd, manifest and verify, intake — must examine
/// each under its own bytes, show both losslessly and say what is odd about the name.
@Suite("Names are bytes", .serialized)
struct NameBytesTests {
    static let invalid: [UInt8] = Array("w".utf8) + [0xFF] + Array(".pkl".utf8)
    static let replacement: [UInt8] = Array("w\u{FFFD}.pkl".utf8)
    /// How reports show the two names.
    static let invalidShown = "w\\xFF.pkl"
    static let replacementShown = "w\u{FFFD}.pkl"

    /// `os.system("true")`: a known code-execution import whose call, if it ever ran, does nothing.
    static let maliciousPickle: [UInt8] =
        [0x80, 0x02] + Array("cos\nsystem\n".utf8) + [0x58, 4, 0, 0, 0] + Array("true".utf8)
        + [0x85, 0x52, 0x2E]
    /// `{}`.
    static let benignPickle: [UInt8] = [0x80, 0x02, 0x7D, 0x2E]

    /// Creates `name` (raw bytes) in `dir` holding `data`.
    static func writeRaw(_ dir: String, _ name: [UInt8], _ data: [UInt8]) throws {
        let dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(dirfd) }
        let fd = (name + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) {
                openat(dirfd, $0.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            }
        }
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        #expect(written == data.count)
    }

    /// The names in `dir`, as raw bytes (FileManager would decode them).
    static func listRaw(_ dir: String) -> Set<[UInt8]> {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: Set<[UInt8]> = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { out.insert(name) }
        }
        return out
    }

    /// The content of `dir`/`name` (raw bytes).
    static func readRaw(_ dir: String, _ name: [UInt8]) -> [UInt8]? {
        let path = Array(dir.utf8) + [0x2F] + name + [0]
        let fd = path.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_RDONLY) }
        }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        return n >= 0 ? Array(buf[0..<n]) : nil
    }

    /// A scratch folder removed at the end whatever names it holds (FileManager cannot remove names it cannot decode).
    static func withFolder<T>(_ body: (String) throws -> T) throws -> T {
        let dir = try makeHostDirectory()
        defer { _ = try? runProgram("/bin/rm", ["-rf", dir]) }
        return try body(dir)
    }

    /// A folder holding the malicious pickle as `w\xff.pkl` and the benign one as `w\xef\xbf\xbd.pkl`.
    static func pair(in dir: String) throws -> String {
        let folder = dir + "/pair"
        #expect(mkdir(folder, 0o755) == 0)
        try writeRaw(folder, invalid, maliciousPickle)
        try writeRaw(folder, replacement, benignPickle)
        #expect(listRaw(folder).count == 2)
        return folder
    }

    /// One report per line → path → (verdict, rules). Keyed by the path's bytes: `String` keys would take NFC `é`
    /// and NFD `é` for one.
    static func reports(_ jsonLines: String) -> [[UInt8]: (verdict: String, rules: [String], sha256: String)] {
        var out: [[UInt8]: (String, [String], String)] = [:]
        for line in jsonLines.split(separator: "\n") {
            guard let r = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                let target = r["target"] as? [String: Any], let path = target["path"] as? String
            else {
                Issue.record("not a report: \(line.prefix(300))")
                continue
            }
            let rules = (r["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
            out[Array(path.utf8)] = (r["verdict"] as? String ?? "?", rules, target["sha256"] as? String ?? "-")
        }
        return out
    }

    /// The pair's reports: the malicious file under its own (escaped) name, malicious; the benign one apart.
    static func checkPair(_ run: (status: Int32, stdout: String, stderr: String), folder: String, _ context: String) {
        #expect(run.status == 1, "\(context): exit \(run.status): \(run.stderr)")
        let byPath = reports(run.stdout)
        #expect(byPath.count == 2, "\(context): \(byPath.keys.map { String(decoding: $0, as: UTF8.self) })")
        let bad = byPath[Array((folder + "/" + invalidShown).utf8)]
        #expect(bad?.verdict == "malicious", "\(context): \(byPath)")
        #expect(bad?.rules.contains("pickle.dangerous-import") == true, "\(context): \(bad?.rules ?? [])")
        #expect(bad?.rules.contains("folder.name-not-utf8") == true, "\(context): \(bad?.rules ?? [])")
        #expect(bad?.rules.contains("folder.name-lookalike") == true, "\(context): \(bad?.rules ?? [])")
        let good = byPath[Array((folder + "/" + replacementShown).utf8)]
        #expect(good != nil && good?.sha256 != bad?.sha256, "\(context): two files, two digests: \(byPath)")
        #expect(good?.rules.contains("pickle.dangerous-import") == false, "\(context)")
    }

    @Test("scan and probe examine w\\xff.pkl and w\\xef\\xbf\\xbd.pkl as two files: the malicious one is found")
    func scanAndProbe() throws {
        try NameBytesTests.withFolder { dir in
            let folder = try NameBytesTests.pair(in: dir)
            NameBytesTests.checkPair(try runCLI(["scan", "--format", "json", folder]), folder: folder, "scan")
            NameBytesTests.checkPair(
                try runCLI(["probe", "--format", "json", folder], timeout: 120), folder: folder, "probe")
            // Text output shows the escaped name, never the raw byte.
            let text = try runCLI(["scan", folder])
            #expect(text.stdout.contains("MALICIOUS  \(folder)/\(NameBytesTests.invalidShown)"), "\(text.stdout)")
        }
    }

    @Test("airlockd's folder scans and probes examine both files")
    func daemonFolder() throws {
        try NameBytesTests.withFolder { dir in
            let folder = try NameBytesTests.pair(in: dir)
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            for method in ["scan", "probe"] {
                let run = try runCLI(["--socket", daemon.socket, method, "--format", "json", folder], timeout: 120)
                NameBytesTests.checkPair(run, folder: folder, "airlockd \(method)")
            }
        }
    }

    @Test("a client's name for its descriptor reaches reports escaped; names already escaped are kept")
    func daemonName() throws {
        try NameBytesTests.withFolder { dir in
            try NameBytesTests.writeRaw(dir, Array("m.pkl".utf8), NameBytesTests.benignPickle)
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            let fd = open(dir + "/m.pkl", O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            for (sent, shown) in [
                ("x\u{1B}[2J\nCLEAN  y", "x\\x1B[2J\\x0ACLEAN  y"), ("a\\b", "a\\\\b"), ("w\\xFF.pkl", "w\\xFF.pkl"),
            ] {
                let reply = try { () throws(ClientError) -> [(String, JSON)] in
                    try DaemonClient(path: daemon.socket).call(
                        "scan", params: [("name", .string(sent))], descriptor: fd, timeout: 30)
                }()
                guard case .array(let reports)? = reply.first(where: { $0.0 == "reports" })?.1,
                    let first = reports.first,
                    let report = Report(json: first)
                else {
                    Issue.record("no report for \(sent)")
                    continue
                }
                #expect(Array(report.target.path.utf8) == Array(shown.utf8), "\(sent) → \(report.target.path)")
            }
        }
    }

    @Test("a name with control characters is shown escaped and is a finding; a non-UTF-8 argument is refused")
    func controlCharactersAndArguments() throws {
        try NameBytesTests.withFolder { dir in
            let folder = dir + "/m"
            #expect(mkdir(folder, 0o755) == 0)
            // A newline and an ANSI colour: printed raw, it would start a forged report line.
            try NameBytesTests.writeRaw(
                folder, Array("a\u{1B}[32m\nCLEAN  x\\.safetensors".utf8), NameBytesTests.benignPickle)
            let text = try runCLI(["scan", folder])
            #expect(text.status == 1, "\(text.stdout)")
            #expect(text.stdout.contains("\(folder)/a\\x1B[32m\\x0ACLEAN  x\\\\.safetensors"), "\(text.stdout)")
            #expect(!text.stdout.contains("\u{1B}") && !text.stdout.contains("\nCLEAN"), "\(text.stdout)")
            #expect(text.stdout.contains("folder.name-control"), "\(text.stdout)")
            // Named on the command line (a shell glob's match), the path is shown escaped too.
            let named = try runCLI(["scan", "--format", "json", folder + "/a\u{1B}[32m\nCLEAN  x\\.safetensors"])
            #expect(
                named.stdout.contains(#""path":"\#(folder)/a\\x1B[32m\\x0ACLEAN  x\\\\.safetensors""#),
                "\(named.stdout)")

            // `CommandLine.arguments` would turn the byte into U+FFFD and name the other file.
            try NameBytesTests.writeRaw(dir, NameBytesTests.invalid, NameBytesTests.maliciousPickle)
            try NameBytesTests.writeRaw(dir, NameBytesTests.replacement, NameBytesTests.benignPickle)
            let run = try runProgram(
                "/bin/sh", ["-c", #"exec "$0" scan "$(printf '%s/w\377.pkl' "$1")""#, airlockBinary, dir])
            #expect(run.status == 2, "\(run.stdout) \(run.stderr)")
            #expect(run.stderr.contains("not valid UTF-8") && run.stderr.contains("w\\xFF.pkl"), "\(run.stderr)")
        }
    }

    @Test("manifest and verify compare bytes: a file swapped in beside its lookalike does not verify")
    func manifestAndVerify() throws {
        try NameBytesTests.withFolder { dir in
            // Made over the benign file alone; then the malicious one arrives under the name that decodes alike.
            let folder = dir + "/model"
            #expect(mkdir(folder, 0o755) == 0)
            try NameBytesTests.writeRaw(folder, NameBytesTests.replacement, NameBytesTests.benignPickle)
            let made = try runCLI(["manifest", "--output", dir + "/m.json", folder])
            #expect(made.status == 0, "\(made.stderr)")
            #expect(try runCLI(["verify", "--manifest", dir + "/m.json", folder]).status == 0)
            try NameBytesTests.writeRaw(folder, NameBytesTests.invalid, NameBytesTests.maliciousPickle)
            let swapped = try runCLI(["verify", "--format", "json", "--manifest", dir + "/m.json", folder])
            #expect(swapped.status == 1, "\(swapped.stdout) \(swapped.stderr)")
            #expect(
                swapped.stdout.contains(#""rule":"provenance.extra""#)
                    && swapped.stdout.contains(#""path":"w\\xFF.pkl""#),
                "\(swapped.stdout)")

            // A manifest names a non-UTF-8 file in the escaped form, and verify reads it back as the same bytes.
            let other = dir + "/other"
            #expect(mkdir(other, 0o755) == 0)
            try NameBytesTests.writeRaw(other, NameBytesTests.invalid, NameBytesTests.benignPickle)
            #expect(try runCLI(["manifest", "--output", dir + "/o.json", other]).status == 0)
            let manifest = try String(contentsOfFile: dir + "/o.json", encoding: .utf8)
            #expect(
                manifest.contains(#""path": "w\\xFF.pkl""#) || manifest.contains(#""path":"w\\xFF.pkl""#), "\(manifest)"
            )
            let fine = try runCLI(["verify", "--manifest", dir + "/o.json", other])
            #expect(fine.status == 0, "\(fine.stdout) \(fine.stderr)")
            try NameBytesTests.writeRaw(other, NameBytesTests.invalid, NameBytesTests.maliciousPickle)
            let changed = try runCLI(["verify", "--format", "json", "--manifest", dir + "/o.json", other])
            #expect(
                changed.status == 1 && changed.stdout.contains("provenance.changed"),
                "\(changed.stdout) \(changed.stderr)")

            // Not the canonical escaped form (lower-case hex): refused, never guessed at.
            try manifest.replacingOccurrences(of: "w\\\\xFF", with: "w\\\\xff").write(
                toFile: dir + "/bad.json", atomically: true, encoding: .utf8)
            let bad = try runCLI(["verify", "--manifest", dir + "/bad.json", other])
            #expect(bad.status == 2 && bad.stderr.contains("escaped form"), "\(bad.stdout) \(bad.stderr)")
            // docs/manifest.schema.json says the same.
            let valid = try SchemaValidation.validateManifests([dir + "/m.json", dir + "/o.json"])
            #expect(valid.status == 0, "\(valid.output)")
            #expect(try SchemaValidation.validateManifests([dir + "/bad.json"]).status == 1)
        }
    }

    @Test("NFC and NFD spellings of one name are two entries, and a manifest listing both is flagged")
    func normalisationLookalikes() throws {
        try NameBytesTests.withFolder { dir in
            let folder = dir + "/model"
            #expect(mkdir(folder, 0o755) == 0)
            try NameBytesTests.writeRaw(folder, Array("\u{E9}.pkl".utf8), NameBytesTests.benignPickle)
            try NameBytesTests.writeRaw(folder, Array("e\u{301}.pkl".utf8), NameBytesTests.maliciousPickle)
            #expect(try runCLI(["manifest", "--output", dir + "/m.json", folder]).status == 0)
            let manifest = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/m.json")))
                    as? [String: Any])
            let paths = (manifest["files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
            #expect(
                Set(paths.map { Array($0.utf8) }) == [Array("\u{E9}.pkl".utf8), Array("e\u{301}.pkl".utf8)], "\(paths)")
            let run = try runCLI(["verify", "--format", "json", "--manifest", dir + "/m.json", folder])
            #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
            #expect(run.stdout.contains("provenance.name-lookalike"), "\(run.stdout)")
            let scan = try runCLI(["scan", "--format", "json", folder])
            let byPath = NameBytesTests.reports(scan.stdout)
            #expect(byPath.count == 2)
            #expect(byPath.values.filter { $0.verdict == "malicious" }.count == 1, "\(byPath)")
            #expect(byPath.values.allSatisfy { $0.rules.contains("folder.name-lookalike") }, "\(byPath)")
        }
    }

    @Test("intake rejects the folder, and both files and a non-UTF-8 model keep their names in rejected/")
    func intake() throws {
        let setup = try IntakeTests.Setup()
        let incoming = setup.incoming
        try FileManager.default.createDirectory(atPath: incoming, withIntermediateDirectories: true)
        // Built under a hidden name, then renamed, so it arrives whole.
        let hidden = incoming + "/.part-pair"
        #expect(mkdir(hidden, 0o755) == 0)
        try NameBytesTests.writeRaw(hidden, NameBytesTests.invalid, NameBytesTests.maliciousPickle)
        try NameBytesTests.writeRaw(hidden, NameBytesTests.replacement, NameBytesTests.benignPickle)
        #expect(rename(hidden, incoming + "/pair") == 0)
        // The model's own name not UTF-8, beside a benign model under the name it decodes to.
        let top = Array("m".utf8) + [0xFF] + Array(".pkl".utf8)
        let topLookalike = Array("m\u{FFFD}.pkl".utf8)
        try NameBytesTests.writeRaw(incoming, top, NameBytesTests.maliciousPickle)
        try NameBytesTests.writeRaw(incoming, topLookalike, NameBytesTests.benignPickle)

        let run = try setup.once()
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        #expect(
            NameBytesTests.listRaw(incoming).filter { $0.first != 0x2E }.isEmpty,
            "incoming/ still holds \(NameBytesTests.listRaw(incoming))")

        // The folder: rejected, both files inside under their own bytes, the report naming both.
        let released = setup.root + "/rejected/pair/pair"
        #expect(NameBytesTests.listRaw(released) == [NameBytesTests.invalid, NameBytesTests.replacement])
        #expect(NameBytesTests.readRaw(released, NameBytesTests.invalid) == NameBytesTests.maliciousPickle)
        #expect(NameBytesTests.readRaw(released, NameBytesTests.replacement) == NameBytesTests.benignPickle)
        let report = try setup.report("rejected", "pair")
        #expect(report["verdict"] as? String == "malicious", "\(report["verdict"] ?? "-")")
        let reports = report["reports"] as? [[String: Any]] ?? []
        let paths = reports.compactMap { ($0["target"] as? [String: Any])?["path"] as? String }
        #expect(
            Set(paths) == ["pair/" + NameBytesTests.invalidShown, "pair/" + NameBytesTests.replacementShown], "\(paths)"
        )
        let manifest = try String(contentsOfFile: setup.root + "/rejected/pair/manifest.json", encoding: .utf8)
        #expect(manifest.contains("w\\\\xFF.pkl") && manifest.contains(NameBytesTests.replacementShown), "\(manifest)")

        // The top-level model: taken under its own bytes, rejected (its name is a finding), released intact.
        let rejected = NameBytesTests.listRaw(setup.root + "/rejected")
        #expect(rejected.contains(top), "rejected/ holds \(rejected)")
        // A non-UTF-8 path cannot be a Swift String: checked by descriptors.
        let rdir = open(setup.root + "/rejected", O_RDONLY | O_DIRECTORY)
        defer { close(rdir) }
        let mfd = (top + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { openat(rdir, $0.baseAddress!, O_RDONLY | O_DIRECTORY) }
        }
        #expect(mfd >= 0, "rejected/m\\xFF.pkl is not there")
        if mfd >= 0 {
            defer { close(mfd) }
            let ffd = (top + [0]).withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: CChar.self) { openat(mfd, $0.baseAddress!, O_RDONLY) }
            }
            #expect(ffd >= 0, "rejected/m\\xFF.pkl/m\\xFF.pkl is not there")
            if ffd >= 0 {
                var buf = [UInt8](repeating: 0, count: 256)
                let n = read(ffd, &buf, buf.count)
                #expect(n > 0 && Array(buf[0..<n]) == NameBytesTests.maliciousPickle)
                close(ffd)
            }
            let rfd = openat(mfd, "report.json", O_RDONLY)
            #expect(rfd >= 0)
            if rfd >= 0 {
                var data = [UInt8](repeating: 0, count: 1 << 20)
                let n = read(rfd, &data, data.count)
                close(rfd)
                let text = String(decoding: data[0..<max(0, n)], as: UTF8.self)
                #expect(
                    text.contains(#""name": "m\\xFF.pkl""#) || text.contains(#""name":"m\\xFF.pkl""#),
                    "\(text.prefix(600))")
                #expect(
                    text.contains("folder.name-not-utf8") && text.contains("pickle.dangerous-import"),
                    "\(text.prefix(2000))")
            }
        }
        // The benign lookalike was examined as itself.
        let other = String(decoding: topLookalike, as: UTF8.self)
        let places = setup.places()
        #expect(places[other]?.count == 1, "\(places)")
        _ = try? runProgram("/bin/rm", ["-rf", setup.root + "/rejected", setup.incoming])
    }

    @Test("custody copies names as bytes, and the release check compares the copy with what was examined by bytes")
    func custodyApproval() throws {
        // Names are findings (suspicious), so a policy passing suspicious approves these benign models: only then is
        // the copy checked again at release, where a name decoded or compared as a String would turn the approval
        // into a rejection ("is gone"), or let two files pass as one.
        let setup = try IntakeTests.Setup(policy: #"{"settleSeconds": 0, "pass": ["clean", "suspicious"]}"#)
        defer {
            _ = try? runProgram("/bin/rm", ["-rf", setup.root + "/rejected", setup.root + "/approved", setup.incoming])
        }
        try FileManager.default.createDirectory(atPath: setup.incoming, withIntermediateDirectories: true)
        let nfc = Array("\u{E9}.pkl".utf8)
        let nfd = Array("e\u{301}.pkl".utf8)
        let hidden = setup.incoming + "/.part-pair"
        #expect(mkdir(hidden, 0o755) == 0)
        for (name, data) in [
            (NameBytesTests.invalid, [0x80, 0x02, 0x4E, 0x2E]),
            (NameBytesTests.replacement, NameBytesTests.benignPickle),
            (nfc, [0x80, 0x02, 0x88, 0x2E]), (nfd, [0x80, 0x02, 0x89, 0x2E]),
        ] as [([UInt8], [UInt8])] {
            try NameBytesTests.writeRaw(hidden, name, data)
        }
        #expect(rename(hidden, setup.incoming + "/pair") == 0)
        let top = Array("m".utf8) + [0xFF] + Array(".pkl".utf8)
        try NameBytesTests.writeRaw(setup.incoming, top, NameBytesTests.benignPickle)

        let run = try setup.once()
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(NameBytesTests.released(setup.root, "approved", top) == NameBytesTests.benignPickle, "\(run.stdout)")
        let pair = setup.root + "/approved/pair/pair"
        #expect(
            NameBytesTests.listRaw(pair) == [NameBytesTests.invalid, NameBytesTests.replacement, nfc, nfd],
            "\(run.stdout)")
        #expect(NameBytesTests.readRaw(pair, NameBytesTests.invalid) == [0x80, 0x02, 0x4E, 0x2E])
        #expect(NameBytesTests.readRaw(pair, nfc) == [0x80, 0x02, 0x88, 0x2E])
        #expect(NameBytesTests.readRaw(pair, nfd) == [0x80, 0x02, 0x89, 0x2E])
        // The intake's own copies, read-only: what custody made, under the delivery's bytes.
        var st = stat()
        let path = Array(pair.utf8) + [0x2F] + NameBytesTests.invalid + [0]
        let statted = path.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &st) }
        }
        #expect(statted == 0 && st.st_mode & 0o7777 == 0o444 && st.st_nlink == 1)
        for folder in IntakeTests.deliveredFolders(setup.root) { #expect(NameBytesTests.listRaw(folder).isEmpty) }
    }

    /// The content of `root`/`side`/`name`/`name` (a released model file), read by descriptors: the path is not UTF-8.
    static func released(_ root: String, _ side: String, _ name: [UInt8]) -> [UInt8]? {
        let sideFD = open(root + "/" + side, O_RDONLY | O_DIRECTORY)
        guard sideFD >= 0 else { return nil }
        defer { close(sideFD) }
        let c = name + [0]
        let dir = c.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { openat(sideFD, $0.baseAddress!, O_RDONLY | O_DIRECTORY) }
        }
        guard dir >= 0 else { return nil }
        defer { close(dir) }
        let fd = c.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { openat(dir, $0.baseAddress!, O_RDONLY) }
        }
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        return n >= 0 ? Array(buf[0..<n]) : nil
    }

    @Test(
        "kill -9 with a non-UTF-8 model in flight: the journal's escaped name leads the restart to the same bytes",
        arguments: ["copied", "owned", "taken", "decided", "released", "discarded"])
    func crashAndRecover(point: String) throws {
        let setup = try IntakeTests.Setup()
        try FileManager.default.createDirectory(atPath: setup.incoming, withIntermediateDirectories: true)
        let top = Array("m".utf8) + [0xFF] + Array(".pkl".utf8)
        let lookalike = Array("m\u{FFFD}.pkl".utf8)
        try NameBytesTests.writeRaw(setup.incoming, top, NameBytesTests.maliciousPickle)
        defer {
            _ = try? runProgram(
                "/bin/rm",
                ["-rf", setup.root + "/rejected", setup.root + "/approved", setup.root + "/quarantine", setup.incoming])
        }
        let crashed = try setup.once(environment: ["AIRLOCK_INTAKE_CRASH_AT": point])
        #expect(crashed.signal == SIGKILL, "the intake did not reach \(point): \(crashed.status) \(crashed.stderr)")
        // The name the journal's would decode to arrives meanwhile: recovery must not take it for the model in flight.
        try NameBytesTests.writeRaw(setup.incoming, lookalike, NameBytesTests.benignPickle)
        let restarted = try setup.once()
        #expect(
            restarted.signal == nil && restarted.status == 1,
            "restart after \(point): \(restarted.status) \(restarted.stdout) \(restarted.stderr)")
        #expect(
            NameBytesTests.released(setup.root, "rejected", top) == NameBytesTests.maliciousPickle,
            "after a crash at \(point)")
        let benign =
            NameBytesTests.released(setup.root, "approved", lookalike)
            ?? NameBytesTests.released(setup.root, "rejected", lookalike)
        #expect(benign == NameBytesTests.benignPickle, "after a crash at \(point)")
        #expect(
            NameBytesTests.listRaw(setup.root + "/quarantine").isEmpty && NameBytesTests.listRaw(setup.incoming).isEmpty
        )
        IntakeTests.checkNoWorkerLeft(setup.root, "after a crash at \(point)")
    }
}
