/* File-system and signal helpers shared by airlockd, the intake and provenance: the system calls glibc does not
 * wrap (openat2, renameat2's flags) or whose flags and structures Swift cannot import cleanly (inotify masks,
 * signalfd_siginfo, F_SETLEASE). No state; every call is a thin wrapper. */
#ifndef AIRLOCK_SYSTEM_H
#define AIRLOCK_SYSTEM_H

#ifdef __cplusplus
extern "C" {
#endif

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (threads started later inherit it) and returns a signalfd
 * for them (non-blocking, close-on-exec), or -1. */
int airlock_stop_signals_fd(void);
/* The next signal number waiting on that signalfd, or -1 when none. */
int airlock_read_signal(int sigfd);

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

/* What identifies a file's content without reading it (the digest cache's key). */
struct airlock_file_identity {
    unsigned long long device;   /* st_dev, as makedev(major, minor) */
    unsigned long long inode;
    unsigned long long size;
    long long mtime_ns;          /* nanoseconds since the epoch */
    long long ctime_ns;
    unsigned long long mount_id; /* statx's mount id: unique for the boot when mount_unique is 1 */
    unsigned long long fs_type;  /* statfs f_type of the file's file system */
    unsigned int mode;           /* st_mode */
    unsigned int uid;
    unsigned int nlink;
    int mount_unique;            /* 1: STATX_MNT_ID_UNIQUE (never reused before a reboot), 0: STATX_MNT_ID or none */
};

/* statx(fd, AT_EMPTY_PATH) with the mount id (the unique one where the kernel has it) and fstatfs's f_type. */
int airlock_file_identity(int fd, struct airlock_file_identity *out);

#ifdef __cplusplus
}
#endif
#endif
