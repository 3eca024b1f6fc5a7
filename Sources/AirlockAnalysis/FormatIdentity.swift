public import AirlockFormats

/// The format of a file from its content alone, cheaply: magic numbers, and for ZIP archives the member names of the
/// central directory. No pickle is run through the symbolic machine, so a joblib file is `pickle` here (the scanner
/// tells joblib apart by what the pickle imports).
///
/// Manifests record and check this format; it is the same for the same bytes on every run.
public enum FormatIdentity {
    /// The format of `view`.
    public static func identify(_ view: ByteView) -> FileFormat {
        let sniffed = FormatDetector.sniff(view)
        guard sniffed == .zip else { return sniffed }
        guard let archive = try? ZipArchive.read(view, budget: .standard) else { return .zip }
        return FormatDetector.refine(zipMembers: archive.entries.map(\.name))
    }

    /// Formats whose loading runs code no matter what (pickle in one of its wrappings).
    public static let pickleBased: Set<String> = ["pickle", "pytorch-zip", "pytorch-legacy", "joblib"]
}
