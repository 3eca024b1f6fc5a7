@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// The harness reads PyTorch ZIPs with its own miniz-like reader (`TorchZip` in Profiles/harness/model_loader.py), so that a
/// detonation loads the record torch.load would load. Its lookup must agree with the static analysis's replay of
/// miniz (`MinizLookup`) on every layout of duplicate and case-folded names. Nothing is unpickled: the harness's
/// reader is only asked which record it finds.
@Suite("Harness ZIP reader agrees with MinizLookup")
struct HarnessZipTests {
    @Test("duplicate and case-folded data.pkl records: the harness finds the record miniz finds")
    func duplicates() throws {
        let script = """
            import io, json, random, sys, warnings, zipfile
            sys.path.insert(0, sys.argv[1])
            from model_loader import TorchZip
            warnings.simplefilter("ignore")
            random.seed(7)
            variants = ["archive/data.pkl", "ARCHIVE/data.pkl", "archive/DATA.pkl", "archive/data.pkl0", "Archive/Data.PKL"]
            others = ["archive/version", "archive/byteorder", "archive/data/0", "archive/data/1", "archive/zz", "archive/a"]
            for case in range(300):
                names = ["archive/data.pkl"] + random.sample(others, random.randint(0, len(others)))
                names += [random.choice(variants) for _ in range(random.randint(1, 9))]
                random.shuffle(names)
                names.insert(0, "archive/version")  # the archive's name comes from the first record
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as z:
                    for i, n in enumerate(names):
                        z.writestr(zipfile.ZipInfo(n), b"%d" % i)
                z = TorchZip(buf)
                record = z.locate("data.pkl")
                stored = [list(r[0]) for r in z.records]  # as written (zipfile cuts a name at NUL)
                print(json.dumps({"names": stored, "found": z.records.index(record), "bytes": z.read("data.pkl").decode()}))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-I", "-S", "-B", "-c", script, "\(repositoryRoot)/Profiles/harness"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        var cases = 0
        for line in data.split(separator: UInt8(ascii: "\n")) {
            let c = try JSONSerialization.jsonObject(with: Data(line)) as! [String: Any]
            let names = (c["names"] as! [[Int]]).map { $0.map(UInt8.init) }
            let order = MinizLookup.sortedOrder(names)
            let swift = MinizLookup.locate(Array("archive/data.pkl".utf8), names: names, order: order)
            #expect(swift == c["found"] as? Int, "\(c["names"]!)")
            #expect(c["bytes"] as? String == String(c["found"] as! Int), "the harness read another record's bytes")
            cases += 1
        }
        #expect(cases == 300)
    }
}
