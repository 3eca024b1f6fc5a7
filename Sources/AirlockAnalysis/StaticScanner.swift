import AirlockNames
public import AirlockFormats
internal import AirlockJSON
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Static analysis of files and model folders: decide the format from the content, run its parser, apply the
/// rules, and write one report per file. Nothing is loaded or executed.
public enum StaticScanner {
    /// Scans one file. It is opened without blocking (a FIFO or device is refused, never waited on).
    public static func scan(file path: String, budget: ScanBudget = .standard) -> Report {
        let started = now()
        let fd: FileDescriptor
        do throws(SystemCallError) {
            fd = try FileDescriptor.open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK)
        } catch {
            let target = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(
                target: target, findings: [], timings: [("staticMs", ms(since: started))],
                error: ("io", "cannot open \(path): \(error.errnoValue.text)"))
        }
        return fd.closeAfter { scan(fd: $0.rawValue, path: path, budget: budget, started: started) }
    }

    /// Scans the file open as `fd`; `path` names it in the report. The caller keeps `fd` (a detonation that
    /// follows mounts the very same file through it).
    public static func scan(fd: Int32, path: String, budget: ScanBudget = .standard) -> Report {
        scan(fd: fd, path: path, budget: budget, started: now())
    }

    static func scan(fd: Int32, path: String, budget: ScanBudget, started: UInt64) -> Report {
        let view: ByteView
        do {
            view = try ByteView.map(fd: fd, name: path)
        } catch {
            let target = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(
                target: target, findings: [], timings: [("staticMs", ms(since: started))],
                error: ("io", error.description))
        }
        let sha = FileDigest.sha256(view)
        var analysis = analyse(view, name: path, budget: budget)
        analysis.findings += nameFindings(path: path, format: analysis.format)
        let target = ReportTarget(path: path, size: view.count, sha256: sha, format: analysis.format.rawValue)
        var report = Report(
            target: target, findings: analysis.findings, timings: [("staticMs", ms(since: started))],
            error: analysis.error)
        report.objectArrays = analysis.hints.objectArrays
        report.modules = analysis.hints.modules
        report.chatTemplate = analysis.hints.chatTemplate
        return report
    }

    /// Analyses bytes already in memory as `scan(file:)` analyses a file's content: the same sniffing, parsers and
    /// rules, without the name checks, the digest or timings. For the fuzzer (`Tests/Fuzz`) and embedders.
    public static func analyse(bytes view: ByteView, budget: ScanBudget = .standard) -> Report {
        let analysis = analyse(view, name: "<bytes>", budget: budget)
        let target = ReportTarget(path: "<bytes>", size: view.count, sha256: nil, format: analysis.format.rawValue)
        return Report(target: target, findings: analysis.findings, error: analysis.error)
    }

    /// Scans files and folders (recursively, in name order, `ModelWalk`); calls `report` once per file.
    public static func scan(paths: [String], budget: ScanBudget = .standard, report: (Report) -> Void) {
        ModelWalk.walk(paths: paths, examine: { scan(fd: $0, path: $1, budget: budget) }, report: report)
    }

    /// What one analysis found.
    struct Analysis {
        var format: FileFormat
        var findings: [Finding] = []
        var error: (code: String, message: String)? = nil
        /// What loading the file needs: the modules its pickles import, and whether a NumPy array holds Python
        /// objects (numpy unpickles them, so loading the file runs code).
        var hints = LoadHints()
    }

    static func analyse(_ view: ByteView, name: String, budget: ScanBudget) -> Analysis {
        var format = FormatDetector.sniff(view)
        var findings: [Finding] = []
        var hints = LoadHints()
        switch format {
        case .pickle, .pytorchLegacy:
            let report = PickleScanner.scan(view, budget: budget)
            hints.add(report)
            findings += PickleFindings.findings(report, member: nil, legacyTorch: format == .pytorchLegacy)
            if format == .pickle && report.imports.contains(where: { $0.module.hasPrefix("joblib.") }) {
                format = .joblib
            }
        case .zip:
            return ArchiveScanner.analyse(view, budget: budget)
        case .numpy:
            let numpy = NumPyFindings.findings(view, member: nil, budget: budget)
            findings += numpy.findings
            hints.merge(numpy.hints)
        case .safetensors:
            findings += SafetensorsParser.parse(view, budget: budget).observations.map(ObservationRules.finding)
        case .gguf:
            let gguf = GGUFParser.parse(view, budget: budget)
            findings += gguf.observations.map(ObservationRules.finding)
            findings += TemplateFindings.gguf(view, gguf)
            hints.chatTemplate = !gguf.chatTemplates.isEmpty
        case .hdf5:
            findings += KerasFindings.hdf5(view)
        case .onnx:
            findings += ONNXParser.parse(view, budget: budget).observations.map(ObservationRules.finding)
        case .unknown:
            if let kind = compression(view) {
                findings.append(
                    Finding(
                        rule: "format.compressed", severity: .medium,
                        message:
                            "a \(kind) stream: joblib (compress=…) and other loaders unpickle what such streams hold, and Airlock does not decompress it, so its content is not analysed",
                        evidence: Evidence(details: [("compression", kind)])
                    ))
            }
        case .json:
            findings += TemplateFindings.json(view, name: name)
        case .python:
            break
        case .pytorchZip, .joblib, .npz, .keras:
            break  // decided by refinement, never by sniffing
        }
        if format == .unknown || format == .json, TemplateFindings.isTemplateFile(name) {
            findings += TemplateFindings.file(view)
        }
        return Analysis(format: format, findings: findings, hints: hints)
    }

    /// The compression a stream starts with (zlib, gzip, bzip2, xz, lzma), if any.
    static func compression(_ view: ByteView) -> String? {
        guard let b0 = view.byte(at: 0), let b1 = view.byte(at: 1) else { return nil }
        if b0 == 0x1F && b1 == 0x8B { return "gzip" }
        if view.starts(with: Array("BZh".utf8)), let level = view.byte(at: 3), level >= 0x31 && level <= 0x39 {
            return "bzip2"
        }
        if view.starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return "xz" }
        if view.starts(with: [0x5D, 0x00, 0x00]) { return "lzma" }
        // zlib: deflate with a 32 KiB window or less, and the header check (CMF·256 + FLG divisible by 31).
        if b0 & 0x0F == 8 && b0 >> 4 <= 7 && (Int(b0) << 8 | Int(b1)) % 31 == 0 { return "zlib" }
        return nil
    }

    /// A name whose extension belongs to other formats than the content's, or to a model format when the content is
    /// none Airlock knows.
    static func nameFindings(path: String, format: FileFormat) -> [Finding] {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = base.lastIndex(of: "."), dot != base.startIndex else { return [] }
        let ext = base[base.index(after: dot)...].lowercased()
        guard !ext.isEmpty, format != .json, format != .python else { return [] }
        let known = Set(FileFormat.allCases.flatMap(\.usualExtensions)).subtracting(["json", "py"])
        if format == .unknown {
            // Extensions that only model formats use (not `.model`: sentencepiece's tokenizer.model is protobuf).
            let modelOnly: Set<String> = [
                "pt", "pth", "bin", "ckpt", "pkl", "pickle", "joblib", "sav", "npy", "npz",
                "safetensors", "gguf", "onnx", "ort", "keras", "h5", "hdf5",
            ]
            guard modelOnly.contains(ext) else { return [] }
            return [
                Finding(
                    rule: "format.unrecognised", severity: .medium,
                    message:
                        "the name says .\(ext), a model format, but the content is no format Airlock knows: not analysed",
                    evidence: Evidence(details: [("extension", ext)])
                )
            ]
        }
        guard known.contains(ext), !format.usualExtensions.contains(ext) else { return [] }
        return [
            Finding(
                rule: "format.name-mismatch", severity: .medium,
                message:
                    "the name says .\(ext) but the content is \(format.rawValue): a loader chosen by name would read it differently",
                evidence: Evidence(details: [("extension", ext), ("content", format.rawValue)])
            )
        ]
    }

    /// The monotonic clock in nanoseconds.
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Milliseconds since `start` (a `now()` reading).
    public static func ms(since start: UInt64) -> Double { Double(now() - start) / 1e6 }
}

