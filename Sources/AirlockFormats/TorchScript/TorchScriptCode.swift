/// What one TorchScript code member (`<archive>/code/__torch__/….py`) holds.
public struct TorchScriptCodeReport: Sendable {
    /// Classes the member defines, qualified as `data.pkl` names them (`__torch__.torch.nn.modules.linear.Linear`).
    public var classes: Set<String> = []
    /// Operators called through `torch.ops.<namespace>.<op>` (and `ops.…`), as `namespace::op`, at most `maxOps`.
    public var ops: Set<String> = []
    /// Functions of the `torch` namespace called (`torch.linear` is `aten::linear`), at most `maxOps`.
    public var torchCalls: Set<String> = []
    /// Observations (`torchscript.*`), each with the member and line.
    public var observations: [Observation] = []
}

/// Reads TorchScript source as `torch.jit.load` gets it: a Python subset that the TorchScript interpreter compiles at
/// load time and runs at `forward`. A tokenizer of our own (strings, comments, line continuations) joins dotted names
/// across whitespace, so `torch . from_file` and `torch.\` + newline + `from_file` read as what the compiler sees. It
/// flags what can reach past tensors: operators from namespaces torch does not ship (a native library's), custom
/// classes, `from_file` (reads any file), `save` (writes one), `load_library`, and loops sized to never end. One pass,
/// linear in the member's size; names and counts bounded.
public enum TorchScriptCode {
    /// Operator namespaces that ship with torch itself.
    public static let torchNamespaces: Set<String> = [
        "aten", "prim", "prims", "quantized", "_quantized", "quantized_decomposed", "prepacked", "mkldnn",
        "mkldnn_prepacked", "vulkan_prepack", "profiler", "_caffe2", "cuda", "rngprims", "higher_order", "_nnapi",
        "sparse", "xnnpack",
    ]
    /// Custom-class namespaces torch registers itself (quantized packed parameters, XNNPACK contexts).
    public static let torchClassNamespaces: Set<String> = ["quantized", "xnnpack", "mkldnn", "_nnapi", "rnn"]
    /// Names whose mere mention is reported wherever they appear: what the operator does, and whether it is
    /// unambiguous.
    public static let dangerousNames: [String: (String, critical: Bool)] = [
        "from_file": ("reads any file on the host into a tensor", true),
        "load_library": ("loads a native library, whose code runs in the process", true),
        "_load_for_mobile": ("loads another model file", false),
        "_load_for_lite_interpreter": ("loads another model file", false),
    ]
    /// Loop counts past this are reported: the interpreter runs them at `forward`.
    public static let hugeLoop: UInt64 = 100_000_000
    /// Most operator and function names kept.
    public static let maxOps = 512
    static let maxObservations = 256

    /// Scans one code member named `member` (its path in the archive).
    public static func scan(_ view: ByteView, member: String) -> TorchScriptCodeReport {
        var report = TorchScriptCodeReport()
        let module = moduleName(member)
        var lexer = TorchScriptLexer(view)
        var chain: [String] = []
        var chainLine = 1
        var previous: TorchScriptLexer.Token = .other(0)
        var pendingClass = false
        var pendingRange = 0  // 1 after `range`, 2 after `range(`
        var pendingWhile = false
        // `getattr(OBJECT, "NAME")`: 1 after `getattr`, 2 inside its first argument, 3 after the comma.
        var getattrStage = 0
        var getattrObject: [String] = []
        func note(_ kind: String, _ message: String, line: Int, _ details: [(String, String)] = []) {
            guard report.observations.count < maxObservations else { return }
            report.observations.append(
                Observation(
                    kind, message, Evidence(member: member, details: [("line", String(line))] + details)))
        }
        func close() {
            defer { chain = [] }
            guard !chain.isEmpty else { return }
            judge(chain, line: chainLine, member: member, report: &report)
        }
        // A code member is as large as the archive lets it inflate: the scan's deadline (`ScanDeadline.current`) is
        // asked every 4096 tokens; a scan it stops is reported as an error by the scanner.
        var clock = DeadlineStride(every: 4096)
        var tokens = 0
        while let (token, line) = lexer.next() {
            tokens += 1
            if clock.stop(at: tokens) { break }
            switch (getattrStage, token) {
            case (2, .identifier(let name)) where getattrObject.count < 16: getattrObject.append(name)
            case (2, .dot): break
            case (2, .other(UInt8(ascii: ","))): getattrStage = 3
            case (3, .string(let text)):
                // A name looked up by a constant string is the dotted name written out.
                judge(getattrObject + [text], line: line, member: member, report: &report)
                getattrStage = 0
            case (1, .other(UInt8(ascii: "("))): getattrStage = 2
            default: getattrStage = 0
            }
            switch token {
            case .identifier(let name):
                if case .dot = previous, !chain.isEmpty {
                    if chain.count < 16 { chain.append(name) }
                } else {
                    close()
                    chain = [name]
                    chainLine = line
                }
                if pendingClass, let module, report.classes.count < maxOps {
                    report.classes.insert(module + "." + name)
                }
                pendingClass = name == "class" && lexer.tokenStartedLine
                if pendingWhile && (name == "True") {
                    note("torchscript.endless-loop", "a `while True` loop: forward may never return", line: line)
                }
                pendingWhile = name == "while"
                pendingRange = name == "range" ? 1 : 0
                if name == "getattr" && getattrStage == 0 { getattrStage = 1 }
            case .dot:
                pendingClass = false
            case .string(let text):
                close()
                if let (what, critical) = dangerousNames[text] ?? stringOp(text)
                    ?? (text == "save" ? ("writes a file on the host when looked up as torch's save", false) : nil)
                {
                    note(
                        critical ? "torchscript.dangerous-op" : "torchscript.risky-op",
                        "the string '\(text)' names an operator that \(what)", line: line, [("name", text)])
                }
                pendingWhile = false
            case .number(let value):
                close()
                if pendingRange == 2 && value >= hugeLoop {
                    note(
                        "torchscript.huge-loop", "a loop of \(value) iterations: forward may not finish",
                        line: line, [("count", String(value))])
                }
                if pendingWhile && value != 0 {
                    note("torchscript.endless-loop", "a `while \(value)` loop: forward may never return", line: line)
                }
                pendingWhile = false
                pendingRange = 0
            case .other(let byte):
                close()
                pendingRange = pendingRange == 1 && byte == UInt8(ascii: "(") ? 2 : 0
                pendingWhile = false
            }
            if case .dot = token {} else if case .identifier = token {} else { pendingClass = false }
            previous = token
        }
        close()
        if lexer.truncated {
            note(
                "torchscript.unreadable", "the member is not text TorchScript reads (a NUL byte or an open string)",
                line: lexer.line)
        }
        return report
    }

