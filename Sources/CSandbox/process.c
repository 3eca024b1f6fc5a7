/*
 * The supervisor's hold on the sandbox's PID 1: pidfd calls glibc 2.36 headers do not all declare, waiting for it,
 * and the W* macros Swift cannot import. These run in the supervisor, never between clone and exec.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int airlock_pidfd_getfd(int pidfd, int targetfd) { return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, 0); }

int airlock_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int airlock_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int airlock_pidfd_wait(int pidfd, int *status, int nohang) {
    siginfo_t info;
    for (;;) {
        memset(&info, 0, sizeof info);
        int rc = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | (nohang ? WNOHANG : 0));
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) return -1;
        if (info.si_pid == 0) return 0; /* still running (WNOHANG) */
        if (info.si_code == CLD_EXITED)
            *status = (info.si_status & 0xff) << 8;
        else
            *status = info.si_status & 0x7f;
        return 1;
    }
}

int airlock_wifexited(int status) { return WIFEXITED(status); }
int airlock_wexitstatus(int status) { return WEXITSTATUS(status); }
int airlock_wifsignaled(int status) { return WIFSIGNALED(status); }
int airlock_wtermsig(int status) { return WTERMSIG(status); }
