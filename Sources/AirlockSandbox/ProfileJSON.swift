internal import AirlockJSON

/// A JSON value and the path that leads to it (`airlock.mounts[2].type`), for reading with errors that name the field.
struct JSONField {
    let value: JSON
    let path: String

    private func error(_ expected: String) -> SandboxError {
        let found: String
        switch value {
        case .null: found = "null"
        case .bool: found = "a boolean"
        case .number(let n): found = "the number \(n)"
        case .string: found = "a string"
        case .array: found = "an array"
        case .object: found = "an object"
        }
        return SandboxError(.profile, "field \(path.isEmpty ? "(top level)" : path): expected \(expected), found \(found)")
    }

    private func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The members of an object; any key outside `allowed` is an error naming it.
    func object(allowed: Set<String>) throws(SandboxError) -> [String: JSONField] {
        guard case .object(let members) = value else { throw error("an object") }
        var result: [String: JSONField] = [:]
        for (key, v) in members {
            guard allowed.contains(key) else {
                throw SandboxError(.profile, "field \(child(key)): unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            result[key] = JSONField(value: v, path: child(key))
        }
        return result
    }

    func array() throws(SandboxError) -> [JSONField] {
        guard case .array(let items) = value else { throw error("an array") }
        return items.enumerated().map { JSONField(value: $1, path: "\(path)[\($0)]") }
    }

    func string() throws(SandboxError) -> String {
        guard case .string(let s) = value else { throw error("a string") }
        return s
    }

    func bool() throws(SandboxError) -> Bool {
        guard case .bool(let b) = value else { throw error("true or false") }
        return b
    }

    func strings() throws(SandboxError) -> [String] {
        var out: [String] = []
        for item in try array() { out.append(try item.string()) }
        return out
    }

    /// An object whose values are all strings, in document order.
    func stringMap() throws(SandboxError) -> [(String, String)] {
        guard case .object(let members) = value else { throw error("an object") }
        var out: [(String, String)] = []
        for (key, v) in members { out.append((key, try JSONField(value: v, path: child(key)).string())) }
        return out
    }

    /// An integer that fits `T`.
    func integer<T: FixedWidthInteger>(_ type: T.Type = T.self) throws(SandboxError) -> T {
        guard case .number(let text) = value, let v = T(text) else {
            throw error("an integer from \(T.min) to \(T.max)")
        }
        return v
    }

    func double() throws(SandboxError) -> Double {
        guard case .number(let text) = value, let v = Double(text), v.isFinite else { throw error("a number") }
        return v
    }

    /// Whether the value is an object with no members (used for fields that must stay empty).
    var isEmptyObject: Bool {
        if case .object(let m) = value { return m.isEmpty }
        return false
    }
}
