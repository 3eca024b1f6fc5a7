public import AirlockAnalysis
internal import AirlockFormats
public import AirlockSandbox
internal import AirlockTrace

/// The honeytokens' findings (issue 15): `dynamic.secrets` for each planted file (or `/proc/PID/environ`) the model
/// read, and `dynamic.exfiltration` for each token whose value appears in what left the sandbox — the emulated
/// network's captured bytes (and their gzip or zlib bodies), the DNS questions, the trace's program arguments and
/// path names, and the command's standard output and error (the consumer's logs).
public enum HoneytokenFindings {
    /// Bytes searched in one detonation, all destinations together: the captures are bounded upstream; this bounds
    /// the sum (decompressed bodies included), so the search costs a few milliseconds at most.
    static let maxBytes = 16 << 20
    /// Bytes one compressed body may inflate to, and all of them together.
    static let maxInflated = 1 << 20
    static let maxInflatedTotal = 4 << 20
    /// Findings of each kind, at most.
    static let maxFindings = 32
    /// Flows, and DNS questions, searched at most (the network part bounds them too).
    static let maxItems = 4096
    /// Bytes quoted on each side of a match.
    static let quoteContext = 40

    /// Both kinds of finding for `detonation`, whose world is `world` (nil or without tokens: none).
    public static func findings(_ detonation: Detonation, world: HostWorld?, policy: VerdictPolicy) -> [Finding] {
        guard let world, !world.honeytokens.isEmpty else { return [] }
        return reads(detonation.result, world: world, policy: policy)
            + sent(detonation.result, tokens: world.honeytokens, policy: policy)
    }

    // MARK: Reads

    /// One finding per planted file (or environ, or folder) opened in the model's phases, naming its tokens.
    static func reads(_ result: SandboxResult, world: HostWorld, policy: VerdictPolicy) -> [Finding] {
        var groups: [(path: String, events: [TraceEvent])] = []
        let planted = Set(world.honeytokenFiles)
        for event in result.trace where inModelPhase(event.phase, policy) {
            let path: String
            if event.rule == .honeytoken {
                path = event.args.path ?? "?"
            } else if event.action == .allowed, ["open", "openat", "openat2"].contains(event.syscall),
                let resolved = event.args.resolved, planted.contains(resolved)
            {
                // Another name for a planted file (a symbolic link in /tmp, `/proc/self/cwd/…`, a reopened O_PATH
                // descriptor): allowed by the name asked for, judged by the file the supervisor opened.
                path = resolved
            } else {
                continue
            }
            if let i = groups.firstIndex(where: { $0.path == path }) {
                groups[i].events.append(event)
            } else if groups.count < maxFindings {
                groups.append((path, [event]))
            }
        }
        let rule = policy.honeytokenRead
        return groups.map { path, events in
            let first = events[0]
            let planted = world.honeytokens(plantedAt: path)
            let what: String
            var tokens = planted
            if !planted.isEmpty {
                what = planted.map(\.name).joined(separator: ", ")
            } else if path.hasPrefix("/proc/") && path.hasSuffix("/environ") {
                tokens = world.honeytokens.filter {
                    $0.places.contains { if case .environment = $0 { true } else { false } }
                }
                what = "the environment, with " + tokens.map(\.name).joined(separator: ", ")
            } else {
                what = "a folder of planted credentials, listed"
            }
            var details: [(String, String)] = [
                ("phase", first.phase ?? HarnessPhase.startup.rawValue), ("syscall", first.syscall), ("path", path),
                ("tokens", what),
            ]
            if !tokens.isEmpty {
                details.append(("planted", places(tokens)))
            }
            if events.count > 1 { details.append(("events", String(events.count))) }
            var evidence = Evidence(details: details)
            evidence.seq = events.prefix(DynamicRules.maxSeqs).map(\.seq)
            return Finding(
                rule: rule.finding, severity: rule.severity, source: .dynamic,
                message: rule.message + DynamicRules.phaseWords(first.phase) + ": \(path) (\(what))", evidence: evidence
            )
        }
    }

    // MARK: Sending

    /// Bytes that left the sandbox, and where they went.
    struct Outgoing {
        var destination: String
        var bytes: [UInt8]
        var phase: String?
        var seq: Int?
        /// DNS: compared without case.
        var folded = false
    }

