import AirlockAnalysis
import ArgumentParser

/// `--no-digest-cache`, shared by the commands that hash whole files (scan, probe, manifest, verify, intake).
struct DigestCacheOptions: ParsableArguments {
    @Flag(
        name: .customLong("no-digest-cache"),
        help: "Hash every file in full, neither reading nor writing the digest cache (also AIRLOCK_DIGEST_CACHE=off).")
    var noDigestCache = false

    /// Turns the process's digest cache off when asked.
    func apply() {
        if noDigestCache { DigestCache.shared.disable() }
    }
}
