/// The host a detonation pretends to be (issue 15): who runs the command, on which machine, with which files and
/// environment, and how its clocks and network behave. A world is applied over the profile's `airlock` section when
/// a request carries one (`SandboxRequest.world`); without one the profile is used as written (`airlock exec`).
///
/// This is the contract the parts of the world share: the persona (host name, user, home, environment, files), the
/// credentials planted in it (`Honeytokens`), the clock (`SandboxClock`) and the emulated network
/// (`SandboxResult.network`).
public struct HostWorld: Sendable, Equatable {
    /// The account the command runs as.
    public struct User: Sendable, Equatable {
        /// Login name (`USER`, `/etc/passwd`).
        public var name: String
        /// uid inside the sandbox.
        public var uid: UInt32
        /// gid inside the sandbox.
        public var gid: UInt32
        /// Home directory (`HOME`, `/etc/passwd`), absolute.
        public var home: String

        /// Creates a user.
        public init(name: String, uid: UInt32, gid: UInt32, home: String) {
            self.name = name
            self.uid = uid
            self.gid = gid
            self.home = home
        }
    }

    /// A file placed in the sandbox's tree, owned by the world's user.
    public struct File: Sendable, Equatable {
        /// Absolute path inside the sandbox.
        public var path: String
        /// Contents.
        public var contents: String
        /// Permission bits.
        public var mode: UInt32

        /// Creates a file.
        public init(path: String, contents: String, mode: UInt32 = 0o644) {
            self.path = path
            self.contents = contents
            self.mode = mode
        }
    }

    /// One environment variable.
    public struct Variable: Sendable, Equatable {
        /// Name.
        public var name: String
        /// Value.
        public var value: String

        /// Creates a variable.
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// A short name for reports: which world a finding appeared in (`now`, `next-year`, `gpu`, …).
    public var name: String
    /// The host name (UTS namespace, `/etc/hostname`).
    public var hostname: String
    /// The account.
    public var user: User
    /// The command's whole environment, in order.
    public var environment: [Variable]
    /// Files placed in the tree, in order (later ones win).
    public var files: [File]
    /// The sandbox's clocks; nil: the host's.
    public var clock: SandboxClock?
    /// Whether the host has a GPU (`/dev/nvidia*`, `CUDA_VISIBLE_DEVICES`): the worlds of a probe vary it.
    public var gpu = false

    /// Creates a world.
    public init(
        name: String, hostname: String, user: User, environment: [Variable] = [], files: [File] = [],
        clock: SandboxClock? = nil
    ) {
        self.name = name
        self.hostname = hostname
        self.user = user
        self.environment = environment
        self.files = files
        self.clock = clock
    }

    /// Sets `name` to `value`, replacing an earlier value.
    public mutating func setEnvironment(_ name: String, _ value: String) {
        environment.removeAll { $0.name == name }
        environment.append(Variable(name, value))
    }

    /// Applies the persona over a profile's settings: host name, ids, working directory, environment and files.
    public func apply(to settings: inout SandboxSettings) {
        settings.hostname = hostname
        settings.user.uid = user.uid
        settings.user.gid = user.gid
        settings.cwd = user.home
        settings.environment = environment.map { ($0.name, $0.value) }
        settings.mounts += files.map {
            MountSpec(
                kind: .file, source: nil, destination: $0.path, target: nil, contents: $0.contents, sizeBytes: nil,
                mode: $0.mode, optional: false)
        }
    }
}

/// How the sandbox's clocks differ from the host's: a world's date, and sleeps that return at once.
public struct SandboxClock: Sendable, Equatable {
    /// Seconds added to `CLOCK_REALTIME` (and every call that reads it, the vDSO's included) inside the sandbox.
    public var realtimeOffsetSeconds: Int64
    /// Whether sleeps and timers return at once with the sandbox's clocks advanced by what they waited for.
    public var skipsSleeps: Bool

    /// Creates a clock.
    public init(realtimeOffsetSeconds: Int64 = 0, skipsSleeps: Bool = false) {
        self.realtimeOffsetSeconds = realtimeOffsetSeconds
        self.skipsSleeps = skipsSleeps
    }
}

/// One flow the emulated network answered: a connection, or the datagrams sent to one address and port.
public struct NetworkExchange: Sendable, Equatable {
    /// The transport.
    public enum Transport: String, Sendable { case tcp, udp }
    /// TCP or UDP.
    public var transport: Transport
    /// The name the supervisor's DNS answered with this address, when one did.
    public var name: String?
    /// The address the command asked for, as text (`93.184.215.14`, `2606:2800::1`).
    public var address: String
    /// The port.
    public var port: UInt16
    /// The first bytes the command sent (bounded).
    public var bytes: [UInt8]
    /// Bytes sent beyond `bytes`, counted and dropped.
    public var droppedBytes: Int
    /// The trace event of the call that opened the flow (`connect`, `sendto`), when it is in the trace.
    public var seq: Int?
    /// The phase the flow opened in.
    public var phase: String?

    /// Creates an exchange.
    public init(
        transport: Transport, name: String?, address: String, port: UInt16, bytes: [UInt8], droppedBytes: Int = 0,
        seq: Int? = nil, phase: String? = nil
    ) {
        self.transport = transport
        self.name = name
        self.address = address
        self.port = port
        self.bytes = bytes
        self.droppedBytes = droppedBytes
        self.seq = seq
        self.phase = phase
    }
}

/// One name the command asked the emulated DNS for.
public struct DNSQuestion: Sendable, Equatable {
    /// The name asked for, as the query spelled it.
    public var name: String
    /// The record type (`A`, `AAAA`, `TXT`, or the number).
    public var type: String
    /// The phase it was asked in.
    public var phase: String?

    /// Creates a question.
    public init(name: String, type: String, phase: String? = nil) {
        self.name = name
        self.type = type
        self.phase = phase
    }
}
