#if canImport(Glibc)
    import Glibc
#endif

/// What the SARIF log says about each rule id (`reportingDescriptor`): a short and a full description, help text and
/// markdown, a link into the rules reference (`docs/rules.md`, one anchor per rule id), GitHub's
/// `security-severity`, tags with the CWE that applies, and a precision.
///
/// Rule ids are `family.name`; most of what a rule means is its family's (`pickle`, `zip`, `dynamic`, …), so the
/// catalogue is one entry per family plus the few rules whose weakness differs from their family's. The rules
/// reference lists every rule id the code can emit; `SarifTests` checks both against the sources.
public enum SarifRules {
    /// One family of rule ids.
    public struct Family: Sendable {
        /// The id prefix before the first dot.
        public let prefix: String
        /// A title for people (`Pickle stream`).
        public let title: String
        /// What the family's findings mean and why they matter.
        public let description: String
        /// What to do about one.
        public let remedy: String
        /// CWE numbers that apply to every rule of the family.
        public let cwes: [Int]
        /// SARIF/GitHub precision: `very-high`, `high`, `medium` or `low`.
        public let precision: String
    }

    /// The default rules reference, a `file://` URI of a `rules.md` that exists: the one installed with this
    /// executable (`PREFIX/share/doc/airlock/rules.md` beside its `bin/`: `make install`, the Debian package) or the
    /// checkout's `docs/rules.md` it was built in; else where the Debian package puts it,
    /// `file:///usr/share/doc/airlock/rules.md`. The project has no public home to link to; `AIRLOCK_RULES_URL` names a
    /// published copy (an `https` URL) for code scanning in a browser.
    public static let defaultRulesURL: String = installedRulesURL() ?? "file:///usr/share/doc/airlock/rules.md"

