internal import AirlockJSON
internal import AirlockNames

extension Sarif {
    /// How the log names one file.
    struct Place {
        /// The URI reference: relative to `%SRCROOT%` when `relative`, else a `file://` URI.
        let uri: String
        /// Whether `uri` is relative to the source root.
        let relative: Bool
        /// What fingerprints and artifact identity use: the URI, prefixed with the base id when relative (so that a
        /// relative `a.pt` and an absolute file named `a.pt` never share a fingerprint).
        var key: String { relative ? Sarif.sourceRootId + "/" + uri : uri }

        /// An `artifactLocation`, with the artifact's index when given.
        func artifactLocation(index: Int?) -> JSON {
            var m: [(String, JSON)] = [("uri", .string(uri))]
            if relative { m.append(("uriBaseId", .string(Sarif.sourceRootId))) }
            if let index { m.append(("index", .int(index))) }
            return .object(m)
        }

        /// A `physicalLocation` in artifact `index`, with a region when it has members.
        func physical(index: Int, region: [(String, JSON)] = []) -> JSON {
            var m: [(String, JSON)] = [("artifactLocation", artifactLocation(index: index))]
            if !region.isEmpty { m.append(("region", .object(region))) }
            return .object(m)
        }
    }

    /// Most path components looked at; a longer path is named by its absolute URI as given.
    static let maxComponents = 4096

    /// `path` as the log names it: a relative path relative to the source root; an absolute path below `root`
    /// relative to it; anything else (outside the root, a relative path that climbs out of it) an absolute
    /// `file://` URI. `.` and `..` are resolved by name, as the walk named the files; links are not followed.
    static func location(_ path: String, root: String?) -> Place {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count <= maxComponents else { return Place(uri: uri(path), relative: !path.hasPrefix("/")) }
        if !path.hasPrefix("/") {
            if let relative = resolve(parts, climbing: false) {
                return relative.isEmpty
                    ? Place(uri: ".", relative: true) : Place(uri: uri(relative.joined(separator: "/")), relative: true)
            }
            guard let root else { return Place(uri: uri(path), relative: true) }
            return location(root + "/" + path, root: root)
        }
        let absolute = resolve(parts, climbing: true) ?? []
        if let root {
            let base = root.split(separator: "/", omittingEmptySubsequences: true)
            if absolute.count > base.count && absolute.starts(with: base) {
                return Place(uri: uri(absolute.dropFirst(base.count).joined(separator: "/")), relative: true)
            }
        }
        return Place(uri: uri("/" + absolute.joined(separator: "/")), relative: false)
    }

    /// Components with `.` dropped and `..` applied; nil when a relative path climbs above its start. An absolute
    /// path stays at `/` on `..` there, as the kernel does.
    static func resolve(_ parts: [Substring], climbing: Bool) -> [Substring]? {
        var out: [Substring] = []
        for part in parts {
            if part == "." { continue }
            if part == ".." {
                if out.isEmpty {
                    if climbing { continue }
                    return nil
                }
                out.removeLast()
                continue
            }
            out.append(part)
        }
        return out
    }

    /// The source root as an absolute path without `.`, `..` or a trailing `/`; nil when it is not absolute.
    static func normalizedRoot(_ root: String) -> String? {
        guard root.hasPrefix("/") else { return nil }
        let parts = root.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count <= maxComponents, let resolved = resolve(parts, climbing: true) else { return nil }
        return "/" + resolved.joined(separator: "/")
    }

    /// A URI reference for a path: percent-encoded (every byte but unreserved characters and `/`), `file://` for
    /// absolute paths. Report paths are escaped (`FileName.escaped`: `x\x0Ay` for a name with a newline): the URI
    /// encodes the name's own bytes, not the escaped text, which is the name of another file. A path that is not a
    /// canonical escaped form (a rule id, a root given as is) is encoded as written.
    static func uri(_ path: String) -> String {
        var out = path.hasPrefix("/") ? "file://" : ""
        let hex: [Character] = Array("0123456789ABCDEF")
        for byte in FileName(escaped: path)?.bytes ?? Array(path.utf8) {
            let c = Character(Unicode.Scalar(byte))
            if byte < 0x80 && (c.isLetter || c.isNumber || "-._~/".contains(c)) {
                out.append(c)
            } else {
                out += "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}
