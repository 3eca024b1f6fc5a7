import AirlockNames
public import AirlockJSON
public import AirlockAnalysis
internal import AirlockProbe
public import AirlockSystem
internal import CDaemon

/// One request of airlockd's protocol (docs/protocol.md), parsed once: the daemon reads it from a client's message,
/// a client (`DaemonClient`, `ProbeBackend`) writes its `params` from the same type, and every check a field gets
/// (version, method, name, timeout, runtime) is made here.
public struct DaemonRequest: Sendable {
    /// What a request asks for.
    public enum Method: String, Sendable, CaseIterable {
        /// Static analysis, then a detonation of what can run code, of the file or folder passed.
        case probe
        /// Static analysis only of the file or folder passed.
        case scan
        /// The daemon's counters, as JSON.
        case status
        /// The daemon's counters, in Prometheus' text format.
        case metrics

        /// Whether the request carries a descriptor and goes to a worker.
        public var examines: Bool { self == .probe || self == .scan }
    }

    /// The client's id, echoed in the reply (any JSON value; `null` when it sent none).
    public var id: JSON
    /// What is asked.
    public var method: Method
    /// The name shown in reports and logs, in the escaped form (`FileName.escaped`); nil for "fd".
    public var name: String?
    /// The detonation deadline asked for, seconds; nil for the daemon's own.
    public var timeout: Double?
    /// Whether the detonation touches the loaded object afterwards (`probePhase`, default true).
    public var probePhase: Bool
    /// `probe`: the name of the daemon's Python runtime to load with (`python`); nil for its default. A name, never
    /// a path: the daemon resolves nothing a client sends (`DaemonRuntimes`).
    public var python: String?
    /// `probe`: how many worlds to detonate each file in (`worlds`, 1 to `WorldCatalog.maximum`); nil for the
    /// daemon's default (`WorldCatalog.defaultCount`).
    public var worlds: Int? = nil
    /// `probe`: seconds the worlds of one file may take together (`worldBudget`); nil: twice the deadline.
    public var worldBudget: Double? = nil
    /// Folders: most entries to walk (`maxEntries`); nil, or more than the daemon's `folderMaxEntries`: the daemon's.
    public var maxEntries: Int? = nil
    /// Folders: seconds the walk may take (`folderBudget`); nil, or more than the daemon's: the daemon's.
    public var folderBudget: Double? = nil

    /// A request, as a client makes one.
    public init(
        id: JSON = .null, method: Method, name: String? = nil, timeout: Double? = nil, probePhase: Bool = true,
        python: String? = nil
    ) {
        self.id = id
        self.method = method
        self.name = name
        self.timeout = timeout
        self.probePhase = probePhase
        self.python = python
    }

    /// The `params` object a client sends: only what differs from the defaults.
    public var params: [(String, JSON)] {
        var out: [(String, JSON)] = []
        if let name { out.append(("name", .string(name))) }
        if method == .probe { out.append(("probePhase", .bool(probePhase))) }
        if method == .probe, let python { out.append(("python", .string(python))) }
        if let timeout { out.append(("timeout", .double(timeout))) }
        if method == .probe, let worlds { out.append(("worlds", .int(worlds))) }
        if method == .probe, let worldBudget { out.append(("worldBudget", .double(worldBudget))) }
        if let maxEntries { out.append(("maxEntries", .int(maxEntries))) }
        if let folderBudget { out.append(("folderBudget", .double(folderBudget))) }
        return out
    }

    /// The whole message a client sends, with `id`.
    public var json: JSON {
        .object([
            ("airlock", .int(Wire.version)), ("id", id), ("method", .string(method.rawValue)),
            ("params", .object(params)),
        ])
    }

    /// Why a message is not a request the daemon will carry out: the reply's code and message, and the method as far
    /// as it was read (for the refusal counters).
    public struct Refusal: Error, Sendable {
        /// The id to answer with (`null` when it could not be read).
        public let id: JSON
        /// The method's name, `"?"` when it could not be read.
        public let method: String
        /// The reply's error code.
        public let code: ReplyCode
        /// A sentence for the client.
        public let message: String
    }

