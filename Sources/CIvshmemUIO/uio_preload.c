/*
 * libivshmem2-uio.so — what Linux's uio_ivshmem driver shows user space, for an emulated ivshmem v2
 * device, so that unmodified UIO programs run against the model through LD_PRELOAD.
 *
 *   IVSHMEM2_UIO_SOCKET=/path/to/server.sock LD_PRELOAD=libivshmem2-uio.so ./program /dev/uio0
 *
 * Optional: IVSHMEM2_UIO_PROFILE (spec | jailhouse | qemu-rfc), IVSHMEM2_UIO_INTX=1 (INTx instead of
 * MSI-X), IVSHMEM2_UIO_CHECKING=0 (no findings), IVSHMEM2_UIO_FINDINGS=FILE (append findings there
 * instead of standard error), IVSHMEM2_UIO_LIBRARY (the libivshmem2 to load; default: the one
 * next to this library). Without IVSHMEM2_UIO_SOCKET every call goes to the real libc.
 *
 * The "kernel side" (what uio_ivshmem's probe does) runs the first time the program touches
 * /dev/uio0 or /sys/class/uio: the library attaches an emulated device (libivshmem2) to the server,
 * programs its BARs and MSI-X table through config space, sets one-shot mode (Privileged Control
 * bit 0) and bus mastering, and builds the sysfs files in a private directory:
 *
 *   /sys/class/uio/uio0/{name,version,event,dev}   name "uio_ivshmem[0000:00:02.0]", version "1"
 *   /sys/class/uio/uio0/maps/mapK/{name,addr,size,offset}  size and addr as "0x%016llx"
 *   /sys/class/uio/uio0/device -> the PCI function (vendor, device, class, msi_irqs/ with MSI-X)
 *
 * map0 "registers" (BAR0), map1 "state_table" (read-only), map2 "rw_section" (if RW > 0),
 * map3 "input_sections" (N x OUT, read-only) and map4 "output_section" (this peer's, if OUT > 0);
 * mmap selects map K with offset K x page size. Later maps are numbered densely, as the driver's
 * `mem++` does: with RW = 0 the input sections are map2. map0 is a trapped window
 * (ivshmem2_mmio_map): every register access goes through the model and is checked. The other
 * maps are the real shared memory (ivshmem2_shm_map) with the spec's rights: a store into a
 * read-only section is dropped and reported as a finding.
 *
 * /dev/uio0 is an eventfd underneath: every interrupt of the device (any vector; all are one event
 * source) increments the event count and signals every open /dev/uio0, so poll/select/epoll work
 * unchanged. read() of 4 bytes blocks (unless O_NONBLOCK) until an event and returns the event
 * count; write() fails with EIO (uio_ivshmem has no irqcontrol); close() writes State = 0.
 * Re-arming is the program's job: write 1 to Interrupt Control through map0.
 *
 * Not covered: dup()/fork() of /dev/uio0 (the copy is a plain eventfd; a forked child leaves the
 * device to its parent), partial munmap of a map,
 * relative paths into /sys/class/uio, scandir/nftw (glibc opens directories internally there).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../CIvshmemTrap/include/ivshmem2.h"

/* ---- libivshmem2, loaded on first use -----------------------------------------------------
 * The preload is built on the C API: it dlopen()s libivshmem2.so from its own directory (or
 * $IVSHMEM2_UIO_LIBRARY) the first time the program touches a UIO path, so programs that never
 * do load nothing but this file. */

#define API_FUNCTIONS(X) X(device_options_init) X(platform_create) X(device_attach) X(device_get_info) \
    X(set_finding_handler) X(config_read) X(config_write) X(mmio_read) X(mmio_write) X(set_interrupt_handler) \
    X(mmio_map) X(shm_map) X(unmap) X(platform_destroy) X(format_finding) X(status_name) X(last_error)
#define API_FIELD(name) __typeof__(ivshmem2_##name) *name;
static struct { API_FUNCTIONS(API_FIELD) } api;
#undef API_FIELD

static void say(const char *fmt, ...);

