public import AirlockAnalysis
internal import AirlockJSON
public import AirlockSandbox
public import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Why a Python environment cannot be used for detonations: it does not exist, is not a Python interpreter, cannot
/// be mounted, or has a library version the harness does not support. `airlock probe` and airlockd exit 2 on it.
public struct PythonRuntimeError: AirlockError {
    /// What is wrong, naming the path.
    public let message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    /// `"runtime"`.
    public var code: String { "runtime" }
    public var description: String { message }
}

/// The consumer's Python, as detonations use it (`airlock probe --python PATH`, airlockd's `--python NAME=PATH`).
///
/// Resolved on the host, from the path alone: the interpreter (a venv's or conda env's `bin/python`, or a folder
/// holding one), the virtual environment it belongs to (`pyvenv.cfg`), the prefix of the real executable and of the
/// base installation. Only their `bin`, `lib` and `lib64` folders (and `pyvenv.cfg`) are bind-mounted read-only,
/// each at its own path, so the interpreter finds its standard library and site-packages where it expects them and
/// nothing else of the folders around it (a home directory) enters the sandbox. Then described from inside a sandbox
/// of its own, with no model in it, by `Profiles/harness/runtime.py`: version, prefixes, search path and the
/// installed distributions.
public struct PythonRuntime: Sendable {
    /// One installed distribution, by the top-level module it provides.
    public struct Distribution: Sendable, Equatable {
        /// `scikit-learn`.
        public var name: String
        /// `1.2.1`.
        public var version: String
    }

    /// airlockd's name for the runtime (`--python NAME=PATH`); nil for one named by path.
    public var name: String?
    /// The interpreter's path, absolute: the command inside the sandbox (the same path as on the host).
    public var interpreter: String
    /// Read-only binds that make the environment visible in the sandbox, at the same paths.
    public var mounts: [MountSpec]
    /// Host folders holding the environment's files: reads below them are the runtime's, never a secret.
    public var trees: [String]
    /// `3.11.2`.
    public var version: String
    /// `cpython`.
    public var implementation: String
    /// `sys.prefix` and `sys.base_prefix`.
    public var prefix: String
    public var basePrefix: String
    /// `sys.path` inside the sandbox.
    public var searchPath: [String]
    /// Installed distributions by top-level module (`sklearn` → scikit-learn 1.2.1).
    public var distributions: [String: Distribution]

    /// The system's interpreter, the default: Debian's `python3-*` packages install for it.
    public static let systemInterpreter = "/usr/bin/python3"

    /// The oldest versions the harness loads with: older ones lack what it calls (`weights_only`, `allow_pickle`).
    public static let minimumVersions: [(module: String, version: [Int])] = [
        ("python", [3, 8]), ("torch", [1, 10]), ("numpy", [1, 17]), ("joblib", [0, 14]), ("pandas", [1, 0]),
    ]

    /// Resolves `requested` (nil for the system's interpreter) and describes it from inside a sandbox built from
    /// `profile`, with the harness folder at `harnessDirectory`; that sandbox's host ids come from `identities` when
    /// given (airlockd's allocator), the profile's otherwise.
    public static func resolve(
        _ requested: String?, name: String? = nil, profile: Profile, program: SeccompProgram?,
        harnessDirectory: String, identities: (any SandboxIdentitySource)? = nil
    ) throws(PythonRuntimeError) -> PythonRuntime {
        let interpreter = try locate(requested)
        let (mounts, trees) = try layout(interpreter: interpreter, profile: profile)
        var runtime = PythonRuntime(
            name: name, interpreter: interpreter, mounts: mounts, trees: trees, version: "", implementation: "",
            prefix: "", basePrefix: "", searchPath: [], distributions: [:])
        try runtime.describe(
            profile: profile, program: program, harnessDirectory: harnessDirectory, identities: identities)
        try runtime.checkSupported()
        return runtime
    }

    /// The distribution and version of top-level module `module`, when installed.
    public func distribution(of module: String) -> Distribution? { distributions[module] }

    /// The interpreter's arguments before the harness: isolated mode (no PYTHON* variables, no user site, no
    /// current folder on the path) and no bytecode writes. Site-packages stay: they hold the consumer's libraries.
    public var arguments: [String] { [interpreter, "-I", "-B"] }

    // MARK: - Resolution on the host

