import AirlockNames
import AirlockFormats
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// The `airlock` command line.
@main
struct Airlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "airlock",
        abstract: "Is this model file safe to load here? Static analysis and sandboxed detonation.",
        discussion:
            "airlock --socket PATH probe|scan … (or $AIRLOCK_SOCKET) asks airlockd instead of working locally; with a socket named there is no local fallback.",
        version: "0.1.0",
        subcommands: [
            Scan.self, Probe.self, Exec.self, Verify.self, ManifestCommand.self, IntakeCommand.self, Status.self,
            ProfileCommand.self,
        ]
    )

    /// `airlock --socket PATH probe …`: the socket option may come before the subcommand; it is taken out here.
    static func main() {
        if let refusal = nonUTF8Argument() {
            writeStderr("airlock: \(refusal)\n")
            Glibc.exit(2)
        }
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
        // `airlock --version` alone is answered here, from the same configuration, before ArgumentParser builds its
        // command tree by reflection (docs/benchmarks.md, "Start-up"): the answer is the same, 1 ms sooner.
        if arguments == ["--version"] {
            print(configuration.version)
            return
        }
        // ArgumentParser answers `airlock help nosuch` with the top-level help and exit status 0: a topic that is no
        // command is a usage error, like `airlock nosuch`.
        if arguments.first == "help", let unknown = unknownHelpTopic(Array(arguments.dropFirst())) {
            writeStderr(
                "Error: no command '\(unknown)' to give help on (commands: "
                    + commandNames(Airlock.configuration.subcommands).joined(separator: ", ")
                    + ")\nUsage: airlock help [<subcommand> ...]\n  See 'airlock --help' for more information.\n")
            Glibc.exit(64)
        }
        // `exec` captures its command for passthrough, so ArgumentParser would take a `--help` among exec's own options
        // for the command to run (and answer "command '--help' not found", exit 127): asked there, help is help.
        if Exec.asksForHelp(arguments) {
            print(Airlock.helpMessage(for: Exec.self))
            return
        }
        // So is `airlock exec` in its common forms (`Exec.Invocation(commonForm:)`): the same values, validation, output
        // and exit statuses, without the reflection; anything else goes through ArgumentParser.
        if let invocation = Exec.Invocation(commonForm: arguments) {
            do {
                try invocation.run()
            } catch let exit as ExitCode {
                Glibc.exit(exit.rawValue)
            } catch {
                Airlock.exit(withError: error)
            }
            return
        }
        main(arguments)
    }

    /// The first word of `airlock help WORD...` that names no (sub)command, walking down the command tree.
    static func unknownHelpTopic(_ words: [String]) -> String? {
        var commands = Airlock.configuration.subcommands
        for word in words where !word.hasPrefix("-") {
            if word == "help" && commands.count == Airlock.configuration.subcommands.count { continue }
            guard let command = commands.first(where: { commandNames([$0]).contains(word) }) else { return word }
            commands = command.configuration.subcommands
        }
        return nil
    }

    /// The names commands answer to.
    static func commandNames(_ commands: [any ParsableCommand.Type]) -> [String] {
        commands.flatMap { [$0.configuration.commandName ?? $0._commandName] + $0.configuration.aliases }
    }

    /// Why an argument cannot be used, if one is not valid UTF-8. `CommandLine.arguments` decodes argv replacing
    /// invalid bytes with U+FFFD, so `airlock scan $'w\xff.pkl'` would open `w\xef\xbf\xbd.pkl`, another file that
    /// may be there: such an argument is refused, never looked up in its decoded form.
    static func nonUTF8Argument() -> String? {
        for i in 1..<Int(CommandLine.argc) {
            guard let arg = CommandLine.unsafeArgv[i] else { continue }
            let name = FileName(
                bytes: UnsafeBufferPointer(start: arg, count: strlen(arg)).map { UInt8(bitPattern: $0) })
            if !name.isValidUTF8 {
                return
                    "argument \(i) (\(name.escaped), shown with \\xHH escapes) is not valid UTF-8: it cannot be passed on without naming another file; rename it, or name the folder that holds it (folder walks keep names as bytes)"
            }
        }
        return nil
    }
}
