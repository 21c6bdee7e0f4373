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
static volatile sig_atomic_t termination_wake_fd = -1;

static void on_termination(int sig) {
    (void)sig;
    int saved = errno;
    termination_flag = 1;
    if (termination_wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(termination_wake_fd, &one, sizeof one);
        (void)r;
    }
    errno = saved;
}

int ivs_install_termination_handler(int wake_fd) {
    termination_wake_fd = wake_fd;
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

void ivs_forget_termination_wake_fd(void) { termination_wake_fd = -1; }
