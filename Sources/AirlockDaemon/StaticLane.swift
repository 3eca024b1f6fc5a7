internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Which probes the static lane tries to answer itself (docs/daemon.md, "Lanes"). Only a hint: the static lane
/// answers a probe only when `Prober.probeWithoutSandbox` (the decision every probe takes) says no detonation is
/// wanted, and hands the rest to the detonation lane. A file that looks like one of these formats and is not (a
/// pickle behind a safetensors header) costs one static analysis in the static lane and is then detonated; a file
/// that looks like none of them goes to the detonation lane without one.
enum StaticLane {
    /// The largest file the static lane examines (by its size, holes included): 256 MiB, about half a second of
    /// hashing. A larger one, or a folder, goes to the detonation lane, scan or probe.
    static let maxFileBytes: UInt64 = 256 << 20

    /// Whether the first bytes of the open regular file `fd` name a format that is usually answered without a
    /// sandbox: safetensors, GGUF, NumPy arrays, HDF5, ONNX; and an empty file. Reads 16 bytes at offset 0.
    static func mayAnswer(_ fd: Int32) -> Bool {
        var head = [UInt8](repeating: 0, count: 16)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 0 else { return false }
        return mayAnswer(head: Array(head.prefix(n)))
    }

    /// `mayAnswer` for the first bytes of a file (at most 16 are looked at).
    static func mayAnswer(head: [UInt8]) -> Bool {
        if head.isEmpty { return true }
        func starts(_ magic: [UInt8]) -> Bool { head.starts(with: magic) }
        if starts(Array("GGUF".utf8)) || starts([0x93] + Array("NUMPY".utf8)) { return true }
        if starts([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return true }  // HDF5
        // safetensors: a little-endian u64 header length, then the header's JSON object.
        if head.count >= 9 && head[8] == UInt8(ascii: "{") && head[6] == 0 && head[7] == 0 { return true }
        // ONNX: a ModelProto begins with ir_version, field 1 as a varint.
        return head[0] == 0x08
    }
}
