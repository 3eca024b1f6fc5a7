import AirlockAnalysis
import AirlockJSON
import AirlockFormats
import AirlockTrace
@testable import AirlockProbe
@testable import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

/// Credential thieves detonated in a world with planted tokens (`Tests/Generators/thieves.py`): the reads are
/// `dynamic.secrets`, the sends `dynamic.exfiltration`, a benign model has no token finding.
///
/// `nowVisible` checks what this branch sees on its own (planted-file and environ reads, a refused exec's arguments,
/// the logs). `throughEmulatedNetwork` checks the HTTP and DNS sends: it passes once the emulated network fills
/// `SandboxResult.network` and `dnsQuestions` (issue 15's network part); until then it fails.
@Suite("Probe: honeytokens and credential thieves", .serialized)
struct HoneytokenProbeTests {
    static func world() throws -> HostWorld {
        let profile = try defaultProfile()
        var world = HostWorld(
            name: "credentials", hostname: "gpu-node-7",
            user: HostWorld.User(name: "mlsvc", uid: 1000, gid: 1000, home: "/home/mlsvc"),
            environment: profile.sandbox.environment.map {
                HostWorld.Variable($0.0, $0.0 == "HOME" ? "/home/mlsvc" : $0.1)
            })
        Honeytokens.plant(in: &world)
        return world
    }

    static func options() throws -> ProbeOptions {
        var options = try ProbeTests.options()
        options.world = try world()
        return options
    }

    /// Probes every thief in a fresh world, and checks every report against docs/report.schema.json.
    static func run(_ body: (_ sample: [String: Any], _ report: Report) -> Void) throws {
        try withSamples("thieves.py") { dir, _ in
            let options = try HoneytokenProbeTests.options()
            var lines: [String] = []
            for sample in try ProbeTests.manifest("\(dir)/manifest.json") {
                let report = Prober.probe(file: "\(dir)/\(sample["file"] as! String)", options: options)
                lines.append(report.json.serialized())
                body(sample, report)
            }
            try lines.joined(separator: "\n").write(toFile: "\(dir)/reports.jsonl", atomically: true, encoding: .utf8)
            let validation = try SchemaValidation.python([
                "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", "\(dir)/reports.jsonl",
            ])
            #expect(validation.status == 0, "\(validation.output)")
        }
    }

    static func dynamic(_ report: Report, _ rule: String) -> [Finding] {
        report.findings.filter { $0.rule == rule && $0.source == .dynamic }
    }

