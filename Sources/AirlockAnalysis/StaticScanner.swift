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
        guard let deadline = budget.deadline else {
            return examine(fd: fd, path: path, budget: budget, started: started)
        }
        if let stop = deadline.stopped() { return stopped(stop, deadline, path: path, started: started) }
        // The decompressors have no budget to carry the deadline: they find it bound to the thread.
        var report = ScanDeadline.$current.withValue(deadline) {
            examine(fd: fd, path: path, budget: budget, started: started)
        }
        // Work that a check stopped is an error, whatever part of the file was seen: never `clean`. Only high and
        // critical findings are kept (what the bytes read showed); lesser ones may be the stop's own doing (a
        // decompression cut short reads as a corrupt stream).
        if let stop = deadline.interrupted, report.error?.code != stop.rawValue {
            let partial = report
            report = stopped(stop, deadline, path: path, started: started)
            report.target = partial.target
            report.target.sha256 = nil
            report.add(partial.findings.filter { $0.severity >= .high })
        }
        return report
    }

    /// The report of work stopped by its `ScanDeadline`: verdict `error`, error code `timeout` or `cancelled`.
    static func stopped(
        _ stop: ScanDeadline.Stop, _ deadline: ScanDeadline, path: String, size: Int = 0, started: UInt64
    ) -> Report {
        let target = ReportTarget(path: path, size: size, sha256: nil, format: FileFormat.unknown.rawValue)
        return Report(
            target: target, findings: [], timings: [("staticMs", ms(since: started))],
            error: (stop.rawValue, deadline.message(stop, what: "the static analysis of \(path)")))
    }

    static func examine(fd: Int32, path: String, budget: ScanBudget, started: UInt64) -> Report {
        let view: ByteView
        do {
            view = try ByteView.map(fd: fd, name: path)
        } catch {
            let target = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(
                target: target, findings: [], timings: [("staticMs", ms(since: started))],
                error: ("io", error.description))
        }
        let sha: String
        if let deadline = budget.deadline {
            guard let digest = FileDigest.sha256(view, fd: fd, deadline: deadline) else {
                return stopped(
                    deadline.interrupted ?? .timeout, deadline, path: path, size: view.count, started: started)
            }
            sha = digest
        } else {
            sha = FileDigest.sha256(view, fd: fd)
        }
        var analysis = analyse(view, name: path, budget: budget)
        analysis.findings += nameFindings(
            path: path, format: analysis.format, compressed: !analysis.compression.isEmpty)
        var target = ReportTarget(path: path, size: view.count, sha256: sha, format: analysis.format.rawValue)
        target.compression = analysis.compression.isEmpty ? nil : analysis.compression.joined(separator: "+")
        var report = Report(
            target: target, findings: analysis.findings, timings: [("staticMs", ms(since: started))],
            error: analysis.error)
        report.objectArrays = analysis.hints.objectArrays
        report.modules = analysis.hints.modules
        report.externalData = analysis.externalData
        report.chatTemplate = analysis.hints.chatTemplate
        report.kerasModel = analysis.hints.kerasModel
        report.kerasArchive = analysis.hints.kerasArchive
        return report
    }

    /// Analyses bytes already in memory as `scan(file:)` analyses a file's content: the same sniffing, parsers and
    /// rules, without the name checks, the digest or timings. For the fuzzer (`Tests/Fuzz`) and embedders.
    public static func analyse(bytes view: ByteView, budget: ScanBudget = .standard) -> Report {
        let analysis = analyse(view, name: "<bytes>", budget: budget)
        var target = ReportTarget(path: "<bytes>", size: view.count, sha256: nil, format: analysis.format.rawValue)
        target.compression = analysis.compression.isEmpty ? nil : analysis.compression.joined(separator: "+")
        return Report(target: target, findings: analysis.findings, error: analysis.error)
    }

    /// Scans files and folders (recursively, in name order, `ModelWalk`); calls `report` once per file, and once for
    /// what a folder's budget (`folderBudget`) left out.
    public static func scan(
        paths: [String], budget: ScanBudget = .standard, folderBudget: FolderBudget = .local,
        report: (Report) -> Void
    ) {
        ModelWalk.walk(
            paths: paths, examine: { scan(fd: $0, path: $1, budget: budget) }, budget: folderBudget, report: report)
    }

    /// What one analysis found.
    struct Analysis {
        var format: FileFormat
        var findings: [Finding] = []
        var error: (code: String, message: String)? = nil
        /// What loading the file needs: the modules its pickles import, and whether a NumPy array holds Python
        /// objects (numpy unpickles them, so loading the file runs code).
        var hints = LoadHints()
        /// The compressions around the content, outermost first (`gzip`, `xz`): empty for a file read as it is.
        var compression: [String] = []
        /// ONNX external data, for the folder checks (`ONNXExternalFiles`).
        var externalData: [ONNXExternalReference] = []
    }

    /// Analyses `view` as a file's content; `depth` counts the compressions and archives around it (nested ones
    /// stop at `budget.maxNesting`).
    static func analyse(_ view: ByteView, name: String, budget: ScanBudget, depth: Int = 0) -> Analysis {
        var format = FormatDetector.sniff(view)
        var findings: [Finding] = []
        var hints = LoadHints()
        var externalData: [ONNXExternalReference] = []
        switch format {
        case .pickle, .pytorchLegacy:
            // A plain pickle may be a joblib.dump file: read it as joblib's NumpyUnpickler does (raw array bytes
            // after each NumpyArrayWrapper); legacy PyTorch files are read by pickle.load.
            // torch.load reads five pickles from a legacy file, whose magic number can be spelled many ways (so a
            // plain pickle may be one): the first five are read whatever their first bytes look like.
            let report = PickleScanner.scan(view, budget: budget, joblib: format == .pickle, streams: 5)
            hints.add(report)
            findings += PickleFindings.findings(report, member: nil, legacyTorch: format == .pytorchLegacy)
            if format == .pickle && report.imports.contains(where: { $0.module.hasPrefix("joblib.") }) {
                format = .joblib
            }
        case .zip:
            return ArchiveScanner.analyse(view, budget: budget, depth: depth)
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
            hints.kerasModel = KerasFindings.contains(view, Array("model_config".utf8))
            findings += hdf5Polyglot(view, budget: budget, hints: &hints)
        case .onnx:
            let onnx = ONNXParser.parse(view, budget: budget)
            findings += onnx.observations.map(ObservationRules.finding)
            externalData = onnx.externalReferences
            findings += polyglot(view, budget: budget, hints: &hints)
        case .unknown:
            if let kind = Compression.detect(view) {
                return CompressedScanner.analyse(view, kind: kind, name: name, budget: budget, depth: depth)
            }
        case .tar:
            var tar =
                depth + 1 < budget.maxNesting || depth == 0
                ? PackedArchiveScanner.tar(view, budget: budget, depth: depth) : tooDeep(.tar, budget)
            // A tar header opens with the first member's name, which can be a protocol 0 pickle: pickle.load and
            // torch.load read that, so it is read as one too.
            if PickleDetector.looksLikePickle(view) {
                let report = PickleScanner.scan(view, budget: budget)
                tar.hints.add(report)
                tar.findings += PickleFindings.findings(report, member: nil).filter {
                    $0.rule != "pickle.trailing-data"
                }
            }
            return tar
        case .sevenZip:
            return depth + 1 < budget.maxNesting || depth == 0
                ? PackedArchiveScanner.sevenZip(view, budget: budget, depth: depth) : tooDeep(.sevenZip, budget)
        case .json:
            // `[` is also an lzma header's properties byte (lc=1, pb=2): Python's lzma.open reads it as one.
            if Compression.detect(view) == .lzma {
                let packed = CompressedScanner.analyse(view, kind: .lzma, name: name, budget: budget, depth: depth)
                if packed.format != .unknown || !packed.compression.isEmpty { return packed }
            }
            findings += TemplateFindings.json(view, name: name)
        case .python:
            break
        case .pytorchZip, .joblib, .npz, .keras:
            break  // decided by refinement, never by sniffing
        }
        // Formats sniffed before ONNX whose bytes onnx.load may still read as a model (protobuf skips what it does not
        // know): a valid safetensors header can open an ONNX model's unknown field.
        if [.numpy, .safetensors, .gguf, .hdf5].contains(format), ONNXStructure.looks(view) {
            let onnx = ONNXParser.parse(view, budget: budget)
            findings += onnx.observations.map(ObservationRules.finding)
            externalData = onnx.externalReferences
            findings.append(
                Finding(
                    rule: "format.polyglot", severity: .high,
                    message:
                        "a \(format.rawValue) file that is also an ONNX model to onnx.load (protobuf skips what it does not know): both readings were analysed",
                    evidence: Evidence(details: [("alsoReadAs", "an ONNX model")])))
        }
        if format == .unknown || format == .json, TemplateFindings.isTemplateFile(name) {
            findings += TemplateFindings.file(view)
        }
        return Analysis(format: format, findings: findings, hints: hints, externalData: externalData)
    }

    /// An ONNX model that other loaders read as something else: protobuf skips unknown fields, so bytes that open like
    /// a pickle or end in a ZIP's central directory (in an unknown field) leave `onnx.load` undisturbed while
    /// `pickle.load` or `zipfile` read them. Each reading is analysed, and the file is said to be both.
    static func polyglot(_ view: ByteView, budget: ScanBudget, hints: inout LoadHints) -> [Finding] {
        var out: [Finding] = []
        var readers: [String] = []
        if PickleDetector.looksLikePickle(view) {
            readers.append("a pickle")
            let report = PickleScanner.scan(view, budget: budget)
            hints.add(report)
            out += PickleFindings.findings(report, member: nil)
        }
        if ZipDetector.looksLikeZip(view) {
            readers.append("a ZIP archive")
            out += ArchiveScanner.analyse(view, budget: budget).findings
        }
        guard !readers.isEmpty else { return [] }
        out.append(
            Finding(
                rule: "format.polyglot", severity: .high,
                message:
                    "an ONNX model that is also \(readers.joined(separator: " and ")) to other loaders: each reading was analysed",
                evidence: Evidence(details: readers.map { ("alsoReadAs", $0) })))
        return out
    }

    /// An HDF5 file that is also a ZIP archive (bytes appended after the HDF5 data, with the central directory at the
    /// end): h5py reads the HDF5 file, while `keras.saving.load_model` reads a `.keras` name as the ZIP (it asks
    /// `zipfile.is_zipfile` first). The ZIP is analysed too, and a Keras archive in it is what the probe detonates
    /// (`kerasArchive`): the HDF5 reading alone would hide a Lambda in a compressed `config.json`.
    static func hdf5Polyglot(_ view: ByteView, budget: ScanBudget, hints: inout LoadHints) -> [Finding] {
        guard ZipDetector.looksLikeZip(view) else { return [] }
        let zip = ArchiveScanner.analyse(view, budget: budget)
        hints.merge(zip.hints)
        hints.kerasArchive = zip.format == .keras
        return zip.findings + [
            Finding(
                rule: "format.polyglot", severity: .high,
                message:
                    "an HDF5 file that is also a ZIP archive\(zip.format == .keras ? " holding a Keras model" : ""): h5py reads one, keras.saving.load_model reads a .keras name as the other; both were analysed",
                evidence: Evidence(details: [("alsoReadAs", "a ZIP archive (\(zip.format.rawValue))")]))
        ]
    }

    /// A name whose extension belongs to other formats than the content's, or to a model format when the content is
    /// none Airlock knows.
    static func nameFindings(path: String, format: FileFormat, compressed: Bool = false) -> [Finding] {
        var base = path.split(separator: "/").last.map(String.init) ?? path
        // `model.pkl.gz`: the name of the content is what is left without the compression's own extension.
        while compressed, let dot = base.lastIndex(of: "."),
            compressionExtensions.contains(base[base.index(after: dot)...].lowercased())
        {
            base = String(base[..<dot])
        }
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

    /// An archive nested deeper than the budget allows: named, not opened.
    static func tooDeep(_ format: FileFormat, _ budget: ScanBudget) -> Analysis {
        Analysis(
            format: format,
            findings: [
                Finding(
                    rule: "zip.nested-too-deep", severity: .medium,
                    message: "a \(format.rawValue) archive nested deeper than \(budget.maxNesting) levels: not opened")
            ])
    }

    /// Extensions of compressed streams (pandas infers its compression from them; joblib writes `.z`, `.gz`, …).
    static let compressionExtensions: Set<String> = [
        "gz", "gzip", "bz2", "xz", "lzma", "zst", "zstd", "lz4", "z", "zlib",
    ]

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
            guard call.callee.contains(".") else { continue }
            if case .dangerous(let reason, let critical) = PickleRules.classify(callee: call.callee) {
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
            // Legacy PyTorch files carry their storages after the fifth pickle (torch.load reads five); data that
            // follows fewer pickles is not storage bytes and keeps its severity.
            if legacyTorch && o.kind == "pickle.trailing-data",
                let after = o.evidence.details.first(where: { $0.0 == "afterStreams" }).flatMap({ Int($0.1) }),
                after >= 5
            {
                f.severity = .info
            }
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
    /// Whether an HDF5 file names a Keras model config (the `model_config` attribute keras' load_model reads).
    var kerasModel = false
    /// Whether an HDF5 file is also a ZIP archive holding a Keras model (`StaticScanner.hdf5Polyglot`).
    var kerasArchive = false
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
