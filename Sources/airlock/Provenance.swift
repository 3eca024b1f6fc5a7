import AirlockNames
import AirlockAnalysis
import AirlockFormats
import AirlockJSON
import AirlockProvenance
import AirlockSystem
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

extension Airlock {
    /// `airlock manifest`: hashes a model and writes the manifest that pins it.
    struct ManifestCommand: ParsableCommand {
        @OptionGroup var digestCache: DigestCacheOptions

        static let configuration = CommandConfiguration(
            commandName: "manifest",
            abstract:
                "Write a manifest that pins a model: every file's path, size, SHA-256 and format, plus an optional policy.",
            discussion: """
                Files are hashed in parallel (--threads, default every CPU), streamed in 4 MiB reads; a progress bar is shown on a terminal for models over 256 MiB. Symbolic links, special files and unreadable files make it fail: a manifest cannot vouch for them. The manifest, the policy fields and how `airlock verify` uses them are in docs/manifest.md.

                Exit status: 0 manifest written, 2 error.
                """
        )

        @Option(name: .long, help: "The model's name (default: the last component of PATH).")
        var name: String?

        @Option(
            name: .long,
            help: "Where the model comes from, as trusted sources name it (an organisation, a hub account).")
        var source: String?

        @Option(
            name: .customLong("allow-format"),
            help:
                "Policy: a format any source may ship (repeat; without it every format not restricted by --trusted-only-format is allowed)."
        )
        var allowFormats: [String] = []

        @Option(
            name: .customLong("trusted-only-format"),
            help: "Policy: a format accepted only from a trusted source, e.g. pickle (repeat).")
        var trustedOnlyFormats: [String] = []

        @Option(
            name: .customLong("trusted-source"),
            help: "Policy: a trusted source, NAME or NAME=PUBLIC_KEY.pem to require a signature by that key (repeat).")
        var trustedSources: [String] = []

        @Flag(name: .customLong("require-signature"), help: "Policy: a verified signature is required.")
        var requireSignature = false

        @Flag(name: .customLong("allow-extra-files"), help: "Policy: files the manifest does not list are accepted.")
        var allowExtraFiles = false

        @Option(name: .long, help: "A path inside the folder to leave out, with everything beneath it (repeat).")
        var ignore: [String] = []

        @Option(name: .long, parsing: .unconditional, help: "Threads hashing at once (1 to 1024).")
        var threads: Int = ModelInventory.onlineCPUs

        @Option(
            name: [.short, .long], help: "Write the manifest to this file (atomically) instead of standard output.")
        var output: String?

        @Flag(name: .customLong("no-progress"), help: "No progress bar, even on a terminal.")
        var noProgress = false

        @Argument(help: "The model: a file or a folder.")
        var path: String

        func validate() throws {
            try ArgumentRules.count("--threads", threads, 1...1024)
            try StandardInput.refuse(path, by: "manifest")
            for f in allowFormats + trustedOnlyFormats where FileFormat(rawValue: f) == nil {
                throw ValidationError(
                    "unknown format \(f) (known: \(FileFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            for f in allowFormats + trustedOnlyFormats {
                if let why = Manifest.policyFormatProblem(f) { throw ValidationError(why) }
            }
        }

        func run() throws {
            digestCache.apply()
            do {
                let policy = try makePolicy()
                var ignored = ignore
                if let output, let inside = ProvenanceCLI.relative(output, inside: path) { ignored.append(inside) }
                let progress = ProgressBar.make(enabled: !noProgress, label: "hashing")
                let inventory = try ModelInventory.take(
                    path: path, options: .init(threads: threads, ignore: ignored, progress: progress?.update))
                progress?.finish()
                let problems =
                    inventory.problems.map { "\($0.path): \($0.reason)" }
                    + inventory.symlinks.map { "\($0.path): a symbolic link to \($0.target)" }
                if !problems.isEmpty {
                    writeStderr(
                        "airlock: no manifest written: a manifest cannot vouch for\n"
                            + problems.map { "  \($0)\n" }.joined())
                    throw ExitCode(2)
                }
                let manifest = Manifest(inventory: inventory, name: name, source: source, policy: policy)
                let text = Array(manifest.json.pretty().utf8)
                if let output {
                    try AtomicFile.write(text, toPath: output)
                } else {
                    writeStdout(text)
                }
            } catch let error as ProvenanceError {
                writeStderr("airlock: \(error.message)\n")
                throw ExitCode(2)
            }
        }

        private func makePolicy() throws(ProvenanceError) -> ManifestPolicy? {
            guard
                !allowFormats.isEmpty || !trustedOnlyFormats.isEmpty || !trustedSources.isEmpty || requireSignature
                    || allowExtraFiles
            else { return nil }
            var policy = ManifestPolicy(
                allowedFormats: allowFormats.isEmpty ? nil : allowFormats, trustedOnlyFormats: trustedOnlyFormats,
                requireSignature: requireSignature, allowExtraFiles: allowExtraFiles)
            for entry in trustedSources {
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                guard let sourceName = parts.first, !sourceName.isEmpty else {
                    throw ProvenanceError(.malformed, "--trusted-source needs a name")
                }
                var keys: [String] = []
                if parts.count == 2 {
                    keys.append(
                        try ModelSigning.fingerprint(
                            publicKeyPEM: try ProvenanceCLI.readSmall(parts[1], what: "public key")))
                }
                policy.trustedSources.append(TrustedSource(name: sourceName, keys: keys))
            }
            return policy
        }
    }

