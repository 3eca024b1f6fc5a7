/*
 * The part of Airlock that runs between clone and exec.
 *
 * The supervisor is a multi-threaded Swift process, so its clone child may only make async-signal-safe calls.
 * Everything the child needs (strings, the mount list, the compiled BPF program, an empty libcap capability set)
 * is prepared by the parent and handed over in `airlock_spawn_spec`. The child reports progress and failures as
 * fixed-size `airlock_message` records on the status pipe.
 *
 * That child lives in spawn.c alone. The supervisor's own wrappers, which run in the parent, live in files named for
 * their concern: process.c (pidfds, wait status), notify.c (the seccomp listener), sealed_copy.c, emulate.c (calls
 * performed for a notified caller) and watchdog.c (the deadline).
 */
#ifndef AIRLOCK_SANDBOX_H
#define AIRLOCK_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "airlock_private_proc.h"
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kinds of entries in the sandbox's private mount tree. */
enum airlock_mount_kind {
    AIRLOCK_MOUNT_BIND = 1,  /* read-only recursive bind of a host path */
    AIRLOCK_MOUNT_TMPFS = 2, /* writable tmpfs, `data` holds its options */
    AIRLOCK_MOUNT_PROC = 3,  /* fresh procfs of the sandbox's PID namespace, /proc/sys etc. read-only */
    AIRLOCK_MOUNT_DEV = 4,   /* minimal /dev: null, zero, random, urandom, full and the fd symlinks */
    AIRLOCK_MOUNT_FILE = 5,  /* a read-only file with `data` as its contents */
    AIRLOCK_MOUNT_SYMLINK = 6, /* a symbolic link to `source` */
    AIRLOCK_MOUNT_DIR = 7,   /* an empty directory */
    AIRLOCK_MOUNT_SYSFS = 8, /* fresh sysfs of the sandbox's network namespace, read-only */
};

struct airlock_mount {
    int kind;
    const char *source;      /* bind: host path; symlink: link target */
    const char *destination; /* relative to the new root, no leading slash */
    const char *data;        /* tmpfs: mount options; file: contents */
    size_t data_len;         /* file: contents length */
    unsigned int mode;       /* file / dir mode */
    int optional;            /* bind: a missing source is skipped instead of failing */
};

/* Most descriptors a command can be handed (`passed_fds`). */
#define AIRLOCK_MAX_PASSED_FDS 8
/* The number the first passed descriptor has in the command; the next ones follow. */
#define AIRLOCK_FIRST_PASSED_FD 5

struct airlock_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

/* Mount namespaces set-up holds at once: one per bind source and /dev node cloned with open_tree (at most 256 + 5),
 * and the procfs the user-namespace limits are written through. The sandbox's own limit, set before them. */
#define AIRLOCK_MAX_SETUP_MOUNT_NAMESPACES 300

/* One per-user-namespace limit (`/proc/sys/user/max_*`), written by PID 1 into its own user namespace. */
struct airlock_user_limit {
    const char *path;  /* relative to a procfs root: "sys/user/max_inotify_instances" */
    const char *value; /* decimal text */
};

struct airlock_spawn_spec {
    uint64_t namespaces;            /* CLONE_NEW* flags */
    const char *hostname;
    const char *staging;            /* host directory the new root's tmpfs is mounted on (inside the new mount ns) */
    const char *root_options;       /* tmpfs options of the new root */
    const struct airlock_mount *mounts;
    size_t mount_count;
    const struct airlock_rlimit *rlimits;
    size_t rlimit_count;
    uid_t uid;                      /* ids inside the sandbox */
    gid_t gid;
    int drop_supplementary_groups;  /* 1 when the parent may let the child call setgroups (it is privileged) */
    void *empty_caps;               /* cap_t from cap_init(): every set clear */
    int cap_last;                   /* highest capability number to drop from the bounding set */
    const void *filter;             /* struct sock_filter[] */
    unsigned short filter_len;      /* number of instructions */
    unsigned int filter_flags;      /* SECCOMP_FILTER_FLAG_* */
    const char *cwd;
    const char *const *candidates;  /* full paths to try for the command, in order, NULL-terminated */
    char *const *argv;
    char *const *envp;
    int stdin_fd, stdout_fd, stderr_fd; /* child's ends */
    int status_fd;                  /* child -> parent messages (write end) */
    int control_fd;                 /* parent -> child: 'M' maps written, 'G' listener taken; EOF = parent gone */
    const int *passed_fds;          /* handed to the command as AIRLOCK_FIRST_PASSED_FD, +1, … (not close-on-exec) */
    size_t passed_fd_count;         /* at most AIRLOCK_MAX_PASSED_FDS */
    const struct airlock_user_limit *user_limits; /* this namespace's shares of the host's per-user counters */
    size_t user_limit_count;
    int cgroup_fd;                  /* cgroup v2 directory to start PID 1 in (CLONE_INTO_CGROUP), or -1 */
    const char *const *cgroup_tasks; /* cgroup v1: the `tasks` file of each sandbox cgroup PID 1 moves itself into */
    size_t cgroup_task_count;
    /* A drawn world (HostWorld): names under the /dev mount that show the host's /dev/null (GPU nodes), PID 1's
     * name (PR_SET_NAME) and command line, written over its inherited argument area [arg_start, area_end); none
     * when `init_name` is NULL. The area's bounds are the supervisor's own (/proc/self/stat fields 48-51), which
     * PID 1, its copy, shares. */
    const char *const *device_aliases;
    size_t device_alias_count;
    const char *init_name;
    const char *init_title;          /* one string, NUL-terminated */
    uint64_t arg_start, arg_end, area_end;
};

