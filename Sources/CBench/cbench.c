#define _GNU_SOURCE
#include "CBench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t cb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cb_online_cpus(void) { return (int)sysconf(_SC_NPROCESSORS_ONLN); }

int cb_pin_process(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0) {
        int n = cb_online_cpus();
        for (int i = 0; i < n; i++) CPU_SET(i, &set);
    } else {
        CPU_SET(cpu, &set);
    }
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return errno;
    int err = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        if (sched_setaffinity(tid, sizeof set, &set) != 0 && errno != ESRCH) err = errno;
    }
    closedir(dir);
    return err;
}

int cb_current_cpu(void) { return sched_getcpu(); }

int cb_eventfd(int nonblock) { return eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0)); }

int cb_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cb_epoll_add(int epfd, int fd, uint64_t index) {
    struct epoll_event e = { .events = EPOLLIN, .data.u64 = index };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
}

int cb_clear_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
}

// --- ping-pong -------------------------------------------------------------------------

/// Reads the eventfd `fd` as `mode` says. A spinning wait reads non-blocking until `spin_ns`
/// have passed since it began, then sleeps in poll() like a blocking one.
static int wait_read(int fd, int ep, cb_wait_mode mode, uint64_t spin_ns, uint64_t *value) {
    uint64_t deadline = mode == CB_WAIT_SPIN_THEN_BLOCK ? cb_now_ns() + spin_ns : 0;
    for (;;) {
        if (mode == CB_WAIT_LINK_BLOCKING) {
            struct epoll_event e;
            int n = epoll_wait(ep, &e, 1, -1);
            if (n < 0 && errno != EINTR) return -1;
            if (n != 1) continue;
        }
        ssize_t r = read(fd, value, 8);
        if (r == 8) return 0;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN && (mode == CB_WAIT_BUSY || mode == CB_WAIT_LINK_BUSY || mode == CB_WAIT_LINK_BLOCKING)) continue;
        if (r < 0 && errno == EAGAIN && mode == CB_WAIT_SPIN_THEN_BLOCK) {
            if (cb_now_ns() < deadline) continue;
            struct pollfd p = { .fd = fd, .events = POLLIN };
            if (poll(&p, 1, -1) < 0 && errno != EINTR) return -1;
            continue;
        }
        return -1;
    }
}

static int signal_fd(int fd, uint64_t v, cb_wait_mode mode) {
    if (mode == CB_WAIT_LINK_BLOCKING || mode == CB_WAIT_LINK_BUSY) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, 0) != 1) return -1;
    }
    for (;;) {
        ssize_t r = write(fd, &v, 8);
        if (r == 8) return 0;
        if (r < 0 && errno == EINTR) continue;
        return -1;
    }
}

/// The epoll set of CB_WAIT_LINK_BLOCKING (watching rx), -1 for the other modes or on error.
static int open_epoll(int rx, cb_wait_mode mode) {
    if (mode != CB_WAIT_LINK_BLOCKING) return -1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = { .events = EPOLLIN, .data.u64 = 0 };
    if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, rx, &e) != 0) { close(ep); return -1; }
    return ep;
}
static void close_epoll(int ep) { if (ep >= 0) close(ep); }

long cb_pingpong_echo(int rx, int tx, cb_wait_mode mode, uint64_t spin_ns) {
    long n = 0;
    int ep = open_epoll(rx, mode);
    if (mode == CB_WAIT_LINK_BLOCKING && ep < 0) return -1;
    for (;;) {
        uint64_t v;
        if (wait_read(rx, ep, mode, spin_ns, &v) != 0) { close_epoll(ep); return -1; }
        if (v >= CB_STOP_VALUE) { close_epoll(ep); return n; }
        if (signal_fd(tx, 1, mode) != 0) { close_epoll(ep); return -1; }
        n++;
    }
}

