// Baselines for ivshmem2-bench, in plain C and built by the same package: an eventfd
// ping-pong between two processes (blocking, busy-poll, spin-then-block), a minimal register
// dispatcher with the model's masks, memcpy, and raw SCM_RIGHTS messages over socketpairs. Plus
// the small helpers the benchmark needs (CPU pinning, a monotonic clock, a fast message drain,
// single-MOV loads and stores for trapped windows).
#ifndef CBENCH_H
#define CBENCH_H

#include <stdint.h>
#include <stddef.h>

/// CLOCK_MONOTONIC in nanoseconds.
uint64_t cb_now_ns(void);
/// Pins every thread of this process to `cpu` (-1: every online CPU). 0 on success, else errno.
int cb_pin_process(int cpu);
/// The CPU the calling thread runs on.
int cb_current_cpu(void);
/// Online CPUs.
int cb_online_cpus(void);
/// eventfd(0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0)).
int cb_eventfd(int nonblock);
/// epoll_create1(EPOLL_CLOEXEC).
int cb_epoll_create(void);
/// Watches `fd` for input with `index` as the event data.
int cb_epoll_add(int epfd, int fd, uint64_t index);
/// Clears FD_CLOEXEC (fds given to a spawned child).
int cb_clear_cloexec(int fd);

// --- eventfd ping-pong between two processes ---------------------------------------------
/// Value the initiator writes to tell the echo side to stop.
#define CB_STOP_VALUE 1000000
/// How a side waits for its eventfd (`rx` must be non-blocking for the spinning modes).
typedef enum cb_wait_mode {
    /// A blocking read.
    CB_WAIT_BLOCKING = 0,
    /// Non-blocking reads in a loop, never sleeping.
    CB_WAIT_BUSY = 1,
    /// Non-blocking reads for up to `spin_ns` after the wait began, then poll() and read: the
    /// same policy as a device attached with `.spinThenBlock`.
    CB_WAIT_SPIN_THEN_BLOCK = 2,
    /// The server link's syscalls, blocking: epoll_wait() then read() to wait, and a zero-
    /// timeout poll(POLLOUT) before each write (WIRE-CLI-21). Attributes a device round trip's
    /// cost to the link's design rather than to the model.
    CB_WAIT_LINK_BLOCKING = 3,
    /// The server link's syscalls, spinning: non-blocking reads, poll(POLLOUT) before each write.
    CB_WAIT_LINK_BUSY = 4,
} cb_wait_mode;
/// Echo side: wait for rx (as `mode` says), write 1 to tx; until the stop value arrives.
/// Returns the number of echoes, -1 on error.
long cb_pingpong_echo(int rx, int tx, cb_wait_mode mode, uint64_t spin_ns);
/// Initiator: up to `iterations` round trips or `budget_ns`, whichever first; round-trip times
/// in ns go to samples[]. Sends the stop value at the end. Returns round trips done, -1 on error.
long cb_pingpong_initiate(int rx, int tx, long iterations, uint64_t budget_ns, cb_wait_mode mode, uint64_t spin_ns,
                          uint64_t *samples);

// --- plain loads and stores (for trapped MMIO windows) ----------------------------------
/// One 32-bit `volatile` load / store at `p`: a single MOV, the form a driver's register
/// access compiles to, so that a trapped window (ivshmem2_mmio_map) emulates exactly that.
uint32_t cb_load32(const volatile void *p);
void cb_store32(volatile void *p, uint32_t value);
/// `iterations` 32-bit loads from `p`; returns elapsed ns, *checksum folds the values.
uint64_t cb_load32_bench(const volatile void *p, long iterations, uint64_t *checksum);
/// `iterations` 32-bit stores of `value` to `p`; returns elapsed ns.
uint64_t cb_store32_bench(volatile void *p, uint32_t value, long iterations);

// --- minimal register dispatcher --------------------------------------------------------
typedef struct cb_device {
    uint8_t bus, dev, fn;
    uint8_t cfg[256], cfg_wm[256], cfg_w1c[256], cfg_rd[256];
    int16_t cfg_field[256];         // field index per byte, -1 none
    int msix_control_field;          // field index of the MSI-X Message Control (hook), -1 none
    uint8_t reg[256], reg_wm[256], reg_w1c[256], reg_rd[256];
    int16_t reg_field[256];
    int reg_size;
    uint64_t bar0_size;              // BAR0 window size (decode)
    int bar0_is64;
    uint64_t ecam_base;
    uint64_t reg_alias_mask;
    int doorbell_field, state_field; // field indexes with hooks, -1 none
    uint32_t doorbell_vector_mask;
    uint32_t *state_slot;            // this peer's state-table entry in shared memory
    uint8_t pending[64];
    int vectors;
    uint64_t doorbells, broadcasts, findings;
} cb_device;

/// One access of the benchmark mix. space 0: config (offset), 1: memory (address).
typedef struct cb_access {
    int32_t space;
    int32_t size;
    int32_t is_write;
    int32_t offset;
    uint64_t address;
    uint64_t value;
} cb_access;

uint32_t cb_config_read(cb_device *d, int n, uint8_t bus, uint8_t dev, uint8_t fn, int offset, int size);
void cb_config_write(cb_device *d, int n, uint8_t bus, uint8_t dev, uint8_t fn, int offset, int size, uint32_t value);
uint64_t cb_mmio_read(cb_device *d, int n, uint64_t address, int size);
void cb_mmio_write(cb_device *d, int n, uint64_t address, int size, uint64_t value);
/// Runs `rounds` passes over `ops` against `devices[0..<n]` (BDF of config ops: the first
/// device's). Returns elapsed ns; *checksum folds every read value.
uint64_t cb_register_bench(cb_device *devices, int n, const cb_access *ops, int count, long rounds, uint64_t *checksum);

// --- memcpy ----------------------------------------------------------------------------
/// `iterations` memcpy calls of `bytes`; returns elapsed ns.
uint64_t cb_memcpy_bench(void *dst, const void *src, size_t bytes, long iterations);

// --- SCM_RIGHTS ------------------------------------------------------------------------
/// Receives fd-carrying messages on the non-blocking sockets registered in `epfd` (the epoll
/// data is the index into socks/got), closes every fd that arrives, counts messages per socket.
/// Returns when *total reaches `target`, or when no socket became readable within `timeout_ms`.
/// Returns -1 on a receive error, else the messages received in this call.
long cb_drain(int epfd, const int *socks, long *got, long *fds_got, long target, long *total, int timeout_ms);
/// The raw cost of the server's messages for `n` peers with `v` vectors: the same message
/// sequence (INIT with a memfd, then EVENT_FD messages each carrying one eventfd), sent by a
/// thread over n socketpairs and received with cb_drain. Returns elapsed ns, 0 on failure.
/// *messages gets the count.
uint64_t cb_raw_scm_bench(int n, int v, long *messages);

#endif
