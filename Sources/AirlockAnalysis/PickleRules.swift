/// What Airlock knows about the Python globals a pickle can import.
///
/// An **allowlist** of globals that model files need and that cannot run code by themselves (torch's rebuild
/// functions and storage types, `collections.OrderedDict`, NumPy's array reconstruction, harmless built-ins, …), and a
/// **denylist** for code execution, processes, network, file writes, native code and unrestricted deserialisation
/// (critical), and for building blocks that have no business in a model (high). Everything on neither list is
/// *unknown*: never silently clean — it makes the file at least suspicious, with the names as evidence.
///
/// The lists live in `PickleImportList.swift`, one entry per line with its reason and source. A name is matched the
/// way CPython's `find_class` resolves it: the module and the dotted attribute chain (protocol 4) as one path, Python 2
/// names also through `_compat_pickle`'s mapping. An allowlist entry matches its exact path only; a denylist entry
/// matches its path and everything under it (submodules, attributes, attribute chains: `idlelib.pyshell`,
/// `logging.FileHandler.__init__`). On top of the lists: an attribute chain that reaches interpreter internals
/// (`__globals__`, `__dict__`, `__subclasses__`, …) is critical; a chain through a denylisted module that another
/// module imported (`torch.serialization` → `os.system`) is judged as that module; a package's `__main__` module and a
/// name that differs from a denylist entry only by case are high.
public enum PickleRules {
    /// How a global is classified.
    public enum Class: Sendable, Equatable {
        /// Known and needed by model files.
        case safe
        /// Runs code, starts processes, opens connections or files, or builds such calls: the reason, and whether
        /// it is unambiguous (`critical`) or a building block that has no business in a model (`high`).
        case dangerous(String, critical: Bool)
        /// On neither list.
        case unknown
    }

    /// Classifies the global `module.name` as an unpickler resolves it (`name` may be a dotted protocol-4 chain).
    public static func classify(module: String, name: String) -> Class {
        var result = classify(ImportPath(module: module, name: name))
        // Protocols 0–2 load Python 2 names through `_compat_pickle`; the stream chooses its protocol, so both the
        // name as written and the mapped name are judged, and the worse danger wins.
        if let mapped = compatPath(module: module, name: name) {
            let other = classify(mapped)
            switch (result, other) {
            case (.dangerous(_, true), _): break
            case (_, .dangerous(_, true)): result = other
            case (.dangerous, _): break
            case (_, .dangerous): result = other
            default: result = other  // the name as written does not import under Python 3; the mapped one does
            }
        }
        return result
    }

    /// Classifies a callable reached dynamically (`getattr(__import__('torch.serialization'), 'os')…`), known only
    /// as one dotted path: everything after the first component may be an attribute chain.
    public static func classify(callee: String) -> Class {
        classify(ImportPath(dotted: callee))
    }

    // MARK: - Matching

    /// A global as a list of dotted components; the first `moduleCount` name the module.
    struct ImportPath {
        var components: [String]
        var moduleCount: Int

        init(module: String, name: String) {
            let m = ImportPath.split(module)
            components = m + ImportPath.split(name)
            moduleCount = m.count
        }

        init(dotted: String) {
            components = ImportPath.split(dotted)
            moduleCount = Swift.min(1, components.count)
        }

        var joined: String { components.joined(separator: ".") }

        /// Dotted components, with surrounding white space and control characters dropped and empty components
        /// removed: `os.` and `os ` fail to import, but they are judged as `os`, not as something unknown.
        static func split(_ s: String) -> [String] {
            var out: [String] = []
            for part in s.split(separator: ".", omittingEmptySubsequences: true).prefix(maxComponents) {
                let trimmed = part.unicodeScalars.drop(while: isBlank).reversed().drop(while: isBlank).reversed()
                if !trimmed.isEmpty { out.append(String(String.UnicodeScalarView(trimmed))) }
            }
            return out
        }

        static func isBlank(_ u: Unicode.Scalar) -> Bool { u.value <= 0x20 || u.value == 0x7F }
    }

    /// Components looked at per name; a longer chain is judged by its first 64 (bounded work per import).
    static let maxComponents = 64

    static func compatPath(module: String, name: String) -> ImportPath? {
        if let mapped = compatNames["\(module) \(name)"] { return ImportPath(module: mapped.module, name: mapped.name) }
        if let mapped = compatModules[module] { return ImportPath(module: mapped, name: name) }
        return nil
    }

