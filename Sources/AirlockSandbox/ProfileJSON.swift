internal import AirlockJSON

/// Profile fields: `AirlockJSON.JSONField` with errors of kind `.profile`.
typealias JSONField = AirlockJSON.JSONField<SandboxError>

extension AirlockJSON.JSONField where Failure == SandboxError {
    /// A profile field at `path`.
    init(value: JSON, path: String) {
        self.init(value: value, path: path, fail: { SandboxError(.profile, $0) })
    }
}
