/*
 * Sandbox set-up between clone and exec, and the few constants the parent needs to prepare it. The child's code is
 * async-signal-safe only: raw system calls, no allocation, no stdio, no glibc wrappers that synchronise threads (setresuid and friends broadcast to every thread of the parent,
 * which the child does not have: they would hang). Everything is prepared by the parent; failures travel back as
 * `airlock_message` records on the status pipe.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/capability.h>

/* The new mount API (Linux 5.12+), by number: glibc's and the kernel's headers disagree about who declares it. */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#define AL_FSOPEN_CLOEXEC 0x00000001
#define AL_FSCONFIG_CMD_CREATE 6
#define AL_FSMOUNT_CLOEXEC 0x00000001
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#define AL_OPEN_TREE_CLONE 1
#define AL_OPEN_TREE_CLOEXEC O_CLOEXEC
#define AL_AT_RECURSIVE 0x8000
#define AL_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define AL_MOUNT_ATTR_RDONLY 0x00000001
#define AL_MOUNT_ATTR_NOSUID 0x00000002
#define AL_MOUNT_ATTR_NODEV 0x00000004
#define AL_MOUNT_ATTR_NOEXEC 0x00000008

struct al_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* Fixed descriptor numbers in the child after its descriptor table has been rebuilt. */
enum { FD_STATUS = 3, FD_CONTROL = 4 };
_Static_assert(AIRLOCK_FIRST_PASSED_FD == FD_CONTROL + 1, "passed descriptors follow the control pipe");
/* At most this many bind sources are opened before the old root disappears. */
#define AL_MAX_MOUNTS 256
#define AL_DEVICE_COUNT 5
_Static_assert(AIRLOCK_MAX_SETUP_MOUNT_NAMESPACES >= AL_MAX_MOUNTS + AL_DEVICE_COUNT + AIRLOCK_MAX_DEVICE_ALIASES + 2,
               "set-up's open_tree clones fit in the sandbox's mount-namespace limit");
static const char *const al_devices[AL_DEVICE_COUNT] = {"null", "zero", "full", "random", "urandom"};
static const char *const al_proc_readonly[] = {"sys", "sysrq-trigger", "irq", "bus"};

/* ---- small async-signal-safe helpers ---- */

static size_t al_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static void al_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

static void al_send(int type, int step, int err, int index, int64_t value) {
    struct airlock_message m;
    memset(&m, 0, sizeof m);
    m.type = (uint32_t)type;
    m.step = (uint32_t)step;
    m.err = err;
    m.index = index;
    m.value = value;
    al_write_all(FD_STATUS, &m, sizeof m);
}

__attribute__((noreturn)) static void al_fail(int step, int index) {
    al_send(AIRLOCK_MSG_ERROR, step, errno, index, 0);
    _exit(126);
}

/* Reads one byte from the parent; EOF means the parent is gone. */
static int al_read_byte(int fd) {
    char c;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n == 1) return (unsigned char)c;
        if (n == 0) return -1;
        if (errno != EINTR) return -1;
    }
}

/* mkdir -p of the parents of `path` (and of `path` itself when `self` is set), relative to the cwd. */
static int al_mkdirs(const char *path, int self, unsigned int mode) {
    char buf[PATH_MAX];
    size_t len = al_strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || (i == len && self)) {
            char saved = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, i == len ? mode : 0755) < 0 && errno != EEXIST) return -1;
            buf[i] = saved;
        }
    }
    return 0;
}

/* Creates an empty file to mount on, after its parent directories. */
static int al_touch(const char *path, unsigned int mode) {
    if (al_mkdirs(path, 0, 0755) < 0) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static long al_open_tree(const char *path) {
    return syscall(SYS_open_tree, AT_FDCWD, path, AL_OPEN_TREE_CLONE | AL_OPEN_TREE_CLOEXEC | AL_AT_RECURSIVE);
}

static long al_set_attr(int dirfd, const char *path, unsigned int flags, uint64_t set) {
    struct al_mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = set;
    return syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof attr);
}

static long al_move(int treefd, const char *target) {
    return syscall(SYS_move_mount, treefd, "", AT_FDCWD, target, AL_MOVE_MOUNT_F_EMPTY_PATH);
}