    static func classify(_ path: ImportPath) -> Class {
        let c = path.components
        guard !c.isEmpty else { return .unknown }
        if safeExact.contains(path.joined) { return .safe }
        var worst: (reason: String, critical: Bool)?
        func note(_ reason: String, _ critical: Bool) {
            if worst == nil || (critical && worst?.critical == false) { worst = (reason, critical) }
        }
        // The denylist: the longest entry that is a prefix of the path.
        if let e = longestDenied(c[...]) { note(e.reason, e.critical) }
        // Interpreter internals reached through an attribute chain.
        for part in c where introspection.contains(part) {
            note("reaches interpreter internals through `\(part)`", true)
        }
        // A chain through a module another module imported: `numpy.os.system`, `torch.serialization.sys.modules`.
        let firstAttribute = Swift.max(1, path.moduleCount)
        if firstAttribute < c.count - 1 {
            for start in firstAttribute..<(c.count - 1) {
                if let e = longestDenied(c[start...]) {
                    note("\(e.reason) (reached as \(c[start...].joined(separator: ".")))", e.critical)
                }
                // A module kept under a private alias (`argparse._os`, `tempfile._shutil`): judged as the module.
                if c[start].hasPrefix("_"), !c[start].hasPrefix("__"), c[start].count > 1 {
                    let alias = [String(c[start].dropFirst())] + c[(start + 1)...]
                    if let e = longestDenied(alias[...]) {
                        note("\(e.reason) (reached as \(c[start...].joined(separator: ".")))", e.critical)
                    }
                }
            }
        }
        // A package's `__main__` module may run its command line on import.
        if c.dropFirst().prefix(path.moduleCount).contains("__main__") {
            note("a package's __main__ module, which may run on import", false)
        }
        // NumPy's file functions under any of the paths numpy re-exports them from (`numpy.lib.npyio.save`).
        if c.first == "numpy" || c.first == "np", let leaf = c.last, let reason = numpyFileFunctions[leaf] {
            note("\(reason) (numpy's \(leaf))", true)
        }
        // Callables named like process or code execution, wherever they are re-exported.
        if let leaf = c.last, let reason = dangerousLeaves[leaf] {
            note("\(reason) (named \(leaf))", c.count - path.moduleCount >= 2 || alwaysCriticalLeaves.contains(leaf))
        }
        if worst == nil, let e = longestDenied(c.map { $0.lowercased() }[...], lowercased: true) {
            note("differs only by case from a denylisted name: \(e.reason)", false)
        }
        if let worst { return .dangerous(worst.reason, critical: worst.critical) }
        return .unknown
    }

    /// The longest denylist entry that is a prefix of `parts`, and how many components it spans.
    static func longestDenied(_ parts: ArraySlice<String>, lowercased: Bool = false) -> (
        reason: String, critical: Bool, length: Int
    )? {
        let table = lowercased ? deniedLowercased : denied
        var key = ""
        var best: (reason: String, critical: Bool, length: Int)?
        // No entry is deeper than `maxEntryComponents`: looking further would only cost time (a hostile chain).
        for (i, part) in parts.prefix(maxEntryComponents).enumerated() {
            key = i == 0 ? part : key + "." + part
            if let e = table[key] { best = (e.reason, e.critical, i + 1) }
        }
        return best
    }

    /// The most components of any denylist entry.
    static let maxEntryComponents: Int = importList.map { $0.path.split(separator: ".").count }.max() ?? 1

    /// Allowlist entries: exact paths.
    static let safeExact: Set<String> = Set(importList.filter { $0.kind == .safe }.map(\.path))

    /// Denylist entries by path.
    static let denied: [String: (reason: String, critical: Bool)] = {
        var out: [String: (reason: String, critical: Bool)] = [:]
        for e in importList where e.kind != .safe { out[e.path] = (e.reason, e.kind == .critical) }
        return out
    }()

    /// Denylist entries by lowercased path (the critical one wins a collision).
    static let deniedLowercased: [String: (reason: String, critical: Bool)] = {
        var out: [String: (reason: String, critical: Bool)] = [:]
        for (path, e) in denied where out[path.lowercased()]?.critical != true { out[path.lowercased()] = e }
        return out
    }()

