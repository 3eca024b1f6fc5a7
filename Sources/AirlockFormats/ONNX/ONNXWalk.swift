extension ONNXParser {
    /// The walk's state: the report so far, the budgets, what has been said once already.
    struct State {
        let budget: ScanBudget
        var report = ONNXReport()
        var operations = 0
        var sawGraph = false
        var customDomains = Set<String>()
        var droppedObservations = 0

        init(budget: ScanBudget) { self.budget = budget }

        mutating func note(_ o: Observation) {
            guard report.observations.count < maxObservations else {
                droppedObservations += 1
                return
            }
            report.observations.append(o)
        }

        mutating func finish() {
            if !sawGraph {
                note(Observation("onnx.no-graph", "no graph in the model: not a usable ONNX file"))
            }
            if let ir = report.irVersion, ir > newestKnownIRVersion {
                note(
                    Observation(
                        "onnx.ir-version-unknown",
                        "IR version \(ir) is newer than Airlock knows (\(newestKnownIRVersion)): read all the same, fields it does not know are skipped",
                        Evidence(details: [("irVersion", String(ir))])))
            } else if report.irVersion == nil && sawGraph {
                note(Observation("onnx.no-ir-version", "the model declares no IR version"))
            }
            if droppedObservations > 0 {
                report.observations.append(
                    Observation(
                        "onnx.budget", "\(droppedObservations) more observations were not kept",
                        Evidence(details: [("dropped", String(droppedObservations))])))
            }
        }

        /// Reads one message, queueing the messages inside it; false when the work budget ran out.
        mutating func read(_ message: Pending, into work: inout [Pending]) -> Bool {
            var reader = ProtobufReader(message.bytes)
            var tensor = TensorFields()
            var nodeDomain = "", nodeOp = ""
            var key = "", value = ""
            var metadataBytes = 0
            while !reader.atEnd {
                operations += 1
                // The deadline every 64 Ki fields: the report becomes an error (`ScanDeadline`).
                if operations & 0xFFFF == 0 && budget.expired { return false }
                if operations > budget.maxOperations {
                    note(
                        Observation(
                            "onnx.budget", "stopped after \(budget.maxOperations) protobuf fields",
                            Evidence(offset: message.base + reader.offset)))
                    return false
                }
                let at = message.base + reader.offset
                guard let field = reader.next() else {
                    note(
                        Observation(
                            "onnx.malformed", "malformed protobuf in \(message.kind) at byte \(at)",
                            Evidence(offset: at)))
                    break
                }
                let child = { (kind: Kind) -> Pending? in
                    guard case .bytes(let b, let offset) = field.value else { return nil }
                    return Pending(bytes: b, kind: kind, depth: message.depth + 1, base: message.base + offset)
                }
                var next: Pending?
                switch (message.kind, field.number) {
                case (.model, 1):
                    if case .varint(let v) = field.value { report.irVersion = Int(clamping: v) }
                case (.model, 2): report.producer = field.string
                case (.model, 7):
                    sawGraph = true
                    next = child(.graph)
                case (.model, 8), (.function, 9): next = child(.opset)
                case (.model, 14), (.graph, 16), (.node, 9), (.function, 14): next = child(.metadata)
                case (.model, 20): next = child(.trainingInfo)
                case (.model, 25): next = child(.function)
                case (.trainingInfo, 1), (.trainingInfo, 2): next = child(.graph)
                case (.opset, 1):
                    if let d = field.string, report.opsetDomains.count < 1_000 { report.opsetDomains.append(d) }
                case (.graph, 1), (.function, 7): next = child(.node)
                case (.graph, 5):
                    report.initializers += 1
                    next = child(.tensor)
                case (.graph, 15):
                    report.initializers += 1
                    next = child(.sparseTensor)
                case (.node, 4): nodeOp = field.string ?? ""
                case (.node, 7): nodeDomain = field.string ?? ""
                case (.node, 5), (.function, 11): next = child(.attribute)
                case (.attribute, 5), (.attribute, 10), (.sparseTensor, 1), (.sparseTensor, 2): next = child(.tensor)
                case (.attribute, 6), (.attribute, 11): next = child(.graph)
                case (.attribute, 22), (.attribute, 23): next = child(.sparseTensor)
                case (.metadata, 1): key = field.string ?? ""
                case (.metadata, 2):
                    // Past 1 MiB the text is not decoded (`Field.string`); its size alone is then the oddity.
                    if case .bytes(let b, _) = field.value, b.count > 1 << 20 { metadataBytes = b.count }
                    value = field.string ?? ""
                case (.tensor, _): tensor.read(field)
                default: break
                }
                if let next {
                    if next.depth > maxDepth {
                        note(
                            Observation(
                                "onnx.too-deep", "messages nested deeper than \(maxDepth) levels: not followed",
                                Evidence(offset: next.base)))
                    } else {
                        work.append(next)
                    }
                }
            }
            switch message.kind {
            case .node: node(op: nodeOp, domain: nodeDomain, at: message.base)
            case .tensor: self.tensor(tensor, at: message.base)
            case .metadata: metadata(key: key, value: value, bytes: metadataBytes, at: message.base)
            default: break
            }
            return true
        }

        mutating func node(op: String, domain: String, at: Int) {
            report.nodes += 1
            guard !standardDomains.contains(domain), customDomains.count < 1_000,
                customDomains.insert(domain).inserted
            else { return }
            note(
                Observation(
                    "onnx.custom-domain",
                    "operator \(op) from custom domain '\(domain)': running it needs a custom operator library",
                    Evidence(offset: at, details: [("domain", domain), ("op", op)])))
        }

        mutating func tensor(_ t: TensorFields, at: Int) {
            let locations = t.external.filter { $0.0 == "location" }.map(\.1)
            for (k, _) in t.external where !externalKeys.contains(k) {
                note(
                    Observation(
                        "onnx.external-data-key",
                        "tensor \(t.name) has external_data key '\(k)', which neither onnx nor onnxruntime defines (onnx before 1.21 sets any key as an attribute of its reader, CVE-2026-34445)",
                        Evidence(offset: at, details: [("tensor", t.name), ("key", k)])))
            }
            if Set(locations).count > 1 {
                note(
                    Observation(
                        "onnx.external-data-ambiguous",
                        "tensor \(t.name) names \(locations.count) different locations: readers that take the first and the last read different files",
                        Evidence(offset: at, details: [("tensor", t.name)] + locations.map { ("location", $0) })))
            }
            if t.external.isEmpty && t.dataLocation == 1 {
                note(
                    Observation(
                        "onnx.external-data-no-location",
                        "tensor \(t.name) says its data is external but names no file",
                        Evidence(offset: at, details: [("tensor", t.name)])))
            }
            let offset = t.number("offset", at: at, state: &self)
            let length = t.number("length", at: at, state: &self)
            for location in Set(locations).sorted() {
                if report.externalReferences.count < maxReferences {
                    report.externalReferences.append(
                        ONNXExternalReference(
                            tensor: t.name, location: location, offset: offset, length: length, at: at))
                }
                if let why = traversal(location) {
                    note(
                        Observation(
                            "onnx.external-data-traversal",
                            "tensor \(t.name) reads its data from '\(location)' (\(why)): outside the model's folder",
                            Evidence(offset: at, details: [("tensor", t.name), ("location", location)])))
                }
            }
            if let mismatch = t.sizeMismatch() {
                note(
                    Observation(
                        "onnx.size-mismatch", "tensor \(t.name): \(mismatch)",
                        Evidence(offset: at, details: [("tensor", t.name)])))
            }
        }

        /// Metadata a benign writer fills with names and versions: code, control characters or megabytes are odd.
        mutating func metadata(key: String, value: String, bytes: Int, at: Int) {
            let text = key + "\n" + value
            let codeMarks = ["__import__", "exec(", "eval(", "import os", "import subprocess", "os.system", "pickle"]
            if let mark = codeMarks.first(where: { text.contains($0) }) {
                note(
                    Observation(
                        "onnx.metadata-code", "metadata '\(key.prefix(80))' holds code-like text ('\(mark)')",
                        Evidence(offset: at, details: [("key", String(key.prefix(200)))])))
            } else if bytes > 1 << 20
                || text.unicodeScalars.contains(where: {
                    ($0.value < 0x20 && $0 != "\n" && $0 != "\t" && $0 != "\r") || $0 == "\u{FFFD}" || $0.value == 0x7F
                })
            {
                note(
                    Observation(
                        "onnx.metadata-odd", "metadata '\(key.prefix(80))' holds control characters or megabytes",
                        Evidence(offset: at, details: [("key", String(key.prefix(200)))])))
            }
        }
    }

    /// The fields of one `TensorProto` that matter.
    struct TensorFields {
        var dims: [Int64] = []
        var type: Int64?
        var rawDataSize: Int?
        var name = ""
        var external: [(String, String)] = []
        var dataLocation: UInt64 = 0

        mutating func read(_ field: ProtobufReader.Field) {
            switch (field.number, field.value) {
            case (1, .varint(let v)): if dims.count < 64 { dims.append(Int64(bitPattern: v)) }
            case (1, .bytes(let b, _)): dims += ProtobufReader.packedVarints(b).prefix(64).map { Int64(bitPattern: $0) }
            case (2, .varint(let v)): type = Int64(truncatingIfNeeded: v)
            case (8, _): name = String((field.string ?? "").prefix(256))
            case (9, .bytes(let b, _)): rawDataSize = b.count
            case (13, .bytes(let b, _)):
                guard external.count < 64 else { return }
                var r = ProtobufReader(b)
                var k = "", v = ""
                var fields = 0
                while !r.atEnd, fields < 64, let f = r.next() {
                    fields += 1
                    if f.number == 1 { k = f.string ?? "" }
                    if f.number == 2 { v = f.string ?? "" }
                }
                external.append((k, v))
            case (14, .varint(let v)): dataLocation = v
            default: break
            }
        }

        /// The last value of `key` as a non-negative integer, as onnx's `int()` reads it; a note when it is not one.
        func number(_ key: String, at: Int, state: inout State) -> Int64? {
            guard let text = external.last(where: { $0.0 == key })?.1 else { return nil }
            let trimmed = text.trimmingASCIISpaces
            if let n = Int64(trimmed), n >= 0 { return n }
            state.note(
                Observation(
                    "onnx.external-data-offset",
                    "tensor \(name): external_data \(key) '\(text.prefix(40))' is not a non-negative integer",
                    Evidence(offset: at, details: [("tensor", name), (key, String(text.prefix(40)))])))
            return nil
        }

        /// Why `raw_data` cannot hold dims × element size, or nil.
        func sizeMismatch() -> String? {
            guard let size = rawDataSize, let type, let item = ONNXParser.itemSize(type) else { return nil }
            var count: Int64 = 1
            for d in dims {
                guard d >= 0 else { return "negative dimension \(d)" }
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { return "dims \(dims) overflow" }
                count = m
            }
            let (bytes, o) = count.multipliedReportingOverflow(by: Int64(item))
            guard !o else { return "dims \(dims) overflow" }
            return bytes == Int64(size)
                ? nil : "dims \(dims) of type \(type) need \(bytes) bytes, raw_data has \(size)"
        }
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines (Python's `int()` accepts them).
    fileprivate var trimmingASCIISpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return self[first...last]
    }
}
