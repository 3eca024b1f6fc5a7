internal import CSandbox
#if canImport(Glibc)
    import Glibc
#endif

/// The host's per-user kernel counters (ucounts) that one sandbox could otherwise spend for everyone.
///
/// The kernel charges inotify instances and watches, fanotify groups and marks, namespaces, queued signals, POSIX
/// message-queue bytes, locked memory and processes to the sandbox's user in the sandbox's user namespace *and* to
/// the user who created that namespace, in every namespace above it: for airlockd, host root, whose budgets every
/// root process shares (`fs.inotify.max_user_instances` is 128). Each is bounded here per sandbox: the counters
/// that have a per-namespace limit (`/proc/sys/user/max_*`) get it in the sandbox's own user namespace, written by
/// PID 1 during set-up; the rlimit-backed ones get an rlimit, which the kernel checks against the sandbox user's
/// count in its namespace; POSIX message queues are also refused by the default profile's filter (`mq_open`).
enum SharedBudgets {
    /// Counters with a per-user-namespace limit, and the value each gets in the sandbox's namespace. Nothing inside
    /// needs fanotify or new namespaces (the filter refuses `unshare`, `setns` and namespace flags already): zero,
    /// except the mount namespaces set-up needs.
    static func userNamespaceLimits(_ limits: Limits) -> [(name: String, value: UInt64)] {
        var entries: [(String, UInt64)] = [
            ("max_inotify_instances", limits.inotifyInstances), ("max_inotify_watches", limits.inotifyWatches),
            ("max_fanotify_groups", 0), ("max_fanotify_marks", 0),
        ]
        for ns in ["user", "pid", "net", "ipc", "uts", "cgroup", "time"] { entries.append(("max_\(ns)_namespaces", 0)) }
        // Set-up itself needs mount namespaces: each `open_tree` clone of a mount source (and, for a profile without
        // /proc, the procfs these limits are written through) is an anonymous one while its descriptor is open.
        entries.append(("max_mnt_namespaces", UInt64(AIRLOCK_MAX_SETUP_MOUNT_NAMESPACES)))
        // Kernels before 5.13 have no fanotify entries; one the host does not have cannot be charged either.
        return entries.filter { access("/proc/sys/user/\($0.0)", F_OK) == 0 }
    }

    /// The rlimits that bound the counters without a per-namespace limit.
    static func rlimits(_ limits: Limits) -> [airlock_rlimit] {
        let both = { (resource: __rlimit_resource, value: UInt64) in
            airlock_rlimit(resource: Int32(resource.rawValue), soft: value, hard: value)
        }
        return [
            both(__RLIMIT_SIGPENDING, limits.pendingSignals), both(__RLIMIT_MSGQUEUE, limits.messageQueueBytes),
            both(__RLIMIT_MEMLOCK, limits.lockedMemoryBytes),
        ]
    }
}