    /// `airlock verify`: is this the model that was meant?
    struct Verify: ParsableCommand {
        @OptionGroup var digestCache: DigestCacheOptions

        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check a model against a manifest and/or an OpenSSF model-signing signature.",
            discussion: """
                --manifest FILE: every file listed must be present with its size and SHA-256, no other file may be present (unless the manifest allows extra files), and the manifest's policy must hold (allowed formats, trusted sources, a required signature).

                --signature model.sig --public-key key.pub: a Sigstore bundle made by `model_signing sign key` (sigstore/model-transparency, ECDSA P-256/P-384/P-521) must verify with one of the keys, and the files must be exactly those it signs. Certificate and keyless (Sigstore) bundles are not verified yet: they are reported as such, never as verified.

                Every difference is a finding with source "provenance". docs/manifest.md has the details.

                --quiet, -o FILE and --color work as for `airlock scan` (docs/formats.md, "Output and exit status").

                Exit status: 0 the model is what was meant, 1 any finding that makes it suspicious or malicious, 2 error, 64 usage error.
                """
        )

        @Option(name: .long, help: "The manifest the model must match.")
        var manifest: String?

        @Option(name: .long, help: "A model-signing bundle (model.sig).")
        var signature: String?

        @Option(
            name: .customLong("public-key"),
            help: "A PEM public key the signature may be made with (repeat for several).")
        var publicKeys: [String] = []

        @Option(name: .long, help: "A path inside the folder to leave out, with everything beneath it (repeat).")
        var ignore: [String] = []

        @Option(name: .long, help: "Output format: text, json or sarif.")
        var format: ReportFormat = .text

        @Flag(name: .long, help: "Show informational findings too (text output).")
        var verbose = false

        @Option(name: .long, parsing: .unconditional, help: "Threads hashing at once (1 to 1024).")
        var threads: Int = ModelInventory.onlineCPUs

        @OptionGroup var output: OutputOptions

        @Argument(help: "The model: a file or a folder.")
        var path: String

        func validate() throws {
            if manifest == nil && signature == nil {
                throw ValidationError(
                    "nothing to verify against: give --manifest FILE and/or --signature FILE --public-key KEY")
            }
            if signature != nil && publicKeys.isEmpty {
                throw ValidationError(
                    "--signature needs --public-key: only model-signing's private-key method is verified (certificate and keyless bundles are not verified yet)"
                )
            }
            if signature == nil && !publicKeys.isEmpty { throw ValidationError("--public-key without --signature") }
            try ArgumentRules.count("--threads", threads, 1...1024)
            try StandardInput.refuse(path, by: "verify")
        }

        func run() throws {
            digestCache.apply()
            let verification: Verification
            do {
                var request = VerificationRequest(ignore: ignore, threads: threads)
                if let manifest {
                    request.manifest = try Manifest.read(path: manifest)
                    if let inside = ProvenanceCLI.relative(manifest, inside: path) { request.ignore.append(inside) }
                }
                if let signature {
                    request.signatureBundle = try ProvenanceCLI.readSmall(signature, what: "signature", limit: 64 << 20)
                    request.publicKeys = try publicKeys.map { k throws(ProvenanceError) in
                        try ProvenanceCLI.readSmall(k, what: "public key")
                    }
                    if let inside = ProvenanceCLI.relative(signature, inside: path) { request.ignore.append(inside) }
                }
                let progress = ProgressBar.make(enabled: !output.noProgress, label: "hashing")
                request.progress = progress?.update
                let fd: FileDescriptor
                do {
                    fd = try FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
                } catch  where error.errnoValue.rawValue == ELOOP {
                    // A file of a Hugging Face cache snapshot: the blob its link names, within its repository.
                    guard let blob = try ModelInventory.openSnapshotFile(path) else {
                        throw ProvenanceError(.io, "\(path) is a symbolic link: name the model itself")
                    }
                    fd = FileDescriptor(blob)
                } catch {
                    throw ProvenanceError(
                        .io,
                        error.errnoValue.rawValue == ELOOP
                            ? "\(path) is a symbolic link: name the model itself"
                            : "cannot open \(path): \(error.errnoValue.text)")
                }
                defer { fd.close() }
                verification = try ProvenanceVerifier.verify(
                    fd: fd.rawValue, display: FileName(path).escaped, name: FileName(path).lastComponent,
                    request: request)
                progress?.finish()
            } catch let error as ProvenanceError {
                writeStderr("airlock: \(error.message)\n")
                throw ExitCode(2)
            }
            var out = try ReportOutput(output, format: format, verbose: verbose, inputs: [path], label: "verifying")
            out.printer.print(verification.report)
            if format == .text && !(output.quiet && verification.report.verdict == .clean) {
                out.printer.text(verification.checked.map { "  checked: \($0)\n" }.joined())
            }
            try out.finish()
        }
    }
}

