import AirlockTestSupport
import Foundation
import Testing

/// The top-level `Containerfile` (no container engine runs here): its package lists against the Makefile's and
/// against the libraries airlockd links, the files it copies, and docs/container.md against the systemd unit.
@Suite("Containerfile")
struct ContainerfileTests {
    /// The Containerfile's stages: the packages each `apt-get install` names, and its other instructions.
    struct Stage {
        var from = ""
        var packages: [String] = []
        var lines: [String] = []
    }

    static func stages() throws -> [Stage] {
        let text = try String(contentsOfFile: "\(repositoryRoot)/Containerfile", encoding: .utf8)
        var stages: [Stage] = []
        var logical = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") { continue }
            if trimmed.hasSuffix("\\") {
                logical += trimmed.dropLast() + " "
                continue
            }
            logical += trimmed
            defer { logical = "" }
            if logical.isEmpty { continue }
            if logical.hasPrefix("FROM ") {
                stages.append(Stage(from: logical))
                continue
            }
            guard !stages.isEmpty else { continue }
            stages[stages.count - 1].lines.append(logical)
            for command in logical.components(separatedBy: "&&") where command.contains("apt-get install") {
                let words = command.split(separator: " ").map(String.init)
                let after = words.drop { $0 != "install" }.dropFirst()
                stages[stages.count - 1].packages += after.filter { !$0.hasPrefix("-") }
            }
        }
        return stages
    }

    /// A variable of the Makefile (`NAME := a b c`), with `$(OTHER)` expanded.
    static func makefileList(_ name: String) throws -> [String] {
        let text = try String(contentsOfFile: "\(repositoryRoot)/Makefile", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("\(name) :=") }) else { return [] }
        var out: [String] = []
        for word in line.dropFirst("\(name) :=".count).split(separator: " ") {
            if word.hasPrefix("$(") && word.hasSuffix(")") {
                out += try makefileList(String(word.dropFirst(2).dropLast()))
            } else {
                out.append(String(word))
            }
        }
        return out
    }

    @Test("two stages: the build installs the Makefile's -dev packages, the run stage the ML stack and python3")
    func packagesFollowTheMakefile() throws {
        let stages = try Self.stages()
        #expect(stages.count == 2)
        let build = try #require(stages.first), run = try #require(stages.last)
        #expect(build.from.contains(" AS build") && run.from == "FROM debian:bookworm-slim")
        // What `make build` needs (BUILD_PACKAGES); the rest of APT_PACKAGES is for the tests and `make deb`.
        let needed = try Self.makefileList("BUILD_PACKAGES")
        #expect(needed.contains("libseccomp-dev"), "the Makefile's BUILD_PACKAGES moved: \(needed)")
        for p in needed { #expect(build.packages.contains(p), "build stage: \(p)") }
        let ml = try Self.makefileList("ML_PACKAGES")
        #expect(!ml.isEmpty)
        for p in ml + ["python3"] { #expect(run.packages.contains(p), "run stage: \(p)") }
        #expect(!run.packages.contains { $0.hasSuffix("-dev") }, "no build dependencies at run time")
    }

    @Test("the run stage installs the package of every shared library airlockd links (the Swift runtime aside)")
    func runStageHasTheLibraries() throws {
        let run = try #require(try Self.stages().last)
        let ldd = try runProgram("/usr/bin/ldd", [airlockdBinary])
        #expect(ldd.status == 0, "\(ldd.stderr)")
        var checked = 0
        for line in ldd.stdout.split(separator: "\n") {
            guard let arrow = line.range(of: "=> ") else { continue }
            let path = String(line[arrow.upperBound...].split(separator: " ")[0])
            // The toolchain's libraries (a debug build links the Swift runtime) are linked in statically by
            // `make build` (--static-swift-stdlib); they belong to no Debian package.
            let owner = try runProgram("/usr/bin/dpkg", ["-S", path])
            var package = owner.status == 0 ? owner.stdout : ""
            if package.isEmpty, path.hasPrefix("/lib/") {
                package = (try runProgram("/usr/bin/dpkg", ["-S", "/usr" + path])).stdout
            }
            guard let name = package.split(separator: ":").first.map(String.init), !name.isEmpty else { continue }
            checked += 1
            if name == "libc6" { continue }  // the base image's own C library
            #expect(run.packages.contains(name), "\(path) is in \(name), which the run stage does not install")
        }
        #expect(checked >= 5, "\(ldd.stdout)")
    }

    @Test("the files it copies exist; it runs airlockd on the socket of the docs, in a volume")
    func copiesAndEntrypoint() throws {
        let stages = try Self.stages()
        for line in stages.flatMap(\.lines) where line.hasPrefix("COPY ") && !line.contains("--from=") {
            let words = line.split(separator: " ").dropFirst().dropLast()
            for source in words {
                #expect(FileManager.default.fileExists(atPath: "\(repositoryRoot)/\(source)"), "\(line)")
            }
        }
        let run = try #require(stages.last)
        #expect(run.lines.contains(#"ENTRYPOINT ["/usr/local/bin/airlockd"]"#))
        #expect(run.lines.contains(#"CMD ["--socket", "/run/airlock/airlockd.sock"]"#))
        #expect(run.lines.contains(#"VOLUME ["/run/airlock"]"#))
        #expect(run.lines.contains { $0.contains("groupadd --system airlock") })
        let ignore = try String(contentsOfFile: "\(repositoryRoot)/.dockerignore", encoding: .utf8)
        #expect(ignore.split(separator: "\n").contains(".build"))
    }

    @Test("docs/container.md adds exactly the capabilities of airlockd.service, and names every allowance")
    func documentedCapabilities() throws {
        let unit = try String(contentsOfFile: "\(repositoryRoot)/systemd/airlockd.service", encoding: .utf8)
        let bounding = try #require(unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") })
        let caps = Set(bounding.dropFirst("CapabilityBoundingSet=".count).split(separator: " ").map { $0.dropFirst(4) })
        let doc = try String(contentsOfFile: "\(repositoryRoot)/docs/container.md", encoding: .utf8)
        let added = Set(
            doc.components(separatedBy: "--cap-add ").dropFirst().map { $0.prefix { $0.isLetter || $0 == "_" } })
        #expect(!caps.isEmpty && added == Set(caps.map(Substring.init)), "\(added) vs \(caps)")
        for needed in [
            "--cap-drop ALL", "apparmor=unconfined", "systempaths=unconfined", "unmask=ALL", "seccomp=",
            "/run/airlock", "docs/intake.md", "clone3", "CAP_SYS_ADMIN", "airlock profile export",
        ] {
            #expect(doc.contains(needed), "docs/container.md does not mention \(needed)")
        }
    }
}
