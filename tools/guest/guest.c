/*
 * ivshmem2-guest: the guest side of `make guest`. Runs inside a Linux VM whose ivshmem v2
 * device is our emulated one behind QEMU's multi-process PCI proxy. It finds the function the
 * PCI core enumerated, maps BAR0 (registers) and BAR2 (shared memory) through sysfs resource
 * files, and talks to a peer that runs outside the VM on the same server:
 *
 *   1. writes a greeting into its own output section and a note into the R/W section,
 *      enables interrupts (Interrupt Control) and writes its State;
 *   2. polls the State Table until the outside peer's state changes, then reads that peer's
 *      output section and its note in the R/W section;
 *   3. measures doorbell round trips: rings the outside peer (Doorbell) and polls its State
 *      Table entry until the peer answers with the next sequence number.
 *
 * Under TCG the proxy delivers no interrupt, so every wait polls shared memory. Each line it
 * prints starts with "guest-" so that the host can follow the serial console.
 * Options come from the kernel command line: ivshmem2.rounds=N.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REG_ID 0x00
#define REG_MAX_PEERS 0x04
#define REG_INT_CTRL 0x08
#define REG_DOORBELL 0x0C
#define REG_STATE 0x10

#define GUEST_STATE 0x6e57u   /* what the guest writes into its State register */
#define PEER_STATE 0x0b5eu    /* what the outside peer answers with */
#define ROUND_BASE 1000u      /* the peer answers round i with ROUND_BASE + i */

static char dev_path[512];
static volatile uint32_t *regs;
static volatile uint8_t *shm;
static uint64_t shm_size, st_size, rw_size, out_size;

