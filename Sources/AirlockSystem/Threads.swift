#if canImport(Glibc)
    import Glibc
#endif

/// A mutex and a condition variable (pthread): the daemon's worker queue and the intake's batches wait on it.
package final class Monitor: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()

    /// A monitor nobody holds.
    package init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    /// Runs `body` holding the mutex.
    package func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// Waits for a signal; call with the mutex held (inside `locked`).
    package func wait() { pthread_cond_wait(&cond, &mutex) }

    /// Waits for a signal or until `seconds` have passed; call with the mutex held (inside `locked`).
    package func wait(seconds: Double) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + max(0, min(seconds, 86_400))
        var until = timespec(tv_sec: Int(total), tv_nsec: Int((total - total.rounded(.down)) * 1e9))
        pthread_cond_timedwait(&cond, &mutex, &until)
    }

    /// Wakes every waiter.
    package func broadcast() { pthread_cond_broadcast(&cond) }
}

/// Starts a detached OS thread (not Swift's cooperative pool: detonations and poll loops block their thread).
package func startThread(stackBytes: Int = 16 << 20, _ body: @escaping @Sendable () -> Void) {
    final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    pthread_attr_setstacksize(&attr, stackBytes)
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, &attr,
        { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, box)
    pthread_attr_destroy(&attr)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(box).release()
        Log.write(.err, "cannot start a thread: \(Errno(rc))")
    }
}

/// The monotonic clock in nanoseconds.
package func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
