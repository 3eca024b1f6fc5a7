/*
 * The supervisor's side of seccomp user notification: the listener's sizes and flags, and reading a notified
 * caller's memory and files. These run in the supervisor, never between clone and exec.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <linux/seccomp.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

int airlock_notify_sizes(unsigned short *notif, unsigned short *resp) {
    struct seccomp_notif_sizes sizes;
    memset(&sizes, 0, sizeof sizes);
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0) return -1;
    *notif = sizes.seccomp_notif;
    *resp = sizes.seccomp_notif_resp;
    return 0;
}

int airlock_notify_set_sync_wakeup(int listener) {
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}

long airlock_read_process_memory(pid_t pid, void *local, size_t length, uint64_t remote) {
    struct iovec l = {.iov_base = local, .iov_len = length};
    struct iovec r = {.iov_base = (void *)(uintptr_t)remote, .iov_len = length};
    return (long)process_vm_readv(pid, &l, 1, &r, 1, 0);
}

long airlock_getxattr(const char *path, const char *name, void *value, size_t size) {
    return (long)getxattr(path, name, value, size);
}

long airlock_write_process_memory(pid_t pid, const void *local, size_t length, uint64_t remote) {
    struct iovec l = {.iov_base = (void *)local, .iov_len = length};
    struct iovec r = {.iov_base = (void *)(uintptr_t)remote, .iov_len = length};
    return (long)process_vm_writev(pid, &l, 1, &r, 1, 0);
}

long airlock_pwrite(int fd, const void *buffer, size_t length, uint64_t offset) {
    return (long)pwrite(fd, buffer, length, (off_t)offset);
}

long airlock_pread(int fd, void *buffer, size_t length, uint64_t offset) {
    return (long)pread(fd, buffer, length, (off_t)offset);
}

uint64_t airlock_vdso_base(void) { return (uint64_t)getauxval(AT_SYSINFO_EHDR); }