    /// The largest `id` a request may carry, serialized.
    public static let maxIDBytes = 1024

    /// Reads one message from a client, with the descriptors that came with it. `maxTimeout` is the longest deadline
    /// a client may ask for (`requestTimeout`); `runtimes` are the names of the daemon's Python runtimes, the only
    /// values `python` may take. The checks run in a fixed order (envelope, method, descriptor, parameters), so a
    /// message with two faults always gets the same refusal.
    public static func parse(
        _ body: [UInt8], descriptors: [FileDescriptor], maxTimeout: Double, runtimes: Set<String> = []
    ) -> Result<DaemonRequest, Refusal> {
        guard let message = try? JSON.parse(body, maxDepth: 16), case .object(let members) = message else {
            return .failure(Refusal(id: .null, method: "?", code: .badRequest, message: "not a JSON object"))
        }
        let field = { (key: String) in members.first { $0.0 == key }?.1 }
        let id = field("id") ?? .null
        // The id comes back in every reply: a large one would make each reply (and the memory it holds) large.
        guard id.serializedCount <= DaemonRequest.maxIDBytes else {
            return .failure(
                Refusal(
                    id: .null, method: "?", code: .badRequest,
                    message: "\"id\" is \(id.serializedCount) bytes of JSON, more than \(DaemonRequest.maxIDBytes)"))
        }
        func refuse(_ method: String, _ code: ReplyCode, _ text: String) -> Result<DaemonRequest, Refusal> {
            .failure(Refusal(id: id, method: method, code: code, message: text))
        }
        guard case .number(let v)? = field("airlock"), Int(v) == Wire.version else {
            return refuse(
                "?", .badRequest,
                "\"airlock\": \(Wire.version) is required (this daemon speaks protocol version \(Wire.version))")
        }
        guard case .string(let methodName)? = field("method") else {
            return refuse("?", .badRequest, "\"method\" (a string) is required")
        }
        var params: [(String, JSON)] = []
        if let p = field("params") {
            guard case .object(let m) = p else {
                return refuse(methodName, .badRequest, "\"params\" must be an object")
            }
            params = m
        }
        guard let method = Method(rawValue: methodName) else {
            return refuse(
                "?", .unknownMethod, "unknown method \"\(methodName.prefix(64))\": probe, scan, status or metrics")
        }
        var request = DaemonRequest(id: id, method: method)
        guard method.examines else { return .success(request) }
        guard descriptors.count == 1 else {
            return refuse(
                methodName, .noDescriptor,
                "a \(methodName) request carries exactly one open file or directory descriptor (SCM_RIGHTS), not \(descriptors.count)"
            )
        }
        // The descriptor stands for the client's right to read the file: an O_PATH or write-only one does not, and
        // reopening it read-only (as the examination does) would read with the daemon's rights instead.
        guard airlock_fd_readable(descriptors[0].rawValue) == 1 else {
            return refuse(
                methodName, .badRequest, "the descriptor must be open for reading (not O_PATH, not write-only)")
        }
        let param = { (key: String) in params.first { $0.0 == key }?.1 }
        if case .string(let s)? = param("name"), !s.isEmpty, s.utf8.count <= 4096 {
            // Shown in reports and in the daemon's log: a client must not write a newline or an escape sequence
            // there. Names in the escaped form (what airlock and the intake send) are kept as they are.
            request.name = FileName(escaped: s) != nil ? s : FileName(s).escaped
        }
        if case .number(let t)? = param("timeout"), let seconds = Double(t) {
            guard seconds > 0 && seconds <= maxTimeout else {
                return refuse(methodName, .badRequest, "timeout must be more than 0 and at most \(maxTimeout) seconds")
            }
            request.timeout = seconds
        }
        if case .bool(let b)? = param("probePhase") { request.probePhase = b }
        // A folder budget can only be lowered: more than the daemon's is the daemon's (the reply's record of what was
        // not examined names the budget that applied). A value that is not one is refused, never read as "none".
        if let value = param("maxEntries"), value != .null {
            guard case .number(let n) = value, let count = Int(n), count >= 1 else {
                return refuse(methodName, .badRequest, "\"maxEntries\" must be an integer of at least 1")
            }
            request.maxEntries = count
        }
        if let value = param("folderBudget"), value != .null {
            guard case .number(let n) = value, let seconds = Double(n), seconds > 0, seconds.isFinite else {
                return refuse(methodName, .badRequest, "\"folderBudget\" must be a number of seconds, more than 0")
            }
            request.folderBudget = seconds
        }
        if method == .probe, let value = param("worlds"), value != .null {
            // Refused rather than ignored: a client asking for worlds must not be answered for fewer silently.
            guard case .number(let n) = value, let count = Int(n), (1...WorldCatalog.maximum).contains(count) else {
                return refuse(
                    methodName, .badRequest, "\"worlds\" must be an integer from 1 to \(WorldCatalog.maximum)")
            }
            request.worlds = count
        }
        if method == .probe, let value = param("worldBudget"), value != .null {
            guard case .number(let n) = value, let seconds = Double(n), seconds > 0,
                seconds <= maxTimeout * Double(WorldCatalog.maximum)
            else {
                return refuse(
                    methodName, .badRequest,
                    "\"worldBudget\" must be more than 0 and at most \(maxTimeout * Double(WorldCatalog.maximum)) seconds"
                )
            }
            request.worldBudget = seconds
        }
        if method == .probe, let value = param("python"), value != .null {
            // Unlike the other parameters, a runtime asked for in a form the daemon does not read is refused rather
            // than ignored: the client would otherwise be answered for a runtime it did not choose.
            guard case .string(let s) = value else {
                return refuse(
                    methodName, .badRequest, "\"python\" must be a string: the name of one of the daemon's runtimes")
            }
            // Only a configured name is looked up, as a name: a path (or anything else) is just a name no runtime
            // has, and nothing the client sent is ever resolved.
            guard DaemonRuntimes.isName(s), runtimes.contains(s) else {
                let shown = FileName(String(s.unicodeScalars.prefix(DaemonRuntimes.maxNameBytes))).escaped
                let cut = s.unicodeScalars.count > DaemonRuntimes.maxNameBytes ? "…" : ""
                let available = runtimes.sorted().joined(separator: ", ")
                return refuse(
                    methodName, .unknownRuntime,
                    "no runtime named \"\(shown)\(cut)\": this daemon has \(available.isEmpty ? "none" : available) (runtimes are chosen by name, never by path)"
                )
            }
            request.python = s
        }
        return .success(request)
    }
}

