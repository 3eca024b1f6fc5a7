/* Socket and identity helpers for airlockd and its clients: what Swift cannot reach through glibc's macros (CMSG_*,
 * struct ucred under _GNU_SOURCE) and the per-thread identity calls glibc does not offer. No state; every call is a
 * thin wrapper. The file-system and signal helpers the intake and provenance share are in CSystem. */
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

/* SO_PEERGROUPS: the peer's supplementary groups at connect time. Returns their count, or -1. A count above `max`
 * means the list did not fit and NOTHING was stored: call again with room for that many. */
int airlock_peer_groups(int sock, gid_t *groups, int max);

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

#ifdef __cplusplus
}
#endif
#endif