long cb_pingpong_initiate(int rx, int tx, long iterations, uint64_t budget_ns, cb_wait_mode mode, uint64_t spin_ns,
                          uint64_t *samples) {
    uint64_t start = cb_now_ns();
    long i = 0;
    int ep = open_epoll(rx, mode);
    if (mode == CB_WAIT_LINK_BLOCKING && ep < 0) return -1;
    for (; i < iterations; i++) {
        uint64_t t0 = cb_now_ns();
        if (t0 - start > budget_ns) break;
        if (signal_fd(tx, 1, mode) != 0) { close_epoll(ep); return -1; }
        uint64_t v;
        if (wait_read(rx, ep, mode, spin_ns, &v) != 0) { close_epoll(ep); return -1; }
        samples[i] = cb_now_ns() - t0;
    }
    signal_fd(tx, CB_STOP_VALUE, CB_WAIT_BLOCKING);
    close_epoll(ep);
    return i;
}

// --- plain loads and stores ------------------------------------------------------------

uint32_t cb_load32(const volatile void *p) { return *(const volatile uint32_t *)p; }

void cb_store32(volatile void *p, uint32_t value) { *(volatile uint32_t *)p = value; }

uint64_t cb_load32_bench(const volatile void *p, long iterations, uint64_t *checksum) {
    uint64_t sum = 0;
    uint64_t t0 = cb_now_ns();
    for (long i = 0; i < iterations; i++) sum += *(const volatile uint32_t *)p;
    uint64_t t1 = cb_now_ns();
    *checksum = sum;
    return t1 - t0;
}

uint64_t cb_store32_bench(volatile void *p, uint32_t value, long iterations) {
    uint64_t t0 = cb_now_ns();
    for (long i = 0; i < iterations; i++) *(volatile uint32_t *)p = value;
    return cb_now_ns() - t0;
}

// --- register dispatcher -----------------------------------------------------------------

static inline cb_device *find_function(cb_device *d, int n, uint8_t bus, uint8_t dev, uint8_t fn) {
    for (int i = 0; i < n; i++)
        if (d[i].bus == bus && d[i].dev == dev && d[i].fn == fn) return &d[i];
    return NULL;
}

static inline uint64_t block_read(const uint8_t *bytes, const uint8_t *rd, int size, int offset, int width) {
    uint64_t v = 0;
    for (int k = 0; k < width; k++) {
        int i = offset + k;
        if (i < 0 || i >= size || !rd[i]) continue;
        v |= (uint64_t)bytes[i] << (8 * k);
    }
    return v;
}

static inline uint64_t block_raw(const uint8_t *bytes, int offset, int width) {
    uint64_t v = 0;
    for (int k = 0; k < width; k++) v |= (uint64_t)bytes[offset + k] << (8 * k);
    return v;
}

/// The generic rule on `width` bytes; returns a bitmask of touched field indexes (first 64).
static inline void block_write(uint8_t *bytes, const uint8_t *wm, const uint8_t *w1c, int size, int offset, int width, uint64_t value) {
    for (int k = 0; k < width; k++) {
        int i = offset + k;
        if (i < 0 || i >= size) continue;
        uint8_t v = (uint8_t)(value >> (8 * k));
        uint8_t nv = (uint8_t)((v & wm[i]) | (bytes[i] & ~wm[i]));
        nv &= (uint8_t)~(v & w1c[i]);
        bytes[i] = nv;
    }
}

static inline int valid_config(int offset, int size) {
    return (size == 1 || size == 2 || size == 4) && offset >= 0 && offset + size <= 256 && offset % size == 0;
}

static void flush_pending(cb_device *d) {
    if (d->msix_control_field < 0) return;
    int cap = -1;
    for (int i = 0; i < 256; i++) if (d->cfg_field[i] == d->msix_control_field) { cap = i; break; }
    uint16_t control = (uint16_t)block_raw(d->cfg, cap, 2);
    if (!(control & 0x8000) || (control & 0x4000)) return;
    for (int v = 0; v < d->vectors && v < 64; v++) if (d->pending[v]) d->pending[v] = 0;
}

static inline uint32_t device_config_read(cb_device *d, int offset, int size) {
    if (!valid_config(offset, size)) { d->findings++; return 0; }
    return (uint32_t)block_read(d->cfg, d->cfg_rd, 256, offset, size);
}