/// What a `probe` or `scan` reply carries: one report per file, each with its trace as text lines (which the JSON of
/// a report leaves out). Read here once, for the CLI and the intake alike.
public enum ExaminationReply {
    /// The reply's members for `reports`.
    public static func members(_ reports: [Report], id: JSON) -> JSON {
        .object([
            ("airlock", .int(Wire.version)), ("id", id), ("ok", .bool(true)),
            ("reports", .array(reports.map(\.json))),
            ("traceLines", .array(reports.map { .array($0.traceLines.map(JSON.string)) })),
        ])
    }

    /// The reports of an `ok` reply, each with its trace lines.
    public static func reports(_ reply: [(String, JSON)]) throws(ClientError) -> [Report] {
        guard case .array(let items)? = reply.first(where: { $0.0 == "reports" })?.1 else {
            throw ClientError("protocol", "airlockd's reply has no reports")
        }
        var lines: [JSON] = []
        if case .array(let l)? = reply.first(where: { $0.0 == "traceLines" })?.1 { lines = l }
        var reports: [Report] = []
        for (i, item) in items.enumerated() {
            guard var report = Report(json: item) else {
                throw ClientError("protocol", "airlockd sent a report this airlock cannot read")
            }
            if i < lines.count, case .array(let l) = lines[i] {
                report.traceLines = l.compactMap { if case .string(let s) = $0 { s } else { nil } }
            }
            reports.append(report)
        }
        return reports
    }
}
