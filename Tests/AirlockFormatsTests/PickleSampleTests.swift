@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

@Suite("Pickle scanner: generated samples")
struct PickleSampleTests {
    /// Checks one report against an expectation from the manifest (also used for nested reports).
    func check(_ r: PickleReport, _ e: [String: any Sendable], _ name: String) {
        let ctx = Comment(rawValue: name)
        if let imports = e["imports"] as? [any Sendable] {
            let want = imports.compactMap { $0 as? String }
            if e["unordered"] as? Int == 1 {
                #expect(Set(r.importNames) == Set(want), ctx)
            } else {
                #expect(r.importNames == want, ctx)
            }
        }
        if let offsets = e["importOffsets"] as? [any Sendable] {
            #expect(r.imports.map(\.offset) == offsets.compactMap { $0 as? Int }, ctx)
        }
        if let calls = e["calls"] as? [any Sendable] {
            for case let c as [String: any Sendable] in calls {
                let callee = c["callee"] as? String ?? "?"
                let args = (c["args"] as? [any Sendable])?.compactMap { $0 as? String }
                let found = r.calls.contains { $0.callee == callee && (args == nil || $0.args == args) }
                #expect(
                    found,
                    "\(name): no call \(callee)(\(args?.joined(separator: ", ") ?? "*")) in \(r.calls.map { "\($0.callee)(\($0.args.joined(separator: ", ")))" })"
                )
            }
            if calls.isEmpty { #expect(r.calls.isEmpty, ctx) }
        }
        if let nested = e["nested"] as? [any Sendable] {
            #expect(r.nested.count == nested.count, ctx)
            for (sub, exp) in zip(r.nested, nested) {
                if let exp = exp as? [String: any Sendable] { check(sub, exp, name + "/nested") }
            }
        }
        if let offsets = e["nestedOffsets"] as? [any Sendable] {
            #expect(r.nestedOffsets == offsets.compactMap { $0 as? Int }, ctx)
        }
    }