static void fail(const char *step, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(const char *step, const char *fmt, ...) {
    va_list ap;
    printf("guest-fail: %s: ", step);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(1);
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static unsigned long read_hex_file(const char *dir, const char *name) {
    char p[600], buf[64] = {0};
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return ~0ul;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? strtoul(buf, NULL, 0) : ~0ul;
}

static void find_device(void) {
    DIR *d = opendir("/sys/bus/pci/devices");
    if (!d) fail("find", "no /sys/bus/pci/devices: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[512];
        snprintf(dir, sizeof dir, "/sys/bus/pci/devices/%s", e->d_name);
        if (read_hex_file(dir, "vendor") == 0x110a && read_hex_file(dir, "device") == 0x4106) {
            snprintf(dev_path, sizeof dev_path, "%s", dir);
            printf("guest-ok: find: ivshmem v2 function at %s, class 0x%06lx\n", e->d_name, read_hex_file(dir, "class"));
            closedir(d);
            return;
        }
    }
    closedir(d);
    fail("find", "no 110a:4106 function on the PCI bus");
}

/* The vendor-specific capability (ID 09h) holds the section sizes (CAP-VS-4..6). */
static void read_capability(void) {
    char p[600];
    uint8_t cfg[256];
    snprintf(p, sizeof p, "%s/config", dev_path);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || pread(fd, cfg, sizeof cfg, 0) != (ssize_t)sizeof cfg) fail("capability", "cannot read %s", p);
    close(fd);
    unsigned pos = cfg[0x34], hops = 0;
    while (pos >= 0x40 && pos < 0xf8 && hops++ < 48) {
        if (cfg[pos] == 0x09) {
            uint64_t v[3];
            uint32_t st;
            memcpy(&st, cfg + pos + 4, 4);
            memcpy(&v[1], cfg + pos + 8, 8);
            memcpy(&v[2], cfg + pos + 16, 8);
            st_size = st, rw_size = v[1], out_size = v[2];
            printf("guest-ok: capability: at 0x%02x length 0x%02x: state table %llu, R/W %llu, output %llu bytes\n", pos, cfg[pos + 2],
                   (unsigned long long)st_size, (unsigned long long)rw_size, (unsigned long long)out_size);
            return;
        }
        pos = cfg[pos + 1];
    }
    fail("capability", "no vendor-specific capability in config space");
}

static void *map_resource(int bar, uint64_t *size) {
    char p[600];
    snprintf(p, sizeof p, "%s/resource%d", dev_path, bar);
    int fd = open(p, O_RDWR | O_SYNC);
    if (fd < 0) fail("map", "open %s: %s", p, strerror(errno));
    struct stat s;
    fstat(fd, &s);
    void *m = mmap(NULL, s.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) fail("map", "mmap %s: %s", p, strerror(errno));
    close(fd);
    *size = s.st_size;
    return m;
}

/* Shared memory goes through the proxy one access at a time: copy in 32-bit words. */
static void shm_put(uint64_t off, const char *text) {
    uint32_t words[64] = {0};
    size_t n = strlen(text) + 1;
    memcpy(words, text, n);
    for (size_t i = 0; i < (n + 3) / 4; i++) ((volatile uint32_t *)(shm + off))[i] = words[i];
}

static void shm_get(uint64_t off, char *buf, size_t len) {
    uint32_t words[64] = {0};
    size_t n = len / 4 < 64 ? len / 4 : 64;
    for (size_t i = 0; i < n; i++) words[i] = ((volatile uint32_t *)(shm + off))[i];
    memcpy(buf, words, n * 4);
    buf[n * 4 - 1] = 0;
}

static uint32_t state_of(uint32_t peer) { return ((volatile uint32_t *)shm)[peer]; }

static int wait_state(uint32_t peer, uint32_t want, double timeout_us) {
    double end = now_us() + timeout_us;
    while (now_us() < end)
        if (state_of(peer) == want) return 1;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    unsigned rounds = 20;
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], "ivshmem2.rounds=", 16)) rounds = (unsigned)strtoul(argv[i] + 16, NULL, 0);
    if (rounds > 1000) rounds = 1000;
    setvbuf(stdout, NULL, _IOLBF, 0);

    find_device();
    read_capability();
    char p[600];
    snprintf(p, sizeof p, "%s/enable", dev_path);
    int fd = open(p, O_WRONLY);
    if (fd < 0 || write(fd, "1", 1) != 1) fail("enable", "cannot enable the function through %s", p);
    close(fd);

    uint64_t reg_size;
    regs = map_resource(0, &reg_size);
    shm = map_resource(2, &shm_size);
    printf("guest-ok: map: BAR0 %llu bytes, BAR2 %llu bytes\n", (unsigned long long)reg_size, (unsigned long long)shm_size);

    uint32_t id = regs[REG_ID / 4], max_peers = regs[REG_MAX_PEERS / 4];
    if (max_peers < 2 || id >= max_peers) fail("registers", "ID %u, Maximum Peers %u", id, max_peers);
    uint32_t peer = id == 0 ? 1 : 0;
    printf("guest-ok: registers: ID %u, Maximum Peers %u, outside peer %u\n", id, max_peers, peer);
    if (st_size + rw_size + (uint64_t)max_peers * out_size > shm_size || out_size < 256 || rw_size < 512)
        fail("layout", "sections (%llu + %llu + %u x %llu) do not fit BAR2 (%llu) or are too small for this test",
             (unsigned long long)st_size, (unsigned long long)rw_size, max_peers, (unsigned long long)out_size, (unsigned long long)shm_size);
    uint64_t my_out = st_size + rw_size + id * out_size, peer_out = st_size + rw_size + peer * out_size;

    /* 1. our output section, a note in the R/W section, interrupts on, our State. */
    char text[128];
    snprintf(text, sizeof text, "hello from the guest, peer %u", id);
    shm_put(my_out, text);
    shm_put(st_size, "guest was here");
    regs[REG_INT_CTRL / 4] = 1;
    if (regs[REG_INT_CTRL / 4] != 1) fail("interrupt-control", "Interrupt Control reads %u after writing 1", regs[REG_INT_CTRL / 4]);
    regs[REG_STATE / 4] = GUEST_STATE;
    if (state_of(id) != GUEST_STATE) fail("state", "own State Table entry reads 0x%x, not 0x%x", state_of(id), GUEST_STATE);
    printf("guest-ok: state: wrote State 0x%x, State Table entry %u reads it back\n", GUEST_STATE, id);

    /* 2. the outside peer's answer: its state, its output section, its R/W note. */
    double t0 = now_us();
    if (!wait_state(peer, PEER_STATE, 60e6)) fail("peer-state", "outside peer %u's State Table entry is 0x%x after 60 s, expected 0x%x", peer, state_of(peer), PEER_STATE);
    printf("guest-ok: peer-state: peer %u's State Table entry is 0x%x (after %.0f ms)\n", peer, state_of(peer), (now_us() - t0) / 1e3);
    char got[128];
    shm_get(peer_out, got, sizeof got);
    if (strncmp(got, "hello from outside", 18)) fail("peer-output", "peer %u's output section holds \"%s\"", peer, got);
    printf("guest-ok: peer-output: peer %u's output section: \"%s\"\n", peer, got);
    shm_get(st_size + 0x100, got, sizeof got);
    if (strncmp(got, "outside was here", 16)) fail("peer-rw", "R/W section at +0x100 holds \"%s\"", got);
    printf("guest-ok: peer-rw: R/W section: \"%s\"\n", got);

    /* 3. doorbell round trips: ring the outside peer's vector 0, poll for its answer. */
    double *rt = calloc(rounds ? rounds : 1, sizeof *rt);
    for (unsigned i = 1; i <= rounds; i++) {
        double s = now_us();
        regs[REG_DOORBELL / 4] = (peer << 16) | 0;
        if (!wait_state(peer, ROUND_BASE + i, 30e6)) fail("round-trip", "round %u: no answer within 30 s (peer state 0x%x)", i, state_of(peer));
        rt[i - 1] = now_us() - s;
    }
    if (rounds) {
        qsort(rt, rounds, sizeof *rt, cmp_double);
        printf("guest-ok: round-trip: %u doorbell round trips guest -> outside peer -> guest: min %.0f us, median %.0f us, max %.0f us\n",
               rounds, rt[0], rt[rounds / 2], rt[rounds - 1]);
    }
    free(rt);

    /* 4. what one access costs: every BAR access is a message to the device process. */
    double a0 = now_us();
    uint32_t sink = 0;
    for (int i = 0; i < 1000; i++) sink += state_of(peer);
    double a1 = now_us();
    for (int i = 0; i < 1000; i++) sink += regs[REG_ID / 4];
    double a2 = now_us();
    printf("guest-ok: access-cost: shared-memory read %.1f us, register read %.1f us (1000 each, checksum %u)\n",
           (a1 - a0) / 1000, (a2 - a1) / 1000, sink & 1);
    regs[REG_STATE / 4] = 0xd09e; /* "done": the outside peer leaves only after this */
    printf("guest-result: PASS\n");
    return 0;
}
