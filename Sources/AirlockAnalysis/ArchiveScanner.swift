internal import AirlockFormats
internal import AirlockJSON

/// ZIP-based files (PyTorch, Keras v3, `.npz`, plain archives): the archive's own anomalies, then each member that
/// can carry code, read the way PyTorch reads it — by the central directory.
enum ArchiveScanner {
    /// Most members opened per archive.
    static let maxMembers = 10_000
    /// Most bytes inflated for one file, all members and nested archives together, in `ScanBudget.maxInflatedBytes`.
    /// Without it, members that share one deflate stream (overlapping entries) made a 64 KiB archive inflate 20 GB
    /// (`make fuzz`, docs/fuzzing.md).
    static let inflatedTotalFactor = 4
    /// Deflate's largest expansion: what a member that failed part-way may have cost.
    static let deflateMaxRatio = 1032

    static func analyse(_ view: ByteView, budget: ScanBudget, depth: Int = 0) -> StaticScanner.Analysis {
        var inflated = 0
        return analyse(view, budget: budget, depth: depth, inflated: &inflated)
    }

    /// `inflated` counts the bytes inflated so far for this file, nested archives included.
    static func analyse(_ view: ByteView, budget: ScanBudget, depth: Int, inflated: inout Int) -> StaticScanner.Analysis
    {
        let archive: ZipArchive
        do {
            archive = try ZipArchive.read(view, budget: budget)
        } catch {
            return StaticScanner.Analysis(
                format: .zip, findings: [], error: ("malformed", "not a readable ZIP archive: \(error.description)"))
        }
        var findings = archive.observations.map(ObservationRules.finding)
        let format = FormatDetector.refine(zipMembers: archive.entries.map(\.name))
        let allNames = (archive.entries + archive.hiddenEntries).map(\.name)
        var script = TorchScriptFindings(
            torchScript: format == .pytorchZip && TorchScriptFindings.isTorchScript(allNames))
        // PyTorch reads */data.pkl first; so do we, then the other pickles, then everything else.
        // Records past the declared count are invisible to PyTorch but listed by Python's zipfile: read them too.
        let ordered = (archive.entries + archive.hiddenEntries).enumerated().sorted { a, b in
            rank(a.element.name, format) < rank(b.element.name, format)
                || (rank(a.element.name, format) == rank(b.element.name, format) && a.offset < b.offset)
        }.map(\.element)
        var opened = 0
        let (product, over) = budget.maxInflatedBytes.multipliedReportingOverflow(by: inflatedTotalFactor)
        let inflatedLimit = over ? Int.max : product
        var stoppedInflating = false
        var hints = LoadHints()
        for entry in ordered {
            // The request's deadline (`ScanDeadline`): the report becomes an error, so stopping says nothing.
            if budget.expired { break }
            if format == .pytorchZip && isStorage(entry.name) { continue }
            guard opened < maxMembers else {
                findings.append(
                    Finding(
                        rule: "zip.too-many-members", severity: .medium,
                        message: "only the first \(maxMembers) members were examined"))
                break
            }
            opened += 1
            if entry.method != 0 && inflated >= inflatedLimit {
                if !stoppedInflating {
                    stoppedInflating = true
                    findings.append(
                        Finding(
                            rule: "zip.bomb", severity: .high,
                            message:
                                "the members inflate to more than \(inflatedLimit) bytes in all; \(entry.name) and the compressed members after it were not examined",
                            evidence: Evidence(
                                member: entry.name,
                                details: [("inflatedTotal", String(inflated)), ("limit", String(inflatedLimit))])
                        ))
                }
                continue
            }
            let data: ByteView
            do {
                data = try archive.extract(entry, from: view, limit: budget.maxInflatedBytes)
                if entry.method != 0 { inflated = saturatingSum(inflated, data.count) }
            } catch {
                if entry.method != 0 {
                    let (bound, o) = Int(clamping: entry.compressedSize).multipliedReportingOverflow(
                        by: deflateMaxRatio)
                    inflated = saturatingSum(
                        inflated, o ? budget.maxInflatedBytes : min(bound, budget.maxInflatedBytes))
                }
                findings.append(
                    Finding(
                        rule: error.kind == .budget ? "zip.bomb" : "zip.unreadable-member",
                        severity: error.kind == .budget ? .high : .medium,
                        message: "member \(entry.name) could not be read: \(error.description)",
                        evidence: Evidence(member: entry.name)
                    ))
                continue
            }
            if format == .pytorchZip && TorchScriptFindings.isCode(entry.name) {
                findings += script.scan(data, member: entry.name)
                continue
            }
            findings += script.filter(
                member(
                    data, name: entry.name, archiveFormat: format, budget: budget, depth: depth,
                    inflated: &inflated, hints: &hints))
        }
        if let summary = script.summary { findings.append(summary) }
        return StaticScanner.Analysis(format: format, findings: findings, hints: hints)
    }