    /// One finding per token and destination whose bytes hold it, as is or encoded.
    static func sent(_ result: SandboxResult, tokens: [Honeytoken], policy: VerdictPolicy) -> [Finding] {
        let exact = ExfiltrationMatcher(tokens: tokens)
        var folded: ExfiltrationMatcher? = nil
        let squeezed = ExfiltrationMatcher(tokens: tokens, squeeze: true)
        var out: [Finding] = []
        // One finding per token and destination: the same send repeated (a program tried along PATH) adds its seq.
        var seen: [String: Int] = [:]
        var budget = maxBytes
        for item in outgoing(result) where inModelPhase(item.phase, policy) {
            guard out.count < maxFindings, budget > 0 else { break }
            let bytes = Array(item.bytes.prefix(budget))
            budget -= bytes.count
            let matcher: ExfiltrationMatcher
            if item.folded {
                if folded == nil { folded = ExfiltrationMatcher(tokens: tokens, foldCase: true) }
                matcher = folded!
            } else {
                matcher = exact
            }
            var matches = matcher.matches(in: bytes)
            // Then with separators dropped, for the tokens not found as they are.
            let found = Set(matches.map(\.token))
            for var m in squeezed.matches(in: bytes) where !found.contains(m.token) {
                m.form += ", cut by separators"
                matches.append(m)
            }
            for match in matches where out.count < maxFindings {
                let key = "\(match.token) \(item.destination)"
                if let i = seen[key] {
                    if let seq = item.seq, let seqs = out[i].evidence.seq, seqs.count < DynamicRules.maxSeqs {
                        out[i].evidence.seq = seqs + [seq]
                    }
                    continue
                }
                seen[key] = out.count
                out.append(finding(match, tokens[match.token], item, bytes, policy.honeytokenSent))
            }
        }
        return out
    }

    static func finding(
        _ match: ExfiltrationMatcher.Match, _ token: Honeytoken, _ item: Outgoing, _ bytes: [UInt8],
        _ rule: VerdictPolicy.Rule
    ) -> Finding {
        let quote = HoneytokenFindings.quote(bytes, match.offset, match.length)
        let whole = token.secrets.map { ExfiltrationMatcher.forms($0).first { $0.0 == match.form }?.1.count ?? 0 }
            .filter { $0 > 0 }.max()
        var details: [(String, String)] = [
            ("phase", item.phase ?? "any (the output is not divided by phase)"), ("token", token.name),
            ("planted", places([token])),
            ("destination", item.destination), ("encoding", match.form),
            ("matched", "\(match.length) characters" + (whole.map { " of \($0)" } ?? "")),
            ("matchOffset", String(match.offset)), ("quote", quote),
        ]
        if item.folded { details.append(("case", "compared without case (DNS)")) }
        var evidence = Evidence(details: details)
        if let seq = item.seq { evidence.seq = [seq] }
        return Finding(
            rule: rule.finding, severity: rule.severity, source: .dynamic,
            message: rule.message + (item.phase.map(DynamicRules.phaseWords) ?? "")
                + ": \(token.name) (\(places([token]))) in \(item.destination), \(match.form): \(quote)",
            evidence: evidence)
    }

    /// Everything that left the sandbox, in a fixed order: DNS questions (each, then each domain's questions joined),
    /// network flows (and their compressed bodies), the trace's arguments, then standard output and error.
    static func outgoing(_ result: SandboxResult) -> [Outgoing] {
        var out: [Outgoing] = []
        var inflatedTotal = 0
        for flow in result.network.prefix(maxItems) {
            let at = "\(flow.address):\(flow.port)"
            let destination =
                "\(flow.transport.rawValue) " + (flow.name.map { "\($0):\(flow.port) (\(flow.address))" } ?? at)
            out.append(Outgoing(destination: destination, bytes: flow.bytes, phase: flow.phase, seq: flow.seq))
            for (how, body) in bodies(flow.bytes, budget: &inflatedTotal) {
                out.append(
                    Outgoing(
                        destination: destination + ", \(how) body", bytes: body, phase: flow.phase, seq: flow.seq))
            }
        }
        var domains: [(domain: String, leading: [UInt8], count: Int, phase: String?)] = []
        var domainIndex: [String: Int] = [:]
        for question in result.dnsQuestions.prefix(maxItems) {
            let labels = question.name.split(separator: ".")
            out.append(
                Outgoing(
                    destination: "DNS question \(question.name) (\(question.type))",
                    bytes: Array(labels.joined().utf8), phase: question.phase, folded: true))
            guard labels.count > 2 else { continue }
            // A value too long for one name goes out in several: the labels before the domain, joined in order.
            let domain = labels.suffix(2).joined(separator: ".").lowercased()
            let leading = Array(labels.dropLast(2).joined().utf8)
            if let i = domainIndex[domain] {
                if domains[i].leading.count < maxBytes / 16 { domains[i].leading += leading }
                domains[i].count += 1
            } else {
                domainIndex[domain] = domains.count
                domains.append((domain, leading, 1, question.phase))
            }
        }
        for d in domains where d.count > 1 {
            out.append(
                Outgoing(
                    destination: "DNS questions for *.\(d.domain) (\(d.count) names, joined)", bytes: d.leading,
                    phase: d.phase, folded: true))
        }
        for event in result.trace {
            let a = event.args
            var texts: [(String, String)] = []
            if let argv = a.argv { texts.append(("the arguments of \(event.syscall)", argv.joined(separator: " "))) }
            for (what, value) in [("path", a.path), ("second path", a.path2), ("address", a.address)] {
                if let value { texts.append(("the \(what) of \(event.syscall)", value)) }
            }
            for (what, text) in texts {
                out.append(
                    Outgoing(
                        destination: "\(what) (\(event.action.rawValue))", bytes: Array(text.utf8),
                        phase: event.phase, seq: event.seq))
            }
        }
        out.append(Outgoing(destination: "standard output (the consumer's logs)", bytes: result.stdout, phase: nil))
        out.append(Outgoing(destination: "standard error (the consumer's logs)", bytes: result.stderr, phase: nil))
        // DNS questions first: a value spelled into names goes out through the resolver, and the name it asked for is
        // the destination worth naming, not the resolver's address.
        let asked = out.filter { $0.destination.hasPrefix("DNS ") }
        return asked + out.filter { !$0.destination.hasPrefix("DNS ") }
    }

