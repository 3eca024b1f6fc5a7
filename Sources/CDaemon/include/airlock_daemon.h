/* Socket helpers for airlockd and its clients: what Swift cannot reach through glibc's macros (CMSG_*, struct ucred
 * under _GNU_SOURCE). No state; every call is a thin wrapper. */
#ifndef AIRLOCK_DAEMON_H
#define AIRLOCK_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most descriptors one message carries. */
#define AIRLOCK_MAX_MESSAGE_FDS 4

/* sendmsg of `len` bytes with `nfds` descriptors as SCM_RIGHTS (MSG_NOSIGNAL). Returns bytes sent or -1. */
ssize_t airlock_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);

/* recvmsg into `buf`; received descriptors (close-on-exec) go to `fds` (room for AIRLOCK_MAX_MESSAGE_FDS), their count
 * to `*nfds`; descriptors beyond that, or a truncated control message, are closed and `*truncated` set. Returns bytes
 * read, 0 at EOF, or -1. */
ssize_t airlock_recv_with_fds(int sock, void *buf, size_t len, int *fds, int *nfds, int *truncated);

/* SO_PEERCRED of a connected Unix socket. */
int airlock_peer_credentials(int sock, pid_t *pid, uid_t *uid, gid_t *gid);

/* SO_PEERGROUPS: the peer's supplementary groups at connect time. Returns their count (may exceed `max`; only `max`
 * are stored) or -1. */
int airlock_peer_groups(int sock, gid_t *groups, int max);

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (threads started later inherit it) and returns a signalfd
 * for them (non-blocking, close-on-exec), or -1. */
int airlock_stop_signals_fd(void);
/* The next signal number waiting on that signalfd, or -1 when none. */
int airlock_read_signal(int sigfd);
/* accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC. */
int airlock_accept(int listener);
/* pipe2 with O_NONBLOCK | O_CLOEXEC. */
int airlock_wake_pipe(int fds[2]);

/* 1 when `fd` is open for reading (O_RDONLY or O_RDWR, not O_PATH), 0 when not, -1 on error. */
int airlock_fd_readable(int fd);

/* The calling thread's file-system identity. The raw setgroups system call changes the calling thread only (glibc's
 * setgroups changes every thread); it needs CAP_SETGID. Returns 0 or -1. */
int airlock_thread_setgroups(const gid_t *groups, int count);
/* setfsuid / setfsgid (this thread only; CAP_SETUID / CAP_SETGID for ids other than the thread's own), returning
 * the id in effect afterwards, so that a change that did not take shows. Leaving fsuid 0 takes the file-system
 * capabilities (CAP_DAC_*, CAP_FOWNER, …) out of the thread's effective set; returning to 0 puts them back. */
uid_t airlock_thread_setfsuid(uid_t uid);
gid_t airlock_thread_setfsgid(gid_t gid);

/* openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV, O_NOFOLLOW and
 * O_CLOEXEC added: opens `path` only if it lies inside `dirfd` without crossing a link or a mount. */
int airlock_open_beneath(int dirfd, const char *path, int flags);

/* renameat2(RENAME_NOREPLACE): fails with EEXIST instead of replacing. */
int airlock_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/* flock(LOCK_EX | LOCK_NB): -1 with EWOULDBLOCK when another open file description holds it. */
int airlock_try_lock(int fd);

/* An inotify descriptor (non-blocking) watching `path` for entries created, moved, written, changed or deleted. */
int airlock_watch_folder(const char *path);

/* Reads and drops everything readable on a non-blocking descriptor. */
void airlock_drain(int fd);

/* F_SETLEASE / F_GETLEASE wrappers (lease: 0 read, 1 write, 2 unlock). */
int airlock_set_read_lease(int fd);
int airlock_release_lease(int fd);

#ifdef __cplusplus
}
#endif
#endif
