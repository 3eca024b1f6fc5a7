@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// Files written by the real libraries (`Tests/Generators/real_pickles.py`): joblib dumps read as joblib's
/// `NumpyUnpickler` reads them, NumPy scalars and arrays of every dtype at protocols 2–5, and hostile variants
/// spliced from them (payloads between, after and inside arrays, lying wrappers, frames, PROTO).
struct RealPickles: Sendable {
    struct Entry: Sendable {
        var name: String
        var kind: String
        var joblib: Bool
        var observation: String?
        var nested: Int?
        var bytes: [UInt8]
    }
    let entries: [Entry]

    static let shared: Result<RealPickles, TestSupportError> = {
        do {
            let dir = try generateSamples("real_pickles.py", [])
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))
            guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
                return .failure(TestSupportError("manifest is not a list"))
            }
            var entries: [Entry] = []
            for e in list {
                guard let name = e["name"] as? String, let kind = e["kind"] as? String else { continue }
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
                entries.append(
                    Entry(
                        name: name, kind: kind, joblib: e["joblib"] as? Bool ?? false,
                        observation: e["observation"] as? String, nested: e["nested"] as? Int, bytes: bytes))
            }
            return .success(RealPickles(entries: entries))
        } catch let e as TestSupportError {
            return .failure(e)
        } catch {
            return .failure(TestSupportError("\(error)"))
        }
    }()

    static func get() throws -> RealPickles { try shared.get() }

    func of(_ kind: String) -> [Entry] { entries.filter { $0.kind == kind } }
}

/// Every observation kind in a report and its nested reports.
func allObservationKinds(_ r: PickleReport) -> Set<String> {
    var out = Set<String>()
    var work = [r]
    while let x = work.popLast() {
        out.formUnion(x.observations.map(\.kind))
        work += x.nested
    }
    return out
}

@Suite("Pickle scanner: files the real libraries write")
struct PickleRealTests {
    func scanEntry(_ e: RealPickles.Entry) -> PickleReport {
        PickleScanner.scan(ByteView(e.bytes), joblib: e.joblib)
    }

    @Test("real joblib dumps and NumPy pickles read to their end, clean, object arrays scanned as nested pickles")
    func clean() throws {
        let all = try RealPickles.get()
        let clean = all.of("clean")
        #expect(clean.count >= 170)
        for e in clean {
            let r = scanEntry(e)
            let ctx = Comment(rawValue: e.name)
            #expect(r.observations.isEmpty, "\(e.name): \(r.observations.map { "\($0.kind) \($0.message)" })")
            #expect(r.endOffset == e.bytes.count, ctx)
            #expect(r.streams == 1, ctx)
            #expect(r.nested.count == (e.nested ?? 0), ctx)
            #expect(allObservationKinds(r).isEmpty, ctx)
            #expect(!r.allImports.contains { $0.module == "os" || $0.module == "posix" }, ctx)
        }
    }

    @Test("a random forest: every array's bytes skipped, the scan reaches the end of the file")
    func forest() throws {
        let e = try #require(try RealPickles.get().entries.first { $0.name == "forest-p4.joblib" })
        let r = scanEntry(e)
        #expect(r.endOffset == e.bytes.count)
        #expect(r.importNames.contains("sklearn.ensemble._forest.RandomForestClassifier"))
        #expect(r.importNames.contains("joblib.numpy_pickle.NumpyArrayWrapper"))
        // Read as a plain pickle, the raw bytes are not opcodes.
        let plain = PickleScanner.scan(ByteView(e.bytes))
        #expect(plain.endOffset < e.bytes.count)
    }

    @Test("payloads after the first or last array, inside an object array, behind lying wrappers, across frames")
    func payloads() throws {
        let hostile = try RealPickles.get().of("payload")
        #expect(hostile.count >= 10)
        for e in hostile {
            let r = scanEntry(e)
            #expect(r.allImports.contains { $0.fullName == "os.system" }, "\(e.name): \(r.allImports.map(\.fullName))")
            if let kind = e.observation {
                #expect(allObservationKinds(r).contains(kind), "\(e.name): \(allObservationKinds(r))")
            }
        }
    }

    @Test("anomalies: lying sizes, frames the loaders read differently, PROTO where no pickler writes it")
    func anomalies() throws {
        let odd = try RealPickles.get().of("observe")
        #expect(odd.count >= 4)
        for e in odd {
            let kinds = allObservationKinds(scanEntry(e))
            #expect(kinds.contains(e.observation ?? "?"), "\(e.name): \(kinds)")
        }
    }
}
