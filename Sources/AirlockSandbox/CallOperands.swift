/// File names as the kernel has them: bytes. A trace shows them losslessly.
public enum PathText {
    /// `bytes` as text that names exactly one byte string: valid UTF-8 is kept as it is, except that a backslash
    /// becomes `\\` and control characters (C0, DEL, C1) become `\xNN`; bytes that are not valid UTF-8 become
    /// `\xNN`. Two different byte strings never display the same, and a name cannot forge lines or terminal
    /// control sequences in a text report.
    public static func display(_ bytes: [UInt8]) -> String {
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\\") }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        var out = ""
        var i = 0
        func hex(_ b: UInt8) {
            let digits = Array("0123456789ABCDEF")
            out += "\\x"
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\\") {
                out += "\\\\"
                i += 1
            } else if b < 0x20 || b == 0x7f {
                hex(b)
                i += 1
            } else if b < 0x80 {
                out.unicodeScalars.append(Unicode.Scalar(b))
                i += 1
            } else if let (scalar, length) = decodeOne(bytes, i), scalar.value >= 0xa0 {
                out.unicodeScalars.append(scalar)
                i += length
            } else {
                // Invalid UTF-8, or a C1 control character (U+0080–U+009F).
                let length = decodeOne(bytes, i)?.1 ?? 1
                for k in i..<(i + length) { hex(bytes[k]) }
                i += length
            }
        }
        return out
    }

    /// Whether `bytes` display as themselves (valid UTF-8, no control character, no backslash).
    public static func isPlain(_ bytes: [UInt8]) -> Bool {
        display(bytes).utf8.elementsEqual(bytes)
    }

    /// One well-formed UTF-8 sequence at `i` (no overlong forms, no surrogates, at most U+10FFFF).
    private static func decodeOne(_ b: [UInt8], _ i: Int) -> (Unicode.Scalar, Int)? {
        let lead = b[i]
        let length: Int
        var value: UInt32
        switch lead {
        case 0xc2...0xdf: length = 2; value = UInt32(lead & 0x1f)
        case 0xe0...0xef: length = 3; value = UInt32(lead & 0x0f)
        case 0xf0...0xf4: length = 4; value = UInt32(lead & 0x07)
        default: return nil
        }
        guard i + length <= b.count else { return nil }
        for k in 1..<length {
            let c = b[i + k]
            guard c & 0xc0 == 0x80 else { return nil }
            value = value << 6 | UInt32(c & 0x3f)
        }
        let minimum: UInt32 = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000
        guard value >= minimum, value <= 0x10ffff, !(0xd800...0xdfff).contains(value),
            let scalar = Unicode.Scalar(value)
        else { return nil }
        return (scalar, length)
    }

    /// Collapses `//`, `.` and `..` without touching the file system (for display and policy; the supervisor
    /// resolves the bytes as read, not this).
    static func normalize(_ path: [UInt8]) -> [UInt8] {
        var out: [ArraySlice<UInt8>] = []
        for part in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.elementsEqual([UInt8(ascii: ".")]) { continue }
            if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                if !out.isEmpty { out.removeLast() }
                continue
            }
            out.append(part)
        }
        var result: [UInt8] = []
        for part in out {
            result.append(UInt8(ascii: "/"))
            result.append(contentsOf: part)
        }
        return result.isEmpty ? [UInt8(ascii: "/")] : result
    }
}

/// A path argument as the caller gave it, read once.
struct PathOperand: Equatable {
    /// The bytes read from the caller.
    var raw: [UInt8]
    /// The directory descriptor it is relative to (`AT_FDCWD` for the working directory).
    var dirfd: Int32
    /// The path was longer than the supervisor reads: never acted on.
    var truncated: Bool
    /// For a relative path: the directory it starts from, as the sandbox names it (the target of
    /// `/proc/TID/cwd` or `/proc/TID/fd/N`), when that could be read.
    var base: [UInt8]? = nil

    /// The path to resolve from the sandbox's root: `raw` when absolute, else `base/raw`; nil when the base is
    /// unknown or not a path in the sandbox's tree (a deleted directory, a pipe).
    var absolute: [UInt8]? {
        if raw.first == UInt8(ascii: "/") { return raw }
        guard let base, base.first == UInt8(ascii: "/"), !base.hasSuffix(" (deleted)") else { return nil }
        if raw.isEmpty { return base }
        return base + [UInt8(ascii: "/")] + raw
    }
}

extension Array where Element == UInt8 {
    func hasSuffix(_ s: String) -> Bool {
        let tail = Array(s.utf8)
        return count >= tail.count && self[(count - tail.count)...].elementsEqual(tail)
    }

    func hasPrefix(_ s: String) -> Bool {
        let head = Array(s.utf8)
        return count >= head.count && self[..<head.count].elementsEqual(head)
    }
}

/// What the supervisor keeps from a notified call's memory so it can perform the call itself (`CallEmulator`).
struct CallOperands {
    var path: PathOperand? = nil
    var path2: PathOperand? = nil
    /// Open flags, `*at` flags or send flags, as the call has them.
    var flags: UInt64 = 0
    var mode: UInt64 = 0
    /// openat2's `resolve`.
    var resolve: UInt64 = 0
    /// openat2's `size` argument.
    var howSize: UInt64 = 0
    /// chown's uid and gid, as the caller gave them (ids inside the sandbox).
    var owner: (UInt64, UInt64)? = nil
    /// symlink's target; memfd_create's name.
    var linkTarget: [UInt8]? = nil
    /// A socket address, at most 128 bytes.
    var sockaddr: [UInt8]? = nil
    /// sendmsg's `struct msghdr` (56 bytes).
    var msghdr: [UInt8]? = nil
    /// A copy of the caller's descriptor the call is about (pidfd_send_signal), owned: closed by the notifier.
    var descriptor: Int32? = nil
}
