import AirlockNames
import AirlockFormats
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Hashes a folder scan's files ahead of its analysis, on a bounded pool of threads, while the analysis goes on in
/// name order on the caller's thread: the reports stay in the same order and identical to a serial scan's.
///
/// Each thread opens its file again beneath the folder's descriptor (`openat2`, no links, no mount crossing), takes
/// its identity, hashes it by descriptor (`FileDigest.read`, through the digest cache) and hands the digest over by
/// identity (`take`). The analysis, when it reaches a file, first waits for the thread hashing it (`reached`), then
/// takes the digest only if its own descriptor shows the same identity; otherwise it hashes the file itself. A
/// thread never runs more than `maxLead` files ahead of the analysis, and a file the analysis reaches before any
/// thread started it is left to the analysis.
final class DigestPrefetch: @unchecked Sendable {
    /// Most files hashed ahead of the one being analysed.
    static let maxLead = 16

    private let monitor = Monitor()
    private let dirfd: Int32
    private let files: [FileName]
    private let cache: DigestCache?
    private let deadline: ScanDeadline?
    private let fileSeconds: Double?
    private var next = 0
    private var reachedIndex = -1
    private var running: [Bool]
    private var threads = 0
    private var stopping = false
    private var published: [FileIdentity] = []

    /// Starts `threads` threads (at most the online CPUs, at most the files) hashing `files` (paths relative to the
    /// folder open as `dirfd`, in the order the analysis will reach them). The caller keeps `dirfd` open until
    /// `finish()` returns.
    /// `deadline` stops the hashing, and `fileSeconds` each file's (an interrupted digest is neither cached nor
    /// handed over: the analysis then hashes the file itself, under its own deadline).
    init(
        dirfd: Int32, files: [FileName], threads requested: Int, cache: DigestCache? = DigestCache.shared,
        deadline: ScanDeadline? = nil, fileSeconds: Double? = nil
    ) {
        self.deadline = deadline
        self.fileSeconds = fileSeconds
        self.dirfd = dirfd
        self.files = files
        self.cache = cache
        running = Array(repeating: false, count: files.count)
        let count = min(requested, DigestPrefetch.onlineCPUs, files.count)
        guard count > 0 else { return }
        threads = count
        for _ in 0..<count { startThread(stackBytes: 1 << 20) { [self] in work() } }
    }

    /// CPUs online.
    static var onlineCPUs: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Threads a folder scan hashes ahead on: `AIRLOCK_HASH_THREADS` (0 to 64; 0 hashes each file when the analysis
    /// reaches it, as before), else the CPUs online. Never more than the CPUs online.
    static var defaultThreads: Int {
        if let raw = getenv("AIRLOCK_HASH_THREADS"), let value = Int(String(cString: raw)), (0...64).contains(value) {
            return min(value, onlineCPUs)
        }
        return onlineCPUs
    }

    /// The analysis reaches file `index`: no thread starts it or anything before it any more, and this waits for a
    /// thread already hashing it.
    func reached(_ index: Int) {
        monitor.locked {
            reachedIndex = max(reachedIndex, index)
            if next <= index { next = index + 1 }
            monitor.broadcast()
            while index >= 0 && index < running.count && running[index] { monitor.wait() }
        }
    }

    /// Stops the threads, waits for them, and drops the digests the analysis did not take.
    func finish() {
        monitor.locked {
            stopping = true
            monitor.broadcast()
            while threads > 0 { monitor.wait() }
        }
        DigestPrefetch.handoff.drop(published)
    }

    private func work() {
        while let index = claim() {
            if let identity = hash(index) { monitor.locked { published.append(identity) } }
            monitor.locked {
                running[index] = false
                monitor.broadcast()
            }
        }
        monitor.locked {
            threads -= 1
            monitor.broadcast()
        }
    }

    private func claim() -> Int? {
        monitor.locked {
            while !stopping && next < files.count && next > reachedIndex + DigestPrefetch.maxLead { monitor.wait() }
            guard !stopping, next < files.count, deadline?.stopped() == nil else { return nil }
            let index = next
            next += 1
            running[index] = true
            return index
        }
    }

    /// Hashes file `index` and hands its digest over; returns the identity it was handed over under.
    private func hash(_ index: Int) -> FileIdentity? {
        guard
            let opened = files[index].withCString({
                FileSystem.openBeneath(dirfd, $0, O_RDONLY | O_NONBLOCK | O_NOCTTY)
            })
        else { return nil }
        defer { opened.close() }
        let fd = opened.rawValue
        guard let before = FileSystem.identity(fd), before.isRegular else { return nil }
        let digest: String
        if let cache, let hit = cache.lookup(before) {
            digest = hit
        } else {
            let started = FileDigest.realtimeNs()
            let fileDeadline =
                deadline.map { $0.narrowed(seconds: fileSeconds) } ?? fileSeconds.map { ScanDeadline(seconds: $0) }
            guard case .success(let (computed, size)) = FileDigest.read(fd: fd, deadline: fileDeadline),
                UInt64(size) == before.size,
                let after = FileSystem.identity(fd), after.sameContent(as: before)
            else { return nil }
            cache?.store(before, digest: computed, startedNs: started)
            digest = computed
        }
        DigestPrefetch.handoff.put(before, digest)
        return before
    }

    /// Digests handed from the hashing threads to the analysis, by identity; each taken once.
    static let handoff = Handoff()

    /// The digest a hashing thread computed for a file of exactly this identity, removed from the hand-over.
    static func take(_ identity: FileIdentity) -> String? { handoff.take(identity) }

    final class Handoff: @unchecked Sendable {
        private let monitor = Monitor()
        private var digests: [FileIdentity: String] = [:]

        func put(_ identity: FileIdentity, _ digest: String) { monitor.locked { digests[identity] = digest } }

        func take(_ identity: FileIdentity) -> String? {
            monitor.locked { digests.isEmpty ? nil : digests.removeValue(forKey: identity) }
        }

        /// Whether nothing waits to be taken.
        var isEmpty: Bool { monitor.locked { digests.isEmpty } }

        func drop(_ identities: [FileIdentity]) {
            monitor.locked { for identity in identities { digests[identity] = nil } }
        }
    }
}
