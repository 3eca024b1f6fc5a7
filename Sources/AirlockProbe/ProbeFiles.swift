public import AirlockSandbox
#if canImport(Glibc)
    import Glibc
#endif

extension ProfileLocator {
    /// The first profile directory that holds `relativePath` (`harness/serve.py`, `policy.json`), as a full path.
    ///
    /// The probe's own files ship beside the sandbox profiles, so they are looked for in the same directories; the
    /// sandbox itself locates only profiles.
    public static func locate(_ relativePath: String) -> String? {
        searchDirectories().map { "\($0)/\(relativePath)" }.first { access($0, R_OK) == 0 }
    }
}
