import AirlockSystem
internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// Makes a sandboxed process's vDSO clock functions (`clock_gettime`, `gettimeofday`, `time`) issue the system call
/// instead of reading the clock in user space, so a clock world's filter (`ClockFilter`) sees them. Nothing in the
/// process cooperates: the supervisor writes the few bytes through `/proc/TID/mem`, which copies the vDSO's page on
/// write for that process alone, as a debugger's breakpoint does. Forked children inherit the patched page; an exec
/// maps a fresh vDSO, which is patched at the new image's first notified call (`ClockEmulator.sawCall`).
///
/// The vDSO is the kernel's, the same image in every process on the machine: its entry points are found once, in the
/// supervisor's own copy, and a target's bytes are compared with the supervisor's before anything is written.
struct VDSOPatch: Sendable {
    /// One entry point: where it is in the image, the bytes there, and what replaces them.
    struct Site: Sendable, Equatable {
        let offset: UInt64
        let original: [UInt8]
        let patch: [UInt8]
    }

    /// The entry points to rewrite (aliases share a site).
    let sites: [Site]

    /// What happened to one process's vDSO.
    enum Outcome: Equatable {
        /// Already patched (a forked child, another thread), or patched now.
        case patched
        /// The process has no vDSO (nothing reads the clock in user space).
        case none
        /// The bytes are neither the kernel's nor the patch: left as they are.
        case unknownImage
        /// /proc could not be read or written (the process is gone, or not ours to write).
        case failed
    }

    /// The supervisor's vDSO, read once; nil on an ABI this patch does not know (only x86-64's calls are written).
    static let native: VDSOPatch? = {
        #if arch(x86_64)
            let base = airlock_vdso_base()
            guard base != 0 else { return nil }
            let image = UnsafeRawPointer(bitPattern: UInt(base))!
            // The vDSO is two pages or so; its section headers stay within the mapping's first 64 KiB.
            let bytes = [UInt8](UnsafeRawBufferPointer(start: image, count: VDSOPatch.imageLimit(base)))
            let numbers: [String: UInt32] = ["clock_gettime": 228, "gettimeofday": 96, "time": 201]
            var sites: [Site] = []
            for (name, nr) in numbers.sorted(by: { $0.key < $1.key }) {
                guard
                    let offset = ELFSymbols.offset(of: "__vdso_" + name, in: bytes)
                        ?? ELFSymbols.offset(of: name, in: bytes)
                else { continue }
                // mov eax, nr; syscall; ret
                let patch: [UInt8] =
                    [0xb8, UInt8(nr & 0xff), UInt8(nr >> 8 & 0xff), 0, 0, 0x0f, 0x05, 0xc3]
                guard Int(offset) + patch.count <= bytes.count else { continue }
                let original = Array(bytes[Int(offset)..<Int(offset) + patch.count])
                sites.append(Site(offset: offset, original: original, patch: patch))
            }
            return sites.isEmpty ? nil : VDSOPatch(sites: sites)
        #else
            return nil
        #endif
    }()

    /// How many bytes of the supervisor's vDSO mapping can be read, from /proc/self/maps (at most 64 KiB).
    private static func imageLimit(_ base: UInt64) -> Int {
        guard let maps = try? FileBytes.read("/proc/self/maps", limit: 4 << 20, what: "maps") else { return 4096 }
        for line in String(decoding: maps, as: UTF8.self).split(separator: "\n") where line.hasSuffix("[vdso]") {
            let range = line.prefix { $0 != " " }.split(separator: "-")
            if range.count == 2, let lo = UInt64(range[0], radix: 16), let hi = UInt64(range[1], radix: 16), lo == base,
                hi > lo
            {
                return Int(min(hi - lo, 65536))
            }
        }
        return 4096
    }

    /// Patches the vDSO of the process `hostTid` belongs to (any of its threads will do).
    func apply(hostTid: pid_t) -> Outcome {
        guard let base = VDSOPatch.base(hostTid) else { return .failed }
        guard base != 0 else { return .none }
        let fd = open("/proc/\(hostTid)/mem", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return .failed }
        defer { close(fd) }
        for site in sites {
            var now = [UInt8](repeating: 0, count: site.patch.count)
            let n = now.withUnsafeMutableBytes { airlock_pread(fd, $0.baseAddress, $0.count, base &+ site.offset) }
            guard n == now.count else { return .failed }
            if now == site.patch { continue }
            guard now == site.original else { return .unknownImage }
            let w = site.patch.withUnsafeBytes { airlock_pwrite(fd, $0.baseAddress, $0.count, base &+ site.offset) }
            guard w == site.patch.count else { return .failed }
        }
        return .patched
    }

