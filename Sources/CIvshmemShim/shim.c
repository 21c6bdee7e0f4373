#define _GNU_SOURCE
#include "CIvshmemShim.h"
#include <sys/mman.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <spawn.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdlib.h>
#include <setjmp.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>

int ivs_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i] = evs[i].events;
        data[i] = evs[i].data.u64;
    }
    return n;
}

int ivs_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

int ivs_unblock_all_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

static volatile sig_atomic_t termination_flag;
/* The fd the handler signals. Atomic (lock-free, so async-signal-safe): the thread that
 * installs the handler and the one that later forgets it may differ, and a process may run
 * several servers of which only one installed it. */
static _Atomic int termination_wake_fd = -1;

static void on_termination(int sig) {
    (void)sig;
    int saved = errno;
    termination_flag = 1;
    int fd = atomic_load(&termination_wake_fd);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(fd, &one, sizeof one);
        (void)r;
    }
    errno = saved;
}

int ivs_install_termination_handler(int wake_fd) {
    atomic_store(&termination_wake_fd, wake_fd);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_termination;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0) return -1;
    if (sigaction(SIGTERM, &sa, NULL) != 0) return -1;
    if (sigaction(SIGHUP, &sa, NULL) != 0) return -1;
    return 0;
}

int ivs_termination_requested(void) { return termination_flag; }

int ivs_ignore_sigpipe(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

// --- Added for IvshmemPosix ---
int ivs_accept4(int fd, int flags) { return accept4(fd, NULL, NULL, flags); }
int ivs_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int ivs_posix_spawn_setsid_flag(void) { return POSIX_SPAWN_SETSID; }
int ivs_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int low_fd) {
    return posix_spawn_file_actions_addclosefrom_np(actions, low_fd);
}
int ivs_mkostemp(char *template_path, int flags) { return mkostemp(template_path, flags); }
unsigned int ivs_mfd_cloexec_flag(void) { return MFD_CLOEXEC; }
int ivs_restore_default_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    int r = 0;
    r |= sigaction(SIGTERM, &sa, NULL);
    r |= sigaction(SIGINT, &sa, NULL);
    r |= sigaction(SIGHUP, &sa, NULL);
    r |= sigaction(SIGPIPE, &sa, NULL);
    return r == 0 ? 0 : -1;
}

void ivs_forget_termination_wake_fd(int wake_fd) {
    /* Only the owner of the installed fd forgets it: another server closing must not leave
     * the one that installed the handler deaf to SIGTERM. */
    atomic_compare_exchange_strong(&termination_wake_fd, &wake_fd, -1);
}

int ivs_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

/* Guarded shared-memory accesses. A thread inside one of the calls below publishes where to
 * resume in `guard_resume`; the SIGBUS handler jumps there. The handler is installed once,
 * with SA_NODEFER so that SIGBUS is not left blocked after the jump (sigsetjmp with savemask
 * 0 does not restore the mask, and saving it would cost a system call per access). */
static __thread sigjmp_buf *volatile guard_resume;
static struct sigaction guard_previous;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_on_sigbus(int sig, siginfo_t *info, void *context) {
    sigjmp_buf *resume = guard_resume;
    if (resume) {
        guard_resume = NULL;
        siglongjmp(*resume, 1);
    }
    /* Not one of ours: hand it on, or fall back to the default action (the faulting
     * instruction runs again and the process ends as it would have without us). */
    if ((guard_previous.sa_flags & SA_SIGINFO) && guard_previous.sa_sigaction) {
        guard_previous.sa_sigaction(sig, info, context);
    } else if (guard_previous.sa_handler != SIG_DFL && guard_previous.sa_handler != SIG_IGN) {
        guard_previous.sa_handler(sig);
    } else {
        signal(SIGBUS, SIG_DFL);
    }
}

static void guard_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &guard_previous);
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IVS_GUARD_PLAIN 1
#define IVS_GUARD_SAVEMASK 1
#endif
#endif

#ifndef IVS_GUARD_SAVEMASK
#define IVS_GUARD_SAVEMASK 0
#endif

#define GUARDED(body)                                  \
    do {                                               \
        pthread_once(&guard_once, guard_install);      \
        sigjmp_buf resume;                             \
        if (sigsetjmp(resume, IVS_GUARD_SAVEMASK)) return -1; \
        guard_resume = &resume;                        \
        __atomic_signal_fence(__ATOMIC_SEQ_CST);       \
        body;                                          \
        __atomic_signal_fence(__ATOMIC_SEQ_CST);       \
        guard_resume = NULL;                           \
        return 0;                                      \
    } while (0)

/* Under ThreadSanitizer a fault inside its runtime is fatal to it: an instrumented atomic or
 * memcpy faults while TSan holds an internal lock, the jump out leaves it held and the next
 * instrumented access deadlocks. So in a TSan build (make test-sanitize) the guarded accesses
 * are plain volatile accesses in uninstrumented functions, ordered by fences; the fault then
 * happens in our own code. Other builds keep the atomics. TSan cannot see ordering through
 * memory shared with other processes anyway. (TSan also runs our handler with SIGBUS blocked
 * whatever SA_NODEFER says, hence the saved mask in GUARDED.) */
#ifdef IVS_GUARD_PLAIN
__attribute__((no_sanitize("thread"))) int ivs_guarded_copy(void *dst, const void *src, size_t n) {
    GUARDED(for (size_t i = 0; i < n; i++) ((volatile unsigned char *)dst)[i] = ((const volatile unsigned char *)src)[i]);
}

__attribute__((no_sanitize("thread"))) int ivs_guarded_load32_acquire(const void *p, uint32_t *out) {
    GUARDED(*out = *(const volatile uint32_t *)p; __atomic_thread_fence(__ATOMIC_ACQUIRE));
}

__attribute__((no_sanitize("thread"))) int ivs_guarded_store32_release(void *p, uint32_t v) {
    GUARDED(__atomic_thread_fence(__ATOMIC_RELEASE); *(volatile uint32_t *)p = v; __atomic_thread_fence(__ATOMIC_SEQ_CST));
}
#else
int ivs_guarded_copy(void *dst, const void *src, size_t n) { GUARDED(memcpy(dst, src, n)); }

int ivs_guarded_load32_acquire(const void *p, uint32_t *out) {
    GUARDED(*out = __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE));
}

int ivs_guarded_store32_release(void *p, uint32_t v) {
    GUARDED(__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); __atomic_thread_fence(__ATOMIC_SEQ_CST));
}
#endif

// --- Added for the server's sealed memfd ---
unsigned int ivs_mfd_allow_sealing_flag(void) { return MFD_ALLOW_SEALING; }
int ivs_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }
