public import AirlockAnalysis
internal import AirlockFormats
internal import AirlockSandbox

/// What keras' safe mode said of a Keras model (the `keras-safe-mode` line of the `keras` and `hdf5` loaders,
/// `Profiles/harness/airlock_keras.py`): `keras.saving.load_model(path)` with the default `safe_mode=True` refuses a
/// Lambda layer's marshalled code in a `.keras` archive, and a consumer who passes `safe_mode=False` runs it. Keras
/// 3 before 3.9 still imports modules a config names in safe mode, and its legacy HDF5 reader ignores safe mode, so
/// "accepted" is no clean bill: the verdict comes from the trace and the static findings, and this line is detail.
enum KerasSafeMode {
    /// Info finding `probe.keras-safe-mode` for a detonation of the `keras` or `hdf5` loader, from the harness's
    /// first such line (printed before anything of the model's runs with `safe_mode=False`).
    static func findings(_ detonation: Detonation) -> [Finding] {
        let formats = [HarnessFormat.keras.rawValue, HarnessFormat.hdf5.rawValue]
        guard detonation.arguments.contains(where: formats.contains),
            let detail = HarnessProtocol.first(
                .kerasSafeMode, in: detonation.result.stderr, prefix: detonation.linePrefix)
        else { return [] }
        let words = detail.prefix(300).split(separator: " ", maxSplits: 1).map(String.init)
        let answer = words.first ?? ""
        let message: String
        switch answer {
        case "accepted":
            message =
                "keras.saving.load_model with safe_mode=True loaded the model (safe mode refuses only Lambda code in .keras archives: what ran is in the trace)"
        case "refused":
            message =
                "keras.saving.load_model with safe_mode=True refused the model (\(words.count > 1 ? words[1] : "an exception")); a consumer passing safe_mode=False loads it"
        case "raised":
            message =
                "keras.saving.load_model with safe_mode=True raised \(words.count > 1 ? words[1] : "an exception") without refusing the model: safe mode did not stop what ran (the trace says what)"
        default:
            message = "keras' safe mode answered \(detail.prefix(200))"
        }
        return [
            Finding(
                rule: "probe.keras-safe-mode", severity: .info, message: message,
                evidence: Evidence(details: [("safeMode", answer)]))
        ]
    }
}
