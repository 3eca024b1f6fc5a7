// swift-tools-version:6.0

import PackageDescription

let package = Package(
    name: "airlock",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "airlock", targets: ["airlock"]),
        .library(name: "AirlockSandbox", targets: ["AirlockSandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
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
        // Everything that runs between clone and exec: async-signal-safe C, prepared by the parent.
        .target(
            name: "CSandbox",
            dependencies: ["CCap"],
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror=implicit-function-declaration"])]
        ),
        .target(
            name: "AirlockSandbox",
            dependencies: ["CSandbox", "CSeccomp", "CCap"]
        ),
        .executableTarget(
            name: "airlock",
            dependencies: [
                "AirlockSandbox",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // `make bench`: sandbox runs from a process that keeps its profile and filter, as a daemon does.
        .executableTarget(
            name: "airlock-bench",
            dependencies: ["AirlockSandbox"],
            path: "Tests/Bench/SandboxRunBench"
        ),
        .testTarget(
            name: "AirlockSandboxTests",
            dependencies: ["AirlockSandbox"]
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