/* Loads libivshmem2 and resolves every function; 0 on success. */
static int load_api(void) {
    char candidates[4][4096];
    int n = 0;
    const char *override = getenv("IVSHMEM2_UIO_LIBRARY");
    if (override && *override) snprintf(candidates[n++], sizeof candidates[0], "%s", override);
    Dl_info self;
    if (dladdr((void *)&load_api, &self) && self.dli_fname) {
        const char *slash = strrchr(self.dli_fname, '/');
        int dir = slash ? (int)(slash - self.dli_fname) : 0;
        /* Installed: libivshmem2.so next to libivshmem2-uio.so; in a build tree: libivshmem2c.so. */
        snprintf(candidates[n++], sizeof candidates[0], "%.*s/libivshmem2.so", dir, self.dli_fname);
        snprintf(candidates[n++], sizeof candidates[0], "%.*s/libivshmem2c.so", dir, self.dli_fname);
    }
    snprintf(candidates[n++], sizeof candidates[0], "libivshmem2.so");
    void *lib = NULL;
    for (int i = 0; i < n && !lib; i++) lib = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { say("ivshmem2-uio: cannot load libivshmem2 (set IVSHMEM2_UIO_LIBRARY): %s\n", dlerror()); return -1; }
#define API_RESOLVE(name) if (!(api.name = (__typeof__(ivshmem2_##name) *)dlsym(lib, "ivshmem2_" #name))) { \
        say("ivshmem2-uio: libivshmem2 has no ivshmem2_%s\n", #name); return -1; }
    API_FUNCTIONS(API_RESOLVE)
#undef API_RESOLVE
    return 0;
}

#define UIO_MAJOR 243
#define MAX_OPEN 16
#define MAX_MAPPINGS 64
#define PCI_SLOT_NO 2
#define PCI_NAME "0000:00:02.0"
#define BAR0_PHYS 0xC0000000ull
#define BAR1_PHYS 0xC0010000ull
#define BAR2_PHYS 0x8000000000ull
#define MSI_ADDRESS 0xFEE00000u
#define REG_STATE 0x10

/* ---- the real libc ------------------------------------------------------------------------- */

#define REAL(name) real_##name
#define DECLARE_REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
DECLARE_REAL(int, open, const char *, int, ...);
DECLARE_REAL(int, open64, const char *, int, ...);
DECLARE_REAL(int, openat, int, const char *, int, ...);
DECLARE_REAL(int, openat64, int, const char *, int, ...);
DECLARE_REAL(int, __open_2, const char *, int);
DECLARE_REAL(int, __open64_2, const char *, int);
DECLARE_REAL(int, __openat_2, int, const char *, int);
DECLARE_REAL(int, __openat64_2, int, const char *, int);
DECLARE_REAL(FILE *, fopen, const char *, const char *);
DECLARE_REAL(FILE *, fopen64, const char *, const char *);
DECLARE_REAL(ssize_t, read, int, void *, size_t);
DECLARE_REAL(ssize_t, write, int, const void *, size_t);
DECLARE_REAL(int, close, int);
DECLARE_REAL(void *, mmap, void *, size_t, int, int, int, off_t);
DECLARE_REAL(void *, mmap64, void *, size_t, int, int, int, off_t);
DECLARE_REAL(int, munmap, void *, size_t);
DECLARE_REAL(int, stat, const char *, struct stat *);
DECLARE_REAL(int, lstat, const char *, struct stat *);
DECLARE_REAL(int, stat64, const char *, struct stat64 *);
DECLARE_REAL(int, lstat64, const char *, struct stat64 *);
DECLARE_REAL(int, fstat, int, struct stat *);
DECLARE_REAL(int, fstat64, int, struct stat64 *);
DECLARE_REAL(int, fstatat, int, const char *, struct stat *, int);
DECLARE_REAL(int, fstatat64, int, const char *, struct stat64 *, int);
DECLARE_REAL(int, statx, int, const char *, int, unsigned, struct statx *);
DECLARE_REAL(int, access, const char *, int);
DECLARE_REAL(int, faccessat, int, const char *, int, int);
DECLARE_REAL(ssize_t, readlink, const char *, char *, size_t);
DECLARE_REAL(ssize_t, readlinkat, int, const char *, char *, size_t);
DECLARE_REAL(DIR *, opendir, const char *);
DECLARE_REAL(ssize_t, getxattr, const char *, const char *, void *, size_t);
DECLARE_REAL(ssize_t, lgetxattr, const char *, const char *, void *, size_t);
DECLARE_REAL(ssize_t, listxattr, const char *, char *, size_t);
DECLARE_REAL(ssize_t, llistxattr, const char *, char *, size_t);

static void resolve_real(void) {
#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)
    RESOLVE(open); RESOLVE(open64); RESOLVE(openat); RESOLVE(openat64);
    RESOLVE(__open_2); RESOLVE(__open64_2); RESOLVE(__openat_2); RESOLVE(__openat64_2);
    RESOLVE(fopen); RESOLVE(fopen64); RESOLVE(read); RESOLVE(write); RESOLVE(close);
    RESOLVE(mmap); RESOLVE(mmap64); RESOLVE(munmap);
    RESOLVE(stat); RESOLVE(lstat); RESOLVE(stat64); RESOLVE(lstat64); RESOLVE(fstat); RESOLVE(fstat64);
    RESOLVE(fstatat); RESOLVE(fstatat64); RESOLVE(statx);
    RESOLVE(access); RESOLVE(faccessat); RESOLVE(readlink); RESOLVE(readlinkat); RESOLVE(opendir);
    RESOLVE(getxattr); RESOLVE(lgetxattr); RESOLVE(listxattr); RESOLVE(llistxattr);
#undef RESOLVE
}

static pthread_once_t real_once = PTHREAD_ONCE_INIT;
#define ENSURE_REAL() pthread_once(&real_once, resolve_real)

/* ---- the emulated device and its "driver" state ------------------------------------------- */

struct uio_map {
    const char *name;
    uint64_t phys;  /* physical address the map shows */
    uint64_t size;
    int is_registers;
};

static struct {
    pthread_mutex_t lock;        /* bring-up and the mapping table */
    int state;                   /* 0: not tried, 1: up, -1: failed */
    ivshmem2_platform *platform;
    ivshmem2_device *device;
    ivshmem2_device_info info;
    struct uio_map maps[5];
    unsigned map_count;
    unsigned vectors;
    int msix;
    char root[64];               /* private directory holding sys/ and dev/ */
    size_t root_len;
    char paths[64][160];         /* created entries, removed in reverse order at exit */
    unsigned path_count;
    int findings_fd;
    pid_t owner;                 /* the process that attached; a forked child must not detach */
    void *mapping_addr[MAX_MAPPINGS];
} uio = { .lock = PTHREAD_MUTEX_INITIALIZER, .findings_fd = 2 };

static int open_fds[MAX_OPEN];   /* eventfds handed out as /dev/uio0 (0: free slot) */
static uint32_t event_count;

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1) n = sizeof line - 1;
    if (n > 0) REAL(write)(uio.findings_fd, line, (size_t)n);
}

