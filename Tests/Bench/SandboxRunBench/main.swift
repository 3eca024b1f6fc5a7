// Times sandbox runs made from one long-lived process, the shape of a supervisor daemon: the profile is loaded and
// its filter compiled once, then each run is clone → set-up → exec → supervision → teardown.
//
//   airlock-bench PROFILE RUNS -- CMD [ARGS...]
//
// Prints one line per mode: "<mode> mean_ms median_ms p99_ms".
import AirlockSandbox

#if canImport(Glibc)
    import Glibc
#endif

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func fail(_ message: String) -> Never {
    let text = Array("airlock-bench: \(message)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 5, let runs = Int(args[2]), runs > 0, args[3] == "--" else {
    fail("usage: airlock-bench PROFILE RUNS -- CMD [ARGS...]")
}
let command = Array(args[4...])

/// Runs the modes in turn (kept, compiled, kept, …) so that neither gets the machine's warm-up or the kernel's
/// deferred clean-up of earlier network namespaces to itself.
func measure(_ modes: [(String, () throws(SandboxError) -> SandboxResult)]) {
    var times = [[Double]](repeating: [], count: modes.count)
    for i in 0..<(runs + 10) {
        for (m, (label, body)) in modes.enumerated() {
            let t0 = now()
            let result: SandboxResult
            do {
                result = try body()
            } catch {
                fail("\(label): \(error)")
            }
            let t1 = now()
            guard result.exitCode == 0 else {
                fail("\(label): the command exited with \(String(describing: result.exitCode))")
            }
            if i >= 10 { times[m].append(Double(t1 - t0) / 1e6) }
        }
    }
    for (m, (label, _)) in modes.enumerated() {
        let sorted = times[m].sorted()
        let mean = sorted.reduce(0, +) / Double(sorted.count)
        let median = sorted[sorted.count / 2]
        let p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
        print(
            label, TraceText.milliseconds(UInt64(mean * 1e6)), TraceText.milliseconds(UInt64(median * 1e6)),
            TraceText.milliseconds(UInt64(p99 * 1e6)))
    }
}

do {
    let profile = try Profile.load(args[1])
    let program = try SeccompProgram(profile: profile)
    let request = SandboxRequest(argv: command, profile: profile)
    measure([
        ("kept-filter", { () throws(SandboxError) in try Sandbox.run(request, program: program) }),
        ("compile-each-run", { () throws(SandboxError) in try Sandbox.run(request) }),
    ])
} catch {
    fail("\(error)")
}