    /// `a/code/__torch__/torch/nn/modules/linear.py` → `__torch__.torch.nn.modules.linear`.
    static func moduleName(_ member: String) -> String? {
        let parts = member.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let code = parts.firstIndex(of: "code"), code + 1 < parts.count, let last = parts.last,
            last.hasSuffix(".py")
        else { return nil }
        var names = Array(parts[(code + 1)...])
        names[names.count - 1] = String(last.dropLast(3))
        return names.joined(separator: ".")
    }

    /// An operator named in a string (`"aten::from_file"`).
    static func stringOp(_ text: String) -> (String, critical: Bool)? {
        guard text.contains("::"), let last = text.split(separator: ":").last else { return nil }
        let op = last.split(separator: ".").first.map(String.init) ?? ""
        if op == "save" { return ("writes a file on the host", true) }
        return dangerousNames[op]
    }

    /// Judges one dotted name.
    static func judge(_ chain: [String], line: Int, member: String, report: inout TorchScriptCodeReport) {
        func note(_ kind: String, _ message: String, _ line: Int, _ details: [(String, String)]) {
            guard report.observations.count < maxObservations else { return }
            report.observations.append(
                Observation(kind, message, Evidence(member: member, details: [("line", String(line))] + details)))
        }
        let dotted = chain.joined(separator: ".")
        for name in chain {
            if let (what, critical) = dangerousNames[name] {
                note(
                    critical ? "torchscript.dangerous-op" : "torchscript.risky-op", "\(dotted) \(what)", line,
                    [("call", dotted)])
            }
        }
        if chain.count >= 2 && chain.last == "save"
            && (chain == ["torch", "save"] || chain.contains("aten") || chain == ["torch", "serialization", "save"])
        {
            note("torchscript.dangerous-op", "\(dotted) writes a file on the host", line, [("call", dotted)])
        }
        // torch.ops.NS.OP, ops.NS.OP
        if let ops = chain.firstIndex(of: "ops"), ops <= 1, ops == 0 || chain[0] == "torch", ops + 2 < chain.count + 1,
            ops + 1 < chain.count
        {
            let namespace = chain[ops + 1]
            let op = ops + 2 < chain.count ? chain[ops + 2] : "?"
            if report.ops.count < maxOps { report.ops.insert("\(namespace)::\(op)") }
            if !torchNamespaces.contains(namespace) {
                note(
                    "torchscript.custom-op",
                    "\(dotted) calls an operator from namespace '\(namespace)', which torch does not ship: it runs a native library's code",
                    line, [("call", dotted), ("namespace", namespace)])
            }
        } else if chain.count >= 2 && chain[0] == "torch" && chain[1] != "classes" {
            if report.torchCalls.count < maxOps { report.torchCalls.insert(chain[1]) }
        }
        // torch.classes.NS.Cls, __torch__.torch.classes.NS.Cls
        if let classes = chain.firstIndex(of: "classes"), classes >= 1, chain[classes - 1] == "torch",
            classes + 1 < chain.count
        {
            let namespace = chain[classes + 1]
            if !torchClassNamespaces.contains(namespace) {
                note(
                    "torchscript.custom-class",
                    "\(dotted) is a custom class from namespace '\(namespace)', which torch does not ship: a native library's code",
                    line, [("class", dotted), ("namespace", namespace)])
            }
        }
    }
}