static int cfg_read(uint16_t off, unsigned size, uint32_t *v) {
    return api.config_read(uio.platform, 0, PCI_SLOT_NO, 0, off, size, v);
}
static int cfg_write(uint16_t off, unsigned size, uint32_t v) {
    return api.config_write(uio.platform, 0, PCI_SLOT_NO, 0, off, size, v);
}

/* Any vector: one event. Runs on the device's event thread (or the ringing thread). */
static void on_interrupt(void *context, const ivshmem2_interrupt *irq) {
    (void)context; (void)irq;
    __atomic_add_fetch(&event_count, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    for (int i = 0; i < MAX_OPEN; i++) {
        int fd = __atomic_load_n(&open_fds[i], __ATOMIC_SEQ_CST);
        if (fd > 0) (void)!REAL(write)(fd, &one, sizeof one);
    }
}

static void on_finding(void *context, const ivshmem2_finding *finding) {
    (void)context;
    char line[512];
    api.format_finding(finding, line, sizeof line);
    say("ivshmem2-uio: finding %s\n", line);
}

/* ---- the private sysfs tree ------------------------------------------------------------------ */

static int tree_add(const char *rel, int is_dir, const char *content, const char *link_target) {
    if (uio.path_count >= sizeof uio.paths / sizeof uio.paths[0]) return -1;
    char *path = uio.paths[uio.path_count];
    snprintf(path, sizeof uio.paths[0], "%s%s", uio.root, rel);
    int rc;
    if (link_target) rc = symlink(link_target, path);
    else if (is_dir) rc = mkdir(path, 0755);
    else {
        int fd = REAL(open)(path, O_WRONLY | O_CREAT | O_TRUNC, 0444);
        rc = fd < 0 ? -1 : 0;
        if (fd >= 0) {
            if (content) (void)!REAL(write)(fd, content, strlen(content));
            REAL(close)(fd);
        }
    }
    if (rc == 0) uio.path_count++;
    return rc;
}

static int tree_file(const char *rel, const char *fmt, ...) {
    char content[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(content, sizeof content, fmt, ap);
    va_end(ap);
    return tree_add(rel, 0, content, NULL);
}

static void tree_remove(void) {
    while (uio.path_count > 0) {
        const char *path = uio.paths[--uio.path_count];
        if (rmdir(path) != 0) unlink(path);
    }
    if (uio.root[0]) rmdir(uio.root);
}

static int build_tree(void) {
    static const char *dirs[] = { "/sys", "/sys/class", "/sys/class/uio", "/sys/devices", "/sys/devices/pci0000:00",
                                  "/sys/devices/pci0000:00/" PCI_NAME, "/sys/devices/pci0000:00/" PCI_NAME "/uio",
                                  "/sys/devices/pci0000:00/" PCI_NAME "/uio/uio0",
                                  "/sys/devices/pci0000:00/" PCI_NAME "/uio/uio0/maps", "/dev" };
    char rel[160];
    int rc = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) rc |= tree_add(dirs[i], 1, NULL, NULL);
    const char *pci = "/sys/devices/pci0000:00/" PCI_NAME;
    const char *dev = "/sys/devices/pci0000:00/" PCI_NAME "/uio/uio0";
    rc |= tree_add("/sys/class/uio/uio0", 0, NULL, "../../devices/pci0000:00/" PCI_NAME "/uio/uio0");
    snprintf(rel, sizeof rel, "%s/vendor", pci); rc |= tree_file(rel, "0x110a\n");
    snprintf(rel, sizeof rel, "%s/device", pci); rc |= tree_file(rel, "0x4106\n");
    snprintf(rel, sizeof rel, "%s/class", pci); rc |= tree_file(rel, "0xff%04x\n", uio.info.protocol & 0xFFFF);
    if (uio.msix) {
        snprintf(rel, sizeof rel, "%s/msi_irqs", pci); rc |= tree_add(rel, 1, NULL, NULL);
        for (unsigned v = 0; v < uio.vectors && v < 32; v++) {
            snprintf(rel, sizeof rel, "%s/msi_irqs/%u", pci, 40 + v);
            rc |= tree_file(rel, "msix\n");
        }
    } else {
        snprintf(rel, sizeof rel, "%s/irq", pci); rc |= tree_file(rel, "%d\n", 16 + 0);
    }
    snprintf(rel, sizeof rel, "%s/device", dev); rc |= tree_add(rel, 0, NULL, "../../../" PCI_NAME);
    snprintf(rel, sizeof rel, "%s/name", dev); rc |= tree_file(rel, "uio_ivshmem[%s]\n", PCI_NAME);
    snprintf(rel, sizeof rel, "%s/version", dev); rc |= tree_file(rel, "1\n");
    snprintf(rel, sizeof rel, "%s/dev", dev); rc |= tree_file(rel, "%d:0\n", UIO_MAJOR);
    snprintf(rel, sizeof rel, "%s/event", dev); rc |= tree_file(rel, "0\n");
    for (unsigned k = 0; k < uio.map_count; k++) {
        snprintf(rel, sizeof rel, "%s/maps/map%u", dev, k); rc |= tree_add(rel, 1, NULL, NULL);
        snprintf(rel, sizeof rel, "%s/maps/map%u/name", dev, k); rc |= tree_file(rel, "%s\n", uio.maps[k].name);
        snprintf(rel, sizeof rel, "%s/maps/map%u/addr", dev, k);
        rc |= tree_file(rel, "0x%016llx\n", (unsigned long long)uio.maps[k].phys);
        snprintf(rel, sizeof rel, "%s/maps/map%u/size", dev, k);
        rc |= tree_file(rel, "0x%016llx\n", (unsigned long long)uio.maps[k].size);
        snprintf(rel, sizeof rel, "%s/maps/map%u/offset", dev, k); rc |= tree_file(rel, "0x0\n");
    }
    rc |= tree_file("/dev/uio0", "");
    return rc;
}

/* ---- bring-up: what uio_ivshmem's probe does ------------------------------------------------ */

#define TRY(call, what) do { int rc_ = (call); if (rc_ != IVSHMEM2_OK) { \
    say("ivshmem2-uio: %s failed: %s: %s\n", what, api.status_name(rc_), api.last_error()); return -1; } } while (0)

