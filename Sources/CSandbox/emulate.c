/*
 * System calls the supervisor performs on a sandboxed caller's behalf (seccomp user notification with
 * SECCOMP_IOCTL_NOTIF_ADDFD), and the per-thread credential switch they run under.
 *
 * This runs in the supervisor, not between clone and exec, but it changes the calling *thread's* credentials, so it
 * uses raw system calls only: glibc's setgroups/setfsuid wrappers either broadcast to every thread of the process
 * (setgroups) or hide failures (setfsuid). Nothing here allocates.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <signal.h>
#include <time.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct al_saved_creds {
    int active;
    int known;
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    int ngroups;
    gid_t groups[256];
    struct __user_cap_data_struct caps[2];
};

/* One per supervising thread: each sandbox run is served by its own thread. */
static __thread struct al_saved_creds al_saved;

int airlock_private_fs(void) { return (int)syscall(SYS_unshare, CLONE_FS); }

int airlock_impersonate(uid_t uid, gid_t gid, int privileged) {
    struct al_saved_creds *s = &al_saved;
    if (s->active) {
        errno = EALREADY;
        return -1;
    }
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    /* The thread's own credentials do not change between calls: read them once. */
    if (!s->known) {
        if (syscall(SYS_capget, &header, s->caps) < 0) return -1;
        if (syscall(SYS_getresuid, &s->ruid, &s->euid, &s->suid) < 0) return -1;
        if (syscall(SYS_getresgid, &s->rgid, &s->egid, &s->sgid) < 0) return -1;
        s->ngroups = 0;
        if (privileged) {
            long n = syscall(SYS_getgroups, 256, s->groups);
            if (n < 0) return -1;
            s->ngroups = (int)n;
        }
        s->known = 1;
    }
    s->active = 1;
    if (privileged) {
        /* Per thread: the raw calls, not glibc's wrappers (which would switch every thread of the supervisor).
         * The real and effective ids, not only the file-system ones (which follow the effective ids): an effective
         * uid 0 owns every user namespace root created (the sandbox's among them) and so holds every capability in
         * it, and sockets record the caller's ids (SO_PEERCRED, datagram credentials). The saved ids stay the
         * supervisor's, so it can switch back. The effective uid leaving 0 clears the effective
         * capabilities (the permitted ones stay for the way back). Each call's success is its effect. */
        if (s->ngroups > 0 && syscall(SYS_setgroups, 0, NULL) < 0) goto fail;
        /* The real ids too: credentials a socket forces on a datagram (SO_PASSCRED receivers) are the sender's
         * real ids. The price: for the few microseconds of a call, a host process running as the sandbox's host
         * uid could signal this thread (docs/sandbox.md). */
        if (syscall(SYS_setresgid, gid, gid, (gid_t)-1) < 0) goto fail;
        if (syscall(SYS_setresuid, uid, uid, (uid_t)-1) < 0) goto fail;
        if (s->euid != 0) {
            /* A supervisor that is not uid 0 but holds capabilities: drop them from the effective set too. */
            struct __user_cap_data_struct none[2];
            memcpy(none, s->caps, sizeof none);
            none[0].effective = 0;
            none[1].effective = 0;
            if (syscall(SYS_capset, &header, none) < 0) goto fail;
        }
    } else if (s->caps[0].effective != 0 || s->caps[1].effective != 0) {
        struct __user_cap_data_struct none[2];
        memcpy(none, s->caps, sizeof none);
        none[0].effective = 0;
        none[1].effective = 0;
        if (syscall(SYS_capset, &header, none) < 0) goto fail;
    }
    return 0;
fail:;
    int saved = errno;
    airlock_impersonate_end();
    errno = saved;
    return -1;
}

void airlock_impersonate_end(void) {
    struct al_saved_creds *s = &al_saved;
    if (!s->active) return;
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    /* The ids first (the saved ids allow it): an effective uid back to 0 brings the permitted capabilities back into
     * the effective set. A thread that cannot get back must not go on. */
    if (syscall(SYS_setresuid, s->ruid, s->euid, s->suid) < 0) abort();
    if (syscall(SYS_setresgid, s->rgid, s->egid, s->sgid) < 0) abort();
    if (s->ngroups > 0 && syscall(SYS_setgroups, s->ngroups, s->groups) < 0) abort();
    if (s->caps[0].effective != s->caps[0].permitted || s->caps[1].effective != s->caps[1].permitted || s->euid != 0) {
        if (syscall(SYS_capset, &header, s->caps) < 0) abort();
    }
    s->active = 0;
}

int airlock_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    for (;;) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd < 0 && errno == EINTR) continue;
        return (int)fd;
    }
}

int airlock_notify_addfd(int listener, uint64_t id, int fd, unsigned int newfd_flags, int send) {
    struct seccomp_notif_addfd addfd;
    memset(&addfd, 0, sizeof addfd);
    addfd.id = id;
    addfd.flags = send ? SECCOMP_ADDFD_FLAG_SEND : 0;
    addfd.srcfd = (uint32_t)fd;
    addfd.newfd = 0;
    addfd.newfd_flags = newfd_flags;
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
}

unsigned int airlock_set_umask(unsigned int mask) { return (unsigned int)umask((mode_t)mask); }

uint64_t airlock_resolve_in_root(void) { return RESOLVE_IN_ROOT; }
uint64_t airlock_resolve_beneath(void) { return RESOLVE_BENEATH; }
uint64_t airlock_resolve_no_symlinks(void) { return RESOLVE_NO_SYMLINKS; }
uint64_t airlock_resolve_no_magiclinks(void) { return RESOLVE_NO_MAGICLINKS; }
uint64_t airlock_resolve_no_xdev(void) { return RESOLVE_NO_XDEV; }

int airlock_o_path(void) { return O_PATH; }
int airlock_at_empty_path(void) { return AT_EMPTY_PATH; }
int airlock_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }
unsigned int airlock_mfd_cloexec(void) { return MFD_CLOEXEC; }
int airlock_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
int airlock_pidfd_signal(int pidfd, int sig, unsigned int flags) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}
int airlock_tgkill(pid_t tgid, pid_t tid, int sig) { return (int)syscall(SYS_tgkill, tgid, tid, sig); }
long airlock_utime_now(void) { return UTIME_NOW; }
int airlock_setxattr(const char *path, const char *name, const void *value, size_t size, int flags, int follow) {
    return follow ? setxattr(path, name, value, size, flags) : lsetxattr(path, name, value, size, flags);
}
int airlock_removexattr(const char *path, const char *name, int follow) {
    return follow ? removexattr(path, name) : lremovexattr(path, name);
}

/* A one-shot timer per thread that interrupts the thread's system call (the watchdog's do-nothing signal). */
static __thread timer_t al_timer;
static __thread int al_timer_made;

int airlock_interrupt_after(unsigned int ms) {
    airlock_install_interrupt_handler();
    if (!al_timer_made) {
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = SIGRTMIN + 3;
        ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        if (timer_create(CLOCK_MONOTONIC, &ev, &al_timer) < 0) return -1;
        al_timer_made = 1;
    }
    struct itimerspec when;
    memset(&when, 0, sizeof when);
    when.it_value.tv_sec = ms / 1000;
    when.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    return timer_settime(al_timer, 0, &when, NULL);
}

void airlock_interrupt_cancel(void) {
    if (!al_timer_made) return;
    struct itimerspec off;
    memset(&off, 0, sizeof off);
    timer_settime(al_timer, 0, &off, NULL);
}
