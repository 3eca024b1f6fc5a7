/// A JSON value and the path that leads to it (`airlock.mounts[2].type`), for reading configuration files (profiles,
/// policies) with errors that name the field. `Failure` is the caller's error type; `fail` makes one from a message.
public struct JSONField<Failure: Error>: Sendable {
    /// The value.
    public let value: JSON
    /// Where it is in the document.
    public var path: String { location.path }
    private let location: Location
    private let fail: @Sendable (String) -> Failure

    /// A field; `fail` turns a message such as "field a.b: expected a string, found null" into the caller's error.
    public init(value: JSON, path: String, fail: @escaping @Sendable (String) -> Failure) {
        self.init(value: value, location: .root(path), fail: fail)
    }

    private init(value: JSON, location: Location, fail: @escaping @Sendable (String) -> Failure) {
        self.value = value
        self.location = location
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

    /// The members of an object; any key outside `allowed` is an error naming it.
    public func object(allowed: Set<String>) throws(Failure) -> [String: JSONField] {
        guard case .object(let members) = value else { throw error("an object") }
        var result: [String: JSONField] = [:]
        for (key, v) in members {
            guard allowed.contains(key) else {
                let field = Location.member(location, key).path
                throw fail("field \(field): unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            result[key] = JSONField(value: v, location: .member(location, key), fail: fail)
        }
        return result
    }

    public func array() throws(Failure) -> [JSONField] {
        guard case .array(let items) = value else { throw error("an array") }
        var fields: [JSONField] = []
        fields.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            fields.append(JSONField(value: item, location: .element(location, i), fail: fail))
        }
        return fields
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
        guard case .array(let items) = value else { throw error("an array") }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                throw JSONField(value: item, location: .element(location, i), fail: fail).error("a string")
            }
            out.append(s)
        }
        return out
    }

    /// An object whose values are all strings, in document order.
    public func stringMap() throws(Failure) -> [(String, String)] {
        guard case .object(let members) = value else { throw error("an object") }
        var out: [(String, String)] = []
        for (key, v) in members {
            out.append((key, try JSONField(value: v, location: .member(location, key), fail: fail).string()))
        }
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

/// Where a field is: its parent and one step, so that a path is spelt out only when an error names it. Reading the
/// default profile makes about 1,000 fields; formatting each one's path up front was a third of the profile's load
/// time (docs/benchmarks.md, "Start-up").
private indirect enum Location: Sendable {
    case root(String)
    case member(Location, String)
    case element(Location, Int)

    var path: String {
        switch self {
        case .root(let path): return path
        case .member(let parent, let key):
            let prefix = parent.path
            return prefix.isEmpty ? key : "\(prefix).\(key)"
        case .element(let parent, let index): return "\(parent.path)[\(index)]"
        }
    }
}
