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

func measure(_ label: String, _ body: () throws(SandboxError) -> SandboxResult) {
    var times: [Double] = []
    for i in 0..<(runs + 10) {
        let t0 = now()
        let result: SandboxResult
        do {
            result = try body()
        } catch {
            fail("\(label): \(error)")
        }
        let t1 = now()
        guard result.exitCode == 0 else { fail("\(label): the command exited with \(String(describing: result.exitCode))") }
        if i >= 10 { times.append(Double(t1 - t0) / 1e6) }
    }
    times.sort()
    let mean = times.reduce(0, +) / Double(times.count)
    let median = times[times.count / 2]
    let p99 = times[min(times.count - 1, Int(Double(times.count) * 0.99))]
    print(label, TraceText.milliseconds(UInt64(mean * 1e6)), TraceText.milliseconds(UInt64(median * 1e6)),
          TraceText.milliseconds(UInt64(p99 * 1e6)))
}

do {
    let profile = try Profile.load(args[1])
    let program = try SeccompProgram(profile: profile)
    let request = SandboxRequest(argv: command, profile: profile)
    measure("kept-filter") { () throws(SandboxError) in try Sandbox.run(request, program: program) }
    measure("compile-each-run") { () throws(SandboxError) in try Sandbox.run(request) }
} catch {
    fail("\(error)")
}