/* Message types on the status pipe. */
enum airlock_message_type {
    AIRLOCK_MSG_ERROR = 1,       /* set-up failed at `step` (index = mount or rlimit), errno in `err` */
    AIRLOCK_MSG_LISTENER = 2,    /* `value` is the seccomp listener fd number in the child */
    AIRLOCK_MSG_EXEC_FAILED = 3, /* the command could not be executed: errno in `err` */
    AIRLOCK_MSG_EXIT = 4,        /* the command ended: `value` is its wait status. PID 1 exits once it has no child
                                    left; while it lives, processes of the command's remain */
    AIRLOCK_MSG_STARTED = 5,     /* the command's process exists: `value` is its PID inside the sandbox */
    AIRLOCK_MSG_REMAINING = 6,   /* the command ended and PID 1 still has children: processes outlived it */
};

/*
 * Set-up steps, named in errors: the one table both the child (which reports a step's number) and the supervisor
 * (which names it, through airlock_step_name) read. Numbers are fixed: they travel on the status pipe.
 */
#define AIRLOCK_STEPS(X)                                                                                    \
    X(WAIT_MAPS, 1, "waiting for the uid/gid maps")                                                         \
    X(SETGROUPS, 2, "dropping supplementary groups")                                                        \
    X(HOSTNAME, 3, "setting the host name")                                                                 \
    X(MOUNT_PRIVATE, 4, "making the mount tree private")                                                    \
    X(OPEN_SOURCE, 5, "opening a mount source")                                                             \
    X(STAGING, 6, "mounting the new root")                                                                  \
    X(MOUNTPOINT, 7, "creating a mount point")                                                              \
    X(MOUNT, 8, "mounting")                                                                                 \
    X(READONLY, 9, "making a mount read-only")                                                              \
    X(PIVOT_ROOT, 10, "pivot_root")                                                                         \
    X(DETACH_OLD_ROOT, 11, "detaching the old root")                                                        \
    X(ROOT_READONLY, 12, "making the new root read-only")                                                   \
    X(CHDIR, 13, "changing to the working directory")                                                       \
    X(RLIMIT, 14, "setting a resource limit")                                                               \
    X(CAP_BOUND, 15, "dropping the capability bounding set")                                                \
    X(CAP_AMBIENT, 16, "clearing ambient capabilities")                                                     \
    X(SETGID, 17, "setting the gid")                                                                        \
    X(SETUID, 18, "setting the uid")                                                                        \
    X(CAP_CLEAR, 19, "clearing capabilities")                                                               \
    X(NO_NEW_PRIVS, 20, "setting no_new_privs")                                                             \
    X(SIGNALS, 21, "setting up the reaper's signals")                                                       \
    X(SECCOMP, 22, "installing the seccomp filter")                                                         \
    X(HANDOFF, 23, "handing over the seccomp listener")                                                     \
    X(FORK, 24, "starting the command's process")                                                           \
    X(USER_LIMITS, 26,                                                                                      \
      "joining the sandbox's cgroup and bounding the host's per-user counters (/proc/sys/user of its namespace)")

enum airlock_step {
#define AIRLOCK_STEP_ENUM(name, number, text) AIRLOCK_STEP_##name = number,
    AIRLOCK_STEPS(AIRLOCK_STEP_ENUM)
#undef AIRLOCK_STEP_ENUM
};

/* The sentence naming a set-up step ("mounting the new root"), or NULL for a number that is none. */
const char *airlock_step_name(uint32_t step);

