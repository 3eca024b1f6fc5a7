#define _GNU_SOURCE
#include "airlock_system.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

int airlock_stop_signals_fd(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) return -1;
    return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int airlock_read_signal(int sigfd) {
    struct signalfd_siginfo info;
    ssize_t n = read(sigfd, &info, sizeof info);
    return n == (ssize_t)sizeof info ? (int)info.ssi_signo : -1;
}

int airlock_set_read_lease(int fd) { return fcntl(fd, F_SETLEASE, F_RDLCK); }

int airlock_release_lease(int fd) { return fcntl(fd, F_SETLEASE, F_UNLCK); }

int airlock_open_beneath(int dirfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC | O_NOFOLLOW);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    long fd;
    /* EAGAIN: a rename raced the lookup; try again a bounded number of times. */
    int tries = 0;
    do {
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 64);
    return (int)fd;
}

/* Only when nothing exists under `newpath` beforehand: a check, then rename(2). */
static int rename_if_absent(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    struct stat target;
    if (fstatat(newdirfd, newpath, &target, AT_SYMLINK_NOFOLLOW) == 0) {
        errno = EEXIST;
        return -1;
    }
    return renameat(olddirfd, oldpath, newdirfd, newpath);
}

int airlock_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    if (renameat2(olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    /* File systems without RENAME_NOREPLACE (NFS, some FUSE ones): the same guarantee another way (docs/intake.md,
       "Several workers on one root"). A folder: rename(2) never replaces a folder that is not empty (ENOTEMPTY) and
       never puts a folder over a file (ENOTDIR); the check before it covers an empty one but for a race. A file:
       link(2) fails with EEXIST, then the old name goes (of two movers of one file, one unlinks it: the other undoes
       its link and sees ENOENT, as rename would have said). */
    struct stat st;
    if (fstatat(olddirfd, oldpath, &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
    if (S_ISDIR(st.st_mode)) return rename_if_absent(olddirfd, oldpath, newdirfd, newpath);
    if (linkat(olddirfd, oldpath, newdirfd, newpath, 0) != 0) {
        /* protected_hardlinks: a file of another user cannot be linked without CAP_FOWNER. */
        if (errno == EPERM) return rename_if_absent(olddirfd, oldpath, newdirfd, newpath);
        return -1;
    }
    if (unlinkat(olddirfd, oldpath, 0) != 0) {
        int saved = errno;
        unlinkat(newdirfd, newpath, 0);
        errno = saved;
        return -1;
    }
    return 0;
}

int airlock_try_lock(int fd) { return flock(fd, LOCK_EX | LOCK_NB); }

int airlock_watch_folder(const char *path) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return -1;
    uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE | IN_MODIFY;
    if (inotify_add_watch(fd, path, mask) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void airlock_drain(int fd) {
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

int airlock_file_identity(int fd, struct airlock_file_identity *out) {
    /* The kernel's struct statx is 256 bytes; glibc 2.36's lacks stx_mnt_id (offset 144), so read it by offset. */
    union {
        struct statx stx;
        unsigned char bytes[256];
    } buf;
    memset(&buf, 0, sizeof buf);
    const unsigned int mnt_id = 0x1000U, mnt_id_unique = 0x4000U;
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | mnt_id_unique, &buf) != 0) return -1;
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return -1;
    memset(out, 0, sizeof *out);
    out->device = makedev(buf.stx.stx_dev_major, buf.stx.stx_dev_minor);
    out->inode = buf.stx.stx_ino;
    out->size = buf.stx.stx_size;
    out->mtime_ns = (long long)buf.stx.stx_mtime.tv_sec * 1000000000LL + buf.stx.stx_mtime.tv_nsec;
    out->ctime_ns = (long long)buf.stx.stx_ctime.tv_sec * 1000000000LL + buf.stx.stx_ctime.tv_nsec;
    out->mode = buf.stx.stx_mode;
    out->uid = buf.stx.stx_uid;
    out->nlink = buf.stx.stx_nlink;
    out->fs_type = (unsigned long long)fs.f_type;
    if (buf.stx.stx_mask & (mnt_id | mnt_id_unique)) {
        memcpy(&out->mount_id, buf.bytes + 144, sizeof out->mount_id);
        out->mount_unique = (buf.stx.stx_mask & mnt_id_unique) ? 1 : 0;
    }
    return 0;
}