    static func saturatingSum(_ a: Int, _ b: Int) -> Int {
        let (sum, o) = a.addingReportingOverflow(b)
        return o ? Int.max : sum
    }

    static func rank(_ name: String, _ format: FileFormat) -> Int {
        // TorchScript code first: it says which `__torch__` classes the pickles may name.
        if format == .pytorchZip && TorchScriptFindings.isCode(name) { return -1 }
        if name == "data.pkl" || name.hasSuffix("/data.pkl") { return 0 }
        if name.hasSuffix(".pkl") { return 1 }
        return 2
    }

    /// `archive/data/0`, `archive/data/123`: raw tensor bytes, never parsed.
    static func isStorage(_ name: String) -> Bool {
        let parts = name.split(separator: "/")
        guard parts.count >= 2, parts[parts.count - 2] == "data", let last = parts.last else { return false }
        return last.allSatisfy(\.isNumber)
    }

    /// `hints` gathers what loading the member would need: the modules its pickles import, and whether a NumPy
    /// member holds Python objects (a pickle numpy would unpickle).
    static func member(
        _ data: ByteView, name: String, archiveFormat: FileFormat, budget: ScanBudget, depth: Int,
        inflated: inout Int, hints: inout LoadHints
    ) -> [Finding] {
        if archiveFormat == .keras && (name == "config.json" || name.hasSuffix("/config.json")) {
            // Keras parses config.json as JSON whatever its first bytes look like (UTF-16, a byte-order mark).
            switch FormatDetector.sniff(data) {
            case .pickle, .pytorchLegacy, .numpy, .zip, .tar, .sevenZip: break
            default: return KerasFindings.config(data, member: name)
            }
        }
        let kind = FormatDetector.sniff(data)
        switch kind {
        case .pickle, .pytorchLegacy:
            let pickle = PickleScanner.scan(data, budget: budget, member: name)
            hints.add(pickle)
            var out = PickleFindings.findings(pickle, member: name)
            if archiveFormat == .keras {
                out.append(
                    Finding(
                        rule: "keras.pickle-member", severity: .high,
                        message: "Keras archive member \(name) is a pickle", evidence: Evidence(member: name)))
            }
            return out
        case .numpy:
            let numpy = NumPyFindings.findings(data, member: name, budget: budget)
            hints.merge(numpy.hints)
            return numpy.findings
        case .zip:
            guard depth + 1 < budget.maxNesting else {
                return [
                    Finding(
                        rule: "zip.nested-too-deep", severity: .medium,
                        message: "archive nested deeper than \(budget.maxNesting) levels",
                        evidence: Evidence(member: name))
                ]
            }
            var nested = analyse(data, budget: budget, depth: depth + 1, inflated: &inflated)
            hints.merge(nested.hints)
            for i in nested.findings.indices {
                nested.findings[i].evidence.member = name + "!" + (nested.findings[i].evidence.member ?? "")
            }
            return nested.findings
        case .tar, .sevenZip,
            .unknown where Compression.detect(data) != nil:
            // Archives and compressed streams inside archives: analysed as files of their own, one level deeper.
            var nested = StaticScanner.analyse(data, name: name, budget: budget, depth: depth + 1)
            hints.merge(nested.hints)
            for i in nested.findings.indices {
                let inner = nested.findings[i].evidence.member
                nested.findings[i].evidence.member = inner.map { name + "!" + $0 } ?? name
            }
            return nested.findings
        default:
            if archiveFormat == .pytorchZip && name.hasSuffix(".pkl") {
                return [
                    Finding(
                        rule: "pytorch.unparsed-pickle", severity: .medium,
                        message: "\(name) should be a pickle but its content is not recognised",
                        evidence: Evidence(member: name))
                ]
            }
            return []
        }
    }
}