    /// Compressed bodies in a flow: at its start, or after an HTTP header. Bounded inflation.
    static func bodies(_ bytes: [UInt8], budget inflated: inout Int) -> [(String, [UInt8])] {
        var starts = [0]
        // The end of an HTTP header, within its first 64 KiB.
        bytes.withUnsafeBufferPointer { b in
            var i = 0
            let last = min(b.count, 65536) - 4
            while i <= last {
                if b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 {
                    starts.append(i + 4)
                    return
                }
                i += 1
            }
        }
        var candidates: [(String, [UInt8])] = starts.filter { $0 < bytes.count }.map { ("", Array(bytes[$0...])) }
        // A compressed body sent as base64 (a JSON field, a form value): the long base64 runs of the body, decoded.
        for run in base64Runs(bytes, from: starts.last ?? 0) { candidates.append(("base64'd ", run)) }
        var out: [(String, [UInt8])] = []
        for (how, candidate) in candidates where inflated < maxInflatedTotal {
            let view = ByteView(candidate)
            guard let kind = Compression.detect(view), [.gzip, .zlib, .zstd, .bzip2, .xz].contains(kind) else {
                continue
            }
            let limit = min(maxInflated, maxInflatedTotal - inflated)
            let result = Decompressor.decompress(view, kind, limit: limit)
            let data = result.data.array
            inflated += max(data.count, 1)
            if !data.isEmpty { out.append((how + kind.rawValue, data)) }
        }
        return out
    }

    /// Base64 runs of at least 32 characters (standard or URL-safe) in the first MiB from `start`, decoded; at most
    /// 16 of them.
    static func base64Runs(_ bytes: [UInt8], from start: Int) -> [[UInt8]] {
        var value = [Int8](repeating: -1, count: 256)
        for (i, c) in TokenText.base64.enumerated() { value[Int(c)] = Int8(i) }
        value[Int(UInt8(ascii: "-"))] = 62
        value[Int(UInt8(ascii: "_"))] = 63
        var runs: [[UInt8]] = []
        var i = start
        let end = min(bytes.count, start + (1 << 20))
        while i < end && runs.count < 16 {
            guard value[Int(bytes[i])] >= 0 else {
                i += 1
                continue
            }
            var j = i
            var decoded: [UInt8] = []
            var acc: UInt32 = 0
            var bits = 0
            while j < end, value[Int(bytes[j])] >= 0 {
                acc = acc << 6 | UInt32(value[Int(bytes[j])])
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    decoded.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                }
                j += 1
            }
            if j - i >= 32 { runs.append(decoded) }
            i = j
        }
        return runs
    }

    /// The bytes around a match, printable, with the match between `»` `«`.
    static func quote(_ bytes: [UInt8], _ offset: Int, _ length: Int) -> String {
        let from = max(0, offset - quoteContext), to = min(bytes.count, offset + length + quoteContext)
        let shown = { (r: Range<Int>) in
            bytes[r].map { b -> String in
                b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\\") ? String(UnicodeScalar(b)) : "\\x" + hex2(b)
            }.joined()
        }
        let matched = shown(offset..<min(offset + length, offset + 200))
        return shown(from..<offset) + "»" + matched + (length > 200 ? "…" : "") + "«" + shown(offset + length..<to)
    }

    static func hex2(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }

    static func places(_ tokens: [Honeytoken]) -> String {
        var seen = Set<String>()
        return tokens.flatMap(\.places).map(\.description).filter { seen.insert($0).inserted }.joined(separator: ", ")
    }

    /// Behaviour of the model's phases (unknown counts as the model's): start-up runs no code from the input.
    static func inModelPhase(_ phase: String?, _ policy: VerdictPolicy) -> Bool {
        guard let phase else { return true }
        guard let p = HarnessPhase(rawValue: phase) else { return true }
        return policy.modelPhases.contains(p)
    }
}