    @Test("reads, refused execs and the logs: each thief malicious with its dynamic evidence; benign clean")
    func nowVisible() throws {
        var checked = 0
        try HoneytokenProbeTests.run { sample, report in
            let name = sample["name"] as! String
            let tokenFindings = report.findings.filter {
                $0.rule == "dynamic.secrets" || $0.rule == "dynamic.exfiltration"
            }
            if sample["benign"] as? Bool == true {
                #expect(report.verdict == .clean, "\(name): \(report.findings.map(\.message))")
                #expect(tokenFindings.isEmpty)
                return
            }
            #expect(report.verdict == .malicious, "\(name)")
            for rule in sample["now"] as! [String] {
                let found = HoneytokenProbeTests.dynamic(report, rule)
                #expect(!found.isEmpty, "\(name): no \(rule); \(report.findings.map { "\($0.rule): \($0.message)" })")
                #expect(found.allSatisfy { $0.severity == .critical }, "\(name): \(rule)")
            }
            switch name {
            case "aws_http", "aws_gzip", "aws_dns":
                let read = HoneytokenProbeTests.dynamic(report, "dynamic.secrets").first
                #expect(read?.message.contains("/home/mlsvc/.aws/credentials") == true, "\(name)")
                #expect(read?.message.contains("AWS secret access key") == true, "\(name)")
            case "ssh_curl":
                let sent = HoneytokenProbeTests.dynamic(report, "dynamic.exfiltration")
                #expect(sent.contains { $0.message.contains("SSH private key") && $0.message.contains("execve") })
            case "hf_env_shell":
                let sent = HoneytokenProbeTests.dynamic(report, "dynamic.exfiltration")
                #expect(sent.contains { $0.message.contains("Hugging Face token") && $0.message.contains("$HF_TOKEN") })
            case "env_logs":
                #expect(
                    HoneytokenProbeTests.dynamic(report, "dynamic.exfiltration").contains {
                        $0.message.contains("OpenAI")
                    })
            case "only_reads":
                let paths = HoneytokenProbeTests.dynamic(report, "dynamic.secrets").compactMap {
                    $0.evidence.details.first { $0.0 == "path" }?.1
                }
                for p in [".ssh", ".ssh/id_ed25519", ".netrc", ".docker/config.json", ".kube/config"] {
                    #expect(paths.contains("/home/mlsvc/" + p), "only_reads: \(p) not read; \(paths)")
                }
                #expect(HoneytokenProbeTests.dynamic(report, "dynamic.exfiltration").isEmpty)
            case "reads_environ":
                let read = HoneytokenProbeTests.dynamic(report, "dynamic.secrets").first
                #expect(
                    read?.message.contains("environ") == true
                        && read?.evidence.details.contains { $0.1.contains("$HF_TOKEN") } == true)
            default:
                break
            }
            checked += 1
        }
        #expect(checked == 10)
    }

    @Test("a planted file is readable and holds its token inside the sandbox; others' secrets stay refused")
    func plantedFileReadable() throws {
        let world = try HoneytokenProbeTests.world()
        var request = SandboxRequest(
            argv: [
                "python3", "-c",
                "import os\nprint(open(os.path.expanduser('~/.aws/credentials')).read())\nprint(sorted(os.listdir(os.path.expanduser('~/.ssh'))))\ntry:\n  open('/etc/shadow')\nexcept OSError as e:\n  print('refused', e.errno)",
            ], profile: try defaultProfile(), timeoutSeconds: 20)
        request.world = world
        let result = try Sandbox.run(request)
        let secret = HoneytokenTests.env(world, "AWS_SECRET_ACCESS_KEY")
        #expect(result.out.contains(secret), "\(result.out) \(result.err)")
        #expect(result.out.contains("['id_ed25519', 'id_ed25519.pub', 'known_hosts']"))
        #expect(result.out.contains("refused 13"))
        #expect(result.trace.contains { $0.rule == .honeytoken && $0.args.path == "/home/mlsvc/.aws/credentials" })
    }

    @Test("a planted file read through another name (a link in /tmp, /proc/self/cwd, an O_PATH reopen) is still named")
    func otherNames() throws {
        let world = try HoneytokenProbeTests.world()
        let code = """
            import os
            os.chdir(os.path.expanduser('~/.aws'))
            open('/proc/self/cwd/credentials').read()
            os.symlink(os.path.expanduser('~/.ssh/id_ed25519'), '/tmp/k')
            open('/tmp/k').read()
            p = os.open(os.path.expanduser('~/.netrc'), os.O_PATH)
            open('/proc/self/fd/%d' % p).read()
            print('read all')
            """
        var request = SandboxRequest(argv: ["python3", "-c", code], profile: try defaultProfile(), timeoutSeconds: 20)
        request.world = world
        let result = try Sandbox.run(request)
        #expect(result.out == "read all\n", "\(result.err)")
        // Judged as if the whole run were the model's (a bare `python3 -c` announces no phases).
        let policy = try ProbeTests.options().policy
        let reads = HoneytokenFindings.reads(result, world: world, policy: policy).compactMap {
            $0.evidence.details.first { $0.0 == "path" }?.1
        }
        for path in [".aws/credentials", ".ssh/id_ed25519", ".netrc"] {
            #expect(reads.contains("/home/mlsvc/" + path), "\(path): \(reads)")
        }
    }

    @Test("(after the network merge) HTTP, JSON, gzip and DNS sends are dynamic.exfiltration naming the destination")
    func throughEmulatedNetwork() throws {
        try HoneytokenProbeTests.run { sample, report in
            let name = sample["name"] as! String
            guard !(sample["network"] as! [String]).isEmpty else { return }
            let sent = HoneytokenProbeTests.dynamic(report, "dynamic.exfiltration")
            #expect(!sent.isEmpty, "\(name): nothing sent seen; network \(report.detonation.map { "\($0)" } ?? "-")")
            let destination = sent.first?.evidence.details.first { $0.0 == "destination" }?.1 ?? ""
            let expected = [
                "aws_http": "telemetry.modelhub-cdn.example", "hf_env_http": "hf-mirror.example",
                "hf_file_json": "api.metrics-sink.example", "aws_gzip": "upload.weights-cache.example",
                "aws_dns": "exfil-collector.example",
            ]
            #expect(destination.contains(expected[name] ?? "?"), "\(name): \(destination)")
        }
    }
}
