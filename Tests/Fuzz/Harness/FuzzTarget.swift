import AirlockAnalysis
import AirlockFormats
import AirlockJSON

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

    /// Most bytes one ZIP member may inflate to here: enough to reach every code path, small enough that a bomb
    /// costs milliseconds rather than the production budget's 256 MiB.
    static let zipMemberLimit = 1 << 20

    /// Runs the target's parser over `bytes` and returns a number derived from the result, so that nothing is
    /// optimised away.
    @discardableResult
    func run(_ bytes: [UInt8]) -> Int {
        let view = ByteView(bytes)
        switch self {
        case .pickle:
            let report = PickleScanner.scan(view)
            return report.imports.count &+ report.calls.count &+ report.observations.count &+ report.nested.count
        case .zip:
            return Self.runZip(view)
        case .safetensors:
            return SafetensorsParser.parse(view).observations.count
        case .numpy:
            let report = NumPyParser.parse(view)
            var n = report.observations.count
            if let offset = report.pickleOffset, let data = view.suffix(from: offset) {
                n &+= PickleScanner.scan(data).imports.count
            }
            return n
        case .gguf:
            let report = GGUFParser.parse(view)
            return report.tensors.count &+ report.observations.count
        case .onnx:
            let report = ONNXParser.parse(view)
            return report.nodes &+ report.observations.count
        case .json:
            guard let value = try? JSON.parse(bytes) else { return 0 }
            // The writer must accept whatever the reader produced, and read back what it wrote.
            let text = value.serialized()
            guard (try? JSON.parse(Array(text.utf8))) == value else { fatalError("JSON does not round-trip: \(text)") }
            return text.utf8.count
        case .format:
            let format = FormatDetector.sniff(view)
            let report = StaticScanner.analyse(bytes: view)
            return format.rawValue.utf8.count &+ report.findings.count &+ report.text().utf8.count
        }
    }

    /// Reads the archive, then looks up and extracts every member (both readers' views) with a small limit.
    static func runZip(_ view: ByteView) -> Int {
        guard let archive = try? ZipArchive.read(view) else { return 0 }
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
