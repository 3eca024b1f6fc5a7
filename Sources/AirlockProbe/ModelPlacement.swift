public import AirlockSandbox
public import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// The model at a path, as its consumer opens it (`torch.load("~/models/NAME")`): a descriptor's link says
/// `/home/USER/models/NAME`, not `/memfd:…`.
///
/// The bytes are the sealed copy's (`ModelSeal`): read from that descriptor, never from the host path again, and
/// written during set-up as a new file of the sandbox's own `~/models` (`MountSpec.file`), whose file system is the
/// sandbox's. The model's descriptor is then not passed at all. Only for the formats whose loader opens a file
/// (pickles, PyTorch, NumPy), and for models up to `limit`; others keep
/// the descriptor (docs/probe.md, "The detonation world").
enum ModelPlacement {
    /// The largest model placed (a quarter of the default profile's `/tmp`, the home without a world); larger ones,
    /// and any whose file does not fit at set-up (`Detonation.run` retries), keep the descriptor.
    static let limit: UInt64 = 16 << 20
    /// The formats whose loader takes a path.
    static let formats: Set<HarnessFormat> = [.pickle, .joblib, .pytorchZip, .pytorchLegacy, .numpy, .npz]

    /// The file name in `~/models`: the model's own when it is a plain one (ASCII letters, digits, `-`, `_`, `.`,
    /// not first, at most 100 bytes), else `model` with the format's usual extension.
    static func fileName(_ name: String?, format: HarnessFormat) -> String {
        if let name, !name.isEmpty, name.utf8.count <= 100, name.first != ".",
            name.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x2d
                    || $0 == 0x5f || $0 == 0x2e
            })
        {
            return name
        }
        switch format {
        case .pytorchZip, .pytorchLegacy: return "model.pt"
        case .joblib: return "model.joblib"
        case .numpy: return "model.npy"
        case .npz: return "model.npz"
        default: return "model.pkl"
        }
    }

    /// The path and the file mount that place the model open as `sealed` at `home/models/NAME`; nil when it is not
    /// to be placed (another format, or larger than the sealed copy's limit) or cannot be read whole.
    static func place(
        _ sealed: FileDescriptor, format: HarnessFormat, name: String?, home: String
    ) throws(SandboxError) -> (path: String, mount: MountSpec)? {
        guard formats.contains(format), home.hasPrefix("/") else { return nil }
        var st = stat()
        guard fstat(sealed.rawValue, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 0,
            UInt64(st.st_size) <= limit
        else { return nil }
        let size = Int(st.st_size)
        guard let bytes = FileSystem.readPrefix(sealed.rawValue, upTo: size + 1), bytes.count == size else {
            return nil
        }
        let base = home == "/" ? "" : home
        let path = "\(base)/models/\(fileName(name, format: format))"
        return (path, try MountSpec.file(sandbox: path, bytes: bytes, mode: 0o444))
    }
}