    /// Attributes that reach the interpreter's internals (globals, modules, code, every class): no model needs them in
    /// a name, and through them any object is reachable.
    static let introspection: Set<String> = [
        "__globals__", "__builtins__", "__dict__", "__subclasses__", "__code__", "__closure__", "__getattribute__",
        "__getattr__", "__setattr__", "__delattr__", "__import__", "__loader__", "__spec__", "__self__", "__func__",
        "__class__", "__bases__", "__base__", "__mro__", "__wrapped__", "__reduce__", "__reduce_ex__",
        "__init_subclass__",
        "__class_getitem__", "__set_name__", "__traceback__", "__frame__", "f_globals", "f_locals", "f_builtins",
        "gi_frame", "cr_frame", "tb_frame", "co_code", "func_globals", "func_code",
    ]

    /// Leaf names critical even as a module's own global: a module attribute with one of these names is the built-in
    /// or `os` function re-exported (`dataclasses.builtins.eval`, `from os import system`), or as dangerous.
    static let alwaysCriticalLeaves: Set<String> = [
        "eval", "exec", "execfile", "__import__", "system", "popen", "getoutput", "getstatusoutput",
    ]

    /// Names of callables that run processes or code, judged wherever they appear (a module that re-exports
    /// `os.system` under its own name): critical at the end of an attribute chain, high as a module's own global.
    /// NumPy functions and classes that read or write files, by name: numpy re-exports them from many modules.
    static let numpyFileFunctions: [String: String] = [
        "save": "writes files", "savez": "writes files", "savez_compressed": "writes files", "savetxt": "writes files",
        "tofile": "writes files", "dump": "writes pickles to files", "memmap": "creates and writes files",
        "open_memmap": "creates and writes files", "load": "loads pickles from files (allow_pickle)",
        "loadtxt": "reads files and URLs", "genfromtxt": "reads files and URLs", "fromfile": "reads files",
        "fromregex": "reads files", "DataSource": "fetches URLs",
    ]

    static let dangerousLeaves: [String: String] = [
        "system": "runs a shell command", "popen": "runs a shell command", "Popen": "starts a process",
        "getoutput": "runs a shell command", "getstatusoutput": "runs a shell command",
        "check_output": "starts a process", "check_call": "starts a process", "call_subprocess": "starts a process",
        "spawnl": "starts a process", "spawnle": "starts a process", "spawnlp": "starts a process",
        "spawnv": "starts a process", "spawnve": "starts a process", "spawnvp": "starts a process",
        "spawnvpe": "starts a process", "posix_spawn": "starts a process", "posix_spawnp": "starts a process",
        "execv": "replaces the process", "execve": "replaces the process", "execvp": "replaces the process",
        "execvpe": "replaces the process", "execl": "replaces the process", "execle": "replaces the process",
        "execlp": "replaces the process", "execlpe": "replaces the process", "exec_command": "starts a process",
        "eval": "evaluates Python source", "exec": "executes Python source", "execfile": "executes a file",
        "runsource": "executes Python source", "runcode": "executes code", "runstring": "executes Python source",
        "run_path": "runs a file", "run_module": "runs a module", "_run_code": "executes code",
        "import_module": "imports any module", "__import__": "imports any module", "load_library": "loads native code",
        "load_inline": "compiles and loads native code", "load_op_library": "loads native code",
        "write_text": "writes files", "write_bytes": "writes files", "tofile": "writes files",
        "to_pickle": "writes files", "to_csv": "writes files", "to_json": "writes files", "to_parquet": "writes files",
        "to_excel": "writes files", "to_hdf": "writes files", "to_sql": "writes to databases",
        "to_feather": "writes files",
        "to_html": "writes files", "to_latex": "writes files", "to_markdown": "writes files",
        "to_stata": "writes files",
        "to_xml": "writes files", "to_orc": "writes files", "to_clipboard": "runs clipboard commands",
        "write": "writes files", "writelines": "writes files", "write_file": "writes files", "to_file": "writes files",
        "save": "writes files", "dump": "writes files", "dump_stats": "writes files", "open": "opens files",
        "extractall": "writes files", "unlink": "deletes files", "rmtree": "deletes files", "mkdir": "creates folders",
        "touch": "creates files", "chmod": "changes permissions", "symlink_to": "creates links",
        "hardlink_to": "creates links", "rename": "moves files", "urlopen": "network access",
        "urlretrieve": "network access", "create_connection": "network access",
    ]
}
