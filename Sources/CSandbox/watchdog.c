/*
 * The deadline of a sandbox run, kept by a thread of its own.
 *
 * The thread that supervises a run also performs calls on the sandbox's behalf (emulate.c). Such a call can be held
 * up by the sandbox (a connect to a listener it keeps full, a lease it holds): the supervising thread would then not
 * reach its own deadline check. The watchdog does not depend on it: at the deadline it kills the sandbox's PID 1 (its
 * death ends every process of the namespace, which releases what they held), and if the supervising thread is still
 * inside a call a second later, it interrupts that call with a signal whose handler does nothing (installed without
 * SA_RESTART, so the call fails with EINTR), once a second until the run is over.
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
    pthread_t thread;
    pthread_t supervisor;
    int pidfd;
    int cancel;
    uint64_t deadline;
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

/* Waits until `until` (monotonic ns) or a cancel; returns 1 when cancelled. */
static int al_wait(struct airlock_watchdog *w, uint64_t until) {
    for (;;) {
        uint64_t now = al_now();
        if (now >= until) return 0;
        uint64_t ms = (until - now + 999999) / 1000000;
        struct pollfd p = {.fd = w->cancel, .events = POLLIN, .revents = 0};
        int rc = poll(&p, 1, ms > 1000000 ? 1000000 : (int)ms);
        if (rc > 0) return 1;
        if (rc < 0 && errno != EINTR) return 1;
    }
}

static void *al_watch(void *arg) {
    struct airlock_watchdog *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    if (al_wait(w, w->deadline)) return NULL;
    syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
    uint64_t next = al_now();
    for (;;) {
        next += 1000000000ull;
        if (al_wait(w, next)) return NULL;
        pthread_kill(w->supervisor, SIGRTMIN + 3);
    }
}

struct airlock_watchdog *airlock_watchdog_start(int pidfd, uint64_t deadline) {
    airlock_install_interrupt_handler();
    struct airlock_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->supervisor = pthread_self();
    w->deadline = deadline;
    w->pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
    w->cancel = eventfd(0, EFD_CLOEXEC);
    if (w->pidfd < 0 || w->cancel < 0 || pthread_create(&w->thread, NULL, al_watch, w) != 0) {
        int saved = errno;
        if (w->pidfd >= 0) close(w->pidfd);
        if (w->cancel >= 0) close(w->cancel);
        free(w);
        errno = saved;
        return NULL;
    }
    return w;
}

void airlock_watchdog_stop(struct airlock_watchdog *w) {
    if (!w) return;
    uint64_t one = 1;
    while (write(w->cancel, &one, sizeof one) < 0 && errno == EINTR) {}
    pthread_join(w->thread, NULL);
    close(w->pidfd);
    close(w->cancel);
    free(w);
}
