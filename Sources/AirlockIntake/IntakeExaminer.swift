import AirlockNames
internal import AirlockAnalysis
internal import AirlockDaemon
internal import AirlockProbe
internal import AirlockFormats
internal import AirlockJSON
internal import AirlockProvenance
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Examines one model in quarantine: whether it is the one meant (pinned manifest, signature), what it does when
/// loaded (the probe, here or through airlockd), and the decision the policy makes of both. It moves and writes
/// nothing: the intake's state machine (`Intake`) writes the report it returns and releases the model.
struct IntakeExaminer: Sendable {
    let policy: IntakePolicy
    /// The public keys (PEM) a signature may verify with.
    let keys: [[UInt8]]
    /// Where detonations run.
    let backend: ProbeBackend

    /// Where detonations run: through airlockd at `socket` when one is named, else here with the policy's profile.
    /// The policy's `python` must be of the backend's kind: a runtime name through airlockd (which resolves only its
    /// own configured runtimes), an absolute path here. A name the daemon does not have is refused now when the
    /// daemon answers `status`; one that cannot be reached is asked again with every model.
    static func backend(policy: IntakePolicy, socket: String?) throws(IntakeError) -> ProbeBackend {
        if let socket {
            if let python = policy.python {
                guard DaemonRuntimes.isName(python) else {
                    throw IntakeError(
                        "the policy's python \(python) is a path, but the intake probes through airlockd at \(socket), which takes only the name of one of its runtimes (airlockd --python NAME=PATH; airlock status lists them)"
                    )
                }
                if let names = try? IntakeExaminer.runtimes(socket: socket), !names.contains(python) {
                    throw IntakeError(
                        "the policy's python \(python): airlockd at \(socket) has no runtime of that name (it has \(names.joined(separator: ", ")))"
                    )
                }
            }
            return .daemon(
                DaemonBackend(
                    socket: socket, timeout: policy.timeoutSeconds, probePhase: policy.probePhase,
                    python: policy.python, worlds: policy.worlds, worldBudget: policy.worldBudgetSeconds))
        }
        if let python = policy.python, !python.hasPrefix("/") {
            throw IntakeError(
                "the policy's python \(python) is the name of an airlockd runtime, but no socket is named and the intake probes here: name the daemon (the policy's socket, --socket or $AIRLOCK_SOCKET) or give the interpreter's absolute path"
            )
        }
        do {
            var options = try ProbeBackend.localOptions(
                profile: policy.profile, policy: policy.verdictPolicy, timeout: policy.timeoutSeconds,
                probePhase: policy.probePhase, python: policy.python)
            options.worlds = policy.worlds
            options.worldBudgetSeconds = policy.worldBudgetSeconds
            return .local(options)
        } catch {
            throw IntakeError("cannot prepare detonations: \(error)")
        }
    }

    /// The names of the runtimes airlockd at `socket` offers (its `status`).
    private static func runtimes(socket: String) throws(ClientError) -> [String] {
        let reply = try DaemonClient(path: socket).call("status", timeout: 30)
        guard case .object(let status)? = reply.first(where: { $0.0 == "status" })?.1,
            case .array(let items)? = status.first(where: { $0.0 == "runtimes" })?.1
        else { throw ClientError("protocol", "no runtimes in airlockd's status") }
        return items.compactMap { item in
            guard case .object(let r) = item, case .string(let name)? = r.first(where: { $0.0 == "name" })?.1 else {
                return nil
            }
            return name
        }
    }