/// Findings from a pickle scan: imports judged by `PickleRules`, calls attached as evidence, parser observations.
enum PickleFindings {
    static func findings(_ report: PickleReport, member: String?, legacyTorch: Bool = false, nestedAt: Int? = nil)
        -> [Finding]
    {
        var out: [Finding] = []
        var seen = Set<String>()
        let imported = Set(report.imports.map { "\($0.module).\($0.name)" })
        for g in report.imports {
            let full = "\(g.module).\(g.name)"
            guard seen.insert(full).inserted else { continue }
            var evidence = Evidence(offset: g.offset, member: member, global: full)
            if let call = report.calls.first(where: { $0.callee == full }) { evidence.args = call.args }
            if let nestedAt { evidence.details.append(("nestedPickleAt", String(nestedAt))) }
            switch PickleRules.classify(module: g.module, name: g.name) {
            case .safe:
                continue
            case .dangerous(let reason, let critical):
                out.append(
                    Finding(
                        rule: "pickle.dangerous-import", severity: critical ? .critical : .high,
                        message: "imports \(full): \(reason)", evidence: evidence
                    ))
            case .unknown:
                out.append(
                    Finding(
                        rule: "pickle.unknown-import", severity: .medium,
                        message: "imports \(full), which is on neither the allowlist nor the denylist",
                        evidence: evidence
                    ))
            }
        }
        // Callables resolved from getattr/import chains never appear as imports of their own.
        for call in report.calls
        where call.callee != "<unknown>" && !imported.contains(call.callee) && seen.insert(call.callee).inserted {
            guard let dot = call.callee.lastIndex(of: ".") else { continue }
            let module = String(call.callee[..<dot]), name = String(call.callee[call.callee.index(after: dot)...])
            if case .dangerous(let reason, let critical) = PickleRules.classify(module: module, name: name) {
                var evidence = Evidence(offset: call.offset, member: member, global: call.callee, args: call.args)
                if let nestedAt { evidence.details.append(("nestedPickleAt", String(nestedAt))) }
                out.append(
                    Finding(
                        rule: "pickle.dangerous-call", severity: critical ? .critical : .high,
                        message: "calls \(call.callee) (reached dynamically): \(reason)", evidence: evidence
                    ))
            }
        }
        for o in report.observations {
            var f = ObservationRules.finding(o)
            if f.evidence.member == nil { f.evidence.member = member }
            // Legacy PyTorch files carry their storages after the last pickle.
            if legacyTorch && o.kind == "pickle.trailing-data" { f.severity = .info }
            out.append(f)
        }
        for (nested, offset) in zip(report.nested, report.nestedOffsets) {
            out += findings(nested, member: member, nestedAt: offset)
        }
        return out
    }
}