static int bring_up(const char *socket_path) {
    const char *env;
    if (load_api() != 0) return -1;
    ivshmem2_device_options options;
    api.device_options_init(&options);
    if ((env = getenv("IVSHMEM2_UIO_PROFILE")) && *env) options.profile = env;
    if ((env = getenv("IVSHMEM2_UIO_INTX")) && atoi(env) == 1) options.intx_pin = 1;
    if ((env = getenv("IVSHMEM2_UIO_CHECKING")) && atoi(env) == 0) options.checking = 0;
    if ((env = getenv("IVSHMEM2_UIO_FINDINGS")) && *env) {
        int fd = REAL(open)(env, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) uio.findings_fd = fd;
    }
    uio.owner = getpid();
    TRY(api.platform_create(0, &uio.platform), "creating the platform");
    TRY(api.device_attach(uio.platform, 0, PCI_SLOT_NO, 0, socket_path, &options, &uio.device), "attaching");
    TRY(api.device_get_info(uio.device, &uio.info), "reading the device info");
    api.set_finding_handler(uio.device, on_finding, NULL);

    uint32_t v, cap, vcap = 0, msix = 0;
    TRY(cfg_read(0x34, 1, &cap), "reading the capability pointer");
    for (unsigned hops = 0; cap && hops < 48; hops++) {
        uint32_t id, next;
        TRY(cfg_read((uint16_t)cap, 1, &id), "walking capabilities");
        TRY(cfg_read((uint16_t)(cap + 1), 1, &next), "walking capabilities");
        if (id == 0x09) vcap = cap;
        if (id == 0x11) msix = cap;
        cap = next;
    }
    if (!vcap) { say("ivshmem2-uio: no vendor capability\n"); return -1; }

    /* BARs: size with all-ones, then program (BAR0 registers, BAR1 MSI-X, BAR2/3 shared memory). */
    uint64_t bar_size[3] = {0};
    for (unsigned i = 0; i < 3; i++) {
        uint16_t reg = (uint16_t)(0x10 + 4 * i);
        TRY(cfg_write(reg, 4, 0xFFFFFFFFu), "sizing a BAR");
        TRY(cfg_read(reg, 4, &v), "sizing a BAR");
        if (!v) continue;
        uint64_t mask = v & ~0xFull;
        if (((v >> 1) & 3) == 2) {
            uint32_t hi;
            TRY(cfg_write(reg + 4, 4, 0xFFFFFFFFu), "sizing a BAR");
            TRY(cfg_read(reg + 4, 4, &hi), "sizing a BAR");
            mask |= (uint64_t)hi << 32;
            bar_size[i] = ~mask + 1;
        } else {
            bar_size[i] = (uint32_t)(~(uint32_t)mask + 1);
        }
    }
    TRY(cfg_write(0x10, 4, (uint32_t)BAR0_PHYS), "programming BAR0");
    if (bar_size[1]) TRY(cfg_write(0x14, 4, (uint32_t)BAR1_PHYS), "programming BAR1");
    uint64_t shm_phys = uio.info.base_address;
    if (bar_size[2]) {
        TRY(cfg_write(0x18, 4, (uint32_t)BAR2_PHYS), "programming BAR2");
        TRY(cfg_write(0x1C, 4, (uint32_t)(BAR2_PHYS >> 32)), "programming BAR2");
        shm_phys = BAR2_PHYS;
    } else {
        uint32_t lo, hi;
        TRY(cfg_read((uint16_t)(vcap + 24), 4, &lo), "reading Base Address");
        TRY(cfg_read((uint16_t)(vcap + 28), 4, &hi), "reading Base Address");
        shm_phys = lo | (uint64_t)hi << 32;
    }
    TRY(cfg_write(0x04, 2, 0x0006), "enabling memory space and bus mastering");

    /* The maps, as the driver's probe lists them. */
    uint32_t st_size, lo, hi;
    TRY(cfg_read((uint16_t)(vcap + 4), 4, &st_size), "reading State Table Size");
    TRY(cfg_read((uint16_t)(vcap + 8), 4, &lo), "reading R/W Section Size");
    TRY(cfg_read((uint16_t)(vcap + 12), 4, &hi), "reading R/W Section Size");
    uint64_t rw_size = lo | (uint64_t)hi << 32;
    TRY(cfg_read((uint16_t)(vcap + 16), 4, &lo), "reading Output Section Size");
    TRY(cfg_read((uint16_t)(vcap + 20), 4, &hi), "reading Output Section Size");
    uint64_t out_size = lo | (uint64_t)hi << 32;
    uint32_t id = 0, max_peers = 0;
    uint64_t value;
    TRY(api.mmio_read(uio.platform, BAR0_PHYS + 0, 4, &value), "reading ID"); id = (uint32_t)value;
    TRY(api.mmio_read(uio.platform, BAR0_PHYS + 4, 4, &value), "reading Maximum Peers"); max_peers = (uint32_t)value;

    unsigned k = 0;
    uio.maps[k++] = (struct uio_map){ "registers", BAR0_PHYS, bar_size[0], 1 };
    uio.maps[k++] = (struct uio_map){ "state_table", shm_phys, st_size, 0 };
    uint64_t section = shm_phys + st_size;
    if (rw_size > 0) {
        uio.maps[k++] = (struct uio_map){ "rw_section", section, rw_size, 0 };
        section += rw_size;
    }
    if (out_size > 0) {
        uio.maps[k++] = (struct uio_map){ "input_sections", section, (uint64_t)max_peers * out_size, 0 };
        uio.maps[k++] = (struct uio_map){ "output_section", section + (uint64_t)id * out_size, out_size, 0 };
    }
    uio.map_count = k;

    /* One-shot interrupts, then every vector as one event source. */
    TRY(cfg_write((uint16_t)(vcap + 3), 1, 1), "setting one-shot mode");
    TRY(api.set_interrupt_handler(uio.platform, on_interrupt, NULL), "installing the interrupt handler");
    if (msix && !options.intx_pin) {
        uint32_t ctl, table;
        TRY(cfg_read((uint16_t)(msix + 2), 2, &ctl), "reading MSI-X control");
        TRY(cfg_read((uint16_t)(msix + 4), 4, &table), "reading the MSI-X table offset");
        uio.vectors = (ctl & 0x7FF) + 1;
        uint64_t base = BAR1_PHYS + (table & ~7u);
        for (unsigned i = 0; i < uio.vectors; i++) {
            TRY(api.mmio_write(uio.platform, base + 16 * i + 0, 4, MSI_ADDRESS), "programming MSI-X");
            TRY(api.mmio_write(uio.platform, base + 16 * i + 4, 4, 0), "programming MSI-X");
            TRY(api.mmio_write(uio.platform, base + 16 * i + 8, 4, 0x4000u | i), "programming MSI-X");
            TRY(api.mmio_write(uio.platform, base + 16 * i + 12, 4, 0), "programming MSI-X");
        }
        TRY(cfg_write((uint16_t)(msix + 2), 2, ctl | 0x8000), "enabling MSI-X");
        uio.msix = 1;
    } else {
        uio.vectors = 1;
    }

    char templ[] = "/tmp/ivshmem2-uio.XXXXXX";
    if (!mkdtemp(templ)) { say("ivshmem2-uio: mkdtemp: %s\n", strerror(errno)); return -1; }
    snprintf(uio.root, sizeof uio.root, "%s", templ);
    uio.root_len = strlen(uio.root);
    if (build_tree() != 0) { say("ivshmem2-uio: building the sysfs view failed: %s\n", strerror(errno)); return -1; }
    return 0;
}

