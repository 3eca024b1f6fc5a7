internal import Crypto
public import AirlockFormats

/// SHA-256 of a file's bytes, streamed through swift-crypto in large chunks; the pages of a mapped file are released
/// from the resident set once hashed.
public enum FileDigest {
    /// Lower-case hex SHA-256 of `view`.
    public static func sha256(_ view: ByteView) -> String {
        var hasher = SHA256()
        let chunk = 4 << 20
        var offset = 0
        while offset < view.count {
            let n = min(chunk, view.count - offset)
            view.slice(offset, n)!.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            // Hashed pages leave the resident set: a 1 GiB file no longer costs 1 GiB of RSS.
            view.releasePages(offset, n)
            offset += n
        }
        let digest = hasher.finalize()
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in digest {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
