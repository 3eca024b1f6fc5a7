/// A JSON value and the path that leads to it (`airlock.mounts[2].type`), for reading configuration files (profiles,
/// policies) with errors that name the field. `Failure` is the caller's error type; `fail` makes one from a message.
public struct JSONField<Failure: Error>: Sendable {
    /// The value.
    public let value: JSON
    /// Where it is in the document.
    public let path: String
    private let fail: @Sendable (String) -> Failure

    /// A field; `fail` turns a message such as "field a.b: expected a string, found null" into the caller's error.
    public init(value: JSON, path: String, fail: @escaping @Sendable (String) -> Failure) {
        self.value = value
        self.path = path
        self.fail = fail
    }

    private func error(_ expected: String) -> Failure {
        let found: String
        switch value {
        case .null: found = "null"
        case .bool: found = "a boolean"
        case .number(let n): found = "the number \(n)"
        case .string: found = "a string"
        case .array: found = "an array"
        case .object: found = "an object"
        }
        return fail("field \(path.isEmpty ? "(top level)" : path): expected \(expected), found \(found)")
    }

    private func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The members of an object; any key outside `allowed` is an error naming it.
    public func object(allowed: Set<String>) throws(Failure) -> [String: JSONField] {
        guard case .object(let members) = value else { throw error("an object") }
        var result: [String: JSONField] = [:]
        for (key, v) in members {
            guard allowed.contains(key) else {
                throw fail("field \(child(key)): unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            result[key] = JSONField(value: v, path: child(key), fail: fail)
        }
        return result
    }

    public func array() throws(Failure) -> [JSONField] {
        guard case .array(let items) = value else { throw error("an array") }
        return items.enumerated().map { JSONField(value: $1, path: "\(path)[\($0)]", fail: fail) }
    }

    public func string() throws(Failure) -> String {
        guard case .string(let s) = value else { throw error("a string") }
        return s
    }

    public func bool() throws(Failure) -> Bool {
        guard case .bool(let b) = value else { throw error("true or false") }
        return b
    }

    public func strings() throws(Failure) -> [String] {
        var out: [String] = []
        for item in try array() { out.append(try item.string()) }
        return out
    }

    /// An object whose values are all strings, in document order.
    public func stringMap() throws(Failure) -> [(String, String)] {
        guard case .object(let members) = value else { throw error("an object") }
        var out: [(String, String)] = []
        for (key, v) in members { out.append((key, try JSONField(value: v, path: child(key), fail: fail).string())) }
        return out
    }

    /// An integer that fits `T`.
    public func integer<T: FixedWidthInteger>(_ type: T.Type = T.self) throws(Failure) -> T {
        guard case .number(let text) = value, let v = T(text) else {
            throw error("an integer from \(T.min) to \(T.max)")
        }
        return v
    }

    public func double() throws(Failure) -> Double {
        guard case .number(let text) = value, let v = Double(text), v.isFinite else { throw error("a number") }
        return v
    }

    /// Whether the value is an object with no members (used for fields that must stay empty).
    public var isEmptyObject: Bool {
        if case .object(let m) = value { return m.isEmpty }
        return false
    }
}