/// Small helpers shared by `manifest`, `verify` and `intake`.
enum ProvenanceCLI {
    /// The bytes of a small file (keys, signatures), or a ProvenanceError naming it.
    static func readSmall(_ path: String, what: String, limit: Int = 1 << 20) throws(ProvenanceError) -> [UInt8] {
        do {
            return try BoundedFile.read(path, limit: limit, what: what)
        } catch {
            throw ProvenanceError(error.errno == nil ? .limit : .io, error.description)
        }
    }

    /// `file`'s path relative to the folder `folder` when it lies inside it (by real path), else nil. Compared as
    /// bytes: real paths may hold names that are not UTF-8, and decoding them (or `String.hasPrefix`, which compares
    /// canonically equivalent text as equal) could take another folder for this one and leave a model file out.
    static func relative(_ file: String, inside folder: String) -> String? {
        func real(_ path: String) -> [UInt8]? {
            guard let r = realpath(path, nil) else { return nil }
            defer { free(r) }
            return Array(UnsafeBufferPointer(start: r, count: strlen(r)).map { UInt8(bitPattern: $0) })
        }
        guard let folderPath = real(folder) else { return nil }
        // The file may not exist yet (an output): resolve its directory.
        let name = file.split(separator: "/").last.map(String.init) ?? file
        let dir = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
        guard let d = real(dir.isEmpty ? "/" : dir) else { return nil }
        let full = d + [0x2F] + Array(name.utf8)
        let prefix = folderPath == [0x2F] ? folderPath : folderPath + [0x2F]
        guard full.count > prefix.count, full.starts(with: prefix) else { return nil }
        let inside = FileName(bytes: full[prefix.count...])
        return inside.isValidUTF8 ? String(decoding: inside.bytes, as: UTF8.self) : nil
    }
}

/// A one-line progress bar on standard error, shown only on a terminal: for hashing over 256 MiB (`update`), or
/// counting the files of a scan or probe (`files`). Not locked:
/// `ModelInventory` calls its progress closure one call at a time, and `finish` comes after the hashing.
final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let start = ProgressBar.now()
    private var shown = false
    private var count = 0
    private var drawn = 0.0
    private var erasable = false

    private init(label: String) {
        self.label = label
    }

    /// A bar when standard error is a terminal and `enabled`, else nil.
    static func make(enabled: Bool, label: String) -> ProgressBar? {
        enabled && isatty(2) == 1 ? ProgressBar(label: label) : nil
    }

    /// Redraws the bar: `done` of `total` bytes.
    @Sendable func update(_ done: Int, _ total: Int) {
        guard total >= 256 << 20 else { return }
        shown = true
        let seconds = max(ProgressBar.now() - start, 0.001)
        let fraction = Double(done) / Double(max(total, 1))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let gib = { (n: Int) in String(format1: Double(n) / Double(1 << 30)) }
        let rate = String(format1: Double(done) / seconds / Double(1 << 20))
        writeStderr("\r\(label) [\(bar)] \(Int(fraction * 100))% \(gib(done))/\(gib(total)) GiB \(rate) MiB/s ")
    }

    /// Ends the bar's line.
    func finish() {
        if shown { writeStderr("\n") }
    }

    /// The progress line of a scan or probe of many files (`ReportOutput`): how many so far, for how long, the
    /// last one; shown from the second second on, redrawn at most ten times a second, cleared by `clear`.
    func files(_ report: Report) {
        count += 1
        let now = ProgressBar.now()
        guard now - start >= 1, now - drawn >= 0.1 else { return }
        drawn = now
        erasable = true
        // One line however narrow the terminal: a wrapped line would not be erased by \r.
        var size = winsize()
        let columns = ioctl(2, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
        let head = "\(label) \(count) file\(count == 1 ? "" : "s") (\(String(format1: now - start)) s) "
        let room = columns - 1 - head.count
        var last = FileName.escapingControls(report.target.path)
        if room < 8 {
            last = ""
        } else if last.count > room {
            last = "…" + last.suffix(room - 1)
        }
        writeStderr("\r\u{1B}[K" + String((head + last).prefix(max(columns - 1, 1))))
    }

    /// Erases the progress line, so that output lines do not interleave with it.
    func clear() {
        if erasable { writeStderr("\r\u{1B}[K") }
        erasable = false
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

extension String {
    /// `value` with one decimal.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