/* 1 when the device is up; brings it up on first use. 0 when the preload is inactive or failed. */
static int device_ready(void) {
    ENSURE_REAL();
    int state = __atomic_load_n(&uio.state, __ATOMIC_ACQUIRE);
    if (state) return state > 0;
    const char *socket_path = getenv("IVSHMEM2_UIO_SOCKET");
    if (!socket_path || !*socket_path) return 0;
    pthread_mutex_lock(&uio.lock);
    if (uio.state == 0) {
        int rc = bring_up(socket_path);
        __atomic_store_n(&uio.state, rc == 0 ? 1 : -1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&uio.lock);
    return uio.state > 0;
}

__attribute__((destructor)) static void shut_down(void) {
    if (__atomic_load_n(&uio.state, __ATOMIC_ACQUIRE) == 0) return;
    /* A child forked after the bring-up has the parent's memory but not its threads: detaching
     * there would wait for an event thread that does not exist. The parent cleans up. */
    if (getpid() != uio.owner) return;
    if (uio.platform) api.platform_destroy(uio.platform);
    uio.platform = NULL;
    tree_remove();
}

/* ---- paths ------------------------------------------------------------------------------------ */

enum { PATH_OTHER, PATH_SYSFS, PATH_DEVICE };

static int has_prefix(const char *path, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int classify(const char *path) {
    if (!path || !getenv("IVSHMEM2_UIO_SOCKET")) return PATH_OTHER;
    if (strcmp(path, "/dev/uio0") == 0) return PATH_DEVICE;
    if (has_prefix(path, "/sys/class/uio")) return PATH_SYSFS;
    if (has_prefix(path, "/sys/devices/pci0000:00/" PCI_NAME)) return PATH_SYSFS;
    return PATH_OTHER;
}

/* The path in the private tree for a sysfs or device path; `path` itself for everything else. */
static const char *translate(const char *path, char *buf, size_t len) {
    int kind = classify(path);
    if (kind == PATH_OTHER || !device_ready()) return path;
    snprintf(buf, len, "%s%s", uio.root, path);
    return buf;
}

static int is_event_file(const char *path) {
    size_t n = strlen(path);
    return n > 11 && strcmp(path + n - 11, "/uio0/event") == 0;
}

static void refresh_event_file(const char *real_path) {
    int fd = REAL(open)(real_path, O_WRONLY | O_TRUNC);
    if (fd < 0) return;
    char text[32];
    int n = snprintf(text, sizeof text, "%u\n", __atomic_load_n(&event_count, __ATOMIC_SEQ_CST));
    (void)!REAL(write)(fd, text, (size_t)n);
    REAL(close)(fd);
}

/* ---- /dev/uio0 ------------------------------------------------------------------------------ */

static int slot_of(int fd) {
    if (fd <= 0) return -1;
    for (int i = 0; i < MAX_OPEN; i++)
        if (__atomic_load_n(&open_fds[i], __ATOMIC_SEQ_CST) == fd) return i;
    return -1;
}

static int open_device(int flags) {
    if (!device_ready()) { errno = ENODEV; return -1; }
    int fd = eventfd(0, EFD_CLOEXEC * !!(flags & O_CLOEXEC) | EFD_NONBLOCK * !!(flags & O_NONBLOCK));
    if (fd < 0) return -1;
    for (int i = 0; i < MAX_OPEN; i++) {
        int expected = 0;
        if (__atomic_compare_exchange_n(&open_fds[i], &expected, fd, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return fd;
    }
    REAL(close)(fd);
    errno = EMFILE;
    return -1;
}

static int open_path(int dirfd, const char *path, int flags, mode_t mode, int use_at) {
    int kind = classify(path);
    if (kind == PATH_DEVICE) return open_device(flags);
    char buf[512];
    const char *p = path;
    if (kind == PATH_SYSFS && device_ready()) {
        p = translate(path, buf, sizeof buf);
        if (is_event_file(p)) refresh_event_file(p);
        if (flags & (O_WRONLY | O_RDWR)) { errno = EACCES; return -1; }
    }
    return use_at ? REAL(openat)(dirfd, p, flags, mode) : REAL(open)(p, flags, mode);
}

#define MODE_ARG(flags, mode) do { mode = 0; if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; \
    va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); } } while (0)

int open(const char *path, int flags, ...) {
    ENSURE_REAL(); mode_t mode; MODE_ARG(flags, mode);
    return open_path(AT_FDCWD, path, flags, mode, 0);
}
int open64(const char *path, int flags, ...) {
    ENSURE_REAL(); mode_t mode; MODE_ARG(flags, mode);
    return open_path(AT_FDCWD, path, flags, mode, 0);
}
int openat(int dirfd, const char *path, int flags, ...) {
    ENSURE_REAL(); mode_t mode; MODE_ARG(flags, mode);
    return open_path(dirfd, path, flags, mode, 1);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    ENSURE_REAL(); mode_t mode; MODE_ARG(flags, mode);
    return open_path(dirfd, path, flags, mode, 1);
}
int __open_2(const char *path, int flags) { ENSURE_REAL(); return open_path(AT_FDCWD, path, flags, 0, 0); }
int __open64_2(const char *path, int flags) { ENSURE_REAL(); return open_path(AT_FDCWD, path, flags, 0, 0); }
int __openat_2(int dirfd, const char *path, int flags) { ENSURE_REAL(); return open_path(dirfd, path, flags, 0, 1); }
int __openat64_2(int dirfd, const char *path, int flags) { ENSURE_REAL(); return open_path(dirfd, path, flags, 0, 1); }

FILE *fopen(const char *path, const char *mode) {
    ENSURE_REAL();
    char buf[512];
    const char *p = translate(path, buf, sizeof buf);
    if (p != path && is_event_file(p)) refresh_event_file(p);
    return REAL(fopen)(p, mode);
}
FILE *fopen64(const char *path, const char *mode) { return fopen(path, mode); }

ssize_t read(int fd, void *buf, size_t count) {
    ENSURE_REAL();
    if (slot_of(fd) < 0) return REAL(read)(fd, buf, count);
    if (count != sizeof(uint32_t)) { errno = EINVAL; return -1; }
    uint64_t signalled;
    ssize_t n = REAL(read)(fd, &signalled, sizeof signalled);
    if (n < 0) return n;
    uint32_t events = __atomic_load_n(&event_count, __ATOMIC_SEQ_CST);
    memcpy(buf, &events, sizeof events);
    return sizeof events;
}

ssize_t write(int fd, const void *buf, size_t count) {
    ENSURE_REAL();
    if (slot_of(fd) < 0) return REAL(write)(fd, buf, count);
    errno = count == sizeof(int32_t) ? EIO : EINVAL; /* no irqcontrol in uio_ivshmem */
    return -1;
}

int close(int fd) {
    ENSURE_REAL();
    int slot = slot_of(fd);
    if (slot >= 0) {
        /* uio_ivshmem's release: State = 0. */
        api.mmio_write(uio.platform, BAR0_PHYS + REG_STATE, 4, 0);
        __atomic_store_n(&open_fds[slot], 0, __ATOMIC_SEQ_CST);
    }
    return REAL(close)(fd);
}

static void *map_device(size_t length, int prot, int fd, off_t offset) {
    (void)prot;
    long page = sysconf(_SC_PAGESIZE);
    if (offset % page != 0 || offset / page >= (off_t)uio.map_count || length == 0) { errno = EINVAL; return MAP_FAILED; }
    const struct uio_map *m = &uio.maps[offset / page];
    uint64_t mapped = (m->size + (uint64_t)page - 1) & ~(uint64_t)(page - 1);
    if (length > mapped) { errno = EINVAL; return MAP_FAILED; }
    uint64_t len = (length + (uint64_t)page - 1) & ~(uint64_t)(page - 1);
    void *host = NULL;
    int rc = m->is_registers ? api.mmio_map(uio.platform, m->phys, len, 0, &host)
                             : api.shm_map(uio.platform, m->phys, len > m->size ? m->size : len, 0, &host);
    if (rc != IVSHMEM2_OK) {
        say("ivshmem2-uio: mmap of %s (fd %d) failed: %s\n", m->name, fd, api.last_error());
        errno = rc == IVSHMEM2_ENOSPC ? ENOMEM : EINVAL;
        return MAP_FAILED;
    }
    pthread_mutex_lock(&uio.lock);
    for (int i = 0; i < MAX_MAPPINGS; i++) if (!uio.mapping_addr[i]) { uio.mapping_addr[i] = host; break; }
    pthread_mutex_unlock(&uio.lock);
    return host;
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    ENSURE_REAL();
    if (slot_of(fd) < 0) return REAL(mmap)(addr, length, prot, flags, fd, offset);
    return map_device(length, prot, fd, offset);
}
void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    ENSURE_REAL();
    if (slot_of(fd) < 0) return REAL(mmap64)(addr, length, prot, flags, fd, offset);
    return map_device(length, prot, fd, offset);
}

