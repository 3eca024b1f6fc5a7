public import AirlockJSON
public import AirlockProbe
public import AirlockSandbox

/// The Python runtimes an airlockd offers its clients, each under a name (`airlockd --python NAME=PATH`, the
/// configuration's `python` key; docs/daemon.md, "Python runtimes").
///
/// Every runtime is resolved once, at start, from the operator's configuration (`PythonRuntime.resolve`): its
/// interpreter found, its environment laid out for read-only binds and described from inside a sandbox. A client
/// chooses among them by name (the `python` parameter of a `probe` request) and never by path: the daemon runs as root
/// and builds every sandbox itself, so a path a client sent would let it mount any environment on the host (a folder
/// it planted, a library it wrote) into the sandbox that judges a model, and have the daemon run that interpreter.
/// Nothing a client sends is resolved: a string that is not one of these names is `unknown-runtime`.
public struct DaemonRuntimes: Sendable {
    /// The name that, when configured, is the default runtime.
    public static let defaultName = "default"
    /// The built-in runtime, the system's interpreter (`/usr/bin/python3`): the default when no `default` is
    /// configured, unless configured otherwise.
    public static let systemName = "system"
    /// The syntax of a runtime name, for messages.
    public static let nameSyntax = "[a-z0-9][a-z0-9._-]{0,63}"
    /// The longest name, bytes.
    public static let maxNameBytes = 64
    /// The most runtimes one daemon offers (each is resolved at start, a sandbox of its own).
    public static let maxRuntimes = 32

    /// The runtimes by name, each with `name` set.
    public let byName: [String: PythonRuntime]
    /// The name of the runtime a request that names none gets.
    public let defaultName: String

    /// The names, sorted.
    public var names: [String] { byName.keys.sorted() }

    /// The runtime a request names; the default when it names none. Nil for a name the daemon does not have.
    public func runtime(named name: String?) -> PythonRuntime? { byName[name ?? defaultName] }

    /// Offers `runtimes` (each with `name` set), `defaultName` among them.
    public init(_ runtimes: [PythonRuntime], defaultName: String) {
        var byName: [String: PythonRuntime] = [:]
        for runtime in runtimes { byName[runtime.name ?? DaemonRuntimes.systemName] = runtime }
        self.byName = byName
        self.defaultName = defaultName
    }

    /// Whether `text` is a runtime name: 1 to 64 bytes of `a-z`, `0-9`, `.`, `_`, `-`, the first a letter or digit.
    /// A name can hold no `/`: nothing that reads as a path is ever a name.
    public static func isName(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, bytes.count <= maxNameBytes else { return false }
        func alphanumeric(_ c: UInt8) -> Bool { (0x61...0x7A).contains(c) || (0x30...0x39).contains(c) }
        return alphanumeric(first)
            && bytes.dropFirst().allSatisfy { alphanumeric($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    /// What is wrong with configuring runtime `name` at `path`; nil when both are acceptable.
    public static func configProblem(name: String, path: String) -> String? {
        if !isName(name) {
            return
                "a runtime name is 1 to \(maxNameBytes) of a-z 0-9 . _ -, starting with a letter or digit (\(nameSyntax))"
        }
        if !path.hasPrefix("/") || path.utf8.count > 4096 || path.utf8.contains(0) {
            return "expected the absolute path of an interpreter or a virtual environment's folder, found \"\(path)\""
        }
        return nil
    }

    /// The runtimes a daemon configured with `configured` (name → path) offers, sorted by name, and the default's
    /// name. The rule: the default is `default` when it is configured, otherwise `system`; `system` is the built-in
    /// `/usr/bin/python3` unless configured. So the built-in is added exactly when it is the default and not
    /// configured, and a daemon configured with a `default` offers nothing it was not told to.
    public static func plan(_ configured: [String: String]) -> (
        runtimes: [(name: String, path: String)], defaultName: String
    ) {
        var all = configured
        let chosen = configured[defaultName] != nil ? defaultName : systemName
        if all[chosen] == nil { all[chosen] = PythonRuntime.systemInterpreter }
        return (all.sorted { $0.key < $1.key }.map { (name: $0.key, path: $0.value) }, chosen)
    }

    /// Resolves every runtime of `plan(configured)` with the daemon's profile, filter and harness. A runtime that
    /// cannot be used is an error naming it (airlockd exits 2). Names given the same path share one resolution.
    public static func resolve(
        _ configured: [String: String], profile: Profile, program: SeccompProgram?, harnessDirectory: String,
        identities: (any SandboxIdentitySource)? = nil
    ) throws(ConfigError) -> DaemonRuntimes {
        let (planned, chosen) = plan(configured)
        var byPath: [String: PythonRuntime] = [:]
        var runtimes: [PythonRuntime] = []
        for (name, path) in planned {
            if let problem = configProblem(name: name, path: path) {
                throw ConfigError("python runtime \(name): \(problem)")
            }
            var runtime: PythonRuntime
            if let known = byPath[path] {
                runtime = known
            } else {
                do {
                    runtime = try PythonRuntime.resolve(
                        path, name: name, profile: profile, program: program, harnessDirectory: harnessDirectory,
                        identities: identities)
                } catch {
                    // PythonRuntime speaks of the CLI's option; the daemon's runtime is named instead.
                    var message = error.message
                    let option = "--python \(path): "
                    if message.hasPrefix(option) { message.removeFirst(option.count) }
                    throw ConfigError("python runtime \(name) (\(path)): \(message)")
                }
                byPath[path] = runtime
            }
            runtime.name = name
            runtimes.append(runtime)
        }
        return DaemonRuntimes(runtimes, defaultName: chosen)
    }

    /// The runtimes as the `status` reply lists them, sorted by name: interpreter, version and the versions of the
    /// consumer libraries installed (`ConsumerPlan.libraries`: torch, numpy, sklearn, …).
    public var json: JSON {
        .array(
            names.compactMap { name in
                guard let r = byName[name] else { return nil }
                let libraries = r.distributions.filter { ConsumerPlan.libraries.contains($0.key) }
                    .sorted { $0.key < $1.key }.map { ($0.key, JSON.string($0.value.version)) }
                return .object([
                    ("name", .string(name)), ("default", .bool(name == defaultName)),
                    ("interpreter", .string(r.interpreter)), ("implementation", .string(r.implementation)),
                    ("version", .string(r.version)), ("prefix", .string(r.prefix)),
                    ("libraries", .object(libraries)),
                ])
            })
    }

    /// One line per runtime for the start-up log: `system (default): /usr/bin/python3, cpython 3.11.2`.
    public var summary: String {
        names.compactMap { name in
            guard let r = byName[name] else { return nil }
            return
                "\(name)\(name == defaultName ? " (default)" : ""): \(r.interpreter), \(r.implementation) \(r.version)"
        }.joined(separator: "; ")
    }
}
