internal import CSystem

/// SIGTERM, SIGINT and SIGHUP, read from a signalfd instead of delivered to handlers: a poll loop (the daemon's, the
/// intake's) sees a stop request as one more readable descriptor.
package struct StopSignals: Sendable {
    /// The signalfd (non-blocking, close-on-exec): poll it for `POLLIN`.
    package let descriptor: FileDescriptor

    /// Blocks the three signals in the calling thread and returns their signalfd. Call from the main thread before
    /// any other thread starts: threads inherit the mask, so no thread is left to take the default action.
    package init() throws(SystemCallError) {
        descriptor = try FileDescriptor.check(airlock_stop_signals_fd(), "signalfd")
    }

    /// Wraps a signalfd made earlier (by `init`).
    package init(descriptor: FileDescriptor) { self.descriptor = descriptor }

    /// The next signal waiting, or nil when none is.
    package func next() -> Int32? {
        let signo = airlock_read_signal(descriptor.rawValue)
        return signo > 0 ? signo : nil
    }
}

/// An inotify watch on one folder: its descriptor turns readable when an entry is created, moved in or out, written,
/// changed or deleted. What changed is not read: a watcher looks at the folder again.
package struct FolderWatch: Sendable {
    /// The inotify descriptor (non-blocking, close-on-exec): poll it for `POLLIN`.
    package let descriptor: FileDescriptor

    /// Starts watching `path`.
    package init(_ path: String) throws(SystemCallError) {
        descriptor = try FileDescriptor.check(airlock_watch_folder(path), "inotify \(path)")
    }

    /// Drops the events read so far, so the descriptor polls quiet until the next change.
    package func drain() { airlock_drain(descriptor.rawValue) }

    /// Stops watching.
    package func close() { descriptor.close() }
}