int munmap(void *addr, size_t length) {
    ENSURE_REAL();
    if (addr && __atomic_load_n(&uio.state, __ATOMIC_ACQUIRE) > 0) {
        int found = 0;
        pthread_mutex_lock(&uio.lock);
        for (int i = 0; i < MAX_MAPPINGS; i++) if (uio.mapping_addr[i] == addr) { uio.mapping_addr[i] = NULL; found = 1; break; }
        pthread_mutex_unlock(&uio.lock);
        if (found) return api.unmap(uio.platform, addr) == IVSHMEM2_OK ? 0 : (errno = EINVAL, -1);
    }
    return REAL(munmap)(addr, length);
}

/* ---- stat, access, readlink, opendir ---------------------------------------------------------- */

/* /dev/uio0 is a character device; its placeholder in the tree is a regular file. */
#define AS_CHAR_DEVICE(st) do { (st)->st_mode = S_IFCHR | 0600; (st)->st_rdev = makedev(UIO_MAJOR, 0); (st)->st_size = 0; } while (0)

#define STAT_WRAPPER(name, type, follow_real) \
int name(const char *path, struct type *st) { \
    ENSURE_REAL(); char buf[512]; int kind = classify(path); \
    int rc = REAL(name)(translate(path, buf, sizeof buf), st); \
    if (rc == 0 && kind == PATH_DEVICE) AS_CHAR_DEVICE(st); \
    return rc; }
