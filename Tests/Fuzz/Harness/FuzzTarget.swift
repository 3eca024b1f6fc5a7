import AirlockAnalysis
import AirlockFormats
import AirlockJSON
import AirlockProvenance

/// One parser entry point driven by the fuzzer or the corpus replayer. Every run must return: a trap, an ASan report
/// or a hang is a bug in the parser, never in the input.
enum FuzzTarget: String, CaseIterable, Sendable {
    case pickle
    case zip
    case safetensors
    case numpy
    case gguf
    case onnx
    case json
    /// `FormatDetector.sniff` plus the whole static analysis, as `airlock scan` runs it on a file's content.
    case format
    /// A model-signing bundle (attacker-controlled: it travels inside the model folder) verified with a fixed key.
    case signature
    /// A manifest read strictly.
    case manifest

    /// The P-256 public key the `signature` target verifies with (Tests/Fixtures/model-signing/
    /// key.pub, which signed the corpus's seed bundles), so that inputs near a valid bundle reach past the signature.
    static let signingKey = Array(
        """
        -----BEGIN PUBLIC KEY-----
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDXNXy0wVSPvIoOvGVHlG0OMK/LbI
        DVCFbasUi+4qzpDEuVSnklKf9e0XMqadSqyUD5rbJ0lMd5vZgMjNcsMsRA==
        -----END PUBLIC KEY-----

        """.utf8)

    /// Most bytes one ZIP member may inflate to in the `zip` target: enough to reach every code path, small enough
    /// that a bomb costs microseconds.
    static let zipMemberLimit = 64 << 10

    /// The standard budget, but members inflate to at most 16 MiB (the standard 256 MiB would spend the fuzzer's time
    /// in zlib; a 64 KiB input inflates to 66 MB at most anyway).
    static let budget: ScanBudget = {
        var budget = ScanBudget.standard
        budget.maxInflatedBytes = 16 << 20
        return budget
    }()

    /// A budget small enough that most inputs hit one of its bounds: the code that stops a scan early is fuzzed too.
    static let tightBudget = ScanBudget(
        maxOperations: 200, maxHeldBytes: 4096, maxEntries: 16, maxNesting: 1,
        maxInflatedBytes: 4096)

    /// Runs the target's parser over `bytes`, with `budget` then `tightBudget`, and returns a number derived from the
    /// results, so that nothing is optimised away.
    @discardableResult
    func run(_ bytes: [UInt8]) -> Int {
        let view = ByteView(bytes)
        return run(view, bytes, budget: Self.budget) &+ run(view, bytes, budget: Self.tightBudget)
    }

    private func run(_ view: ByteView, _ bytes: [UInt8], budget: ScanBudget) -> Int {
        switch self {
        case .pickle:
            let report = PickleScanner.scan(view, budget: budget)
            return report.imports.count &+ report.calls.count &+ report.observations.count &+ report.nested.count
        case .zip:
            return Self.runZip(view, budget: budget)
        case .safetensors:
            return SafetensorsParser.parse(view, budget: budget).observations.count
        case .numpy:
            let report = NumPyParser.parse(view, budget: budget)
            var n = report.observations.count
            if let offset = report.pickleOffset, let data = view.suffix(from: offset) {
                n &+= PickleScanner.scan(data, budget: budget).imports.count
            }
            return n
        case .gguf:
            let report = GGUFParser.parse(view, budget: budget)
            return report.tensors.count &+ report.observations.count
        case .onnx:
            let report = ONNXParser.parse(view, budget: budget)
            return report.nodes &+ report.observations.count
        case .json:
            guard let value = try? JSON.parse(bytes, maxDepth: budget.maxNesting == 1 ? 4 : 64) else { return 0 }
            // The writer must accept whatever the reader produced, and read back what it wrote.
            let text = value.serialized()
            guard (try? JSON.parse(Array(text.utf8))) == value else { fatalError("JSON does not round-trip: \(text)") }
            return text.utf8.count
        case .format:
            let format = FormatDetector.sniff(view)
            let report = StaticScanner.analyse(bytes: view, budget: budget)
            return format.rawValue.utf8.count &+ report.findings.count &+ report.text().utf8.count
        case .signature:
            guard budget.maxNesting != 1 else { return 0 }  // one run per input is enough: no budget applies
            do {
                return try ModelSigning.verify(bundle: bytes, publicKeyPEM: Self.signingKey).resources.count
            } catch {
                return error.message.utf8.count
            }
        case .manifest:
            guard budget.maxNesting != 1 else { return 0 }
            do {
                let manifest = try Manifest.parse(bytes, name: "fuzz")
                // What the writer makes of it must read back the same.
                guard (try? Manifest.parse(Array(manifest.json.pretty().utf8), name: "fuzz")) == manifest else {
                    fatalError("a manifest does not round-trip")
                }
                return manifest.files.count
            } catch {
                return error.message.utf8.count
            }
        }
    }

    /// Reads the archive, then looks up and extracts every member (both readers' views) with a small limit.
    static func runZip(_ view: ByteView, budget: ScanBudget) -> Int {
        guard let archive = try? ZipArchive.read(view, budget: budget) else { return 0 }
        var n = archive.observations.count
        for entry in archive.entries + archive.hiddenEntries {
            if let extraction = try? archive.extractChecked(entry, from: view, limit: zipMemberLimit) {
                n &+= extraction.data.count
            }
            n &+= archive.minizIndex(of: entry.nameBytes) ?? 0
            n &+= archive.pythonEntry(named: entry.name)?.index ?? 0
        }
        n &+= archive.verifyAll(view: view, limit: zipMemberLimit).count
        return n
    }
}
