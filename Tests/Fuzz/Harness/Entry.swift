#if canImport(Glibc)
    import Glibc
#endif

/// A line on standard error.
func warn(_ line: String) {
    let text = Array((line + "\n").utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

#if AIRLOCK_LIBFUZZER

    /// The target, from `AIRLOCK_FUZZ_TARGET`, read once on the first input.
    let selectedTarget: FuzzTarget = {
        let name = getenv("AIRLOCK_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: " ")
            warn("airlock-fuzz: set AIRLOCK_FUZZ_TARGET to one of: \(known)")
            exit(2)
        }
        return target
    }()

    /// libFuzzer's callback: one input through the selected parser.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
        selectedTarget.run(bytes)
        return 0
    }

    /// libFuzzer's own driver (what its `main` calls), with the same command line.
    @_extern(c, "LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// The process entry. SwiftPM links every Linux executable with `--defsym main=<module>_main` (so that tests can
    /// link executables), which hides libFuzzer's `main`; this symbol takes its place and hands over to libFuzzer.
    @_cdecl("airlock_fuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        var argc = argc
        var argv = argv
        return runFuzzerDriver(&argc, &argv, fuzzOneInput)
    }

#else

    /// Corpus replayer: `airlock-fuzz TARGET|all FILE_OR_DIR...` runs the parser on every file (folders recursively)
    /// and exits 0. A parser bug traps, and so fails the caller.
    @main
    enum CorpusReplayer {
        static func main() {
            let args = CommandLine.arguments
            guard args.count >= 3, args[1] == "all" || FuzzTarget(rawValue: args[1]) != nil else {
                let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
                warn("usage: airlock-fuzz \(known)|all FILE_OR_DIR...")
                exit(2)
            }
            let targets = args[1] == "all" ? FuzzTarget.allCases : [FuzzTarget(rawValue: args[1])!]
            var files: [String] = []
            for path in args.dropFirst(2) { CorpusFiles.collect(path, into: &files) }
            for file in files {
                guard let bytes = CorpusFiles.read(file) else {
                    warn("airlock-fuzz: cannot read \(file)")
                    exit(1)
                }
                for target in targets { target.run(bytes) }
            }
            print("airlock-fuzz: \(targets.map(\.rawValue).joined(separator: ",")): \(files.count) files replayed")
        }
    }

#endif
