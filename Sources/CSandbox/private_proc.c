/* /proc independence (docs/sandbox.md, "Where /proc is not the supervisor's").

   The supervisor reaches its sandbox's PID 1 and every notifying thread under /proc/<pid>, with pids numbered in its
   own PID namespace (clone3, seccomp notifications). When the /proc mounted here belongs to another PID namespace
   (`unshare --pid --fork` without --mount-proc, some CI runners and containers), those paths name other processes.
   So, first thing, before any thread exists (a constructor runs before Swift's main and before anything could start
   a thread): when /proc/self is not getpid(), this process moves into a mount namespace of its own, makes every
   mount a slave of the host's (mounts made later outside still arrive; none made here leak out) and mounts a fresh
   proc, of its own PID namespace, on /proc. The outcome is kept for the supervisor, which refuses to spawn, saying
   why, when /proc is still not its own. Nothing is done when /proc is already right. */
#define _GNU_SOURCE
#include "airlock_private_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

static struct airlock_proc_start start_state = {AIRLOCK_PROC_OWN, -1, -1, NULL, 0};

struct airlock_proc_start airlock_proc_start_state(void) { return start_state; }

static int parse_pid(const char *s) {
    long v = 0;
    if (*s == '\0') return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 4194304) return -1;
        v = v * 10 + (*s - '0');
    }
    return (int)v;
}

#define AIRLOCK_PROC_SUPER_MAGIC 0x9fa0

int airlock_proc_self_pid(const char *proc_root) {
    char path[4096], buf[32];
    /* A /proc that is not procfs (a tmpfs with a "self" link, an empty directory) is never taken for one. */
    struct statfs fs;
    if (statfs(proc_root, &fs) != 0 || fs.f_type != AIRLOCK_PROC_SUPER_MAGIC) return -1;
    if (snprintf(path, sizeof path, "%s/self", proc_root) >= (int)sizeof path) return -1;
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n <= 0) return -1;
    buf[n] = '\0';
    return parse_pid(buf);
}

int airlock_pidfd_pid_in(const char *proc_root, int pidfd) {
    char path[4096], buf[4096];
    if (snprintf(path, sizeof path, "%s/self/fdinfo/%d", proc_root, pidfd) >= (int)sizeof path) return -2;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -2;
    ssize_t total = 0;
    while (total < (ssize_t)sizeof buf - 1) {
        ssize_t n = read(fd, buf + total, sizeof buf - 1 - (size_t)total);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += n;
    }
    close(fd);
    buf[total] = '\0';
    for (char *line = buf; line && *line; ) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (strncmp(line, "Pid:", 4) == 0) {
            char *v = line + 4;
            while (*v == ' ' || *v == '\t') v++;
            if (strcmp(v, "-1") == 0) return -1;
            return parse_pid(v) < 0 ? -2 : parse_pid(v);
        }
        line = next;
    }
    return -2;
}

/* The number of threads of this process, from /proc/self/task (-1 when unreadable). */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n;
}

static void refuse(const char *step, int error) {
    start_state.state = AIRLOCK_PROC_FOREIGN;
    start_state.step = step;
    start_state.error = error;
}

__attribute__((constructor)) static void airlock_private_proc_at_start(void) {
    start_state.pid_here = (int)getpid();
    start_state.pid_there = airlock_proc_self_pid("/proc");
    if (start_state.pid_there == start_state.pid_here) return;
    /* unshare(CLONE_NEWNS) moves only the calling thread: with any other thread alive, part of the process would
       keep the foreign /proc. (/proc/self/task of a foreign /proc still lists this process's threads.) */
    int threads = thread_count();
    if (threads > 1) {
        refuse("a single-threaded start (threads already running)", 0);
        return;
    }
    if (unshare(CLONE_NEWNS) != 0) {
        refuse("unshare(CLONE_NEWNS)", errno);
        return;
    }
    /* A slave, not private: the host's later mounts (an intake root, a model's volume) still appear here. Never
       mount proc before this succeeded: on a shared / the new proc would propagate to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) {
        refuse("mount --make-rslave /", errno);
        return;
    }
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
        refuse("mount -t proc proc /proc", errno);
        return;
    }
    if (airlock_proc_self_pid("/proc") != start_state.pid_here) {
        refuse("checking the new /proc (its /proc/self is not this process)", 0);
        return;
    }
    start_state.state = AIRLOCK_PROC_PRIVATE;
}
