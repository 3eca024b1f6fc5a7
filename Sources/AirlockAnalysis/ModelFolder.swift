/// The folder a file being examined sits in, as the walk holds it open: loaders that read files beside the model
/// (ONNX external data) are given these, by descriptor, never by a path looked up again.
///
/// The walk sets `current` for the length of each `examine` call (`ModelWalk`, `FolderScanner`), so examiners that
/// need it (`Prober`) read it and the others keep their signature. `dirfd` is valid only during that call.
public struct ModelFolder: Sendable, Equatable {
    /// The folder the walk was given, open.
    public var dirfd: Int32
    /// The file's folder below `dirfd`, one name per component (empty: `dirfd` itself).
    public var components: [[UInt8]]
    /// The file's own name in that folder.
    public var name: [UInt8]

    /// Creates a folder context.
    public init(dirfd: Int32, components: [[UInt8]], name: [UInt8]) {
        self.dirfd = dirfd
        self.components = components
        self.name = name
    }

    /// The folder of the file being examined on this task, when the walk knows it.
    @TaskLocal public static var current: ModelFolder?

    /// Runs a read of the folder's files with the identity the folder was handed with: airlockd sets it to read as
    /// its client (the examiner itself runs as the daemon, for the sandbox), so a file beside the model that the
    /// client cannot read is never read for it. Nil: the reader's own identity.
    @TaskLocal public static var reading: Reading?

    /// The value of `reading`: a read's wrapper in a class. A task-local of an optional closure type, bound on one of
    /// airlockd's worker threads, crashed its release build in `swift_task_localValuePush` (Swift 6.3.1).
    public final class Reading: Sendable {
        /// Runs `read` with the identity the folder was handed with.
        public let run: @Sendable (_ read: () -> Void) -> Void
        /// Wraps `run`.
        public init(_ run: @escaping @Sendable (_ read: () -> Void) -> Void) { self.run = run }
    }
}
