import AirlockJSON
public import AirlockSystem

/// Why a trace, an observation or a cgroup status read back from JSON (a report from airlockd, a stored report) is
/// not one the sandbox could have written: the field path and what was wrong with it.
public struct TraceFormatError: AirlockError, Equatable {
    /// A sentence naming the field (`field args.port: expected an integer …`).
    public let message: String

    /// An error saying `message`.
    public init(_ message: String) { self.message = message }

    /// Always `malformed`, as for JSON that does not parse.
    public var code: String { "malformed" }
    /// The message.
    public var description: String { message }
}

/// A JSON value being read into one of this module's types, with the path that leads to it.
typealias TraceField = JSONField<TraceFormatError>

extension JSONField where Failure == TraceFormatError {
    /// The top of a value read on its own; `path` names where it sits in a larger document, when it does.
    static func top(_ value: JSON, path: String) -> TraceField {
        TraceField(value: value, path: path) { TraceFormatError($0) }
    }

    /// `members[key]`, which must be there.
    func required(_ members: [String: TraceField], _ key: String) throws(TraceFormatError) -> TraceField {
        guard let field = members[key] else {
            throw TraceFormatError("field \(path.isEmpty ? key : "\(path).\(key)"): missing")
        }
        return field
    }

    /// The value, or nil when it is JSON `null` (members the writer always writes, null when unknown).
    var nonNull: TraceField? {
        if case .null = value { return nil }
        return self
    }

    /// The error for a value that has the right type but not an allowed value.
    func invalid(_ what: String) -> TraceFormatError {
        TraceFormatError("field \(path.isEmpty ? "(top level)" : path): \(what)")
    }
}
