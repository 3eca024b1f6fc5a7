import AirlockProvenance
import AirlockSandbox
import ArgumentParser
#if canImport(Glibc)
    import Glibc
#endif

/// Formats `airlock profile export` writes.
enum ProfileFormat: String, ExpressibleByArgument, CaseIterable {
    case oci
}

/// `--degrade`: what a notified call without an exact OCI form becomes (`OCIExport.Fallback`).
enum DegradeChoice: String, ExpressibleByArgument, CaseIterable {
    case deny, allow

    var fallback: OCIExport.Fallback { self == .deny ? .deny : .allow }
}

/// `airlock profile`: seccomp interop with container runtimes.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Export a sandbox profile's seccomp rules for Docker or Podman, or import theirs.",
        discussion: """
            docs/profiles.md ("Exporting to OCI", "Importing an OCI profile") says what maps exactly and what cannot \
            be expressed; docs/container.md runs airlockd itself in a container.
            Exit status: 0 written; 1 the profile or OCI file could not be converted (the message names the field); \
            64 usage error.
            """,
        subcommands: [Export.self, Import.self]
    )

    /// `airlock profile export --format oci`.
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write a profile's enforce-only part as an OCI runtime-spec seccomp profile.",
            discussion: """
                The output is what `docker run --security-opt seccomp=FILE` and `podman run --security-opt \
                seccomp=FILE` read. Calls Airlock's supervisor answers by looking at their arguments (paths, socket \
                families, signal targets, the emulated network, the command's launch) cannot be expressed: each is \
                exported as a refusal (--degrade deny, the default) or an allowance, and listed on stderr and in \
                --explain FILE. Note that runtimes execute the container's command under the filter: with execve \
                refused nothing starts (--allow execve,execveat).
                """
        )

        @Option(name: .long, help: "Output format (only oci).")
        var format: ProfileFormat

        @Option(name: .long, help: "Profile name (in the profile directories) or path to a profile JSON file.")
        var profile: String = "default"

        @Option(
            name: [.short, .customLong("output")],
            help: ArgumentHelp("Write to FILE instead of stdout.", valueName: "FILE"))
        var output: String?

        @Option(
            name: .long,
            help: ArgumentHelp(
                "What a call whose answer cannot be expressed becomes: deny (its refusal's errno) or allow.",
                valueName: "deny|allow"))
        var degrade: DegradeChoice = .deny

        @Option(
            name: .long,
            help: ArgumentHelp(
                "Allow these degraded calls whatever --degrade says (repeatable, or comma-separated).",
                valueName: "SYSCALL"))
        var allow: [String] = []

        @Option(
            name: .long,
            help: ArgumentHelp("Also write the degraded calls and what OCI cannot say as JSON.", valueName: "FILE"))
        var explain: String?

        @Flag(name: .shortAndLong, help: "Do not list the degraded calls on stderr.")
        var quiet = false

        func run() throws {
            let names = Set(allow.flatMap { $0.split(separator: ",").map { String($0) } })
            let export: OCIExport
            do {
                export = try OCIExport(profile: try Profile.load(profile), fallback: degrade.fallback, allow: names)
            } catch {
                writeStderr("airlock: \(error)\n")
                throw ExitCode(1)
            }
            try write(export.document, to: output)
            if let explain { try write(export.explanation, to: explain) }
            if !quiet && !export.degraded.isEmpty {
                var text = "airlock: \(export.degraded.count) notified calls have no exact OCI form:\n"
                for d in export.degraded {
                    text += "  \(d.syscall) (\(d.rule)) -> \(d.exported): \(d.reasons.joined(separator: "; "))\n"
                }
                text += "airlock: not expressible in OCI at all:\n"
                for line in export.notExpressible { text += "  \(line)\n" }
                writeStderr(text)
            }
        }
    }

    /// `airlock profile import --oci FILE`.
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Make an Airlock profile from an OCI seccomp profile and another profile's airlock section.",
            discussion: """
                The seccomp rules come from the OCI file (Docker's, Podman's or `airlock profile export`'s); mounts, \
                limits, ids, environment and cgroup come from --mounts-from. Nothing is sent to the supervisor, so \
                that profile's notify rules are not taken; refused calls are still recorded in the trace unless \
                --no-record-refused. The result is checked and compiled before it is written, and `airlock exec \
                --profile OUT.json` accepts it.
                """
        )

        @Option(name: .long, help: ArgumentHelp("The OCI seccomp profile (JSON, at most 4 MiB).", valueName: "FILE"))
        var oci: String

        @Option(
            name: .customLong("mounts-from"),
            help: ArgumentHelp("Profile whose airlock section (mounts, limits, …) to take.", valueName: "PROFILE"))
        var mountsFrom: String = "default"

        @Option(
            name: [.short, .customLong("output")],
            help: ArgumentHelp("Write to FILE instead of stdout.", valueName: "FILE"))
        var output: String?

        @Flag(inversion: .prefixedNo, help: "Record refused calls in the trace (through the supervisor).")
        var recordRefused = true

        func run() throws {
            let imported: OCIImport
            do {
                let basePath = try Profile.locate(mountsFrom)
                imported = try OCIImport(
                    oci: try Profile.readFile(oci, what: "OCI profile"), ociName: oci,
                    base: try Profile.readFile(basePath), baseName: mountsFrom, recordRefused: recordRefused)
            } catch {
                writeStderr("airlock: \(error)\n")
                throw ExitCode(1)
            }
            try write(imported.document, to: output)
            for note in imported.notes { writeStderr("airlock: note: \(note)\n") }
        }
    }
}

/// Writes `bytes` to `path` (atomically), or to stdout when `path` is nil or `-`.
private func write(_ bytes: [UInt8], to path: String?) throws {
    guard let path, path != "-" else {
        writeStdout(bytes)
        return
    }
    do {
        try AtomicFile.write(bytes, toPath: path)
    } catch {
        writeStderr("airlock: \(error)\n")
        throw ExitCode(1)
    }
}
