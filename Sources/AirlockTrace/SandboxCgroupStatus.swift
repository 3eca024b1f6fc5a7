public import AirlockJSON

/// The cgroup a sandbox ran in, or why it had none (`SandboxResult.cgroup`).
public enum SandboxCgroupStatus: Sendable, Equatable {
    /// The whole sandbox ran in a cgroup of its own with these limits; what it used is in the usage.
    case applied(CgroupUsage)
    /// No cgroup could be made (no controller, not delegated, not root): only the rlimits bounded the run.
    case unavailable(String)

    /// A line for people: `cgroup v1: memory 4294967296 bytes, pids 64` or `none: …`.
    public var summary: String {
        switch self {
        case .applied(let u):
            return "cgroup \(u.hierarchy): memory \(u.memoryLimitBytes) bytes, pids \(u.pidsLimit)"
                + (u.removed ? "" : " (left behind: could not be removed)")
        case .unavailable(let reason):
            return "no cgroup (\(reason)): memory and processes bounded by the rlimits alone"
        }
    }
}

/// A sandbox's cgroup: its limits and what it used.
public struct CgroupUsage: Sendable, Equatable {
    /// Where the limits lived: `v1` (the memory and pids hierarchies), `v2`, or a mix (`memory v1, pids v2`).
    public var hierarchy: String
    /// Memory limit (memory + swap), bytes.
    public var memoryLimitBytes: UInt64
    /// Most tasks (processes and threads).
    public var pidsLimit: UInt64
    /// Most memory the sandbox held at once, bytes, when the kernel says.
    public var memoryPeakBytes: UInt64?
    /// Times the memory limit was reached: v1 `memory.failcnt` + `memory.memsw.failcnt`, which also count charges
    /// that reclaim (page cache) satisfied; v2 `memory.events` `oom`, charges that reclaim could not satisfy.
    public var memoryLimitReached: Int
    /// Processes the kernel's OOM killer ended inside the sandbox.
    public var oomKills: Int
    /// Forks and thread creations refused at the pids limit (`pids.events` max).
    public var pidsLimitReached: Int
    /// Whether the cgroup was removed at the end.
    public var removed: Bool
    /// Its directories (one per hierarchy it lives in), gone once `removed`. Not in the JSON.
    public var paths: [String] = []

    /// Creates a usage record.
    public init(
        hierarchy: String, memoryLimitBytes: UInt64, pidsLimit: UInt64, memoryPeakBytes: UInt64?,
        memoryLimitReached: Int, oomKills: Int, pidsLimitReached: Int, removed: Bool, paths: [String] = []
    ) {
        self.hierarchy = hierarchy
        self.memoryLimitBytes = memoryLimitBytes
        self.pidsLimit = pidsLimit
        self.memoryPeakBytes = memoryPeakBytes
        self.memoryLimitReached = memoryLimitReached
        self.oomKills = oomKills
        self.pidsLimitReached = pidsLimitReached
        self.removed = removed
        self.paths = paths
    }
}

/// A limit of the whole sandbox that it ran into (`SandboxResult.limitsHit`).
public struct ResourceLimitHit: Sendable, Equatable {
    /// Which limit.
    public enum Resource: String, Sendable { case memory, pids, cpu }
    /// Which limit.
    public var resource: Resource
    /// Its value: bytes for memory, tasks for pids, seconds for cpu.
    public var limit: UInt64
    /// A sentence for people: the limit, how often it was reached, what the kernel did.
    public var detail: String

    /// Creates a record of a limit reached.
    public init(resource: Resource, limit: UInt64, detail: String) {
        self.resource = resource
        self.limit = limit
        self.detail = detail
    }
}

extension SandboxCgroupStatus {
    /// `{"applied": true, "hierarchy": "v1", "memoryLimitBytes": …, "pidsLimit": …, "memoryPeakBytes": …,
    /// "memoryLimitReached": …, "oomKills": …, "pidsLimitReached": …, "removed": true}`, or
    /// `{"applied": false, "reason": "…"}`; `init(json:)` reads it back (without `CgroupUsage.paths`).
    public var json: JSON {
        switch self {
        case .applied(let u):
            return .object([
                ("applied", .bool(true)), ("hierarchy", .string(u.hierarchy)),
                ("memoryLimitBytes", .int(u.memoryLimitBytes)),
                ("pidsLimit", .int(u.pidsLimit)), ("memoryPeakBytes", u.memoryPeakBytes.map(JSON.int) ?? .null),
                ("memoryLimitReached", .int(u.memoryLimitReached)), ("oomKills", .int(u.oomKills)),
                ("pidsLimitReached", .int(u.pidsLimitReached)), ("removed", .bool(u.removed)),
            ])
        case .unavailable(let reason):
            return .object([("applied", .bool(false)), ("reason", .string(reason))])
        }
    }
}

extension ResourceLimitHit {
    /// `{"resource": "memory", "limit": 4294967296, "detail": "…"}`; `init(json:)` reads it back.
    public var json: JSON {
        .object([("resource", .string(resource.rawValue)), ("limit", .int(limit)), ("detail", .string(detail))])
    }
}

extension SandboxCgroupStatus {
    /// Reads a status back from `json`, strictly (the members `json` writes for its case, of their types).
    public init(json value: JSON, path: String = "") throws(TraceFormatError) {
        let f = TraceField.top(value, path: path)
        guard case .object(let members) = value, let applied = members.first(where: { $0.0 == "applied" }) else {
            throw f.invalid("expected an object with applied")
        }
        guard case .bool(true) = applied.1 else {
            let o = try f.object(allowed: ["applied", "reason"])
            _ = try f.required(o, "applied").bool()
            self = .unavailable(try f.required(o, "reason").string())
            return
        }
        let o = try f.object(allowed: [
            "applied", "hierarchy", "memoryLimitBytes", "pidsLimit", "memoryPeakBytes", "memoryLimitReached",
            "oomKills", "pidsLimitReached", "removed",
        ])
        self = .applied(
            CgroupUsage(
                hierarchy: try f.required(o, "hierarchy").string(),
                memoryLimitBytes: try f.required(o, "memoryLimitBytes").integer(),
                pidsLimit: try f.required(o, "pidsLimit").integer(),
                memoryPeakBytes: try f.required(o, "memoryPeakBytes").nonNull?.integer(),
                memoryLimitReached: try f.required(o, "memoryLimitReached").integer(),
                oomKills: try f.required(o, "oomKills").integer(),
                pidsLimitReached: try f.required(o, "pidsLimitReached").integer(),
                removed: try f.required(o, "removed").bool()))
    }
}

extension ResourceLimitHit {
    /// Reads a record back from `json`, strictly.
    public init(json value: JSON, path: String = "") throws(TraceFormatError) {
        let f = TraceField.top(value, path: path)
        let o = try f.object(allowed: ["resource", "limit", "detail"])
        let resourceField = try f.required(o, "resource")
        guard let resource = Resource(rawValue: try resourceField.string()) else {
            throw resourceField.invalid("expected memory or pids")
        }
        self.init(
            resource: resource, limit: try f.required(o, "limit").integer(),
            detail: try f.required(o, "detail").string())
    }
}