struct airlock_message {
    uint32_t type;
    uint32_t step;
    int32_t err;
    int32_t index;
    int64_t value;
};

/*
 * Clones the sandbox's PID 1 into fresh namespaces. In the parent returns the child's PID (in the caller's PID
 * namespace) and stores a pidfd in *pidfd_out; returns -errno on failure. The child never returns.
 */
int airlock_spawn(const struct airlock_spawn_spec *spec, int *pidfd_out);

/* Constants Swift cannot see through glibc's macros, for preparing the spawn (spawn.c). */
uint64_t airlock_namespace_flags(void);
int airlock_rlimit_nproc(void);
/* The sandbox's seccomp filter flags: SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV. */
unsigned int airlock_filter_flags(void);
/* Where the child mounts its new root's tmpfs (inside its own mount namespace), and that tmpfs's options. */
#define AIRLOCK_STAGING_DIRECTORY "/tmp"
#define AIRLOCK_ROOT_TMPFS_OPTIONS "mode=0755,size=16m,nr_inodes=4096"
/* Most names `device_aliases` may hold. */
#define AIRLOCK_MAX_DEVICE_ALIASES 8
/* pipe2(fds, O_CLOEXEC). */
int airlock_pipe(int fds[2]);

/* ---- The supervisor's hold on PID 1 (process.c) ---- */

/* Thin wrappers for system calls glibc 2.36 headers do not all declare. Each returns -1 and sets errno. */
int airlock_pidfd_getfd(int pidfd, int targetfd);
int airlock_pidfd_send_signal(int pidfd, int sig);
int airlock_pidfd_open(pid_t pid);
/* Waits for the process behind `pidfd`; stores its wait status. Retries on EINTR. */
int airlock_pidfd_wait(int pidfd, int *status, int nohang);
/* The W* macros, which Swift cannot import. */
int airlock_wifexited(int status);
int airlock_wexitstatus(int status);
int airlock_wifsignaled(int status);
int airlock_wtermsig(int status);

/* ---- The seccomp listener and reading a notified caller (notify.c) ---- */

/* Size the kernel wants zeroed for SECCOMP_IOCTL_NOTIF_RECV and for the response (SECCOMP_GET_NOTIF_SIZES). */
int airlock_notify_sizes(unsigned short *notif, unsigned short *resp);
/* SECCOMP_IOCTL_NOTIF_SET_FLAGS with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (kernel >= 6.6). */
int airlock_notify_set_sync_wakeup(int listener);
/* process_vm_readv of one range; returns bytes read or -1. */
long airlock_read_process_memory(pid_t pid, void *local, size_t length, uint64_t remote);
/* process_vm_writev of one range; returns bytes written or -1. Respects the caller's page protections. */
long airlock_write_process_memory(pid_t pid, const void *local, size_t length, uint64_t remote);
/* pwrite(2) to /proc/PID/mem open as `fd` (which writes through read-only private mappings, as debuggers do). */
long airlock_pwrite(int fd, const void *buffer, size_t length, uint64_t offset);
/* pread(2) at a 64-bit offset (a /proc/PID/mem address above INT64_MAX is not one user space has). */
long airlock_pread(int fd, void *buffer, size_t length, uint64_t offset);
/* The supervisor's own vDSO (getauxval(AT_SYSINFO_EHDR)), or 0. */
uint64_t airlock_vdso_base(void);
/* getxattr(2), which glibc's Swift module map does not export (sys/xattr.h). */
long airlock_getxattr(const char *path, const char *name, void *value, size_t size);

/* ---- Sealed in-memory copies (sealed_copy.c) ---- */

/* memfd_create(name, MFD_CLOEXEC). */
int airlock_memfd(const char *name);
/* A sealed in-memory copy of the first `size` bytes of the file open as `fd` (memfd, close-on-exec; sealed against
 * writes, growing and shrinking), or -1 with errno. Only the file's data extents are copied (SEEK_DATA/SEEK_HOLE):
 * holes stay holes in the copy and cost no memory. More than `budget` bytes of data fails with EFBIG. */
int airlock_sealed_copy(int fd, uint64_t size, uint64_t budget);

/* ---- Calls the supervisor performs for a notified caller (emulate.c) ---- */

/* unshare(CLONE_FS) for the calling thread, so its umask can change without touching the supervisor's others. */
int airlock_private_fs(void);
/* Switches the calling thread to the sandbox user's file-system credentials: fsuid/fsgid, no supplementary groups
 * (when `privileged`), no effective capability. Per thread, raw system calls. -1 with errno on failure (nothing
 * changed then). */
