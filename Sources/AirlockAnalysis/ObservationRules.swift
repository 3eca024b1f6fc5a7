public import AirlockFormats

/// How much each kind of parser observation matters. Kinds not listed count as `medium`: an anomaly Airlock does
/// not know how to weigh is never silently clean.
public enum ObservationRules {
    /// Severity of an observation kind.
    public static func severity(of kind: String) -> Severity {
        if let s = table[kind] { return s }
        return .medium
    }

    /// The finding for an observation: the kind is the rule id.
    public static func finding(_ o: Observation) -> Finding {
        Finding(rule: o.kind, severity: severity(of: o.kind), message: o.message, evidence: o.evidence)
    }

    static let table: [String: Severity] = [
        // pickle streams
        "pickle.truncated": .medium, "pickle.invalid-opcode": .medium, "pickle.budget": .medium,
        "pickle.trailing-data": .medium, "pickle.ext-code": .high, "pickle.nested": .info,
        "pickle.dynamic-global": .high, "pickle.stack-underflow": .medium, "pickle.memo-miss": .medium,
        "pickle.malformed-argument": .medium, "pickle.unsupported-protocol": .medium, "pickle.nesting-limit": .medium,
        "pickle.out-of-band-buffer": .low,
        // Where CPython's loaders (bytes, files, pure Python) or joblib read the bytes differently, or the size of a
        // joblib array cannot be told: medium, the scan cannot vouch for what follows.
        "pickle.frame-divergence": .medium, "pickle.proto-anomaly": .medium, "pickle.joblib-array-unknown": .medium,
        // ZIP: what makes readers disagree is how scanners get fooled
        "zip.duplicate-name": .high, "zip.local-name-mismatch": .high, "zip.local-flags-mismatch": .medium,
        "zip.local-size-mismatch": .medium, "zip.local-method-mismatch": .high, "zip.crc-mismatch": .medium,
        "zip.encrypted-flag": .medium, "zip.prefix-data": .medium, "zip.trailing-data": .low, "zip.zip64": .info,
        "zip.overlapping-entries": .high, "zip.entry-out-of-bounds": .medium, "zip.bomb": .high,
        "zip.path-traversal": .high, "zip.unsupported-method": .medium, "zip.multiple-eocd": .high,
        "zip.count-mismatch": .medium, "zip.non-utf8-name": .low, "zip.duplicate-name-case": .medium,
        "zip.local-crc-mismatch": .medium, "zip.offset-shift": .high, "zip.zip64-mismatch": .high,
        "zip.bad-local-header": .medium, "zip.malformed-extra": .medium, "zip.entry-limit": .medium,
        "zip.miniz-refuses": .medium, "zip.inflate-error": .medium, "zip.inflated-size-mismatch": .medium,
        // tar and 7z archives (docs/formats.md, "Compressed and packed files")
        "tar.bad-header": .medium, "tar.truncated": .medium, "tar.sparse": .low, "tar.path-traversal": .high,
        "tar.reader-divergence": .medium, "tar.overlapping-data": .medium,
        "tar.too-many-members": .medium, "7z.malformed": .medium, "7z.crc-mismatch": .medium, "7z.encrypted": .medium,
        "7z.bomb": .high, "7z.unsupported-method": .medium, "7z.truncated": .medium,
        // safetensors: reader differences that benign writers never produce
        "safetensors.header-leading-space": .low, "safetensors.unknown-field": .low,
        // ONNX: a path out of the model's folder reads whatever it names
        "onnx.external-data-traversal": .critical, "onnx.custom-domain": .medium,
        "onnx.ir-version-unknown": .info, "onnx.no-ir-version": .low, "onnx.external-data-key": .medium,
        "onnx.external-data-ambiguous": .high, "onnx.external-data-no-location": .medium,
        "onnx.external-data-offset": .medium, "onnx.metadata-code": .medium, "onnx.metadata-odd": .low,
        // TorchScript: code the interpreter runs at torch.jit.load and forward
        "torchscript.dangerous-op": .critical, "torchscript.risky-op": .high, "torchscript.custom-op": .high,
        "torchscript.custom-class": .high, "torchscript.huge-loop": .medium, "torchscript.endless-loop": .medium,
        "torchscript.unreadable": .medium,
        // NumPy: an object array is a pickle, scanned as such
        "numpy.object-dtype": .low,
        // chat templates (Jinja2): a name out of Jinja's namespace runs code in loaders that render unsandboxed
        "template.sandbox-escape": .critical, "template.dunder-access": .medium, "template.private-attribute": .medium,
        "template.dynamic-attribute": .medium, "template.global-attribute": .medium, "template.code-name": .medium,
        "template.unusual": .medium, "template.too-large": .medium, "template.too-deep": .medium,
        "template.budget": .medium, "template.malformed": .medium, "template.unparsed": .medium,
        "template.unevaluated-string": .medium, "template.dunder-text": .medium,
        "template.resource-exhaustion": .medium, "template.observations-truncated": .medium,
        // names
        "format.name-mismatch": .medium, "format.unknown": .medium,
        // Hugging Face cache (HubCache): what huggingface_hub never writes
        "hfcache.blob-mismatch": .high, "hfcache.link-escapes": .high, "hfcache.link-not-blob": .high,
        "hfcache.link-dangling": .medium, "hfcache.blob-name": .medium, "hfcache.blob-unverified": .medium,
        "hfcache.unreferenced-blob": .low, "hfcache.incomplete-blob": .low,
    ]
}