/* Moves `fd` to `target`, closing the original. Returns -1 on failure. */
static int al_move_fd(int fd, int target) {
    if (fd == target) {
        return fcntl(fd, F_SETFD, 0) < 0 ? -1 : 0;
    }
    if (dup2(fd, target) < 0) return -1;
    return 0;
}

/* ---- the mount tree ---- */

static void al_write_user_limits(const struct airlock_spawn_spec *spec, int proc);

static void al_build_root(const struct airlock_spawn_spec *spec) {
    int trees[AL_MAX_MOUNTS];
    int devices[AL_DEVICE_COUNT];
    int aliases[AIRLOCK_MAX_DEVICE_ALIASES];
    size_t count = spec->mount_count;
    size_t alias_count = spec->device_alias_count;
    if (count > AL_MAX_MOUNTS || alias_count > AIRLOCK_MAX_DEVICE_ALIASES) {
        errno = E2BIG;
        al_fail(AIRLOCK_STEP_OPEN_SOURCE, -1);
    }
    for (int d = 0; d < AL_DEVICE_COUNT; d++) devices[d] = -1;

    /* Nothing we mount may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) al_fail(AIRLOCK_STEP_MOUNT_PRIVATE, -1);

    /* Clone every bind source while the host tree is still visible (the staging tmpfs may hide some). */
    int need_dev = 0;
    int limits_written = 0;
    for (size_t i = 0; i < count; i++) {
        trees[i] = -1;
        const struct airlock_mount *m = &spec->mounts[i];
        if (m->kind == AIRLOCK_MOUNT_DEV) need_dev = 1;
        if (m->kind != AIRLOCK_MOUNT_BIND) continue;
        long fd = al_open_tree(m->source);
        if (fd < 0) {
            if (m->optional && errno == ENOENT) continue;
            al_fail(AIRLOCK_STEP_OPEN_SOURCE, (int)i);
        }
        trees[i] = (int)fd;
        if (al_set_attr((int)fd, "", AT_EMPTY_PATH | AL_AT_RECURSIVE,
                        AL_MOUNT_ATTR_RDONLY | AL_MOUNT_ATTR_NOSUID | AL_MOUNT_ATTR_NODEV) < 0)
            al_fail(AIRLOCK_STEP_READONLY, (int)i);
    }
    if (need_dev) {
        char path[32] = "/dev/";
        for (int d = 0; d < AL_DEVICE_COUNT; d++) {
            size_t n = al_strlen(al_devices[d]);
            memcpy(path + 5, al_devices[d], n + 1);
            long fd = al_open_tree(path);
            if (fd < 0) al_fail(AIRLOCK_STEP_OPEN_SOURCE, -2 - d);
            devices[d] = (int)fd;
            if (al_set_attr((int)fd, "", AT_EMPTY_PATH, AL_MOUNT_ATTR_NOSUID | AL_MOUNT_ATTR_NOEXEC) < 0)
                al_fail(AIRLOCK_STEP_READONLY, -2 - d);
        }
        /* A world's GPU nodes: each its own clone of /dev/null (a mount is moved once). */
        for (size_t a = 0; a < alias_count; a++) {
            long fd = al_open_tree("/dev/null");
            if (fd < 0) al_fail(AIRLOCK_STEP_OPEN_SOURCE, -10 - (int)a);
            aliases[a] = (int)fd;
            if (al_set_attr((int)fd, "", AT_EMPTY_PATH, AL_MOUNT_ATTR_NOSUID | AL_MOUNT_ATTR_NOEXEC) < 0)
                al_fail(AIRLOCK_STEP_READONLY, -10 - (int)a);
        }
    }

    /* New inodes (the tmpfs trees below) take the file-system ids; ours (host root) is not mapped in this user
     * namespace, so switch them to the sandbox's ids. Host paths were all opened above, with the original ids. */
    (void)syscall(SYS_setfsgid, spec->gid);
    (void)syscall(SYS_setfsuid, spec->uid);

    if (mount("tmpfs", spec->staging, "tmpfs", MS_NOSUID | MS_NODEV, spec->root_options) < 0)
        al_fail(AIRLOCK_STEP_STAGING, -1);
    if (chdir(spec->staging) < 0) al_fail(AIRLOCK_STEP_STAGING, -1);

    for (size_t i = 0; i < count; i++) {
        const struct airlock_mount *m = &spec->mounts[i];
        const char *dst = m->destination;
        int idx = (int)i;
        switch (m->kind) {
        case AIRLOCK_MOUNT_BIND: {
            if (trees[i] < 0) break; /* optional and missing */
            struct stat st;
            if (fstat(trees[i], &st) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            int rc = S_ISDIR(st.st_mode) ? al_mkdirs(dst, 1, 0755) : al_touch(dst, 0644);
            if (rc < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            if (al_move(trees[i], dst) < 0) al_fail(AIRLOCK_STEP_MOUNT, idx);
            close(trees[i]);
            break;
        }
        case AIRLOCK_MOUNT_TMPFS:
            if (al_mkdirs(dst, 1, 0755) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            if (mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, m->data) < 0)
                al_fail(AIRLOCK_STEP_MOUNT, idx);
            break;
        case AIRLOCK_MOUNT_PROC: {
            if (al_mkdirs(dst, 1, 0555) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            if (mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                al_fail(AIRLOCK_STEP_MOUNT, idx);
            if (!limits_written && spec->user_limit_count > 0) {
                /* The per-namespace limits (al_bound_shared_budgets), while this /proc/sys is still writable. */
                int proc = open(dst, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (proc < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, -1);
                /* The path is looked up again: it must lead to a procfs (the one just mounted), never to ordinary
                 * files a host process swapped in, or the limits would silently not be set. */
                struct statfs fs;
                if (fstatfs(proc, &fs) < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, -1);
                if (fs.f_type != PROC_SUPER_MAGIC) {
                    errno = EXDEV;
                    al_fail(AIRLOCK_STEP_USER_LIMITS, -1);
                }
                al_write_user_limits(spec, proc);
                close(proc);
            }
            limits_written = 1;
            /* The parts of procfs that configure the kernel stay read-only even where namespacing allows writes. */
            char path[PATH_MAX];
            size_t dl = al_strlen(dst);
            for (size_t k = 0; k < sizeof al_proc_readonly / sizeof al_proc_readonly[0]; k++) {
                size_t nl = al_strlen(al_proc_readonly[k]);
                if (dl + 1 + nl + 1 > sizeof path) continue;
                memcpy(path, dst, dl);
                path[dl] = '/';
                memcpy(path + dl + 1, al_proc_readonly[k], nl + 1);
                long fd = al_open_tree(path);
                if (fd < 0) {
                    if (errno == ENOENT) continue;
                    al_fail(AIRLOCK_STEP_READONLY, idx);
                }
                if (al_set_attr((int)fd, "", AT_EMPTY_PATH | AL_AT_RECURSIVE, AL_MOUNT_ATTR_RDONLY) < 0 ||
                    al_move((int)fd, path) < 0)
                    al_fail(AIRLOCK_STEP_READONLY, idx);
                close((int)fd);
            }
            break;
        }
        case AIRLOCK_MOUNT_DEV: {
            if (al_mkdirs(dst, 1, 0755) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            if (mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=65536k,mode=755") < 0)
                al_fail(AIRLOCK_STEP_MOUNT, idx);
            char path[PATH_MAX];
            size_t dl = al_strlen(dst);
            if (dl + 16 > sizeof path) {
                errno = ENAMETOOLONG;
                al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            }
            memcpy(path, dst, dl);
            path[dl] = '/';
            for (int d = 0; d < AL_DEVICE_COUNT; d++) {
                size_t nl = al_strlen(al_devices[d]);
                memcpy(path + dl + 1, al_devices[d], nl + 1);
                if (al_touch(path, 0666) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
                if (al_move(devices[d], path) < 0) al_fail(AIRLOCK_STEP_MOUNT, idx);
                close(devices[d]);
                devices[d] = -1;
            }
            for (size_t a = 0; a < alias_count; a++) {
                const char *name = spec->device_aliases[a];
                size_t nl = al_strlen(name);
                if (dl + 1 + nl + 1 > sizeof path) {
                    errno = ENAMETOOLONG;
                    al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
                }
                memcpy(path + dl + 1, name, nl + 1);
                if (al_touch(path, 0666) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
                if (al_move(aliases[a], path) < 0) al_fail(AIRLOCK_STEP_MOUNT, idx);
                close(aliases[a]);
            }
            alias_count = 0;
            static const char *const links[][2] = {
                {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
                {"stderr", "/proc/self/fd/2"}};
            for (size_t k = 0; k < sizeof links / sizeof links[0]; k++) {
                size_t nl = al_strlen(links[k][0]);
                memcpy(path + dl + 1, links[k][0], nl + 1);
                if (symlink(links[k][1], path) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            }
            if (al_set_attr(AT_FDCWD, dst, 0, AL_MOUNT_ATTR_RDONLY | AL_MOUNT_ATTR_NOSUID | AL_MOUNT_ATTR_NOEXEC) < 0)
                al_fail(AIRLOCK_STEP_READONLY, idx);
            break;
        }
        case AIRLOCK_MOUNT_FILE: {
            if (al_mkdirs(dst, 0, 0755) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, m->mode);
            if (fd < 0) al_fail(AIRLOCK_STEP_MOUNT, idx);
            const char *p = m->data;
            size_t left = m->data_len;
            while (left > 0) {
                ssize_t n = write(fd, p, left);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    al_fail(AIRLOCK_STEP_MOUNT, idx);
                }
                p += n;
                left -= (size_t)n;
            }
            close(fd);
            break;
        }
        case AIRLOCK_MOUNT_SYMLINK:
            if (al_mkdirs(dst, 0, 0755) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            if (symlink(m->source, dst) < 0) al_fail(AIRLOCK_STEP_MOUNT, idx);
            break;
        case AIRLOCK_MOUNT_DIR:
            if (al_mkdirs(dst, 1, m->mode) < 0) al_fail(AIRLOCK_STEP_MOUNT, idx);
            break;
        case AIRLOCK_MOUNT_SYSFS:
            /* Allowed because the sandbox owns its network namespace: the devices and classes are the kernel's,
             * the network is the sandbox's own (lo), and nothing of the host's cgroups is mounted below it. */
            if (al_mkdirs(dst, 1, 0555) < 0) al_fail(AIRLOCK_STEP_MOUNTPOINT, idx);
            if (mount("sysfs", dst, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                al_fail(AIRLOCK_STEP_MOUNT, idx);
            break;
        default:
            errno = EINVAL;
            al_fail(AIRLOCK_STEP_MOUNT, idx);
        }
    }

    /* Swap roots and let go of the host's tree entirely. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) al_fail(AIRLOCK_STEP_PIVOT_ROOT, -1);
    if (umount2(".", MNT_DETACH) < 0) al_fail(AIRLOCK_STEP_DETACH_OLD_ROOT, -1);
    if (chdir("/") < 0) al_fail(AIRLOCK_STEP_DETACH_OLD_ROOT, -1);
    if (al_set_attr(AT_FDCWD, "/", 0, AL_MOUNT_ATTR_RDONLY | AL_MOUNT_ATTR_NOSUID | AL_MOUNT_ATTR_NODEV) < 0)
        al_fail(AIRLOCK_STEP_ROOT_READONLY, -1);
}

/* ---- credentials, limits, filter ---- */

static void al_lock_down(const struct airlock_spawn_spec *spec) {
    for (size_t i = 0; i < spec->rlimit_count; i++) {
        struct rlimit r;
        r.rlim_cur = (rlim_t)spec->rlimits[i].soft;
        r.rlim_max = (rlim_t)spec->rlimits[i].hard;
        if (setrlimit(spec->rlimits[i].resource, &r) < 0) al_fail(AIRLOCK_STEP_RLIMIT, (int)i);
    }
    /* The bounding set needs CAP_SETPCAP, so it goes before the effective set is cleared. */
    for (int c = 0; c <= spec->cap_last; c++) {
        if (cap_drop_bound((cap_value_t)c) < 0 && errno != EINVAL) al_fail(AIRLOCK_STEP_CAP_BOUND, c);
    }
    /* One call, where libcap's cap_reset_ambient asks about each capability first (41 calls). */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) al_fail(AIRLOCK_STEP_CAP_AMBIENT, -1);
    if (syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) < 0) al_fail(AIRLOCK_STEP_SETGID, -1);
    if (syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) < 0) al_fail(AIRLOCK_STEP_SETUID, -1);
    if (cap_set_proc((cap_t)spec->empty_caps) < 0) al_fail(AIRLOCK_STEP_CAP_CLEAR, -1);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) al_fail(AIRLOCK_STEP_NO_NEW_PRIVS, -1);
}

/* ---- the host's shared budgets: the sandbox's cgroup, per-user kernel counters ---- */

/*
 * inotify instances and watches, fanotify groups and marks, and namespaces are counted per user and charged up the
 * user-namespace hierarchy: to the sandbox's user here, and to the user who created this namespace (the supervisor's,
 * root for airlockd) in the parent. Limiting this namespace's own share (`/proc/sys/user/max_*`, which are per user
 * namespace) bounds what one sandbox can take of the host's. Writing them needs CAP_SYS_RESOURCE in this namespace,
 * which PID 1 holds until al_lock_down. The host's /proc/sys may be read-only (systemd's ProtectKernelTunables=), so
 * they are written through a procfs instance of the sandbox's: its /proc, just after it is mounted and before its
 * sys is made read-only (al_build_root), all before the command exists. Only a profile without /proc gets an
 * instance of its own here that is never attached anywhere; closing that one waits for an RCU grace period, which
 * under load took 2.6-5.7 ms (docs/benchmarks.md, "Start-up budget (issue 12)").
 */
static void al_write_user_limits(const struct airlock_spawn_spec *spec, int proc) {
    for (size_t i = 0; i < spec->user_limit_count; i++) {
        const struct airlock_user_limit *l = &spec->user_limits[i];
        int fd = openat(proc, l->path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, (int)i);
        size_t len = al_strlen(l->value);
        ssize_t n;
        do {
            n = write(fd, l->value, len);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)len) {
            if (n >= 0) errno = EIO;
            al_fail(AIRLOCK_STEP_USER_LIMITS, (int)i);
        }
        close(fd);
    }
}

/* Whether the sandbox mounts a /proc of its own, through which al_build_root writes the user limits. */
static int al_mounts_proc(const struct airlock_spawn_spec *spec) {
    for (size_t i = 0; i < spec->mount_count; i++) {
        if (spec->mounts[i].kind == AIRLOCK_MOUNT_PROC) return 1;
    }
    return 0;
}

static void al_bound_shared_budgets(const struct airlock_spawn_spec *spec) {
    /* cgroup v1: PID 1 moves itself into the sandbox's cgroups (the supervisor made them) before anything else runs
     * here. A task writing "0" to `tasks` moves only itself, which the kernel does without the global threadgroup
     * lock that moving another process takes (an RCU grace period: ≈10 ms per run here). PID 1 still has the
     * supervisor's host uid (root), which the kernel wants for that write. v2 created PID 1 in its cgroup. */
    for (size_t i = 0; i < spec->cgroup_task_count; i++) {
        int fd = open(spec->cgroup_tasks[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, -3);
        ssize_t n;
        do {
            n = write(fd, "0", 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1) al_fail(AIRLOCK_STEP_USER_LIMITS, -3);
        close(fd);
    }
    /* Root the cgroup namespace at the sandbox's own cgroup, so that /proc/self/cgroup inside shows `/` (as it does
     * for a v2 cgroup the sandbox was born in), never the supervisor's name for it. */
    if (unshare(CLONE_NEWCGROUP) < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, -2);
    if (spec->user_limit_count == 0 || al_mounts_proc(spec)) return;
    long fs = syscall(SYS_fsopen, "proc", AL_FSOPEN_CLOEXEC);
    if (fs < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, -1);
    if (syscall(SYS_fsconfig, (int)fs, AL_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        al_fail(AIRLOCK_STEP_USER_LIMITS, -1);
    long proc = syscall(SYS_fsmount, (int)fs, AL_FSMOUNT_CLOEXEC, 0);
    if (proc < 0) al_fail(AIRLOCK_STEP_USER_LIMITS, -1);
    close((int)fs);
    al_write_user_limits(spec, (int)proc);
    close((int)proc);
}

/* ---- the payload: the command, as the child of PID 1 ---- */

/* Every signal back to its default action: the supervisor's handlers (a crash reporter, say) must not run here. */
static void al_reset_signals(void) {
    for (int s = 1; s < NSIG; s++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        (void)sigaction(s, &sa, NULL);
    }
}

__attribute__((noreturn)) static void al_payload(const struct airlock_spawn_spec *spec, int sigfd) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    (void)umask(022);
    close(sigfd);
    close(FD_CONTROL);
    /* The status pipe survives only until exec succeeds. */
    (void)fcntl(FD_STATUS, F_SETFD, FD_CLOEXEC);
    (void)setsid();
    int err = ENOENT;
    for (const char *const *c = spec->candidates; *c; c++) {
        if (access(*c, X_OK) != 0) {
            if (errno != ENOENT && errno != ENOTDIR) err = errno;
            continue;
        }
        execve(*c, spec->argv, spec->envp);
        err = errno;
        break;
    }
    al_send(AIRLOCK_MSG_EXEC_FAILED, 0, err, 0, 0);
    _exit(127);
}

/* ---- PID 1 ---- */

/*
 * A world's PID 1 looks like an init: its name, and its command line. /proc/1/cmdline shows PID 1's argument area,
 * which holds the supervisor's argv (`airlock probe …`) it was copied from. The title is written over it; when it
 * ends before the area does, the area's last byte is left non-zero, which the kernel takes as a process that set
 * its own title (setproctitle) and shows up to the first NUL only; a title longer than the area runs on into the
 * environment area after it, which the kernel then shows too. The rest of both areas is cleared: the supervisor's
 * environment is nobody's business in here.
 */
static void al_become_init(const struct airlock_spawn_spec *spec) {
    if (!spec->init_name) return;
    (void)prctl(PR_SET_NAME, (unsigned long)spec->init_name, 0, 0, 0);
    uint64_t start = spec->arg_start, end = spec->arg_end, area = spec->area_end;
    if (start == 0 || end <= start || area < end || area - start > (1u << 20)) return;
    char *p = (char *)(uintptr_t)start;
    size_t len = (size_t)(area - start), tl = al_strlen(spec->init_title);
    if (len < 2) return;
    if (tl + 1 > len) tl = len - 1; /* cut short, never the supervisor's words */
    memset(p, 0, len);
    memcpy(p, spec->init_title, tl);
    if (tl + 1 < (size_t)(end - start)) p[end - start - 1] = ' ';
}

__attribute__((noreturn)) static void al_child(const struct airlock_spawn_spec *spec) {
    /* A clean descriptor table: 0-2 the command's stdio, 3 status, 4 control, then the descriptors passed to the
     * command (5, 6, …), nothing else of the parent. */
    size_t passed = spec->passed_fd_count <= AIRLOCK_MAX_PASSED_FDS ? spec->passed_fd_count : 0;
    int wanted[5 + AIRLOCK_MAX_PASSED_FDS] = {spec->stdin_fd, spec->stdout_fd, spec->stderr_fd, spec->status_fd,
                                              spec->control_fd};
    for (size_t i = 0; i < passed; i++) wanted[5 + i] = spec->passed_fds[i];
    int count = 5 + (int)passed;
    int moved[5 + AIRLOCK_MAX_PASSED_FDS];
    for (int i = 0; i < count; i++) {
        moved[i] = fcntl(wanted[i], F_DUPFD_CLOEXEC, 64);
        if (moved[i] < 0) _exit(125); /* no status pipe yet: the parent sees EOF and reports it */
    }
    for (int i = 0; i < count; i++) {
        if (al_move_fd(moved[i], i) < 0) _exit(125); /* dup2: the copies at 0..count-1 are not close-on-exec */
    }
    if (syscall(SYS_close_range, (unsigned)count, ~0U, 0) < 0) {
        for (int fd = count; fd < 4096; fd++) close(fd);
    }
    (void)fcntl(FD_STATUS, F_SETFD, FD_CLOEXEC);
    (void)fcntl(FD_CONTROL, F_SETFD, FD_CLOEXEC);

    al_reset_signals();
    /* Modes in the profile (files, directories, tmpfs) are meant as written. */
    (void)umask(0);

    /* The parent writes the uid/gid maps, then says 'M'. */
    if (al_read_byte(FD_CONTROL) != 'M') {
        errno = ECANCELED;
        al_fail(AIRLOCK_STEP_WAIT_MAPS, -1);
    }
    if (spec->drop_supplementary_groups && syscall(SYS_setgroups, 0, NULL) < 0) al_fail(AIRLOCK_STEP_SETGROUPS, -1);
    if (spec->hostname && sethostname(spec->hostname, al_strlen(spec->hostname)) < 0)
        al_fail(AIRLOCK_STEP_HOSTNAME, -1);
    al_bound_shared_budgets(spec);

    al_build_root(spec);
    if (chdir(spec->cwd) < 0) al_fail(AIRLOCK_STEP_CHDIR, -1);
    al_lock_down(spec);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0) al_fail(AIRLOCK_STEP_SIGNALS, -1);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC);
    if (sigfd < 0) al_fail(AIRLOCK_STEP_SIGNALS, -1);

    /* From here on every system call of this process and its descendants passes the filter. */
    struct sock_fprog prog;
    prog.len = spec->filter_len;
    prog.filter = (struct sock_filter *)spec->filter;
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, spec->filter_flags, &prog);
    if (listener < 0) al_fail(AIRLOCK_STEP_SECCOMP, -1);
    al_send(AIRLOCK_MSG_LISTENER, 0, 0, 0, listener);
    /* The parent copies the listener with pidfd_getfd, then says 'G'; the command must never hold it. */
    if (al_read_byte(FD_CONTROL) != 'G') {
        errno = ECANCELED;
        al_fail(AIRLOCK_STEP_HANDOFF, -1);
    }
    close((int)listener);
    /* From here on the command must not be able to read PID 1's memory (a copy of the supervisor's, environment
     * included) or reach its descriptors through /proc/1: when the caller is not root, the uid never changed and
     * the kernel left PID 1 dumpable. The supervisor already holds the listener, for which it needed access. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) al_fail(AIRLOCK_STEP_HANDOFF, -1);

    al_become_init(spec);
    pid_t child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (child < 0) al_fail(AIRLOCK_STEP_FORK, -1);
    if (child == 0) al_payload(spec, sigfd);
    al_send(AIRLOCK_MSG_STARTED, 0, 0, 0, child);
    close(0);
    close(1);
    close(2);

    /* Reap everything. When the command ends, report its status; then exit as soon as nothing else is left, which
     * ends the namespace. Until then the namespace stays alive, so that what the command left running (a forked
     * sleeper, an orphan of a finalizer) acts where the supervisor sees it; the supervisor decides how long that may
     * last and ends it with SIGKILL. PID 1 alive after the command's status is thus the kernel's own proof that
     * processes remain: every process of the namespace descends from PID 1, and orphans are reparented to it. */
    int command_done = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = sigfd, .events = POLLIN}, {.fd = FD_CONTROL, .events = POLLIN}};
        int n = poll(p, 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(125);
        }
        if (p[1].revents) {
            char c;
            ssize_t r = read(FD_CONTROL, &c, 1);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) _exit(125); /* the supervisor is gone */
        }
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            (void)read(sigfd, &si, sizeof si);
            for (;;) {
                int status = 0;
                pid_t w = waitpid(-1, &status, WNOHANG);
                if (w < 0 && errno == ECHILD && command_done) _exit(0);
                if (w == 0 && command_done == 1) {
                    al_send(AIRLOCK_MSG_REMAINING, 0, 0, 0, 0); /* once: the command is gone, others are not */
                    command_done = 2;
                }
                if (w <= 0) break;
                if (w == child) {
                    al_send(AIRLOCK_MSG_EXIT, 0, 0, 0, status);
                    command_done = 1;
                }
            }
        }
    }
}

int airlock_spawn(const struct airlock_spawn_spec *spec, int *pidfd_out) {
    struct clone_args args;
    int pidfd = -1;
    memset(&args, 0, sizeof args);
    args.flags = spec->namespaces | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    if (spec->cgroup_fd >= 0) {
        /* Born in the sandbox's cgroup (v2): nothing it does is ever charged elsewhere. */
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)spec->cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) return -errno;
    if (pid == 0) al_child(spec);
    *pidfd_out = pidfd;
    return (int)pid;
}

uint64_t airlock_namespace_flags(void) {
    return CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
}

int airlock_rlimit_nproc(void) { return RLIMIT_NPROC; }

unsigned int airlock_filter_flags(void) {
    /* A listener for the supervisor; and once the supervisor has received a notification, its caller waits for the
     * answer through any signal but a fatal one, so a signal cannot make the kernel restart a call the supervisor is
     * already performing for it. */
    return SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
}

const char *airlock_step_name(uint32_t step) {
    switch (step) {
#define AIRLOCK_STEP_CASE(name, number, text) \
    case number:                               \
        return text;
        AIRLOCK_STEPS(AIRLOCK_STEP_CASE)
#undef AIRLOCK_STEP_CASE
    default:
        return NULL;
    }
}

int airlock_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