/// NumPy arrays: the header, and the pickle an object array carries.
enum NumPyFindings {
    /// The findings, and whether the array holds Python objects (then numpy unpickles its data when loading it).
    static func findings(_ view: ByteView, member: String?, budget: ScanBudget) -> (
        findings: [Finding], hints: LoadHints
    ) {
        let report = NumPyParser.parse(view, budget: budget)
        var out = report.observations.map { o -> Finding in
            var f = ObservationRules.finding(o)
            if f.evidence.member == nil { f.evidence.member = member }
            return f
        }
        var hints = LoadHints()
        if let offset = report.pickleOffset, let data = view.suffix(from: offset) {
            let pickle = PickleScanner.scan(data, budget: budget, member: member)
            hints.add(pickle)
            out += PickleFindings.findings(pickle, member: member)
        }
        hints.objectArrays = report.pickleOffset != nil
        return (out, hints)
    }
}

/// What loading a file needs, gathered by the static analysis for the detonation (not part of the report's JSON):
/// the modules its pickles import, and whether a NumPy array holds Python objects.
struct LoadHints {
    /// Whether a NumPy array holds Python objects.
    var objectArrays = false
    /// Whether a GGUF file carries a chat template (rendered with Jinja by its consumers).
    var chatTemplate = false
    /// Modules imported by the file's pickles (`sklearn.ensemble._forest`), at most `maxModules`.
    var modules: Set<String> = []
    static let maxModules = 256

    mutating func add(_ report: PickleReport) {
        for g in report.imports where modules.count < LoadHints.maxModules { modules.insert(g.module) }
        for nested in report.nested { add(nested) }
    }

    mutating func merge(_ other: LoadHints) {
        objectArrays = objectArrays || other.objectArrays
        for m in other.modules where modules.count < LoadHints.maxModules { modules.insert(m) }
    }
}
