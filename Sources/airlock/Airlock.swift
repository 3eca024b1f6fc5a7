import ArgumentParser

/// The `airlock` command line.
@main
struct Airlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlock",
        abstract: "Is this model file safe to load here? Static analysis and sandboxed detonation.",
        version: "0.1.0",
        subcommands: [Scan.self, Probe.self, Exec.self]
    )
}
