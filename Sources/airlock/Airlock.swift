import ArgumentParser

/// The `airlock` command line.
@main
struct Airlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlock",
        abstract: "Is this model file safe to load here? Static analysis and sandboxed detonation.",
        discussion: "airlock --socket PATH probe|scan … (or $AIRLOCK_SOCKET) asks airlockd instead of working locally; with a socket named there is no local fallback.",
        version: "0.1.0",
        subcommands: [Scan.self, Probe.self, Exec.self, Verify.self, ManifestCommand.self, IntakeCommand.self, Status.self]
    )

    /// `airlock --socket PATH probe …`: the socket option may come before the subcommand; it is taken out here.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if let first = arguments.first {
            if first == "--socket", arguments.count >= 2 {
                Remote.socketFlag = arguments[1]
                arguments.removeFirst(2)
            } else if first.hasPrefix("--socket=") {
                Remote.socketFlag = String(first.dropFirst("--socket=".count))
                arguments.removeFirst()
            }
        }
        main(arguments)
    }
}
