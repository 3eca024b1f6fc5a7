/// Recognises ZIP archives by content.
public enum ZipDetector {
    /// A local header signature at offset 0, or an end-of-central-directory signature (with a whole record after
    /// it) within the last 64 KiB + 22 bytes — where miniz and Python's zipfile look for it.
    public static func looksLikeZip(_ view: ByteView) -> Bool {
        if view.le(UInt32.self, at: 0) == ZipFormat.localSignature { return true }
        let n = view.count
        guard n >= ZipFormat.endSize else { return false }
        let lowest = max(0, n - ZipFormat.endSearchWindow)
        var p = n - ZipFormat.endSize
        while p >= lowest {
            if view.byte(at: p) == 0x50, view.le(UInt32.self, at: p) == ZipFormat.endSignature { return true }
            p -= 1
        }
        return false
    }

    /// Whether `torch.load` would treat the file as a zip archive: it only checks for `PK\x03\x04` at offset 0
    /// (`torch.serialization._is_zipfile`) and loads anything else as a legacy pickle.
    public static func torchTreatsAsZip(_ view: ByteView) -> Bool {
        view.le(UInt32.self, at: 0) == ZipFormat.localSignature
    }
}
