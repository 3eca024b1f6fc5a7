// swift-tools-version:6.0

import PackageDescription

let package = Package(
    name: "airlock",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "airlock", targets: ["airlock"]),
        .executable(name: "airlockd", targets: ["airlockd"]),
        .library(name: "AirlockSandbox", targets: ["AirlockSandbox"]),
        .library(name: "AirlockFormats", targets: ["AirlockFormats"]),
        .library(name: "AirlockAnalysis", targets: ["AirlockAnalysis"]),
        .library(name: "AirlockProbe", targets: ["AirlockProbe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSeccomp",
            pkgConfig: "libseccomp",
            providers: [.apt(["libseccomp-dev"])]
        ),
        .systemLibrary(
            name: "CCap",
            pkgConfig: "libcap",
            providers: [.apt(["libcap-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // liblzma, libbz2, libzstd and liblz4: the decoders of compressed and packed models (`Compressed/`, `SevenZip/`).
        .systemLibrary(
            name: "CCodecs",
            providers: [.apt(["liblzma-dev", "libbz2-dev", "libzstd-dev", "liblz4-dev"])]
        ),
        // A strict, bounded JSON reader and writer shared by profiles, model headers and reports.
        .target(name: "AirlockJSON", dependencies: ["AirlockSystem"]),
        // File names as bytes, with their lossless escaped display: shared by walks, reports, manifests and traces.
        .target(name: "AirlockNames"),
        // The house's system layer: errno and descriptor types, the one error protocol, logging, systemd notification,
        // monitors and threads, and the file-system helpers the daemon, intake and provenance share.
        .target(name: "AirlockSystem", dependencies: ["CSystem"]),
        // The file-system and signal calls glibc does not wrap (openat2, renameat2 flags, inotify, signalfd, leases),
        // shared by the daemon, the intake and provenance.
        .target(
            name: "CSystem",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror=implicit-function-declaration"])]
        ),
        // A detonation's trace as data: the events and their rule ids, what was left running, the cgroup and the limits
        // hit; written to JSON and read back from it here, below both the sandbox that makes them and the report.
        .target(name: "AirlockTrace", dependencies: ["AirlockJSON", "AirlockSystem"]),
        // Everything that runs between clone and exec: async-signal-safe C, prepared by the parent.
        .target(
            name: "CSandbox",
            dependencies: ["CCap"],
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror=implicit-function-declaration"])]
        ),
        .target(
            name: "AirlockSandbox",
            dependencies: [
                "AirlockNames", "AirlockJSON", "AirlockSystem", "AirlockTrace", "CSandbox", "CSeccomp", "CCap",
            ]
        ),
        // Pure parsers over a byte view: no I/O beyond mapping the file, no sandbox.
        .target(
            name: "AirlockFormats",
            dependencies: ["AirlockNames", "AirlockJSON", "AirlockSystem", "CZlib", "CCodecs"]
        ),
        // Static rules, verdicts and reports.
        .target(
            name: "AirlockAnalysis",
            dependencies: [
                "AirlockNames", "AirlockFormats", "AirlockJSON", "AirlockSystem", "AirlockTrace",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Provenance: file hashes, manifests, OpenSSF model-signing bundles; findings with source "provenance".
        .target(
            name: "AirlockProvenance",
            dependencies: [
                "AirlockNames", "AirlockAnalysis", "AirlockFormats", "AirlockJSON", "AirlockSystem",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Socket and per-thread identity helpers Swift cannot write itself (SCM_RIGHTS, SO_PEERCRED, setfsuid).
        .target(
            name: "CDaemon",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror=implicit-function-declaration"])]
        ),
        // Detonation: harness selection, phases, dynamic rules over the trace, the verdict policy.
        .target(
            name: "AirlockProbe",
            dependencies: [
                "AirlockNames", "AirlockSandbox", "AirlockSystem", "AirlockTrace", "CSandbox", "AirlockAnalysis",
                "AirlockFormats", "AirlockJSON",
                // Ed25519, for the planted SSH key's public half (Honeytokens).
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // airlockd: the listener, the connection loop, requests, the worker pool, examinations as the client; the
        // client side and the probe backend (here or through airlockd) the CLI and the intake share.
        .target(
            name: "AirlockDaemon",
            dependencies: [
                "AirlockNames", "AirlockProbe", "AirlockSandbox", "AirlockAnalysis", "AirlockFormats", "AirlockJSON",
                "AirlockSystem", "AirlockTrace", "CDaemon",
            ]
        ),
        // The quarantine stage of model intake: incoming → quarantine → approved / rejected, journaled.
        .target(
            name: "AirlockIntake",
            dependencies: [
                "AirlockNames", "AirlockProvenance", "AirlockProbe", "AirlockDaemon", "AirlockAnalysis", "AirlockJSON",
                "AirlockFormats", "AirlockSystem",
            ]
        ),
        .executableTarget(
            name: "airlockd",
            dependencies: [
                "AirlockDaemon", "AirlockProbe", "AirlockSandbox", "AirlockSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "airlock",
            dependencies: [
                "AirlockNames",
                "AirlockDaemon",
                "AirlockProbe",
                "AirlockProvenance",
                "AirlockIntake",
                "AirlockSandbox",
                "AirlockSystem",
                "AirlockTrace",
                "AirlockAnalysis",
                "AirlockFormats",
                "AirlockJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // A fully static release binary starts without the loader: no shared libraries, no relocations of its
            // 43 MB (docs/benchmarks.md, "Start-up budget"). libseccomp, libcap and zlib come from their .a files.
            linkerSettings: [.unsafeFlags(["-static-executable"], .when(configuration: .release))]
        ),
        // `make bench`: sandbox runs from a process that keeps its profile and filter, as a daemon does.
        .executableTarget(
            name: "airlock-bench",
            dependencies: ["AirlockSandbox"],
            path: "Tests/Bench/SandboxRunBench"
        ),
        // `make fuzz`: one libFuzzer harness per parser. A plain build makes a corpus replayer
        // (`airlock-fuzz TARGET FILE_OR_DIR...`); built with `-DAIRLOCK_LIBFUZZER -sanitize=fuzzer,address` it is the fuzzer.
        .executableTarget(
            name: "airlock-fuzz",
            dependencies: ["AirlockFormats", "AirlockJSON", "AirlockNames", "AirlockAnalysis", "AirlockProvenance"],
            path: "Tests/Fuzz/Harness"
        ),
        // Helpers every test target shares: the repository's root, the built binaries, programs run to their end,
        // profiles edited for a test, a loopback listener the test owns, a deterministic generator.
        .target(
            name: "AirlockTestSupport",
            dependencies: ["AirlockSandbox", "AirlockTrace", "AirlockDaemon", "AirlockJSON"],
            path: "Tests/AirlockTestSupport"
        ),
        // One test target per module. The first six need no root and run no sandbox (`make test-unit`); the others
        // build sandboxes and fail, never skip, without root or user namespaces.
        .testTarget(name: "AirlockSystemTests", dependencies: ["AirlockSystem"]),
        .testTarget(name: "AirlockJSONTests", dependencies: ["AirlockJSON", "AirlockSandbox", "AirlockTestSupport"]),
        .testTarget(
            name: "AirlockTraceTests",
            dependencies: ["AirlockTrace", "AirlockAnalysis", "AirlockFormats", "AirlockJSON"]
        ),
        .testTarget(
            name: "AirlockNamesTests",
            dependencies: ["AirlockNames", "AirlockFormats", "AirlockAnalysis", "AirlockTestSupport"]
        ),
        .testTarget(
            name: "AirlockFormatsTests",
            dependencies: ["AirlockFormats", "AirlockAnalysis", "airlock-fuzz", "AirlockTestSupport"]
        ),
        .testTarget(
            name: "AirlockAnalysisTests",
            dependencies: ["AirlockAnalysis", "AirlockFormats", "AirlockJSON", "AirlockTestSupport"]
        ),
        .testTarget(
            name: "AirlockSandboxTests",
            dependencies: [
                "AirlockSandbox", "AirlockTrace", "AirlockSystem", "AirlockJSON", "AirlockProbe", "AirlockAnalysis",
                "AirlockFormats", "AirlockDaemon", "AirlockTestSupport",
            ]
        ),
        .testTarget(
            name: "AirlockProbeTests",
            dependencies: [
                "AirlockProbe", "AirlockSandbox", "AirlockTrace", "AirlockSystem", "AirlockAnalysis", "AirlockFormats",
                "AirlockJSON", "AirlockTestSupport",
            ]
        ),
        .testTarget(
            name: "AirlockProvenanceTests",
            dependencies: [
                "AirlockProvenance", "AirlockAnalysis", "AirlockFormats", "AirlockTestSupport",
                // Model-signing tests re-sign edited statements with the fixtures' test key.
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "AirlockDaemonTests", dependencies: ["AirlockDaemon", "AirlockJSON", "AirlockTestSupport"]),
        .testTarget(
            name: "AirlockIntakeTests",
            dependencies: ["AirlockIntake", "AirlockAnalysis", "AirlockDaemon", "AirlockJSON", "AirlockTestSupport"]
        ),
        // The command line as users run it: the binaries' contract, names as bytes end to end.
        .testTarget(
            name: "AirlockCLITests",
            dependencies: ["AirlockAnalysis", "AirlockDaemon", "AirlockJSON", "AirlockTestSupport"]
        ),
    ]
)

for target in package.targets where [.executable, .test, .regular].contains(target.type) {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
