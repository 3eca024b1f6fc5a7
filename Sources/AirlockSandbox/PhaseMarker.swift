/// How a command in the sandbox tells the supervisor where it is (`startup` → `load` → `probe`) without races.
///
/// The command opens a marker path. `open`/`openat` are notified calls, so the announcement arrives in the same
/// ordered stream as every other notification, and the announcing thread is blocked until the supervisor has taken
/// it: everything that thread does afterwards is attributed to the new phase. (A pipe would race: the supervisor could
/// see a later notification before the pipe message.) The open fails with `ENOENT` and is recorded with
/// `rule: .phase` (`"phase"` in the JSON). Phases only move forward (`phase-regression` otherwise), so code inside
/// cannot relabel its own behaviour as the runtime's start-up.
///
/// A request names its own markers (`SandboxRequest.phaseMarkers`, drawn per run, so that nothing in the sandbox says
/// what they are and code inside cannot guess one); without them the markers are `prefix` + the phase's name.
public enum PhaseMarker {
    /// The directory of the fixed marker paths, used when a request names none (`airlock exec`).
    public static let prefix = "/.airlock/phase/"

    /// The fixed marker path that announces `phase`.
    public static func path(_ phase: String) -> String { prefix + phase }

    /// The phase a notified open announces, if it is a marker: one of `markers` (path → phase) when there are any,
    /// else a path below `prefix`.
    static func phase(_ syscall: String, _ path: String?, markers: [String: String] = [:]) -> String? {
        guard ["open", "openat", "openat2"].contains(syscall), let path else { return nil }
        if !markers.isEmpty { return markers[path] }
        guard path.hasPrefix(prefix) else { return nil }
        let name = String(path.dropFirst(prefix.count))
        return name.isEmpty || name.contains("/") ? nil : name
    }
}