    /// Where the process's vDSO was mapped at its exec (`AT_SYSINFO_EHDR` in /proc/TID/auxv, a few hundred bytes
    /// whatever the process did to its memory map); 0 when it has none; nil when auxv cannot be read.
    static func base(_ hostTid: pid_t) -> UInt64? {
        guard let auxv = try? FileBytes.read("/proc/\(hostTid)/auxv", limit: 4096, what: "auxv") else { return nil }
        var i = 0
        while i + 16 <= auxv.count {
            let key = auxv[i..<i + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
            let value = auxv[i + 8..<i + 16].enumerated().reduce(UInt64(0)) {
                $0 | UInt64($1.element) << (8 * $1.offset)
            }
            if key == 0 { break }
            // AT_SYSINFO_EHDR
            if key == 33 { return value }
            i += 16
        }
        return 0
    }
}

/// The dynamic symbols of a small ELF64 image in memory (the vDSO): section headers, `.dynsym` and its string table.
enum ELFSymbols {
    /// The offset in the image of `name`'s code, or nil. Every read is bounds-checked.
    static func offset(of name: String, in image: [UInt8]) -> UInt64? {
        func u16(_ at: Int) -> Int? {
            at >= 0 && at + 2 <= image.count ? Int(image[at]) | Int(image[at + 1]) << 8 : nil
        }
        func u32(_ at: Int) -> UInt64? {
            guard at >= 0, at + 4 <= image.count else { return nil }
            return (0..<4).reduce(UInt64(0)) { $0 | UInt64(image[at + $1]) << (8 * $1) }
        }
        func u64(_ at: Int) -> UInt64? {
            guard let lo = u32(at), let hi = u32(at + 4) else { return nil }
            return lo | hi << 32
        }
        func int(_ v: UInt64?) -> Int? { v.flatMap { $0 < UInt64(image.count) ? Int($0) : nil } }
        guard image.count >= 64, image[0..<4] == [0x7f, 0x45, 0x4c, 0x46], image[4] == 2 else { return nil }
        guard let shoff = int(u64(0x28)), let shentsize = u16(0x3a), let shnum = u16(0x3c), shentsize >= 64,
            shnum <= 256
        else { return nil }
        // The first PT_LOAD's address: symbol values are addresses, the image is mapped from its start.
        guard let phoff = int(u64(0x20)), let phentsize = u16(0x36), let phnum = u16(0x38), phnum <= 64 else {
            return nil
        }
        var loadAddress: UInt64 = 0
        for i in 0..<phnum where u32(phoff + i * phentsize) == 1 {
            guard let vaddr = u64(phoff + i * phentsize + 0x10), let offset = u64(phoff + i * phentsize + 0x08) else {
                return nil
            }
            loadAddress = vaddr &- offset
            break
        }
        for i in 0..<shnum {
            let header = shoff + i * shentsize
            // SHT_DYNSYM
            guard u32(header + 4) == 11 else { continue }
            guard let symoff = int(u64(header + 0x18)), let size = u64(header + 0x20), let link = u32(header + 0x28),
                let entsize = u64(header + 0x38), entsize >= 24, link < UInt64(shnum),
                let stroff = int(u64(shoff + Int(link) * shentsize + 0x18)),
                let strsize = u64(shoff + Int(link) * shentsize + 0x20)
            else { return nil }
            let count = min(Int(size / entsize), 1024)
            for s in 0..<count {
                let sym = symoff + s * Int(entsize)
                guard let nameOffset = u32(sym), let value = u64(sym + 8), nameOffset < strsize else { continue }
                let start = stroff + Int(nameOffset)
                guard start < image.count else { continue }
                let end = image[start...].firstIndex(of: 0) ?? image.count
                if image[start..<end].elementsEqual(name.utf8), value != 0 { return value &- loadAddress }
            }
        }
        return nil
    }
}
