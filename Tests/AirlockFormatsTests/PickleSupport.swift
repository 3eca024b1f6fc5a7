@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// Runs `Tests/Generators/pickles.py` once per test process and holds its samples and manifest.
struct PickleSamples: Sendable {
    struct Call: Sendable {
        var callee: String
        var args: [String]?
    }
    struct Expected: Sendable {
        var name: String
        var bytes: [UInt8]
        var json: [String: any Sendable]
    }

    let dir: String
    let entries: [Expected]

    static var repoRoot: String { repositoryRoot }

    static let shared: Result<PickleSamples, PickleTestError> = {
        let dir = NSTemporaryDirectory() + "airlock-pickles-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            try runPython([repoRoot + "/Tests/Generators/pickles.py", dir])
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))
            guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
                return .failure(PickleTestError("manifest is not a list"))
            }
            var entries: [Expected] = []
            for e in list {
                guard let name = e["name"] as? String, let file = e["file"] as? String else { continue }
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)))
                entries.append(Expected(name: name, bytes: bytes, json: sendable(e)))
            }
            return .success(PickleSamples(dir: dir, entries: entries))
        } catch let e as PickleTestError {
            return .failure(e)
        } catch {
            return .failure(PickleTestError("\(error)"))
        }
    }()

    static func get() throws -> PickleSamples { try shared.get() }

    func sample(_ name: String) throws -> Expected {
        guard let e = entries.first(where: { $0.name == name }) else { throw PickleTestError("no sample \(name)") }
        return e
    }
}

struct PickleTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Converts JSONSerialization output to Sendable values (strings, numbers, arrays, dictionaries, NSNull → nil-less).
func sendable(_ v: Any) -> [String: any Sendable] {
    guard let d = v as? [String: Any] else { return [:] }
    return d.mapValues { sendableValue($0) }
}

func sendableValue(_ v: Any) -> any Sendable {
    switch v {
    case let s as String: return s
    case let n as NSNumber: return n.intValue
    case let a as [Any]: return a.map { sendableValue($0) }
    case let d as [String: Any]: return d.mapValues { sendableValue($0) }
    default: return Optional<Int>.none as any Sendable
    }
}

@discardableResult
func runPython(_ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3"] + args
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw PickleTestError("python3 \(args.joined(separator: " ")) failed: \(String(decoding: e, as: UTF8.self))")
    }
    return String(decoding: o, as: UTF8.self)
}

func scan(_ bytes: [UInt8], budget: ScanBudget = .standard) -> PickleReport {
    PickleScanner.scan(ByteView(bytes), budget: budget)
}

extension PickleReport {
    func count(_ kind: String) -> Int { observations.filter { $0.kind == kind }.count }
    func first(_ kind: String) -> Observation? { observations.first { $0.kind == kind } }
    var importNames: [String] { imports.map(\.fullName) }
}
