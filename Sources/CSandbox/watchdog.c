/*
 * The deadline of a sandbox run, kept by a thread of its own.
 *
 * The thread that supervises a run also performs calls on the sandbox's behalf (emulate.c). Such a call can be held
 * up by the sandbox (a connect to a listener it keeps full, a lease it holds): the supervising thread would then not
 * reach its own deadline check. The watchdog does not depend on it: at the deadline it kills the sandbox's PID 1 (its
 * death ends every process of the namespace, which releases what they held), and if the supervising thread is still
 * inside a call a second later, it interrupts that call with a signal whose handler does nothing (installed without
 * SA_RESTART, so the call fails with EINTR), once a second until the run is over.
 *
 * A held sandbox (a warm one, waiting for its work) starts with a deadline that bounds its wait; when its work is
 * handed to it, airlock_watchdog_rearm moves the deadline (earlier or later) and wakes the thread to wait for the new
 * one. A deadline that has already fired stays fired: PID 1 is dead by then.
 *
 * Stopping it does not wait for the thread: under load, waking it only to join it cost the run's end a scheduling
 * delay (docs/benchmarks.md, "Start-up budget (issue 12)"). It is detached instead; `stopped`, read and acted on
 * under `lock`, guarantees that nothing is signalled once airlock_watchdog_stop has returned, and the last of the two
 * sides to let go of the structure frees it.
 */
#define _GNU_SOURCE
#include "airlock_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

struct airlock_watchdog {
    pthread_t supervisor;
    pthread_mutex_t lock;
    int stopped; /* under lock */
    int fired;   /* under lock: PID 1 was killed */
    int users;   /* under lock: the thread and the supervisor, until each lets go */
    int pidfd;
    int cancel;      /* written on stop and on rearm */
    uint64_t deadline; /* under lock */
};

static void al_nothing(int sig) { (void)sig; }
static pthread_once_t al_handler_once = PTHREAD_ONCE_INIT;
static void al_install_handler(void);
void airlock_install_interrupt_handler(void) {
    pthread_once(&al_handler_once, al_install_handler);
    /* The calling thread may have been created with every signal blocked (libdispatch's workers are): this one must
     * reach it, or nothing interrupts a call it is held in. */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGRTMIN + 3);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
}
static void al_install_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = al_nothing;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: an interrupted call returns EINTR */
    sigaction(SIGRTMIN + 3, &sa, NULL);
}

static uint64_t al_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Waits until `until` (monotonic ns) or a wake-up on `cancel` (a stop or a new deadline); returns 1 when woken. */
static int al_wait(struct airlock_watchdog *w, uint64_t until) {
    for (;;) {
        uint64_t now = al_now();
        if (now >= until) return 0;
        uint64_t ms = (until - now + 999999) / 1000000;
        struct pollfd p = {.fd = w->cancel, .events = POLLIN, .revents = 0};
        int rc = poll(&p, 1, ms > 1000000 ? 1000000 : (int)ms);
        if (rc > 0) {
            uint64_t value;
            while (read(w->cancel, &value, sizeof value) < 0 && errno == EINTR) {}
            return 1;
        }
        if (rc < 0 && errno != EINTR) return 1;
    }
}

/* Waits for the deadline, following rearms; returns 0 when it passed, 1 when stopped first. */
static int al_wait_deadline(struct airlock_watchdog *w) {
    for (;;) {
        pthread_mutex_lock(&w->lock);
        int stopped = w->stopped;
        uint64_t deadline = w->deadline;
        pthread_mutex_unlock(&w->lock);
        if (stopped) return 1;
        if (!al_wait(w, deadline)) return 0;
    }
}

/* Lets go of `w`; the last user frees it. */
static void al_release(struct airlock_watchdog *w) {
    pthread_mutex_lock(&w->lock);
    int last = --w->users == 0;
    pthread_mutex_unlock(&w->lock);
    if (!last) return;
    close(w->pidfd);
    close(w->cancel);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* Sends `w`'s signal (the first time SIGKILL to PID 1, then the interrupt to the supervisor) unless it was stopped;
 * returns 0 when it was, -1 (the first time) when a rearm has moved the deadline later meanwhile. */
static int al_fire(struct airlock_watchdog *w, int first) {
    pthread_mutex_lock(&w->lock);
    int live = !w->stopped;
    if (live && first && w->deadline > al_now()) {
        pthread_mutex_unlock(&w->lock);
        return -1;
    }
    if (live && first) {
        syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
        w->fired = 1;
    }
    if (live && !first) pthread_kill(w->supervisor, SIGRTMIN + 3);
    pthread_mutex_unlock(&w->lock);
    return live;
}

static void *al_watch(void *arg) {
    struct airlock_watchdog *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int fired;
    do {
        fired = al_wait_deadline(w) ? 0 : al_fire(w, 1);
    } while (fired < 0);
    if (fired) {
        uint64_t next = al_now();
        for (;;) {
            next += 1000000000ull;
            if (al_wait(w, next) || !al_fire(w, 0)) break;
        }
    }
    al_release(w);
    return NULL;
}

struct airlock_watchdog *airlock_watchdog_start(int pidfd, uint64_t deadline) {
    airlock_install_interrupt_handler();
    struct airlock_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->supervisor = pthread_self();
    w->deadline = deadline;
    w->users = 2;
    w->pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
    w->cancel = eventfd(0, EFD_CLOEXEC);
    pthread_t thread;
    int rc = -1;
    if (w->pidfd >= 0 && w->cancel >= 0 && pthread_mutex_init(&w->lock, NULL) == 0) {
        rc = pthread_create(&thread, NULL, al_watch, w);
        if (rc != 0) pthread_mutex_destroy(&w->lock);
    }
    if (rc != 0) {
        int saved = rc > 0 ? rc : errno;
        if (w->pidfd >= 0) close(w->pidfd);
        if (w->cancel >= 0) close(w->cancel);
        free(w);
        errno = saved;
        return NULL;
    }
    pthread_detach(thread);
    return w;
}

void airlock_watchdog_rearm(struct airlock_watchdog *w, uint64_t deadline) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    int fired = w->fired;
    if (!fired) w->deadline = deadline;
    pthread_mutex_unlock(&w->lock);
    if (fired) return;
    uint64_t one = 1;
    while (write(w->cancel, &one, sizeof one) < 0 && errno == EINTR) {}
}

void airlock_watchdog_stop(struct airlock_watchdog *w) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stopped = 1;
    pthread_mutex_unlock(&w->lock);
    /* Wakes the thread, which lets go on its own time; `w` (and so `cancel`) lives until both have let go. */
    uint64_t one = 1;
    while (write(w->cancel, &one, sizeof one) < 0 && errno == EINTR) {}
    al_release(w);
}