STAT_WRAPPER(stat, stat, 1)
STAT_WRAPPER(lstat, stat, 0)
STAT_WRAPPER(stat64, stat64, 1)
STAT_WRAPPER(lstat64, stat64, 0)

int fstatat(int dirfd, const char *path, struct stat *st, int flags) {
    ENSURE_REAL(); char buf[512]; int kind = classify(path);
    int rc = REAL(fstatat)(dirfd, translate(path, buf, sizeof buf), st, flags);
    if (rc == 0 && kind == PATH_DEVICE) AS_CHAR_DEVICE(st);
    return rc;
}
int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) {
    ENSURE_REAL(); char buf[512]; int kind = classify(path);
    int rc = REAL(fstatat64)(dirfd, translate(path, buf, sizeof buf), st, flags);
    if (rc == 0 && kind == PATH_DEVICE) AS_CHAR_DEVICE(st);
    return rc;
}
int fstat(int fd, struct stat *st) {
    ENSURE_REAL();
    int rc = REAL(fstat)(fd, st);
    if (rc == 0 && slot_of(fd) >= 0) AS_CHAR_DEVICE(st);
    return rc;
}
int fstat64(int fd, struct stat64 *st) {
    ENSURE_REAL();
    int rc = REAL(fstat64)(fd, st);
    if (rc == 0 && slot_of(fd) >= 0) AS_CHAR_DEVICE(st);
    return rc;
}
int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *st) {
    ENSURE_REAL(); char buf[512]; int kind = classify(path);
    int rc = REAL(statx)(dirfd, translate(path, buf, sizeof buf), flags, mask, st);
    if (rc == 0 && kind == PATH_DEVICE) {
        st->stx_mode = S_IFCHR | 0600; st->stx_rdev_major = UIO_MAJOR; st->stx_rdev_minor = 0; st->stx_size = 0;
    }
    return rc;
}
int access(const char *path, int mode) {
    ENSURE_REAL(); char buf[512];
    return REAL(access)(translate(path, buf, sizeof buf), mode);
}
int faccessat(int dirfd, const char *path, int mode, int flags) {
    ENSURE_REAL(); char buf[512];
    return REAL(faccessat)(dirfd, translate(path, buf, sizeof buf), mode, flags);
}
ssize_t readlink(const char *path, char *out, size_t len) {
    ENSURE_REAL(); char buf[512];
    return REAL(readlink)(translate(path, buf, sizeof buf), out, len);
}
ssize_t readlinkat(int dirfd, const char *path, char *out, size_t len) {
    ENSURE_REAL(); char buf[512];
    return REAL(readlinkat)(dirfd, translate(path, buf, sizeof buf), out, len);
}
DIR *opendir(const char *path) {
    ENSURE_REAL(); char buf[512];
    return REAL(opendir)(translate(path, buf, sizeof buf));
}
/* ls -l asks for ACLs and security labels. */
ssize_t getxattr(const char *path, const char *name, void *value, size_t size) {
    ENSURE_REAL(); char buf[512];
    return REAL(getxattr)(translate(path, buf, sizeof buf), name, value, size);
}
ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size) {
    ENSURE_REAL(); char buf[512];
    return REAL(lgetxattr)(translate(path, buf, sizeof buf), name, value, size);
}
ssize_t listxattr(const char *path, char *list, size_t size) {
    ENSURE_REAL(); char buf[512];
    return REAL(listxattr)(translate(path, buf, sizeof buf), list, size);
}
ssize_t llistxattr(const char *path, char *list, size_t size) {
    ENSURE_REAL(); char buf[512];
    return REAL(llistxattr)(translate(path, buf, sizeof buf), list, size);
}