    @Test("every generated sample: imports in order with offsets, calls with constant arguments, protocol, streams")
    func samples() throws {
        let s = try PickleSamples.get()
        #expect(s.entries.count >= 40)
        for e in s.entries {
            #expect(PickleDetector.looksLikePickle(ByteView(e.bytes)), "\(e.name) not detected")
            let r = scan(e.bytes)
            check(r, e.json, e.name)
            let ctx = Comment(rawValue: e.name)
            if e.json.keys.contains("protocol") {
                #expect(r.protocolVersion == e.json["protocol"] as? Int, ctx)
            }
            #expect(r.streams == (e.json["streams"] as? Int ?? 1), ctx)
            if let end = e.json["endOffset"] as? Int {
                #expect(r.endOffset == end, ctx)
            } else if e.json["observations"] == nil {
                #expect(r.endOffset == e.bytes.count, ctx)
            }
            let expectedObs = e.json["observations"] as? [String: any Sendable] ?? [:]
            for (kind, n) in expectedObs {
                #expect(r.count(kind) == n as? Int, "\(e.name): \(kind)")
            }
            for bad in [
                "pickle.truncated", "pickle.invalid-opcode", "pickle.stack-underflow", "pickle.memo-miss",
                "pickle.budget", "pickle.trailing-data",
            ] where expectedObs[bad] == nil {
                #expect(r.count(bad) == 0, "\(e.name): unexpected \(bad): \(r.observations)")
            }
            if e.json["nested"] == nil { #expect(r.nested.isEmpty, ctx) }
        }
    }

    @Test("benign pickles: only allowlist-style imports, no anomalies")
    func benign() throws {
        let s = try PickleSamples.get()
        let sd = scan(try s.sample("benign_state_dict").bytes)
        #expect(sd.importNames == ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"])
        #expect(sd.observations.isEmpty)
        let rebuild = sd.calls.first { $0.callee == "torch._utils._rebuild_tensor_v2" }
        #expect(rebuild?.args == ["<persistent>", "0", "(2, 3)", "(3, 1)", "False", "collections.OrderedDict(...)"])
        let build = sd.calls.first { $0.opcode == "BUILD" }
        #expect(build?.args.first?.hasPrefix("{'layer.weight': torch._utils._rebuild_tensor_v2(...)}") == true)

        let np = scan(try s.sample("benign_numpy").bytes)
        // Protocol 2 writes bytes as _codecs.encode(text, 'latin1'); the machine folds that back into bytes.
        #expect(
            np.importNames == ["numpy.core.multiarray._reconstruct", "numpy.ndarray", "_codecs.encode", "numpy.dtype"])
        #expect(
            np.calls.map(\.callee) == [
                "_codecs.encode", "numpy.core.multiarray._reconstruct", "numpy.dtype",
                "_codecs.encode", "numpy.core.multiarray._reconstruct",
            ])
        #expect(np.calls[1].args == ["numpy.ndarray", "(0,)", "b'b'"])
        #expect(
            np.calls[4].args == [
                "(1, (3,), numpy.dtype(...), False, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00')"
            ])
        #expect(np.observations.isEmpty)
    }

    @Test("dynamic resolution: getattr(__import__('os'), 'system') is os.system, with observations")
    func dynamic() throws {
        let s = try PickleSamples.get()
        let r = scan(try s.sample("builtins_getattr").bytes)
        #expect(r.calls.map(\.callee) == ["builtins.__import__", "builtins.getattr", "os.system"])
        #expect(r.calls[1].args == ["<module 'os'>", "'system'"])
        #expect(
            r.observations.filter { $0.kind == "pickle.dynamic-global" }.compactMap(\.evidence.global) == [
                "os", "os.system",
            ])

        let ops = scan(try s.sample("operator_gadgets").bytes)
        #expect(
            ops.calls.contains {
                $0.callee == "operator.methodcaller" && $0.args == ["'system'", "'touch /tmp/airlock-pickle-test'"]
            })
        #expect(ops.calls.contains { $0.callee == "<unknown>" && $0.args == ["<module 'os'>"] })
    }

    @Test("EXT1/EXT2/EXT4 codes are observed with their codes")
    func extCodes() throws {
        let r = scan(try PickleSamples.get().sample("ext_codes").bytes)
        let codes = r.observations.filter { $0.kind == "pickle.ext-code" }.compactMap { o in
            o.evidence.details.first { $0.0 == "code" }?.1
        }
        #expect(codes == ["66", "4660", "305419896"])
    }

    @Test("garbage after a payload keeps the payload; legacy layout reports trailing data where the storage starts")
    func garbageAndTrailing() throws {
        let s = try PickleSamples.get()
        let g = try s.sample("payload_then_garbage")
        let r = scan(g.bytes)
        #expect(r.first("pickle.invalid-opcode")?.evidence.offset == g.json["invalidOpcodeOffset"] as? Int)
        #expect(r.calls.first?.callee == "os.system")

        let t = try s.sample("legacy_torch")
        let lr = scan(t.bytes)
        #expect(lr.first("pickle.trailing-data")?.evidence.offset == t.json["trailingOffset"] as? Int)
        #expect(lr.endOffset == t.json["endOffset"] as? Int)
    }

    @Test("the same payload in protocols 0 to 5")
    func protocols() throws {
        let s = try PickleSamples.get()
        for proto in 0...5 {
            let r = scan(try s.sample("os_system_p\(proto)").bytes)
            #expect(r.importNames == ["os.system"])
            #expect(
                r.calls == [
                    PickleCall(
                        callee: "os.system", args: ["'touch /tmp/airlock-pickle-test'"],
                        offset: r.calls.first?.offset ?? -1, opcode: "REDUCE")
                ])
            #expect(r.protocolVersion == (proto >= 2 ? proto : nil))
            #expect(r.imports.first?.opcode == (proto >= 4 ? "STACK_GLOBAL" : "GLOBAL"))
        }
    }

    @Test("truncation at every offset returns a report and keeps what came before")
    func truncationEverywhere() throws {
        let s = try PickleSamples.get()
        for name in [
            "os_system_p4", "logging_dictconfig", "legacy_torch", "nested_pickle", "string_escapes_p0", "obj_p1",
        ] {
            let full = try s.sample(name).bytes
            let whole = scan(full)
            for cut in 0..<full.count {
                let r = scan(Array(full[..<cut]))
                #expect(r.endOffset <= cut)
                // Every import seen in a prefix is one of the whole file's, at the same offset.
                for g in r.imports {
                    #expect(whole.imports.contains(g), "\(name) cut at \(cut): \(g)")
                }
                // An import whose opcode is complete before the cut is found.
                for g in whole.imports where g.offset + 1 < cut && g.opcode == "STACK_GLOBAL" {
                    #expect(r.imports.contains(g), "\(name) cut at \(cut) lost \(g)")
                }
                if cut < full.count && name != "legacy_torch" {
                    #expect(r.count("pickle.truncated") >= 1 || cut == 0 || r.count("pickle.trailing-data") >= 0)
                }
            }
        }
    }
}