    /// `rules.md` found from `/proc/self/exe` upwards (at most 5 levels), as a `file://` URI.
    static func installedRulesURL() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, Int(PATH_MAX))
        guard n > 0 else { return nil }
        var dir = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for _ in 0..<5 {
            guard let slash = dir.lastIndex(of: "/"), slash != dir.startIndex else { return nil }
            dir = String(dir[..<slash])
            for candidate in ["\(dir)/share/doc/airlock/rules.md", "\(dir)/docs/rules.md"]
            where access(candidate, R_OK) == 0 {
                let url = "file://" + percentEncoded(candidate)
                return isAbsoluteURL(url) ? url : nil
            }
        }
        return nil
    }

    /// A path with every byte but letters, digits and `- . _ ~ /` percent-encoded.
    static func percentEncoded(_ path: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in path.utf8 {
            let plain = (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || "-._~/".utf8.contains(b)
            out += plain ? [b] : [0x25, hex[Int(b >> 4)], hex[Int(b & 0xF)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The rules reference that `helpUri`s point at: `AIRLOCK_RULES_URL` when it is an absolute `http`, `https` or
    /// `file` URI without a fragment, otherwise `defaultRulesURL`.
    public static func rulesURL(environment: [String: String]) -> String {
        guard let value = environment["AIRLOCK_RULES_URL"], isAbsoluteURL(value) else { return defaultRulesURL }
        return value
    }

    /// Whether `s` is an absolute URI SARIF accepts as a `helpUri` base: a known scheme, at most 2000 bytes, only
    /// letters, digits and `- . _ ~ : / ? @ ! $ & ' + , ; = %` (no fragment, no spaces). The URL is written into each
    /// rule's `help.markdown` link: `( ) [ ] * < > \` ` and the like would end the link or add markup.
    static func isAbsoluteURL(_ s: String) -> Bool {
        let allowed = Set("-._~:/?@!$&'+,;=%".utf8)
        func plain(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || allowed.contains(b)
        }
        guard s.utf8.count <= 2000, s.utf8.allSatisfy(plain) else {
            return false
        }
        return ["https://", "http://", "file:///"].contains { s.hasPrefix($0) && s.utf8.count > $0.utf8.count }
    }

    /// GitHub's `security-severity` for a severity: critical 9.5, high 8.0, medium 5.5, low 2.0; info has none.
    public static func securitySeverity(_ s: Severity) -> String? {
        switch s {
        case .critical: "9.5"
        case .high: "8.0"
        case .medium: "5.5"
        case .low: "2.0"
        case .info: nil
        }
    }

    /// The family of `rule` (its prefix), nil for an id of no known family.
    public static func family(of rule: String) -> Family? {
        let prefix = rule.split(separator: ".", maxSplits: 1).first.map(String.init) ?? rule
        return families.first { $0.prefix == prefix }
    }

    /// The CWE numbers of `rule`: the rule's own when it has one, otherwise its family's.
    public static func cwes(of rule: String) -> [Int] {
        let name = rule.split(separator: ".", maxSplits: 1).last.map(String.init) ?? rule
        if let own = ruleCWEs[rule] { return own }
        if name == "path-traversal" || name.hasSuffix("-traversal") { return [22] }
        if name == "bomb" { return [409] }
        if name.contains("symlink") || name.hasPrefix("link-") { return [59] }
        return family(of: rule)?.cwes ?? []
    }

    /// The default severity of `rule` when the catalogue knows one (`ObservationRules`), else nil.
    public static func defaultSeverity(of rule: String) -> Severity? { ObservationRules.table[rule] }

    /// A short title: the family's title and the rule's name in words (`Pickle stream: dangerous import`).
    public static func title(of rule: String) -> String {
        let parts = rule.split(separator: ".", maxSplits: 1).map(String.init)
        let words = (parts.count > 1 ? parts[1] : rule).split(separator: "-").joined(separator: " ")
        return "\(family(of: rule)?.title ?? "Airlock"): \(words)"
    }

    /// Rules whose weakness is not their family's.
    static let ruleCWEs: [String: [Int]] = [
        "pickle.dangerous-import": [502, 94], "pickle.dangerous-call": [502, 94], "pickle.ext-code": [502],
        "keras.lambda": [502, 94], "keras.lambda-text": [502, 94], "keras.custom-object": [502, 829],
        "keras.dangerous-object": [502, 94], "keras.code-layer": [502, 94], "keras.pickle-member": [502],
        "hf.pickle-weights": [502], "numpy.object-dtype": [502], "torchscript.endless-loop": [835],
        "torchscript.huge-loop": [400], "template.resource-exhaustion": [400], "format.name-mismatch": [436],
        "format.polyglot": [436], "folder.name-lookalike": [1007], "folder.name-control": [1007],
        "folder.name-not-utf8": [176], "provenance.name-lookalike": [1007], "provenance.signature-invalid": [347],
        "provenance.signature-mismatch": [347], "dynamic.secrets": [506, 522], "dynamic.exfiltration": [506, 200],
        "hfcache.blob-mismatch": [345], "zip.duplicate-name": [436], "zip.duplicate-name-case": [436],
        "onnx.external-data-hardlink": [62], "onnx.custom-domain": [829],
    ]

    /// Every family, in the order of the rules reference.
    public static let families: [Family] = [
        Family(
            prefix: "pickle", title: "Pickle stream",
            description:
                "Python's pickle runs code while it loads: a GLOBAL or STACK_GLOBAL opcode imports any callable and REDUCE calls it. Airlock reads the opcodes without running them, judges every import against its allow and deny lists, and reports streams that Python's loaders would read differently from the scanner.",
            remedy:
                "Do not load the file with pickle, torch.load(weights_only=False) or joblib. Ask the publisher for safetensors, or load with torch.load(weights_only=True) where the import is a tensor type.",
            cwes: [502], precision: "high"),
        Family(
            prefix: "zip", title: "ZIP archive",
            description:
                "PyTorch checkpoints and Keras archives are ZIP files. Readers disagree about archives with duplicate names, local headers that contradict the central directory, shifted offsets or several end records: a scanner reading one member while PyTorch's miniz loads another is how pickles are smuggled past scanners.",
            remedy:
                "Re-save the model with its own library (torch.save) from a trusted environment, or obtain a copy whose archive every reader agrees on.",
            cwes: [436], precision: "high"),
        Family(
            prefix: "tar", title: "tar archive",
            description:
                "Legacy PyTorch checkpoints and packed model folders can be tar archives. Members outside the target folder, headers that readers interpret differently, and truncation mean the extracted files are not those examined.",
            remedy: "Extract nothing from the archive; obtain the model as plain files or safetensors.",
            cwes: [436], precision: "high"),
        Family(
            prefix: "7z", title: "7z archive",
            description:
                "Packed model folders in 7z archives: encrypted headers, CRC errors, unsupported methods and bombs leave files the scan could not read.",
            remedy: "Obtain the model as plain files; do not extract archives whose content was not analysed.",
            cwes: [20], precision: "high"),
        Family(
            prefix: "compressed", title: "Compressed stream",
            description:
                "gzip, bzip2, xz or zstd around a model file: Airlock decompresses within a budget and analyses what comes out. A bomb, corruption or nesting past the budget leaves bytes unanalysed.",
            remedy: "Decompress in a controlled place and scan the result, or obtain the uncompressed model.",
            cwes: [409], precision: "high"),
        Family(
            prefix: "safetensors", title: "safetensors file",
            description:
                "safetensors carries no code; these findings are structural problems in the JSON header or the data section (overlaps, gaps, bad offsets) that readers handle differently or that hide data.",
            remedy: "Re-save the tensors with the safetensors library; a writer never produces these.",
            cwes: [20], precision: "high"),
        Family(
            prefix: "gguf", title: "GGUF file",
            description:
                "Structural problems in a GGUF file (llama.cpp): counts past the file, overlapping or misaligned tensors, unknown types. Native readers have had memory-safety bugs on exactly such files.",
            remedy: "Re-convert the model with llama.cpp's tools from a trusted source.",
            cwes: [20], precision: "high"),
        Family(
            prefix: "numpy", title: "NumPy array",
            description:
                "A .npy/.npz header numpy would refuse or read differently; an object array is a pickle and is analysed as one.",
            remedy: "Load with numpy.load(allow_pickle=False); re-save arrays of plain numbers.",
            cwes: [20], precision: "high"),
        Family(
            prefix: "onnx", title: "ONNX model",
            description:
                "ONNX models can read external data from any path they name and call operators from custom domains, which need native libraries. Airlock checks every external-data reference against the model's folder.",
            remedy:
                "Keep external data inside the model's folder as regular files; refuse custom operator domains you did not install yourself.",
            cwes: [22], precision: "high"),
        Family(
            prefix: "torchscript", title: "TorchScript code",
            description:
                "A TorchScript archive holds code that torch.jit.load compiles and forward runs; operators that reach files or processes, and custom operators and classes from native libraries, run outside Python's reach.",
            remedy: "Load TorchScript only from publishers you trust, or export the weights to safetensors.",
            cwes: [94], precision: "high"),
        Family(
            prefix: "keras", title: "Keras model",
            description:
                "Keras configs can name Lambda layers (marshalled Python bytecode), custom objects imported from any module, and pickled members: each runs code when the model is loaded.",
            remedy:
                "Load with safe_mode=True and without custom_objects you did not write; prefer weights-only formats.",
            cwes: [502, 94], precision: "high"),
        Family(
            prefix: "template", title: "Chat template",
            description:
                "Chat templates are Jinja2. Rendered outside Jinja's sandbox (some loaders do), a template that reaches Python internals (__class__, __globals__, os) runs code; inside the sandbox such templates fail.",
            remedy:
                "Render templates only with Jinja's ImmutableSandboxedEnvironment, and replace a template that reaches special attributes.",
            cwes: [1336], precision: "medium"),
        Family(
            prefix: "format", title: "File format",
            description:
                "The name and the content disagree: a loader chosen by the extension reads the file in another way than the content says, or the content is in no format Airlock knows.",
            remedy: "Rename the file to its real format, or do not load it.",
            cwes: [436], precision: "high"),
        Family(
            prefix: "folder", title: "Model folder",
            description:
                "Links, special files, and names that hide their bytes (control characters, look-alike characters, invalid UTF-8) inside a model folder, and parts of a folder the walk's budget left out.",
            remedy: "Replace links by the files they name, rename files to plain names, and scan what was left out.",
            cwes: [59], precision: "high"),
        Family(
            prefix: "hf", title: "Hugging Face repository",
            description:
                "A repository whose config maps model classes to Python files (auto_map) runs that code when loaded with trust_remote_code=True; references outside the repository or to other repositories import code nobody examined.",
            remedy:
                "Load without trust_remote_code, or review the repository's Python files and pin the revision you reviewed.",
            cwes: [829, 94], precision: "high"),
        Family(
            prefix: "hfcache", title: "Hugging Face cache",
            description:
                "A Hugging Face hub cache whose links or blobs are not what huggingface_hub writes: a blob that does not match its name was changed after download; a link that leaves the cache reads another file.",
            remedy: "Delete the cache entry and download the model again.",
            cwes: [345], precision: "high"),
        Family(
            prefix: "provenance", title: "Provenance",
            description:
                "The files do not match the pinned manifest or signature: changed, missing or extra files, invalid signatures, untrusted sources.",
            remedy: "Obtain the model again from its source and check its manifest and signature.",
            cwes: [345], precision: "very-high"),
        Family(
            prefix: "dynamic", title: "Behaviour while loading",
            description:
                "What the model did when loaded with the consumer's real libraries in Airlock's sandbox: processes started, network use, files written outside its temporary folder, credentials read. The rule ids and severities come from the verdict policy (Profiles/policy.json).",
            remedy: "Do not load the model outside a sandbox; report it to its publisher or host.",
            cwes: [506], precision: "very-high"),
        Family(
            prefix: "probe", title: "Probe",
            description:
                "Notes about how a file was probed: detonated statically only, with a safe mode, or with fewer worlds than asked.",
            remedy: "Read the note: it says what the probe could not cover.",
            cwes: [], precision: "high"),
        Family(
            prefix: "pytorch", title: "PyTorch checkpoint",
            description: "A PyTorch checkpoint member that should be a pickle but is not recognised as one.",
            remedy: "Re-save the checkpoint with torch.save from a trusted environment.",
            cwes: [502], precision: "medium"),
        Family(
            prefix: "report", title: "Report",
            description:
                "About the report itself: more findings than one report lists (the most severe are kept, the rest are counted by rule). The verdict is that of all of them.",
            remedy: "Scan the file with --format json for the counts; the kept findings are the worst.", cwes: [],
            precision: "very-high"),
        Family(
            prefix: "intake", title: "Intake",
            description: "What airlock intake decided about a model as a whole (an empty model, for one).",
            remedy: "Check what was dropped into incoming/.", cwes: [], precision: "high"),
    ]
}
