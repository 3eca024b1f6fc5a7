public import AirlockAnalysis
public import AirlockSandbox
internal import AirlockFormats
internal import AirlockSystem

/// An ONNX model detonated as its consumer loads it: `onnx.load(path, load_external_data=True)`, then an
/// onnxruntime session and one run on zero inputs, with whichever of the two the consumer's Python has, from a
/// private folder of the sandbox's `/tmp` where the model sits under its own name beside the external files of its
/// folder (`ONNXFolderPack`). Standard ONNX operators cannot run code or touch files; what a load can do is read
/// the files its external data names, which the supervisor sees.
public enum ONNXDetonation {
    /// The rule of the info finding that says how the model was loaded and what of its folder was passed.
    public static let detonatedRule = "probe.onnx"
    /// The libraries that load an ONNX model.
    static let loaders = ["onnx", "onnxruntime"]

    /// Whether the consumer's Python has a library that loads ONNX models.
    public static func hasRuntime(_ options: ProbeOptions) -> Bool {
        loaders.contains { options.runtime?.distribution(of: $0) != nil }
    }

    /// Detonates the ONNX model open as `fd` (named `path`; `report` is its static report, with its external
    /// references). The folder comes from the walk (`ModelFolder.current`); without one nothing beside the model
    /// is passed.
    public static func run(
        fd: Int32, path: String, report: Report, plan: ConsumerPlan, options: ProbeOptions
    ) throws(SandboxError) -> (detonation: Detonation, note: Finding) {
        let folder = ModelFolder.current
        var packed = ONNXFolderPack()
        if let folder, !report.externalData.isEmpty {
            var failure: SandboxError?
            let read = {
                do throws(SandboxError) {
                    packed = try ONNXFolderPack.read(report.externalData, folder: folder)
                } catch {
                    failure = error
                }
            }
            if let reading = ModelFolder.reading { reading.run(read) } else { read() }
            if let failure { throw failure }
        }
        defer { packed.memory?.close() }
        let name = modelName(folder?.name ?? Array((path.split(separator: "/").last ?? "").utf8))
        let detonation = try Detonation.run(
            fd: fd, format: .onnx, plan: plan, options: options, folder: packed.memory, name: name)
        return (detonation, note(packed, name: name, options: options, references: report.externalData.count))
    }

    /// The info finding of an ONNX model with external data probed without its folder: not detonated.
    static func withoutFolder() -> Finding {
        Finding(
            rule: "probe.static-only", severity: .info,
            message:
                "ONNX model with external data, given without its folder: loading it would fail for want of those files, so the static analysis is the whole answer",
            evidence: Evidence(details: [("format", "onnx")]))
    }

    /// The model's file name in the sandbox: its own when plain (ASCII letters, digits, `_`, `-`, `.`, not first,
    /// at most 128 bytes), else `model.onnx`.
    static func modelName(_ bytes: [UInt8]) -> String {
        guard let first = bytes.first, bytes.count <= 128, first != UInt8(ascii: "."), first != UInt8(ascii: "-"),
            bytes.allSatisfy({ b in
                (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
                    || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
            })
        else { return "model.onnx" }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func note(_ pack: ONNXFolderPack, name: String, options: ProbeOptions, references: Int) -> Finding {
        let versions = loaders.compactMap { lib in options.runtime?.distribution(of: lib).map { "\(lib) \($0.version)" }
        }
        var message =
            "loaded as \(name) with \(versions.joined(separator: " and ")) in a private folder of the sandbox: "
            + "onnx.load(load_external_data=True), an onnxruntime session and one run on zero inputs where installed"
        var details: [(String, String)] = [("loaders", versions.joined(separator: ", "))]
        if references > 0 {
            message +=
                "; \(pack.files.count) external file(s) of its folder passed in; locations outside it were left to the loader to try (the trace shows the reads)"
            details.append(("packed", String(pack.files.count)))
            for (file, reason) in pack.left.prefix(8) {
                message += "; \(file) not passed (\(reason))"
                details.append(("notPassed:" + file, reason))
            }
        }
        return Finding(
            rule: detonatedRule, severity: .info, source: .dynamic, message: message,
            evidence: Evidence(details: details))
    }
}