static inline void device_config_write(cb_device *d, int offset, int size, uint32_t value) {
    if (!valid_config(offset, size)) { d->findings++; return; }
    block_write(d->cfg, d->cfg_wm, d->cfg_w1c, 256, offset, size, value);
    for (int k = 0; k < size; k++)
        if (d->cfg_field[offset + k] == d->msix_control_field && d->msix_control_field >= 0) { flush_pending(d); break; }
}

uint32_t cb_config_read(cb_device *d, int n, uint8_t bus, uint8_t dev, uint8_t fn, int offset, int size) {
    cb_device *f = find_function(d, n, bus, dev, fn);
    if (!f) return size >= 4 ? 0xFFFFFFFFu : (1u << (size * 8)) - 1;
    return device_config_read(f, offset, size);
}

void cb_config_write(cb_device *d, int n, uint8_t bus, uint8_t dev, uint8_t fn, int offset, int size, uint32_t value) {
    cb_device *f = find_function(d, n, bus, dev, fn);
    if (f) device_config_write(f, offset, size, value);
}

static inline uint64_t ones(int size) { return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1; }

/// BAR0 decode, gated by Memory Space Enable.
static inline cb_device *decode_bar0(cb_device *d, int n, uint64_t address, uint64_t *offset) {
    for (int i = 0; i < n; i++) {
        cb_device *f = &d[i];
        if (!(f->cfg[4] & 0x2)) continue;
        uint64_t base = block_raw(f->cfg, 0x10, 4) & ~0xFull;
        if (f->bar0_is64) base |= block_raw(f->cfg, 0x14, 4) << 32;
        if (base == 0) continue;
        if (address >= base && address - base < f->bar0_size) { *offset = address - base; return f; }
    }
    return NULL;
}

static inline int ecam_target(cb_device *d, uint64_t address, uint8_t *bus, uint8_t *dev, uint8_t *fn, int *off) {
    uint64_t base = d[0].ecam_base;
    if (address < base || address - base >= (256ull << 20)) return 0;
    uint64_t rel = address - base;
    *bus = (uint8_t)(rel >> 20); *dev = (uint8_t)((rel >> 15) & 0x1F); *fn = (uint8_t)((rel >> 12) & 7);
    *off = (int)(rel & 0xFFF);
    return 1;
}

static inline uint64_t register_read(cb_device *f, uint64_t offset, int size) {
    if (size != 4 || offset % 4 != 0 || offset >= (uint64_t)f->reg_size) { f->findings++; return 0; }
    return block_read(f->reg, f->reg_rd, f->reg_size, (int)offset, 4);
}