/// Keras: Lambda layers and serialized functions run Python when the model is loaded with `safe_mode=False`
/// (and on older Keras, always); custom objects name code outside Keras.
enum KerasFindings {
    static func config(_ data: ByteView, member: String?) -> [Finding] {
        let tree: JSON
        do {
            // Keras reads config.json with Python's json.loads (of bytes): NaN, duplicate keys, UTF-16 are accepted.
            // A member inflates up to the scan's budget: the scan's deadline is asked as the parse goes.
            let deadline = ScanDeadline.current
            tree = try JSON.parse(
                data.array, maxDepth: 256, dialect: .python, stop: deadline.map { d in { d.expired } })
        } catch {
            if ScanDeadline.current?.interrupted != nil { return [] }  // the report becomes an error
            // Python may still read what we cannot (deeper nesting): the config's strings are searched for Lambdas.
            let named = searchLambda(data).map { f in
                var f = f
                f.evidence.member = member
                return f
            }
            return [
                Finding(
                    rule: "keras.bad-config", severity: .medium,
                    message: "config.json is not JSON that Python's json reads: \(error)",
                    evidence: Evidence(member: member))
            ] + named
        }
        var out: [Finding] = []
        // Each node with whether it lies inside a Lambda layer (whose finding already carries its function's code).
        var stack: [(JSON, Bool)] = [(tree, false)]
        var visited = 0
        while let (node, inLambda) = stack.popLast(), visited < 1_000_000 {
            visited += 1
            switch node {
            case .object(let members):
                var className: String?
                var module: String?
                var name: String?
                var registered: String?
                var function: JSON?
                var functionType: String?
                for (k, v) in members {
                    if case .string(let s) = v {
                        if k == "class_name" { className = s }
                        if k == "module" { module = s }
                        if k == "name" { name = s }
                        if k == "registered_name" { registered = s }
                        if k == "function_type" { functionType = s }
                    }
                    if k == "function" { function = v }
                    if k == "config", case .object(let inner) = v {
                        // Keras 2 keeps a Lambda's function inside its layer config.
                        for (ik, iv) in inner {
                            if ik == "function" { function = function ?? iv }
                            if ik == "function_type", case .string(let s) = iv { functionType = s }
                            if ik == "name", case .string(let s) = iv { name = name ?? s }
                        }
                    }
                }
                let isLambda = className == "Lambda"
                stack += members.map { ($0.1, inLambda || isLambda) }
                if className == "__lambda__" && inLambda {
                    // Reported with its layer.
                } else if className == "Lambda" || className == "__lambda__" {
                    var details = name.map { [("layer", $0)] } ?? []
                    if className == "__lambda__" {
                        details += KerasCode.evidence(.object(members))
                    } else if let function, functionType != "function" {
                        // Keras 3's {"class_name": "__lambda__", "config": {"code": …}}, Keras 2's [code, …, …].
                        details += KerasCode.evidence(function)
                    } else if let function, case .string(let f) = function {
                        details.append(("function", String(f.prefix(200))))
                    }
                    let names = details.first { $0.0 == "codeNames" }.map { ": its code names \($0.1)" } ?? ""
                    out.append(
                        Finding(
                            rule: "keras.lambda", severity: .critical,
                            message:
                                "a \(className!) \(className == "Lambda" ? "layer" : "function") carries serialized Python code that runs when the model is loaded\(names)",
                            evidence: Evidence(member: member, details: details)
                        ))
                } else if let className, let reason = KerasFindings.codeLayers[className] {
                    out.append(
                        Finding(
                            rule: "keras.code-layer", severity: .high,
                            message: "a \(className) layer \(reason)",
                            evidence: Evidence(member: member, details: name.map { [("layer", $0)] } ?? [])))
                } else if let module, let className,
                    case .dangerous(let reason, let critical) = PickleRules.classify(module: module, name: className)
                {
                    // keras imports `module` and takes `class_name` from it whatever they are (CVE-2025-1550):
                    // judged as a pickle's import would be.
                    out.append(
                        Finding(
                            rule: "keras.dangerous-object", severity: critical ? .critical : .high,
                            message:
                                "the config names \(module).\(className), which keras imports to build it: \(reason)",
                            evidence: Evidence(member: member, global: "\(module).\(className)")))
                } else if let module, !module.hasPrefix("keras"), !module.hasPrefix("builtins"), className != nil {
                    out.append(
                        Finding(
                            rule: "keras.custom-object", severity: .medium,
                            message:
                                "custom object \(className!) from module \(module): loading imports code outside Keras",
                            evidence: Evidence(
                                member: member, global: "\(module).\(className!)",
                                details: registered.map { [("registeredName", $0)] } ?? [])
                        ))
                }
            case .array(let items):
                stack += items.map { ($0, inLambda) }
            default:
                break
            }
        }
        return out
    }

    /// Layers that run more than Keras's own code: TensorFlow functions by name, or a SavedModel's graph.
    static let codeLayers: [String: String] = [
        "TFOpLambda": "calls the TensorFlow function its config names (any tf.* op, tf.io and tf.raw_ops included)",
        "SlicingOpLambda": "calls the TensorFlow function its config names",
        "TFSMLayer": "loads a TensorFlow SavedModel from the path in its config and runs its graph",
    ]
}
