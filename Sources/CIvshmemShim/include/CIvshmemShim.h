// Wrappers for what Swift cannot import from glibc: cmsg macros, eventfd, epoll, memfd,
// and explicit-ordering loads/stores on memory shared with other processes.
#ifndef CIVSHMEM_SHIM_H
#define CIVSHMEM_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <signal.h>

static inline size_t ivs_cmsg_space(size_t len) { return CMSG_SPACE(len); }
static inline size_t ivs_cmsg_len(size_t len) { return CMSG_LEN(len); }
static inline struct cmsghdr *ivs_cmsg_firsthdr(struct msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *ivs_cmsg_nxthdr(struct msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *ivs_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }

static inline int ivs_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }
static inline int ivs_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }
static inline int ivs_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}
/// Waits for events; writes up to `max` (events, data) pairs into the two arrays.
int ivs_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int max, int timeout_ms);

int ivs_memfd_create(const char *name, unsigned int flags);

/// Blocks nothing: clears the signal mask a parent (e.g. a test runner thread) may have left.
int ivs_unblock_all_signals(void);
/// Installs a flag-setting handler for SIGINT/SIGTERM/SIGHUP and writes to `wake_fd` on a signal.
int ivs_install_termination_handler(int wake_fd);
int ivs_termination_requested(void);
/// Stops the handler writing to `wake_fd` if that is still the fd it signals (call before closing
/// it: the number may be reused); another fd installed since is left alone.
void ivs_forget_termination_wake_fd(int wake_fd);
int ivs_ignore_sigpipe(void);

static inline uint32_t ivs_load32_acquire(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }
static inline void ivs_store32_release(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }
static inline void ivs_full_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void ivs_cpu_relax(void) { __builtin_ia32_pause(); }
#include "ivs_atomics.h"
#include "ivs_irq_ring.h"


// --- Added for IvshmemPosix (GNU extensions that Swift's Glibc module does not import) ---
#include <spawn.h>

/// accept4(2) with the given SOCK_* flags (SOCK_CLOEXEC, SOCK_NONBLOCK).
int ivs_accept4(int fd, int flags);
/// pipe2(2) with the given O_* flags.
int ivs_pipe2(int fds[2], int flags);
/// The glibc value of POSIX_SPAWN_SETSID (a GNU extension).
int ivs_posix_spawn_setsid_flag(void);
/// posix_spawn_file_actions_addclosefrom_np: closes every fd >= low_fd in the child.
int ivs_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int low_fd);
/// mkostemp(3) (GNU): mkstemp with O_CLOEXEC etc. in `flags`.
int ivs_mkostemp(char *template_path, int flags);
/// MFD_CLOEXEC, for ivs_memfd_create.
unsigned int ivs_mfd_cloexec_flag(void);
/// EPOLLRDHUP (not imported from the EPOLL_EVENTS enum on every toolchain).
static inline uint32_t ivs_epoll_rdhup(void) { return EPOLLRDHUP; }
/// Restores the default disposition of SIGTERM, SIGINT, SIGHUP and SIGPIPE (e.g. after a
/// failed start-up in a process that installed handlers).
int ivs_restore_default_signals(void);

/// fcntl(F_GET_SEALS): the seals of a memfd (F_SEAL_* bits), or -1 with errno (EINVAL for a
/// file that cannot carry seals: a POSIX shm object, a file on disk).
int ivs_get_seals(int fd);
/// fcntl(fd, F_ADD_SEALS, seals): -1 with errno EPERM once F_SEAL_SEAL is set, EINVAL for a
/// file that cannot carry seals.
int ivs_add_seals(int fd, int seals);
/// MFD_ALLOW_SEALING, for ivs_memfd_create: without it a memfd can never be sealed.
unsigned int ivs_mfd_allow_sealing_flag(void);
/// F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE.
static inline int ivs_seal_seal(void) { return 0x0001; }
static inline int ivs_seal_shrink(void) { return 0x0002; }
static inline int ivs_seal_grow(void) { return 0x0004; }
static inline int ivs_seal_write(void) { return 0x0008; }

/// Accesses to shared memory that another process may shrink under us. Each returns 0, or -1
/// when the access raised SIGBUS (the pages are gone): the fault is caught on this thread
/// and turned into the error instead of killing the process. A SIGBUS outside these calls
/// goes to the handler installed before (or the default action). Safe from any thread.
int ivs_guarded_copy(void *dst, const void *src, size_t n);
int ivs_guarded_load32_acquire(const void *p, uint32_t *out);
int ivs_guarded_store32_release(void *p, uint32_t v);

/// A State Table entry (SHM-ST-*), the one implementation of its ordering for the model and the
/// server: loads are acquire; a store is release followed by a full fence, so that it is visible
/// before anything the caller signals next (an eventfd write, a PEER_GONE). With `guarded` (the
/// memory is not size-sealed, another process may truncate it) the access goes through the
/// SIGBUS guard above and returns -1 when the page is gone (a lost load reads 0); otherwise it
/// is a plain atomic and returns 0.
static inline int ivs_state_load32(const void *p, int guarded, uint32_t *out) {
    if (guarded) {
        if (ivs_guarded_load32_acquire(p, out) == 0) return 0;
        *out = 0;
        return -1;
    }
    *out = ivs_load32_acquire(p);
    return 0;
}
static inline int ivs_state_store32(void *p, int guarded, uint32_t v) {
    if (guarded) return ivs_guarded_store32_release(p, v);
    ivs_store32_release(p, v);
    ivs_full_fence();
    return 0;
}

/// ThreadSanitizer annotations for locks it cannot see (Synchronization.Mutex takes a contended
/// lock inside the kernel, a PI futex, so TSan misses the ordering and reports false races).
/// Weak: without the TSan runtime linked in they are null and these calls do nothing.
extern void __tsan_acquire(void *addr) __attribute__((weak));
extern void __tsan_release(void *addr) __attribute__((weak));
static inline void ivs_tsan_acquire(void *addr) { if (__tsan_acquire) __tsan_acquire(addr); }
static inline void ivs_tsan_release(void *addr) { if (__tsan_release) __tsan_release(addr); }

#endif