static inline void register_write(cb_device *f, uint64_t offset, int size, uint64_t value) {
    if (size != 4 || offset % 4 != 0 || offset >= (uint64_t)f->reg_size) { f->findings++; return; }
    int target = (int)(offset & f->reg_alias_mask);
    int field = f->reg_field[target];
    if (field < 0) return;
    uint32_t old = (uint32_t)block_raw(f->reg, target, 4);
    block_write(f->reg, f->reg_wm, f->reg_w1c, f->reg_size, target, 4, value);
    if (field == f->doorbell_field) {
        f->doorbells++;
    } else if (field == f->state_field) {
        uint32_t nv = (uint32_t)block_raw(f->reg, target, 4);
        __atomic_store_n(f->state_slot, nv, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (nv != old) f->broadcasts++;
    }
}

uint64_t cb_mmio_read(cb_device *d, int n, uint64_t address, int size) {
    uint8_t bus, dev, fn; int off;
    if (ecam_target(d, address, &bus, &dev, &fn, &off)) {
        if (off < 0x100) return cb_config_read(d, n, bus, dev, fn, off, size);
        return find_function(d, n, bus, dev, fn) ? 0 : ones(size);
    }
    uint64_t offset;
    cb_device *f = decode_bar0(d, n, address, &offset);
    if (!f) return ones(size);
    return register_read(f, offset, size);
}

void cb_mmio_write(cb_device *d, int n, uint64_t address, int size, uint64_t value) {
    uint8_t bus, dev, fn; int off;
    if (ecam_target(d, address, &bus, &dev, &fn, &off)) {
        if (off < 0x100) cb_config_write(d, n, bus, dev, fn, off, size, (uint32_t)value);
        return;
    }
    uint64_t offset;
    cb_device *f = decode_bar0(d, n, address, &offset);
    if (f) register_write(f, offset, size, value);
}

uint64_t cb_register_bench(cb_device *devices, int n, const cb_access *ops, int count, long rounds, uint64_t *checksum) {
    uint64_t sum = 0;
    uint8_t bus = devices[0].bus, dev = devices[0].dev, fn = devices[0].fn;
    uint64_t t0 = cb_now_ns();
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < count; i++) {
            const cb_access *a = &ops[i];
            if (a->space == 0) {
                if (a->is_write) cb_config_write(devices, n, bus, dev, fn, a->offset, a->size, (uint32_t)a->value);
                else sum += cb_config_read(devices, n, bus, dev, fn, a->offset, a->size);
            } else {
                if (a->is_write) cb_mmio_write(devices, n, a->address, a->size, a->value);
                else sum += cb_mmio_read(devices, n, a->address, a->size);
            }
        }
        __asm__ volatile("" ::: "memory");
    }
    uint64_t t1 = cb_now_ns();
    *checksum = sum;
    return t1 - t0;
}

// --- memcpy ------------------------------------------------------------------------------

uint64_t cb_memcpy_bench(void *dst, const void *src, size_t bytes, long iterations) {
    uint64_t t0 = cb_now_ns();
    for (long i = 0; i < iterations; i++) {
        memcpy(dst, src, bytes);
        __asm__ volatile("" : : "r"(dst) : "memory");
    }
    return cb_now_ns() - t0;
}

// --- SCM_RIGHTS ----------------------------------------------------------------------------

long cb_drain(int epfd, const int *socks, long *got, long *fds_got, long target, long *total, int timeout_ms) {
    struct epoll_event events[64];
    long received = 0;
    char control[CMSG_SPACE(sizeof(int) * 4)];
    while (*total < target) {
        int n = epoll_wait(epfd, events, 64, timeout_ms);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        if (n == 0) break;
        for (int e = 0; e < n; e++) {
            int idx = (int)events[e].data.u64;
            int s = socks[idx];
            for (;;) {
                char buf[64];
                struct iovec iov = { buf, sizeof buf };
                struct msghdr m;
                memset(&m, 0, sizeof m);
                m.msg_iov = &iov; m.msg_iovlen = 1;
                m.msg_control = control; m.msg_controllen = sizeof control;
                ssize_t r = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
                if (r < 0) {
                    if (errno == EINTR) continue;
                    if (errno == EAGAIN) break;
                    return -1;
                }
                if (r == 0) break;  // closed: the caller notices the missing messages
                int nfds = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        for (int j = 0; j < k; j++) {
                            int fd;
                            memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof fd);
                            close(fd);
                            nfds++;
                        }
                    }
                }
                // Every server message carries exactly one fd, so one recvmsg is one message.
                got[idx]++;
                fds_got[idx] += nfds;
                (*total)++;
                received++;
            }
        }
    }
    return received;
}

struct raw_plan {
    int n, v;
    int *send_socks;
    int shm;
    int *efds;  // n * v
    int failed;
};

