#if canImport(Glibc)
    import Glibc
#endif

/// Files of a corpus, without Foundation (the fuzzing build links as little as it can).
enum CorpusFiles {
    /// `path` if it is a file, else every regular file below it, in name order.
    static func collect(_ path: String, into files: inout [String]) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            if st.st_mode & S_IFMT == S_IFREG { files.append(path) }
            return
        }
        guard let dir = opendir(path) else { return }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." && !name.hasPrefix(".") { names.append(name) }
        }
        closedir(dir)
        for name in names.sorted() { collect(path + "/" + name, into: &files) }
    }

    /// The whole file, or nil.
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[..<n])
        }
    }
}
