@testable import AirlockAnalysis
@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// The pickle import lists (`PickleImportList.swift`): well-formed, consistent with CPython and the docs, and every
/// entry exercised by a real pickle from `Tests/Generators/gadgets.py`.
@Suite("Pickle import lists")
struct RulesListTests {
    static func severity(_ c: PickleRules.Class) -> String {
        switch c {
        case .safe: return "clean"
        case .unknown: return "medium"
        case .dangerous(_, let critical): return critical ? "critical" : "high"
        }
    }

    @Test("every entry has a path, a reason and a source; no path is listed twice or on both lists")
    func wellFormed() {
        var seen: [String: PickleRules.ImportEntry.Kind] = [:]
        for e in PickleRules.importList {
            #expect(!e.reason.trimmingCharacters(in: .whitespaces).isEmpty, "\(e.path) has no reason")
            #expect(!e.source.trimmingCharacters(in: .whitespaces).isEmpty, "\(e.path) has no source")
            let parts = e.path.split(separator: ".", omittingEmptySubsequences: false)
            #expect(
                !parts.isEmpty && parts.allSatisfy { !$0.isEmpty && !$0.contains(" ") },
                "\(e.path) is not a dotted path")
            if let earlier = seen[e.path] {
                #expect(Bool(false), "\(e.path) is listed twice (\(earlier) and \(e.kind))")
            }
            seen[e.path] = e.kind
        }
        // Python 2 names are mapped before matching: an entry under one would never match.
        for e in PickleRules.importList {
            let root = String(e.path.split(separator: ".")[0])
            let mapped = PickleRules.compatModules[root]
            #expect(
                mapped == nil || mapped!.hasPrefix(root + "."), "\(e.path) is a Python 2 name: list its Python 3 name")
        }
        #expect(PickleRules.safeExact.count + PickleRules.denied.count == PickleRules.importList.count)
    }

    @Test("every allowlist entry classifies as safe and every denylist entry as its severity")
    func entriesClassify() {
        for e in PickleRules.importList {
            let dot = e.path.lastIndex(of: ".")
            let module = dot.map { String(e.path[..<$0]) } ?? e.path
            let name = dot.map { String(e.path[e.path.index(after: $0)...]) } ?? "anything"
            let got = Self.severity(PickleRules.classify(module: module, name: name))
            let want: String
            switch e.kind {
            case .safe: want = "clean"
            case .critical: want = "critical"
            // A high entry can sit inside a critical rule's reach (a leaf name); it is never less than high.
            case .high: want = got == "critical" ? "critical" : "high"
            }
            #expect(got == want, "\(e.path)")
        }
    }

    @Test("the Python 2 mapping is CPython's _compat_pickle")
    func compatMatchesCPython() throws {
        let script = """
            import _compat_pickle as c, json
            print(json.dumps({"names": {m + " " + n: list(v) for (m, n), v in c.NAME_MAPPING.items()},
                              "modules": c.IMPORT_MAPPING}))
            """
        let (status, output) = try SchemaValidation.python(["-c", script])
        #expect(status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let names = try #require(object["names"] as? [String: [String]])
        let modules = try #require(object["modules"] as? [String: String])
        #expect(names.count == PickleRules.compatNames.count)
        #expect(modules == PickleRules.compatModules)
        for (key, value) in names {
            let ours = PickleRules.compatNames[key]
            #expect(ours?.module == value.first && ours?.name == value.last, "\(key)")
        }
    }

    /// The backticked names of the line of docs/formats.md that starts with `prefix`.
    static func documented(_ prefix: String) throws -> [String] {
        let text = try String(contentsOfFile: "\(repositoryRoot)/docs/formats.md", encoding: .utf8)
        // A bullet may wrap over several lines: take it up to the next bullet or blank line.
        var lines: [Substring] = []
        var inside = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(prefix) {
                inside = true
            } else if inside && (line.hasPrefix("- ") || line.trimmingCharacters(in: .whitespaces).isEmpty) {
                break
            }
            if inside { lines.append(line) }
        }
        let joined = lines.joined(separator: " ")
        // Dotted Python names only (a rule id such as `pickle.dangerous-import` is not an example).
        let identifier = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
        return joined.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            .filter { $0.contains(".") && $0.allSatisfy(identifier.contains) }
    }

    @Test("the names docs/formats.md gives as examples are classified as it says")
    func docsAgree() throws {
        for (prefix, want) in [
            ("- **allowlist**", "clean"), ("- **critical**", "critical"), ("- **high**", "high"),
        ] {
            let names = try Self.documented(prefix)
            #expect(names.count >= 5, "docs/formats.md: no examples after \(prefix)")
            for name in names {
                #expect(Self.severity(PickleRules.classify(callee: name)) == want, "\(name) (docs: \(want))")
                if want == "clean" {
                    let listed = PickleRules.safeExact.contains(name)
                    #expect(listed, "\(name) is documented but not on the allowlist")
                }
            }
        }
    }

    @Test(
        "names are matched as find_class resolves them: aliases, chains, submodules, dots, case",
        arguments: [
            ("__builtin__", "eval", "critical"), ("__builtin__", "reduce", "high"), ("__builtin__", "set", "clean"),
            ("__builtin__", "xrange", "high"), ("copy_reg", "_reconstructor", "clean"),
            ("httplib", "HTTPConnection", "critical"), ("urllib2", "urlopen", "critical"),
            ("commands", "getoutput", "critical"), ("cPickle", "loads", "critical"), ("dbm", "open", "critical"),
            ("builtins", "len.__self__.eval", "critical"), ("builtins", "__dict__.get", "critical"),
            ("collections", "OrderedDict.__init__.__globals__", "critical"), ("numpy", "os.system", "critical"),
            ("torch.serialization", "os.system", "critical"), ("mymodel", "sys.modules.get", "critical"),
            ("logging", "FileHandler.__init__", "critical"), ("logging", "getLogger", "clean"),
            ("logging", "getLogger.__globals__", "critical"), ("os.path", "join", "critical"),
            ("pathlib", "PosixPath", "clean"), ("pathlib", "PosixPath.write_text", "critical"),
            ("idlelib.pyshell", "ModifiedInterpreter.runcode", "critical"),
            ("torch.utils.cpp_extension", "load_inline", "critical"), ("torch.serialization", "_get_layout", "clean"),
            ("os.", "system", "critical"), ("os", "system.", "critical"), ("os", "", "critical"),
            ("os\n", "system", "critical"), ("OS", "listdir", "high"), ("", "", "medium"), ("..", "..", "medium"),
            ("builtins", "len", "clean"), ("builtins", "sorted", "high"), ("builtins", "map", "high"),
            ("builtins", "object", "clean"), ("builtins", "type", "high"), ("builtins", "range", "high"),
            ("__future__", "annotations", "clean"), ("collections.abc", "Mapping", "clean"),
            ("collections.abc", "sys", "medium"), ("collections.abc", "sys.modules", "critical"),
            ("pkg.__main__", "main", "high"), ("mymodel", "Net", "medium"),
            ("sklearn.tree._classes", "DecisionTreeClassifier", "medium"), ("torch", "load_library", "high"),
            ("mymodel.utils", "eval", "critical"), ("mymodel.utils", "system", "critical"),
            ("dataclasses", "builtins.eval", "critical"), ("typing", "sys.modules", "critical"),
            ("argparse", "FileType", "critical"), ("argparse", "Namespace", "clean"),
            // From the review of issue 14: private aliases, numpy's re-exports, joblib's old wrappers.
            ("argparse", "_os.replace", "critical"), ("tempfile", "_shutil.rmtree", "critical"),
            ("numpy.lib.npyio", "save", "critical"), ("numpy.core.memmap", "memmap", "critical"),
            ("numpy.core.multiarray", "_reconstruct", "clean"), ("_pyio", "open", "critical"),
            ("joblib.numpy_pickle_compat", "NDArrayWrapper", "high"), ("sklearn.utils._joblib", "load", "critical"),
            ("joblib.numpy_pickle", "NumpyArrayWrapper", "clean"),
            ("configparser", "RawConfigParser.read", "high"), ("_pyrepl.pager", "pipe_pager", "critical"),
            ("mymodel.layers", "Block.system", "critical"), ("xml.etree.ElementTree", "ElementTree.write", "critical"),
            ("PIL.Image", "Image.save", "critical"), ("PIL.Image", "open", "high"),
            ("pstats", "Stats.dump_stats", "critical"),
            ("pandas.core.frame", "DataFrame.to_pickle", "critical"), ("pandas.core.frame", "DataFrame", "medium"),
            ("datetime", "datetime.fromtimestamp", "medium"), ("a.b", "", "medium"), ("a.b.c", ".", "medium"),
            ("a.b.c.d", "", "medium"), ("os.path", "", "critical"), ("", "os.system", "critical"),
        ])
    func matching(module: String, name: String, expected: String) {
        #expect(Self.severity(PickleRules.classify(module: module, name: name)) == expected, "\(module) \(name)")
    }

    @Test("callables reached dynamically are judged as dotted paths")
    func callees() {
        #expect(Self.severity(PickleRules.classify(callee: "numpy.os.system")) == "critical")
        #expect(Self.severity(PickleRules.classify(callee: "builtins.getattr.__call__")) == "critical")
        #expect(Self.severity(PickleRules.classify(callee: "torch._utils._rebuild_tensor_v2")) == "clean")
        #expect(Self.severity(PickleRules.classify(callee: "mymodel.Net")) == "medium")
    }

    @Test("a hostile name costs bounded work")
    func longNames() {
        let chain = Array(repeating: "a", count: 100_000).joined(separator: ".")
        #expect(Self.severity(PickleRules.classify(module: chain, name: chain)) == "medium")
        #expect(Self.severity(PickleRules.classify(module: "os", name: chain)) == "critical")
    }

    @Test("any shape of module and name is classified without a crash")
    func shapes() {
        let parts = ["", ".", "..", "a", "os", "__dict__", " ", "system", "builtins"]
        var names: [String] = [""]
        for _ in 0..<3 { names = Array(Set(names.flatMap { n in parts.map { n + $0 } })) }
        for module in names {
            for name in names {
                switch PickleRules.classify(module: module, name: name) {
                case .safe, .unknown, .dangerous: break
                }
                _ = PickleRules.classify(callee: module + "." + name)
            }
        }
        #expect(names.count > 100)
    }

    @Test("every gadget pickle is judged at its entry's severity; benign pickles are clean")
    func gadgetPickles() throws {
        let dir = try generateSamples("gadgets.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: String]])
        #expect(manifest.count > 600)
        let order = ["clean": 0, "info": 0, "low": 0, "medium": 1, "high": 2, "critical": 3]
        for sample in manifest {
            let name = sample["name"] ?? "?", file = sample["file"] ?? "", expect = sample["expect"] ?? ""
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)))
            let report = PickleScanner.scan(ByteView(bytes))
            let findings = PickleFindings.findings(report, member: nil)
            let worst = findings.map { order[$0.severity.rawValue] ?? 0 }.max() ?? 0
            let got = ["clean", "medium", "high", "critical"][worst]
            #expect(got == expect, "\(name): \(findings.map { "\($0.severity.rawValue) \($0.message)" })")
        }
    }
}