static int send_with_fd(int sock, const void *bytes, size_t len, int fd) {
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = { (void *)bytes, len };
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov; m.msg_iovlen = 1;
    m.msg_control = control; m.msg_controllen = sizeof control;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    for (;;) {
        ssize_t r = sendmsg(sock, &m, MSG_NOSIGNAL);
        if (r == (ssize_t)len) return 0;
        if (r < 0 && (errno == EINTR)) continue;
        // Too many descriptors in flight for this user: wait for the receiver, as the server does.
        if (r < 0 && (errno == ETOOMANYREFS || errno == EAGAIN)) { sched_yield(); continue; }
        return -1;
    }
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void *raw_sender(void *arg) {
    struct raw_plan *p = arg;
    uint8_t init[40], ev[16];
    memset(init, 0, sizeof init);
    put32(init, 0); put32(init + 4, 40);
    put32(ev, 1); put32(ev + 4, 16);
    for (int k = 0; k < p->n; k++) {
        put32(init + 8, 2); put32(init + 12, 2); put32(init + 16, (uint32_t)k);
        put32(init + 20, (uint32_t)p->n); put32(init + 24, (uint32_t)p->v);
        if (send_with_fd(p->send_socks[k], init, sizeof init, p->shm)) { p->failed = 1; return NULL; }
        for (int j = 0; j < k; j++)
            for (int vec = 0; vec < p->v; vec++) {
                put32(ev + 8, (uint32_t)k); put32(ev + 12, (uint32_t)vec);
                if (send_with_fd(p->send_socks[j], ev, sizeof ev, p->efds[k * p->v + vec])) { p->failed = 1; return NULL; }
            }
        for (int j = 0; j < k; j++)
            for (int vec = 0; vec < p->v; vec++) {
                put32(ev + 8, (uint32_t)j); put32(ev + 12, (uint32_t)vec);
                if (send_with_fd(p->send_socks[k], ev, sizeof ev, p->efds[j * p->v + vec])) { p->failed = 1; return NULL; }
            }
        for (int vec = 0; vec < p->v; vec++) {
            put32(ev + 8, (uint32_t)k); put32(ev + 12, (uint32_t)vec);
            if (send_with_fd(p->send_socks[k], ev, sizeof ev, p->efds[k * p->v + vec])) { p->failed = 1; return NULL; }
        }
    }
    return NULL;
}

uint64_t cb_raw_scm_bench(int n, int v, long *messages) {
    int *send_socks = calloc((size_t)n, sizeof(int));
    int *recv_socks = calloc((size_t)n, sizeof(int));
    int *efds = calloc((size_t)n * (size_t)v, sizeof(int));
    long *got = calloc((size_t)n, sizeof(long));
    long *fds_got = calloc((size_t)n, sizeof(long));
    uint64_t elapsed = 0;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    int shm = memfd_create("cbench-shm", MFD_CLOEXEC);
    int opened = 0, ok = epfd >= 0 && shm >= 0 && send_socks && recv_socks && efds && got && fds_got;
    if (ok) ok = ftruncate(shm, 1 << 20) == 0;
    for (int i = 0; ok && i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) { ok = 0; break; }
        send_socks[i] = sv[0]; recv_socks[i] = sv[1]; opened = i + 1;
        fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
        struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, sv[1], &e) != 0) ok = 0;
    }
    int efd_count = 0;
    for (int i = 0; ok && i < n * v; i++) {
        efds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efds[i] < 0) ok = 0; else efd_count = i + 1;
    }
    long target = (long)n + (long)v * n * n;
    *messages = target;
    if (ok) {
        struct raw_plan plan = { n, v, send_socks, shm, efds, 0 };
        long total = 0;
        pthread_t t;
        uint64_t t0 = cb_now_ns();
        if (pthread_create(&t, NULL, raw_sender, &plan) == 0) {
            while (total < target) {
                long r = cb_drain(epfd, recv_socks, got, fds_got, target, &total, 5000);
                if (r <= 0) break;
            }
            uint64_t t1 = cb_now_ns();
            pthread_join(t, NULL);
            if (!plan.failed && total == target) elapsed = t1 - t0;
        }
    }
    for (int i = 0; i < opened; i++) { close(send_socks[i]); close(recv_socks[i]); }
    for (int i = 0; i < efd_count; i++) close(efds[i]);
    if (shm >= 0) close(shm);
    if (epfd >= 0) close(epfd);
    free(send_socks); free(recv_socks); free(efds); free(got); free(fds_got);
    return elapsed;
}
