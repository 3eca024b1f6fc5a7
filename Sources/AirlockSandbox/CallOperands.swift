import AirlockNames
import AirlockTrace

/// File names as the kernel has them: bytes. A trace shows them losslessly.
public enum PathText {
    /// `bytes` in the escaped form reports and manifests use for names (`FileName.escaped`): lossless and
    /// injective, with invalid UTF-8, control and invisible formatting characters as `\xHH` and `\` as `\\`, so a
    /// path cannot forge lines or terminal control sequences in a report.
    public static func display(_ bytes: [UInt8]) -> String {
        FileName(bytes: bytes).escaped
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
    /// pidfd_send_signal: the target's PID on the host, when the pidfd names one.
    var signalTargetHost: Int32? = nil
}
