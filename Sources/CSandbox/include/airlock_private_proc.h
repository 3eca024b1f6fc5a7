#ifndef AIRLOCK_PRIVATE_PROC_H
#define AIRLOCK_PRIVATE_PROC_H

/* What the start-up step (private_proc.c) found and did about /proc, before any thread existed. */
enum airlock_proc_state {
    /* /proc/self named this process's own pid: /proc is of this PID namespace; nothing was done. */
    AIRLOCK_PROC_OWN = 0,
    /* /proc was another PID namespace's; a private mount namespace with a fresh proc on /proc now serves this
       process (and the sandboxes it clones). */
    AIRLOCK_PROC_PRIVATE = 1,
    /* /proc was another PID namespace's (or missing) and no private one could be mounted: see step and errno. */
    AIRLOCK_PROC_FOREIGN = 2,
};

/* The start-up step's outcome. `pid_there` is this process's pid in the /proc it found (-1 when /proc/self did not
   resolve there), `pid_here` its getpid() at the time; `step` names the call that failed (NULL unless FOREIGN), and
   `error` its errno. */
struct airlock_proc_start {
    int state;
    int pid_there;
    int pid_here;
    const char *step;
    int error;
};

/* The outcome recorded by the constructor (a copy). */
struct airlock_proc_start airlock_proc_start_state(void);

/* This process's pid as `proc_root`'s mount numbers it (readlink PROC_ROOT/self), or -1 when it does not resolve or
   PROC_ROOT is not a procfs. */
int airlock_proc_self_pid(const char *proc_root);

/* The pid of `pidfd`'s process as the proc mount at `proc_root` numbers it (the `Pid:` line of
   PROC_ROOT/self/fdinfo/PIDFD, kernel >= 5.3): 0 when not visible there, -1 when it has exited; -2 when the
   fdinfo could not be read or had no Pid line. */
int airlock_pidfd_pid_in(const char *proc_root, int pidfd);

#endif
