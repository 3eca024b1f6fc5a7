public import AirlockFormats

/// The format of a file from its content alone, cheaply: magic numbers, and for ZIP archives the member names of the
/// central directory. No pickle is run through the symbolic machine, so a joblib file is `pickle` here (the scanner
/// tells joblib apart by what the pickle imports).
///
/// Manifests record and check this format; it is the same for the same bytes on every run.
public enum FormatIdentity {
    /// The format of `view`, the content of the file `name`. Python source has no magic number: a `*.py` file whose
    /// content is nothing else is `python`, as the folder scan treats it (trust_remote_code imports it by that name).
    public static func identify(_ view: ByteView, name: String) -> FileFormat {
        let sniffed = FormatDetector.sniff(view)
        if sniffed == .unknown && name.hasSuffix(".py") { return .python }
        guard sniffed == .zip else { return sniffed }
        guard let archive = try? ZipArchive.read(view, budget: .standard) else { return .zip }
        return FormatDetector.refine(zipMembers: archive.entries.map(\.name))
    }

    /// Formats whose loading runs code no matter what (pickle in one of its wrappings).
    public static let pickleBased: Set<String> = ["pickle", "pytorch-zip", "pytorch-legacy", "joblib"]
}
