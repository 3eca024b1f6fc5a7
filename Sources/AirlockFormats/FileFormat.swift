/// The formats Airlock recognises, decided from the content, never from the file name.
public enum FileFormat: String, Sendable, CaseIterable {
    case pickle
    /// PyTorch's `torch.save` ZIP layout (`<name>/data.pkl`, `<name>/data/<storage>`).
    case pytorchZip = "pytorch-zip"
    /// PyTorch's pre-1.6 format: a magic-number pickle, then protocol, system info, the object, storage keys.
    case pytorchLegacy = "pytorch-legacy"
    case joblib
    case numpy
    /// A ZIP of `.npy` members (`numpy.savez`).
    case npz
    case safetensors
    case onnx
    /// Keras v3 `.keras`: a ZIP with `config.json`, `metadata.json`, `model.weights.h5`.
    case keras
    case hdf5
    case gguf
    /// A ZIP that is none of the above.
    case zip
    /// A tar archive (ustar, pax, GNU): pandas' `compression="tar"`, `.tar.gz` model bundles.
    case tar
    /// A 7z archive.
    case sevenZip = "7z"
    /// Python source (`*.py` in a model folder).
    case python
    /// JSON (`config.json`, tokenizer files).
    case json
    /// Text or bytes Airlock does not parse.
    case unknown

    /// The file name extensions that usually carry this format (used only to notice names that lie).
    public var usualExtensions: [String] {
        switch self {
        case .pickle: ["pkl", "pickle", "p", "bin", "pt", "pth", "ckpt", "joblib", "sav", "dat"]
        case .pytorchZip, .pytorchLegacy: ["pt", "pth", "bin", "ckpt", "pkl", "tar", "model"]
        case .joblib: ["joblib", "pkl", "pickle", "z", "gz", "sav"]
        case .numpy: ["npy"]
        case .npz: ["npz"]
        case .safetensors: ["safetensors"]
        case .onnx: ["onnx", "ort"]
        case .keras: ["keras"]
        case .hdf5: ["h5", "hdf5", "keras", "hdf"]
        case .gguf: ["gguf"]
        case .zip: ["zip", "pt", "pth", "bin", "ckpt", "npz", "keras", "mar"]
        case .tar: ["tar", "tgz", "gz", "xz", "bz2", "zst"]
        case .sevenZip: ["7z"]
        case .python: ["py"]
        case .json: ["json"]
        case .unknown: []
        }
    }

    /// Whether loading this format can run code (and so is worth a detonation).
    public var canRunCode: Bool {
        switch self {
        // torch.load reads the oldest PyTorch format, a tar whose `pickle` member it unpickles.
        case .pickle, .pytorchZip, .pytorchLegacy, .joblib, .numpy, .npz, .keras, .zip, .python, .tar: true
        case .sevenZip: false
        case .safetensors, .onnx, .hdf5, .gguf, .json, .unknown: false
        }
    }
}

/// Content sniffing: cheap checks of magic numbers and structure. ZIP-based formats are told apart later, from the
/// member names (`FormatDetector.refine`).
public enum FormatDetector {
    /// `pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)`: the magic number that opens a legacy PyTorch file.
    static let legacyTorchMagic: [UInt8] = [
        0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E,
    ]

    /// The format of `view` from its first bytes (and its last, for ZIP archives with data in front).
    public static func sniff(_ view: ByteView) -> FileFormat {
        // torch.load treats a file as ZIP only when it starts with a local header; anything else that ends in a
        // central directory is still a ZIP to us (and a prefix-data finding).
        if view.starts(with: [0x50, 0x4B, 0x03, 0x04]) || view.starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .zip }
        if view.starts(with: legacyTorchMagic) { return .pytorchLegacy }
        if NumPyParser.looks(view) { return .numpy }
        if GGUFParser.looks(view) { return .gguf }
        if view.starts(with: [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return .hdf5 }
        if view.starts(with: SevenZipArchive.signature) { return .sevenZip }
        if TarArchive.looks(view) { return .tar }
        if SafetensorsParser.looks(view) { return .safetensors }
        // Before pickles: protobuf skips unknown fields, so an ONNX model can open with bytes that look like a
        // pickle's, and onnx.load still reads it as a model.
        if ONNXStructure.looks(view) { return .onnx }
        if PickleDetector.looksLikePickle(view) { return .pickle }
        if ZipDetector.looksLikeZip(view) { return .zip }
        if looksLikeJSON(view) { return .json }
        return .unknown
    }

    /// A ZIP refined by its member names.
    public static func refine(zipMembers names: [String]) -> FileFormat {
        if names.contains(where: { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") }) { return .pytorchZip }
        if names.contains("config.json")
            && names.contains(where: { $0.hasSuffix(".weights.h5") || $0 == "metadata.json" })
        {
            return .keras
        }
        if !names.isEmpty && names.allSatisfy({ $0.hasSuffix(".npy") }) { return .npz }
        return .zip
    }

    static func looksLikeJSON(_ view: ByteView) -> Bool {
        var i = 0
        while let b = view.byte(at: i), b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09, i < 256 { i += 1 }
        return view.byte(at: i) == UInt8(ascii: "{") || view.byte(at: i) == UInt8(ascii: "[")
    }
}