    /// The interpreter's absolute path: `requested` itself, `bin/python3` or `bin/python` inside a folder, or the
    /// first match on the host's `PATH` for a bare name.
    static func locate(_ requested: String?) throws(PythonRuntimeError) -> String {
        guard let requested, !requested.isEmpty else {
            if HostPath.exists(systemInterpreter) { return systemInterpreter }
            throw PythonRuntimeError(
                "no system Python at \(systemInterpreter): install python3, or name an interpreter with --python")
        }
        var path = requested
        if !path.contains("/") {
            let search = (getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin").split(separator: ":")
            guard let dir = search.first(where: { HostPath.isExecutableFile("\($0)/\(requested)") }) else {
                throw PythonRuntimeError("--python \(requested): no such program on PATH")
            }
            path = "\(dir)/\(requested)"
        }
        path = absolute(path)
        if HostPath.isDirectory(path) {
            guard let found = ["bin/python3", "bin/python"].map({ "\(path)/\($0)" }).first(where: HostPath.exists)
            else {
                throw PythonRuntimeError(
                    "--python \(requested): a folder without bin/python3 or bin/python (not a virtual environment)")
            }
            path = found
        }
        guard HostPath.exists(path) else { throw PythonRuntimeError("--python \(requested): \(path) does not exist") }
        guard let real = HostPath.realPath(path) else {
            throw PythonRuntimeError("--python \(requested): \(path) cannot be resolved")
        }
        let head = HostPath.readPrefix(real, count: 4)
        if head.starts(with: Array("#!".utf8)) {
            throw PythonRuntimeError(
                "--python \(requested): \(real) is a script (a pyenv shim or a wrapper?), not a Python interpreter: name the interpreter itself, e.g. $(pyenv which python3)"
            )
        }
        guard head == [0x7F, 0x45, 0x4C, 0x46], HostPath.isExecutableFile(real) else {
            throw PythonRuntimeError("--python \(requested): \(real) is not an executable program")
        }
        return path
    }

    /// The binds that show the environment of `interpreter` in the sandbox, and the folders they come from.
    static func layout(interpreter: String, profile: Profile) throws(PythonRuntimeError) -> ([MountSpec], [String]) {
        var prefixes: [String] = []
        var files: [String] = []
        let binDir = dirname(interpreter)
        let venv = dirname(binDir)
        if basename(binDir) == "bin", HostPath.exists("\(venv)/pyvenv.cfg") {
            prefixes.append(venv)
            files.append("\(venv)/pyvenv.cfg")
            if let home = pyvenvHome("\(venv)/pyvenv.cfg") {
                let base = basename(home) == "bin" ? dirname(home) : home
                prefixes.append(base)
                if let real = HostPath.realPath(home), basename(real) == "bin" { prefixes.append(dirname(real)) }
            }
        } else if basename(binDir) == "bin" {
            prefixes.append(venv)
        }
        if let real = HostPath.realPath(interpreter), basename(dirname(real)) == "bin" {
            prefixes.append(dirname(dirname(real)))
        }
        var mounts: [MountSpec] = []
        var trees: [String] = []
        var seen = Set<String>()
        let visible = profile.sandbox.mounts.filter { $0.kind == .bind && $0.source == $0.destination }
            .compactMap(\.source)
        // The root as a prefix (`/bin/python3`): its bin and lib are the profile's links into /usr, shown already.
        let folders = prefixes.filter { $0 != "/" }.flatMap { p in ["bin", "lib", "lib64"].map { "\(p)/\($0)" } }
        for source in files + folders {
            guard let real = HostPath.realPath(source), HostPath.exists(source) else { continue }
            let place = absolute(source)
            // Already in the sandbox through the profile (the system's /usr).
            if visible.contains(where: { place == $0 || place.hasPrefix($0 + "/") }) { continue }
            guard seen.insert(place).inserted else { continue }
            if let reason = forbiddenPlace(place) {
                throw PythonRuntimeError(
                    "the Python environment at \(place) cannot be mounted in the sandbox: \(reason)")
            }
            do throws(SandboxError) {
                mounts.append(try MountSpec.readOnlyBind(host: real, sandbox: place))
            } catch {
                throw PythonRuntimeError("the Python environment at \(place) cannot be mounted: \(error)")
            }
            trees.append(place)
        }
        return (mounts, trees)
    }

    /// Why an environment folder may not be mounted at `place`: where the sandbox keeps its own trees.
    static func forbiddenPlace(_ place: String) -> String? {
        for reserved in ["/proc", "/dev", "/sys", "/.airlock", HarnessProtocol.mountPoint, "/etc"]
        where place == reserved || place.hasPrefix(reserved + "/") {
            return "\(reserved) is the sandbox's own"
        }
        return nil
    }

    /// `home` of a virtual environment's `pyvenv.cfg`: the folder of the interpreter it was made from.
    static func pyvenvHome(_ path: String) -> String? {
        let text = String(decoding: HostPath.readPrefix(path, count: 64 * 1024), as: UTF8.self)
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces }
            if parts.count == 2, parts[0] == "home", parts[1].hasPrefix("/") { return parts[1] }
        }
        return nil
    }

    // MARK: - Description from inside a sandbox

    /// Runs `runtime.py` with the interpreter in a sandbox of its own and reads what it says of itself.
    mutating func describe(
        profile: Profile, program: SeccompProgram?, harnessDirectory: String,
        identities: (any SandboxIdentitySource)? = nil
    ) throws(PythonRuntimeError) {
        let result: SandboxResult
        do throws(SandboxError) {
            let harness = try MountSpec.readOnlyBind(host: harnessDirectory, sandbox: HarnessProtocol.mountPoint)
            // No model is involved: the whole run is the runtime's start-up (continued by the kernel, counted).
            var request = SandboxRequest(
                argv: arguments + [HarnessProtocol.runtimeEntryPoint], profile: profile, timeoutSeconds: 30,
                extraMounts: mounts + [harness], phases: [HarnessPhase.startup.rawValue], runtimeTrees: trees)
            request.quietPhase = HarnessPhase.startup.rawValue
            request.identities = identities
            result = try Sandbox.run(request, program: program)
        } catch {
            throw PythonRuntimeError("\(interpreter) could not be started in the sandbox: \(error)")
        }
        let line = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix(HarnessProtocol.runtimeLinePrefix) }
        guard result.exitCode == 0, let line,
            let json = try? JSON.parse(Array(line.dropFirst(HarnessProtocol.runtimeLinePrefix.count).utf8)),
            case .object(let members) = json
        else {
            let said = String(decoding: result.stderr.suffix(400), as: UTF8.self)
                .split(separator: "\n").suffix(3).joined(separator: " / ")
            let how = result.exitCode.map { "exit code \($0)" } ?? (result.signal ?? "no exit")
            throw PythonRuntimeError(
                "\(interpreter) is not a Python 3 interpreter that runs in the sandbox (\(how))\(said.isEmpty ? "" : ": \(said)")"
            )
        }
        func string(_ key: String) -> String {
            if case .string(let s)? = members.first(where: { $0.0 == key })?.1 { s } else { "" }
        }
        version = string("version")
        implementation = string("implementation")
        prefix = string("prefix")
        basePrefix = string("basePrefix")
        if case .array(let items)? = members.first(where: { $0.0 == "path" })?.1 {
            searchPath = items.compactMap { if case .string(let s) = $0 { s } else { nil } }
        }
        if case .object(let dists)? = members.first(where: { $0.0 == "distributions" })?.1 {
            for (module, value) in dists {
                if case .array(let pair) = value, pair.count == 2, case .string(let n) = pair[0],
                    case .string(let v) = pair[1]
                {
                    distributions[module] = Distribution(name: n, version: v)
                }
            }
        }
        guard !version.isEmpty else { throw PythonRuntimeError("\(interpreter) did not say its version") }
    }

    /// Refuses an interpreter or library older than `minimumVersions`.
    func checkSupported() throws(PythonRuntimeError) {
        for (module, minimum) in PythonRuntime.minimumVersions {
            let found = module == "python" ? version : distributions[module]?.version
            guard let found else { continue }
            let numbers = PythonRuntime.leadingNumbers(found)
            if numbers.lexicographicallyPrecedes(minimum) {
                let least = minimum.map(String.init).joined(separator: ".")
                throw PythonRuntimeError(
                    "\(interpreter) has \(module) \(found): the loader harness supports \(module) \(least) and later")
            }
        }
        if implementation != "cpython" && !implementation.isEmpty {
            throw PythonRuntimeError("\(interpreter) is \(implementation): the loader harness supports CPython")
        }
    }

    /// `[1, 13, 0]` from `1.13.0a0+gitunknown`.
    static func leadingNumbers(_ version: String) -> [Int] {
        var out: [Int] = []
        for part in version.split(separator: ".").prefix(3) {
            let digits = part.prefix { $0.isNumber }
            guard let n = Int(digits) else { break }
            out.append(n)
            if digits.count != part.count { break }
        }
        return out
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return HostPath.normalized(path) }
        return HostPath.normalized(HostPath.currentDirectory() + "/" + path)
    }

    static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func basename(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    /// What the report says about the runtime of one detonation.
    func summary(
        startup: [String], loaded: [String], standIns: [String], weightsOnly: String?
    ) -> RuntimeSummary {
        var libraries: [RuntimeSummary.Library] = []
        var seen = Set<String>()
        for (modules, when) in [(startup, "startup"), (loaded, "load")] {
            for module in modules where seen.insert(module).inserted {
                let d = distributions[module]
                libraries.append(.init(module: module, distribution: d?.name, version: d?.version, when: when))
            }
        }
        return RuntimeSummary(
            name: name, interpreter: interpreter, version: version, implementation: implementation, prefix: prefix,
            libraries: libraries, standIns: standIns, weightsOnly: weightsOnly)
    }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}

/// The few questions `PythonRuntime` asks of host paths while resolving an interpreter (the operator's, never a
/// client's: airlockd resolves its runtimes from its own configuration).
enum HostPath {
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isExecutableFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_mode & 0o111 != 0
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// At most `count` bytes from the start of a regular file; empty when it cannot be read.
    static func readPrefix(_ path: String, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { return [] }
        let file = FileDescriptor(fd)
        defer { file.close() }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return [] }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, count) }
        return n > 0 ? Array(buffer.prefix(n)) : []
    }

    static func currentDirectory() -> String {
        guard let cwd = getcwd(nil, 0) else { return "/" }
        defer { free(cwd) }
        return String(cString: cwd)
    }

    /// Collapses `//`, `.` and `..` without touching the file system.
    static func normalized(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == ".." {
                if !out.isEmpty { out.removeLast() }
            } else {
                out.append(part)
            }
        }
        return "/" + out.joined(separator: "/")
    }
}
