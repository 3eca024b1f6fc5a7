internal import AirlockFormats

/// tar and 7z archives: their own anomalies, then every file in them analysed as a ZIP member is
/// (`ArchiveScanner.member`: pickles, NumPy arrays, nested archives and compressed streams), with its name as the
/// evidence's `member`.
enum PackedArchiveScanner {
    /// A tar archive: members are slices of the file (no copy).
    static func tar(_ view: ByteView, budget: ScanBudget, depth: Int) -> StaticScanner.Analysis {
        let archive = TarArchive.read(view)
        var findings = archive.observations.map(ObservationRules.finding)
        var hints = LoadHints()
        var inflated = 0
        for (i, m) in archive.members.enumerated() {
            if budget.expired { break }  // the report becomes an error (`ScanDeadline`)
            guard i < ArchiveScanner.maxMembers else {
                findings.append(
                    Finding(
                        rule: "tar.too-many-members", severity: .medium,
                        message: "only the first \(ArchiveScanner.maxMembers) members were examined"))
                break
            }
            guard let data = view.slice(m.offset, m.size) else { continue }
            findings += ArchiveScanner.member(
                data, name: m.name, archiveFormat: .tar, budget: budget, depth: depth, inflated: &inflated,
                hints: &hints)
        }
        return StaticScanner.Analysis(format: .tar, findings: findings, hints: hints)
    }

    /// A 7z archive: each folder decoded once, within the budget, and its files cut from its output.
    static func sevenZip(_ view: ByteView, budget: ScanBudget, depth: Int) -> StaticScanner.Analysis {
        let archive = SevenZipArchive.read(view, limit: budget.maxInflatedBytes)
        var findings = archive.observations.map(ObservationRules.finding)
        var hints = LoadHints()
        var inflated = 0
        let (product, over) = budget.maxInflatedBytes.multipliedReportingOverflow(
            by: ArchiveScanner.inflatedTotalFactor)
        let totalLimit = over ? Int.max : product
        var examined = 0
        var skipped = false
        // Files by folder, once (a filter per folder is quadratic in a header that lists 100 000 of each).
        var byFolder: [Int: [SevenZipArchive.Member]] = [:]
        for m in archive.members { if let f = m.folder { byFolder[f, default: []].append(m) } }
        for (index, folder) in archive.folders.enumerated() {
            guard let members = byFolder[index], !members.isEmpty else { continue }
            if budget.expired { break }  // the report becomes an error (`ScanDeadline`)
            guard examined < ArchiveScanner.maxMembers else {
                skipped = true
                break
            }
            let names = members.prefix(5).map(\.name).joined(separator: ", ")
            guard inflated < totalLimit else {
                findings.append(
                    Finding(
                        rule: "7z.bomb", severity: .high,
                        message:
                            "the folders decode to more than \(totalLimit) bytes in all: \(names) and the folders after were not examined",
                        evidence: Evidence(member: members.first?.name, details: [("limit", String(totalLimit))])))
                break
            }
            let out = SevenZipArchive.decode(folder, from: view, limit: budget.maxInflatedBytes)
            inflated = ArchiveScanner.saturatingSum(inflated, max(out.data.count, folder.packs.first?.size ?? 0))
            if let why = out.unsupported {
                if !out.encrypted {
                    findings.append(
                        Finding(
                            rule: "7z.unsupported-method", severity: .medium,
                            message: "\(why): \(names) not analysed", evidence: Evidence(member: members.first?.name)))
                }
                continue
            }
            if out.overLimit {
                findings.append(
                    Finding(
                        rule: "7z.bomb", severity: .high,
                        message:
                            "a folder holding \(names) decodes past the limit of \(budget.maxInflatedBytes) bytes: only that much was analysed",
                        evidence: Evidence(
                            member: members.first?.name,
                            details: [
                                ("declared", String(folder.unpackSize)), ("limit", String(budget.maxInflatedBytes)),
                            ])))
            } else if let failure = out.failure {
                findings.append(
                    Finding(
                        rule: "7z.truncated", severity: .medium,
                        message: "\(failure): the files it holds (\(names)) were analysed as far as they came out",
                        evidence: Evidence(member: members.first?.name)))
            }
            // What the members decompress further comes out of what this folder's output left of the budget.
            var inner = budget
            inner.maxInflatedBytes = max(0, budget.maxInflatedBytes - out.data.count)
            for m in members {
                if budget.expired { break }
                guard examined < ArchiveScanner.maxMembers else {
                    skipped = true
                    break
                }
                examined += 1
                guard m.offset < UInt64(out.data.count) else { continue }
                let start = Int(m.offset)
                let length = Int(min(m.size, UInt64(out.data.count - start)))
                guard let data = out.data.slice(start, length) else { continue }
                findings += ArchiveScanner.member(
                    data, name: m.name, archiveFormat: .sevenZip, budget: inner, depth: depth,
                    inflated: &inflated, hints: &hints)
            }
        }
        if skipped {
            findings.append(
                Finding(
                    rule: "7z.too-many-members", severity: .medium,
                    message: "only the first \(ArchiveScanner.maxMembers) files were examined"))
        }
        return StaticScanner.Analysis(format: .sevenZip, findings: findings, hints: hints)
    }
}