    /// Verifies and probes the open model `fd` (a file, or a folder when `isFolder`), named `name`, quarantined as
    /// `id`; returns what was found and decided.
    func examine(fd: Int32, isFolder: Bool, name: FileName, id: String) throws(IntakeError) -> IntakeReport {
        let examinedAt = Intake.timestamp()
        let (verification, provenance, source) = try verify(fd: fd, isFolder: isFolder, name: name)

        // The model's own name is judged as a folder's entries are: no walk sees it.
        let nameFindings = NameFindings.findings(name, lookalikes: [])
        var reports = try probe(fd: fd, isFolder: isFolder, name: name.escaped)
        if !nameFindings.isEmpty {
            let target = ReportTarget(path: name.escaped, size: 0, sha256: nil, format: isFolder ? "folder" : "unknown")
            reports.insert(Report(target: target, findings: nameFindings), at: 0)
        }
        // The stored report is bounded like a daemon's reply: traces (then minor findings) go before any verdict.
        // Measured as written: indented, each line 4 spaces deeper inside `reports`.
        Report.fit(&reports, within: Intake.maxReportBytes) { report in
            let text = Array(report.json.pretty().utf8)
            return text.count + 4 * text.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
        }
        // Provenance is a gate, not a verdict to tolerate: only a model that is the one meant may pass, and then
        // only with a probe verdict the policy passes.
        let probeVerdict = reports.map(\.verdict).max() ?? .error
        let approved = provenance.verdict == .clean && policy.pass.contains(probeVerdict)
        return IntakeReport(
            id: id, name: name.escaped, isFolder: isFolder, approved: approved,
            reason: IntakeReport.reason(
                approved: approved, provenance: provenance, probeVerdict: probeVerdict, reports: reports,
                pass: policy.pass),
            probeVerdict: probeVerdict, pass: policy.pass, examinedAt: examinedAt, decidedAt: Intake.timestamp(),
            verdict: ([provenance.verdict] + reports.map(\.verdict)).max() ?? .error,
            provenance: IntakeReport.Provenance(
                verdict: provenance.verdict, checked: verification.checked, findings: provenance.findings),
            reports: reports,
            manifest: Manifest(inventory: verification.inventory, name: name.escaped, source: source))
    }

    /// The provenance check: the verification, its report with the policy's own findings added, and the pinned
    /// manifest's source.
    private func verify(fd: Int32, isFolder: Bool, name: FileName) throws(IntakeError)
        -> (Verification, Report, String?)
    {
        var request = VerificationRequest(publicKeys: keys, ignore: [Arrival.marker, policy.signatureFile], threads: 1)
        var extra: [Finding] = []
        if let dir = policy.manifests {
            // Looked up under the escaped name (lossless, so a name cannot borrow another model's pin).
            let path = dir + "/" + name.escaped + ".json"
            if IntakeRoot.exists(AT_FDCWD, path) {
                do {
                    request.manifest = try Manifest.read(path: path)
                } catch {
                    throw IntakeError("the pinned manifest \(path) cannot be used: \(error.message)")
                }
            } else if policy.requireManifest {
                extra.append(
                    Finding(
                        rule: "provenance.manifest-missing", severity: .high, source: .provenance,
                        message: "no pinned manifest \(path): the policy requires one for every model"))
            }
        }
        if isFolder, IntakeRoot.exists(fd, FileName(policy.signatureFile)) {
            guard let sig = FileSystem.openBeneath(fd, policy.signatureFile, O_RDONLY | O_NONBLOCK) else {
                throw IntakeError.system("cannot open \(name)/\(policy.signatureFile)")
            }
            defer { sig.close() }
            do {
                request.signatureBundle = try BoundedFile.read(
                    fd: sig.rawValue, limit: 64 << 20, name: "signature \(name)/\(policy.signatureFile)")
            } catch {
                throw IntakeError(error.description, errno: error.errno)
            }
        }
        if policy.requireSignature && request.signatureBundle == nil
            && !(request.manifest?.policy?.requireSignature ?? false)
        {
            extra.append(
                Finding(
                    rule: "provenance.signature-missing", severity: .high, source: .provenance,
                    message: isFolder
                        ? "no signature (\(policy.signatureFile)) in the model folder: the policy requires one"
                        : "a single file carries no signature: deliver it in a folder with \(policy.signatureFile)"))
        }
        let verification: Verification
        do {
            verification = try ProvenanceVerifier.verify(fd: fd, display: name.escaped, name: name, request: request)
        } catch {
            throw IntakeError("cannot hash \(name): \(error.message)")
        }
        var provenance = verification.report
        provenance.add(extra)
        return (verification, provenance, request.manifest?.source)
    }

    /// The probe reports: one per file, through airlockd or here; a model with no file gets one saying so.
    private func probe(fd: Int32, isFolder: Bool, name: String) throws(IntakeError) -> [Report] {
        var reports: [Report]
        do {
            reports = try backend.probe(fd: fd, isFolder: isFolder, name: name)
        } catch {
            throw IntakeError("\(backend.place): \(error.message)")
        }
        if reports.isEmpty {
            let target = ReportTarget(path: name, size: 0, sha256: nil, format: isFolder ? "folder" : "unknown")
            reports.append(
                Report(
                    target: target,
                    findings: [
                        Finding(
                            rule: "intake.empty", severity: .medium, source: .static, message: "the model holds no file"
                        )
                    ]))
        }
        return reports
    }
}