int airlock_impersonate(uid_t uid, gid_t gid, int privileged);
/* Undoes airlock_impersonate; aborts the process if the thread's credentials cannot be restored. */
void airlock_impersonate_end(void);
/* openat2(2); -1 with errno. */
int airlock_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
/* SECCOMP_IOCTL_NOTIF_ADDFD: installs `fd` in the caller; with `send`, also makes it the result of the notified call
 * (SECCOMP_ADDFD_FLAG_SEND). Returns the caller's new descriptor number, or -1 with errno (ENOENT: the caller is
 * gone). */
int airlock_notify_addfd(int listener, uint64_t id, int fd, unsigned int newfd_flags, int send);
/* umask(2) of the calling thread (after airlock_private_fs). */
unsigned int airlock_set_umask(unsigned int mask);
uint64_t airlock_resolve_in_root(void);
uint64_t airlock_resolve_beneath(void);
uint64_t airlock_resolve_no_symlinks(void);
uint64_t airlock_resolve_no_magiclinks(void);
uint64_t airlock_resolve_no_xdev(void);
int airlock_o_path(void);
int airlock_at_empty_path(void);
int airlock_memfd_create(const char *name, unsigned int flags);
unsigned int airlock_mfd_cloexec(void);
int airlock_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/* pidfd_send_signal(pidfd, sig, NULL, flags). */
int airlock_pidfd_signal(int pidfd, int sig, unsigned int flags);
int airlock_tgkill(pid_t tgid, pid_t tid, int sig);
long airlock_utime_now(void);
int airlock_setxattr(const char *path, const char *name, const void *value, size_t size, int flags, int follow);
int airlock_removexattr(const char *path, const char *name, int follow);

/* ---- The emulated network's kernel side (netsink.c) ---- */

/* setns(nsfd, CLONE_NEWNET) for the calling thread; -1 with errno. */
int airlock_net_enter(int nsfd);
/* In the calling thread's network namespace: loopback up, `address` (network byte order; 0: none) added to it as
 * the host's own /20, and local routes for 0.0.0.0/0 (source `address`) and ::/0 (when `ipv6`) on it, so every
 * address is local and nothing routes out. 0, or -errno. */
int airlock_net_setup(int ipv6, uint32_t address);
/* A non-blocking socket bound to the wildcard address of `family` on `port` (AF_INET6 TCP also takes IPv4; datagram
 * sockets receive each packet's destination); a stream socket listens. -1 with errno. */
int airlock_net_socket(int family, int type, uint16_t port);
/* recvmsg without waiting: the datagram (its full length returned, MSG_TRUNC), its sender, and the address it was
 * sent to (4 or 16 bytes of `dst`). -1 with errno. */
ssize_t airlock_net_recv(int fd, uint8_t *buf, size_t cap, struct sockaddr_storage *peer, uint8_t dst[16]);
/* sendmsg of one datagram to `peer` from the local address `src` (4 or 16 bytes). -1 with errno. */
ssize_t airlock_net_reply(int fd, const uint8_t *buf, size_t len, const struct sockaddr_storage *peer,
                          const uint8_t src[16]);

/* accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC). */
int airlock_net_accept(int fd);

/* ---- The deadline, kept by a thread of its own (watchdog.c) ---- */

struct airlock_watchdog;
/* Starts a thread that, at `deadline` (CLOCK_MONOTONIC ns), kills the process behind `pidfd` (a copy is kept) and
 * then interrupts the calling thread's system call once a second (a signal with a handler that does nothing, no
 * SA_RESTART) until stopped. NULL with errno on failure. */
struct airlock_watchdog *airlock_watchdog_start(int pidfd, uint64_t deadline);
/* Moves the deadline (earlier or later) to `deadline`; nothing once it has fired. */
void airlock_watchdog_rearm(struct airlock_watchdog *w, uint64_t deadline);
/* Stops it without waiting for its thread: nothing is signalled once this returns, and the thread frees what is
 * left when it ends. */
void airlock_watchdog_stop(struct airlock_watchdog *w);
/* Installs (once) the do-nothing handler, without SA_RESTART, of the signal that interrupts a thread's call. */
void airlock_install_interrupt_handler(void);
/* Interrupts the calling thread's system call in `ms` milliseconds (a one-shot timer of the thread's own), unless
 * cancelled first. -1 with errno on failure. */
int airlock_interrupt_after(unsigned int ms);
void airlock_interrupt_cancel(void);

#ifdef __cplusplus
}
#endif
#endif
