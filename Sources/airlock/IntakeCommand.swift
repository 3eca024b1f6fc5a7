import AirlockAnalysis
import AirlockIntake
import AirlockSystem
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

extension Airlock {
    /// `airlock intake`: the quarantine stage of model intake.
    struct IntakeCommand: ParsableCommand {
        @OptionGroup var digestCache: DigestCacheOptions

        static let configuration = CommandConfiguration(
            commandName: "intake",
            abstract:
                "Quarantine stage: take models from ROOT/incoming, verify and probe them, release each to ROOT/approved or ROOT/rejected with its report.",
            discussion: """
                A file is taken when no process holds it open for writing; a folder when it holds a .ready marker or nothing in it changed for the policy's settleSeconds (default 30); names starting with "." are never taken. Each model moves atomically into ROOT/quarantine/ID/, is verified (a pinned manifest, a model-signing signature, when the policy asks) and probed (locally, or through airlockd with --socket), then moves atomically to ROOT/approved/NAME/ or ROOT/rejected/NAME/ together with report.json and manifest.json. Each worker (--worker NAME) claims a model by an atomic rename and keeps a journal (ROOT/.airlock/workers/NAME/journal) that makes every step restartable after a crash; several workers, on one host or several over a shared file system, may share a root, and the models of a worker whose lease expired are finished by another.

                --once takes what has arrived, finishes it and exits: 0 every model approved (or none), 1 any rejected, 2 any could not be finished (it stays where it was, and the reason is printed). --watch runs until SIGTERM (inotify; systemd notify and watchdog). docs/intake.md has the set-up.
                """
        )

        @Option(
            name: .long,
            help: "The quarantine root (created with incoming/, quarantine/, approved/, rejected/ if missing).")
        var root: String

        @Option(
            name: .long,
            help:
                "Intake policy (JSON): verdicts that pass, manifests, keys, settle time, detonation settings (profile, Python runtime)."
        )
        var policy: String?

        @Flag(name: .long, help: "Take what has arrived, finish it, exit.")
        var once = false

        @Flag(name: .long, help: "Keep watching incoming/ until SIGTERM.")
        var watch = false

        @Option(
            name: .long, help: "Probe through airlockd at this socket (also $AIRLOCK_SOCKET or the policy's socket).")
        var socket: String?

        @Option(
            name: .long,
            help:
                "This worker's name on the root (A-Z a-z 0-9 . _ -, at most 64; default HOST-PID): several workers may share a root."
        )
        var worker: String?

        @Option(
            name: .long, parsing: .unconditional,
            help:
                "Seconds a worker's lease lasts unrenewed before another worker takes its models over (1 to 3600; default 60)."
        )
        var leaseSeconds: Double = 60

        func validate() throws {
            if once == watch { throw ValidationError("give exactly one of --once and --watch") }
            if let worker, !Intake.isValidWorkerName(worker) {
                throw ValidationError(
                    "--worker \(worker): expected 1 to 64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)")
            }
            try ArgumentRules.seconds("--lease-seconds", leaseSeconds, from: 1, to: 3600)
        }

        func run() throws {
            digestCache.apply()
            // Before any thread starts, so that every thread inherits the blocked stop signals.
            var signals: StopSignals?
            if watch {
                do {
                    signals = try StopSignals()
                } catch {
                    writeStderr("airlock: cannot set up signal handling: \(error.errnoValue.text)\n")
                    throw ExitCode(2)
                }
            }
            let journald = getenv("JOURNAL_STREAM") != nil
            let log: @Sendable (String) -> Void = { line in
                writeStderr((journald ? "<6>" : "") + "airlock intake: " + line + "\n")
            }
            do {
                let loaded = try policy.map { p throws(IntakeError) in try IntakePolicy.load(p) } ?? IntakePolicy()
                let intake = try Intake(
                    root: root, policy: loaded, socket: socket ?? Remote.socket, worker: worker,
                    leaseSeconds: leaseSeconds, log: log)
                if let signals {
                    try intake.watch(signals: signals) { IntakeCommand.print($0) }
                    // Lost to another worker: exit 75 (EX_TEMPFAIL), which a service manager restarts.
                    if intake.leaseLost != nil { throw ExitCode(75) }
                    intake.leave()
                    return
                }
                let (outcomes, waiting) = intake.runOnce()
                let held = intake.heldDeliveries()
                intake.leave()
                for outcome in outcomes { IntakeCommand.print(outcome) }
                for (name, why) in waiting { writeStdout(Array("waiting   \(name): \(why)\n".utf8)) }
                for id in held {
                    writeStdout(
                        Array(
                            "held      \(id): a delivery stays in the worker's .airlock/workers/\(intake.worker)/delivered/\(id)\n"
                                .utf8))
                }
                if outcomes.contains(where: { $0.decision == nil }) || !held.isEmpty { throw ExitCode(2) }
                if outcomes.contains(where: { $0.decision == "rejected" }) { throw ExitCode(1) }
            } catch let error as IntakeError {
                writeStderr("airlock: \(error.message)\n")
                throw ExitCode(2)
            }
        }

        /// One line per model: decision, name, verdict, where it is now.
        static func print(_ o: IntakeOutcome) {
            let verdict = o.verdict?.rawValue ?? "-"
            let line: String
            if let decision = o.decision {
                line =
                    "\(decision.padding(9)) \(o.name)  \(verdict)  \(o.location)\n"
                    + (decision == "rejected" ? "          \(o.reason ?? "")\n" : "")
            } else {
                line = "\("failed".padding(9)) \(o.name)  stays in \(o.location): \(o.error ?? "unknown error")\n"
            }
            writeStdout(Array(line.utf8))
        }
    }
}

extension String {
    /// The string padded with spaces to `width` characters.
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
