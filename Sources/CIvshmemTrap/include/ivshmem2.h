/*
 * ivshmem2.h — run guest driver code against the ivshmem v2 device model.
 *
 * libivshmem2 puts emulated ivshmem v2 PCI functions (vendor 110Ah, device 4106h) on a virtual
 * PCI platform inside your process. Each function is attached to an ivshmem v2 server (our
 * `ivshmem2 server`, the reference ivshmem2-server, or a server this library starts on a
 * thread), so several driver processes form one link. Your driver reaches the device the way it
 * would on hardware:
 *
 *   - PCI configuration space by bus/device/function (ivshmem2_config_read/_write), through the
 *     legacy 0xCF8/0xCFC ports (ivshmem2_io_read/_write on those ports) or through the ECAM
 *     window (ivshmem2_mmio_read/_write at ivshmem2_platform_ecam_base() + (bus << 20 |
 *     device << 15 | function << 12 | offset));
 *   - the BARs it programmed, by physical address (ivshmem2_mmio_*, ivshmem2_io_*);
 *   - plain pointers: ivshmem2_mmio_map() gives a host range in which ordinary loads and stores
 *     are trapped and forwarded to the model (see "Trapped MMIO windows" below), and
 *     ivshmem2_shm_map() gives a direct pointer to the shared memory with read-only sections
 *     mapped read-only;
 *   - interrupts: a callback per MSI-X message (address, data) or INTx edge, or a wait with a
 *     timeout;
 *   - findings: with checking on, every spec violation or ineffective access the driver makes
 *     (spec/ivshmem2.md §0) is recorded with its requirement ID, a message and the access.
 *
 * Conventions for every function below
 *   - Functions returning `int` return IVSHMEM2_OK (0) on success or a negative
 *     `ivshmem2_status` on failure; then ivshmem2_last_error() describes the failure. Nothing
 *     in the library aborts the process or calls exit(); invalid arguments are errors.
 *   - Out-parameters are written only on success.
 *   - Unless a function says otherwise it is thread-safe: any thread may call it at any time,
 *     concurrently with others, on the same or different objects — except the destroy/detach/
 *     stop/unmap functions, which must not race with other calls on the object they free.
 *   - Register semantics (what a value read or written means, which accesses are findings) are
 *     those of spec/ivshmem2.md and the device's profile.
 *
 * Link with:  cc $(pkg-config --cflags --libs ivshmem2) driver.c
 */
#ifndef IVSHMEM2_H
#define IVSHMEM2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IVSHMEM2_API_VERSION 1

/* ------------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef enum ivshmem2_status {
    IVSHMEM2_OK = 0,
    IVSHMEM2_EINVAL = -1,    /* an argument is invalid (NULL handle, size not 1/2/4/8, bad BDF, ...) */
    IVSHMEM2_ENODEV = -2,    /* no device there / the address does not decode to what was asked */
    IVSHMEM2_EBUSY = -3,     /* the PCI slot is taken, or the requested host range is in use */
    IVSHMEM2_ECONNECT = -4,  /* attaching to the server failed (connect, handshake, configuration) */
    IVSHMEM2_ESYSTEM = -5,   /* a system call failed (mmap, mprotect, sigaction, ...) */
    IVSHMEM2_ETIMEDOUT = -6, /* a wait ran out of time; not an error condition of the device */
    IVSHMEM2_ENOSPC = -7,    /* an index is out of range or a fixed-size table is full */
} ivshmem2_status;

/* The message of the last failing call made by the calling thread ("" if none). The string is
 * thread-local, stays valid until the next failing call on the same thread, and is not cleared
 * by successful calls. Thread-safe. */
const char *ivshmem2_last_error(void);

/* A static name for a status code ("IVSHMEM2_OK", "IVSHMEM2_EINVAL", ...). Thread-safe. */
const char *ivshmem2_status_name(int status);

/* ------------------------------------------------------------------------------------------ */
/* Platform                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct ivshmem2_platform ivshmem2_platform;
typedef struct ivshmem2_device ivshmem2_device;
typedef struct ivshmem2_server ivshmem2_server;

#define IVSHMEM2_DEFAULT_ECAM_BASE 0xE0000000ull
#define IVSHMEM2_ECAM_SIZE (256ull << 20)

/* Creates an empty virtual PCI platform (one "guest"): a bus with no devices, an ECAM window of
 * 256 MiB at `ecam_base` (0: IVSHMEM2_DEFAULT_ECAM_BASE) and an interrupt controller.
 * Errors: IVSHMEM2_EINVAL (out is NULL). */
int ivshmem2_platform_create(uint64_t ecam_base, ivshmem2_platform **out);

/* Detaches every device still on the platform (as ivshmem2_device_detach), unmaps every window
 * made by ivshmem2_mmio_map/ivshmem2_shm_map and frees the platform. NULL is ignored. Must not be
 * called from an interrupt or finding callback, nor while other threads use the platform, its
 * devices or its windows. */
void ivshmem2_platform_destroy(ivshmem2_platform *platform);

/* The platform's ECAM base (0 if platform is NULL). */
uint64_t ivshmem2_platform_ecam_base(const ivshmem2_platform *platform);

/* ------------------------------------------------------------------------------------------ */
/* Embedded server                                                                             */
/* ------------------------------------------------------------------------------------------ */

typedef struct ivshmem2_server_options {
    const char *socket_path;      /* NULL: a fresh socket in a private /tmp directory */
    uint64_t shm_size;            /* total shared memory in bytes, a page multiple; 0: 4 MiB */
    uint64_t output_section_size; /* per-peer output section, a page multiple; may be 0 */
    uint32_t max_peers;           /* 2..65536; 0: 2 */
    uint32_t vectors;             /* interrupt vectors per peer, 1..1024; 0: 1 */
    uint32_t protocol;            /* 16-bit protocol number advertised in the class code */
    int verbose;                  /* non-zero: the server logs to standard error */
} ivshmem2_server_options;

/* Fills `options` with the defaults above. */
void ivshmem2_server_options_init(ivshmem2_server_options *options);

/* Starts our ivshmem v2 server (the same code as `ivshmem2 server`) on a thread of this process.
 * Devices of this or any other process attach to it through ivshmem2_server_socket_path().
 * Errors: IVSHMEM2_EINVAL (bad option: the message names it), IVSHMEM2_ESYSTEM (the socket or
 * the shared memory could not be created). */
int ivshmem2_server_start(const ivshmem2_server_options *options, ivshmem2_server **out);

/* The server's socket path; valid until ivshmem2_server_stop(). */
const char *ivshmem2_server_socket_path(const ivshmem2_server *server);

/* Stops the server (every attached peer sees its link go down), removes its socket (and the
 * private directory, if the library chose the path) and frees it. NULL is ignored. */
void ivshmem2_server_stop(ivshmem2_server *server);

/* ------------------------------------------------------------------------------------------ */
/* Devices                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct ivshmem2_device_options {
    const char *profile; /* "spec" (NULL means "spec"), "jailhouse" or "qemu-rfc" */
    int checking;        /* 1 (default): record findings; 0: record nothing */
    int intx_pin;        /* 0 (default): MSI-X; 1..4: INTx on INTA#..INTD# (one vector) */
    int io_registers;    /* 1: BAR0 is a 256-byte I/O BAR ("spec" profile only); 0: memory */
    uint64_t base_address; /* profiles without BAR2 ("jailhouse"): where the shared memory appears
                              (the Base Address field); 0: the default 0x100000000. Added in 1.1:
                              fill the struct with ivshmem2_device_options_init() first. */
} ivshmem2_device_options;

/* Fills `options` with the defaults: profile "spec", checking on, MSI-X, memory BAR0. */
void ivshmem2_device_options_init(ivshmem2_device_options *options);

/* Connects to the server at `socket_path`, builds the ivshmem v2 function the server describes
 * (peer ID, Maximum Peers, vectors, section sizes, protocol) with `options` (NULL: defaults) and
 * plugs it into `platform` at bus:device.function. The function comes up as after reset: BARs
 * unprogrammed, decoding and bus mastering off, MSI-X off — the driver does the rest.
 * The device's link runs an event-loop thread of its own (see Interrupts).
 * Errors: IVSHMEM2_EINVAL (bad BDF or profile), IVSHMEM2_EBUSY (slot taken),
 * IVSHMEM2_ECONNECT (no server, handshake refused or invalid). */
int ivshmem2_device_attach(ivshmem2_platform *platform, uint8_t bus, uint8_t device, uint8_t function,
                           const char *socket_path, const ivshmem2_device_options *options,
                           ivshmem2_device **out);

/* Unplugs the device, closes its link (the server announces the departure to the other peers)
 * and frees it. Joins the link's event-loop thread, so it must not be called from an interrupt
 * or finding callback. NULL is ignored. */
void ivshmem2_device_detach(ivshmem2_device *device);

typedef struct ivshmem2_device_info {
    uint8_t bus, device, function;
    uint32_t id;                  /* this peer's ID (what the ID register reads) */
    uint32_t max_peers;           /* N */
    uint32_t vectors;             /* V */
    uint32_t protocol;
    uint64_t shm_size;            /* ST + RW + N*OUT */
    uint64_t state_table_size;    /* ST */
    uint64_t rw_section_size;     /* RW */
    uint64_t output_section_size; /* OUT */
    uint64_t base_address;        /* profiles without BAR2 ("jailhouse"): where the shared memory is */
    int shm_in_bar2;              /* 1: the shared memory is BAR2/3; 0: at base_address */
} ivshmem2_device_info;

/* What the server told the device, for tests and for checking what the driver discovered.
 * A real driver reads the same facts from config space and BAR0. Errors: IVSHMEM2_EINVAL. */
int ivshmem2_device_get_info(const ivshmem2_device *device, ivshmem2_device_info *out);

/* Waits until the device's link knows `count` active peers (its own ID included once the server
 * has sent its eventfds): the emulation's equivalent of "the hypervisor has set up the link".
 * Use it before ringing another peer's doorbell so that the doorbell is not an ineffective
 * access (REG-DB-5). Errors: IVSHMEM2_ETIMEDOUT, IVSHMEM2_EINVAL. timeout_ms < 0 waits forever. */
int ivshmem2_device_wait_peers(ivshmem2_device *device, uint32_t count, int timeout_ms);

/* 1 while the link to the server is up, 0 after it went down or for NULL. */
int ivshmem2_device_link_up(const ivshmem2_device *device);

/* Device reset (DEV-RST-*), as a hypervisor's function-level reset would do. */
int ivshmem2_device_reset(ivshmem2_device *device);

/* ------------------------------------------------------------------------------------------ */
/* Configuration space, MMIO and port I/O                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Config read/write of `size` (1, 2, 4) bytes at `offset` of bus:device.function. An absent
 * function reads all-ones (master abort) and ignores writes; misaligned accesses or accesses
 * beyond 100h are CFG-ACC-2 violations (read 0). Errors: IVSHMEM2_EINVAL (size not 1/2/4, bad
 * BDF, offset beyond 4095). */
int ivshmem2_config_read(ivshmem2_platform *platform, uint8_t bus, uint8_t device, uint8_t function,
                         uint16_t offset, unsigned size, uint32_t *value);
int ivshmem2_config_write(ivshmem2_platform *platform, uint8_t bus, uint8_t device, uint8_t function,
                          uint16_t offset, unsigned size, uint32_t value);

/* Like ivshmem2_mmio_read, but tells an address nobody decodes from one that reads all-ones:
 * returns IVSHMEM2_OK when the ECAM window, a BAR or a Base Address range claims `address`, and
 * IVSHMEM2_ENODEV (with *value all-ones, as on the bus) when nothing does — e.g. a BAR read
 * while Memory Space is off. Errors: IVSHMEM2_EINVAL (size, NULL). */
int ivshmem2_mmio_read_status(ivshmem2_platform *platform, uint64_t address, unsigned size, uint64_t *value);

/* What firmware does before a driver runs, for drivers that do not program BARs themselves
 * (what `setup=firmware` does in scripts): sizes every BAR of bus:device.function, assigns
 * addresses (32-bit memory from 0xC0000000, 64-bit memory from 0x8000000000, I/O from 0xC000,
 * each naturally aligned; one allocator per platform, so several devices do not overlap) and
 * turns on Memory Space, I/O Space (when an I/O BAR exists) and Bus Master. The assigned bases
 * are stored in bars[0..5] (0 for an unimplemented BAR and for the upper half of a 64-bit BAR)
 * when `bars` is not NULL. Errors: IVSHMEM2_EINVAL (bad BDF), IVSHMEM2_ENODEV (no ivshmem v2
 * function there). */
int ivshmem2_firmware_assign(ivshmem2_platform *platform, uint8_t bus, uint8_t device, uint8_t function, uint64_t bars[6]);

/* One access seen by an access hook. */
enum { IVSHMEM2_ACCESS_MMIO_WINDOW = 1, IVSHMEM2_ACCESS_SHM_VIEW = 2 };
typedef struct ivshmem2_access {
    int source;         /* IVSHMEM2_ACCESS_MMIO_WINDOW (a trapped ivshmem2_mmio_map window) or
                           IVSHMEM2_ACCESS_SHM_VIEW (a trapped store into a read-only section of an
                           ivshmem2_shm_map view) */
    uint64_t address;   /* physical address */
    unsigned size;      /* bytes: 1, 2, 4, 8 */
    int is_write;
    uint64_t value;     /* the value written, or the value the load returned */
} ivshmem2_access;
typedef void (*ivshmem2_access_fn)(void *context, const ivshmem2_access *access);

/* Sets (NULL: clears) a hook called after every access the trap handler emulates for this
 * platform's windows: every load and store in an ivshmem2_mmio_map window, and the trapped
 * stores of an ivshmem2_shm_map view (loads and permitted stores there go straight to memory
 * and are not seen). THREADING: it runs on the faulting thread inside the SIGSEGV handler: do
 * not touch a window from it, nor take a lock the driver holds around its accesses. Typical use:
 * a trace of what the driver did. Errors: IVSHMEM2_EINVAL. */
int ivshmem2_set_access_hook(ivshmem2_platform *platform, ivshmem2_access_fn fn, void *context);

/* Memory read/write of `size` (1, 2, 4, 8) bytes at physical address `address`: the ECAM window,
 * a programmed memory BAR (while Memory Space is on), or the Base Address range of a profile
 * without BAR2. Addresses nobody decodes read all-ones and drop writes, as on a real bus.
 * Errors: IVSHMEM2_EINVAL (size). */
int ivshmem2_mmio_read(ivshmem2_platform *platform, uint64_t address, unsigned size, uint64_t *value);
int ivshmem2_mmio_write(ivshmem2_platform *platform, uint64_t address, unsigned size, uint64_t value);

/* Port read/write of `size` (1, 2, 4) bytes: 0xCF8 (config address, 4-byte accesses only),
 * 0xCFC..0xCFF (config data for the function 0xCF8 selects, when its bit 31 is set), and I/O
 * BARs (while I/O Space is on). Unclaimed ports read all-ones. Errors: IVSHMEM2_EINVAL (size). */
int ivshmem2_io_read(ivshmem2_platform *platform, uint16_t port, unsigned size, uint32_t *value);
int ivshmem2_io_write(ivshmem2_platform *platform, uint16_t port, unsigned size, uint32_t value);

/* ------------------------------------------------------------------------------------------ */
/* Trapped MMIO windows and the shared-memory pointer                                          */
/* ------------------------------------------------------------------------------------------ */

/* Flags for ivshmem2_mmio_map / ivshmem2_shm_map. */
/* The exit status of a process stopped by the trap handler on an instruction it cannot emulate
 * in a window (a message on standard error names the instruction, address and window). */
#define IVSHMEM2_EXIT_UNSUPPORTED_ACCESS 70

#define IVSHMEM2_MAP_AT_PHYS 0x1 /* map at host address == physical address (MAP_FIXED_NOREPLACE):
                                    bare-metal drivers use the programmed address as a pointer */

/* Maps the physical range [phys, phys + length) as a host range in which plain loads and stores
 * are trapped (the pages are PROT_NONE; a SIGSEGV handler emulates the access) and forwarded to
 * the platform exactly like ivshmem2_mmio_read/_write at the same physical address. Typical use:
 * BAR0 (registers) after programming it, BAR1 (MSI-X table), or the ECAM window. The window
 * forwards by physical address at access time, so it follows the platform's decode (unclaimed
 * addresses read all-ones).
 *
 * `length` > 0. An unaligned range (a 32-byte MSI-X table, say) is served by mapping the pages
 * that enclose it: *out receives the host address of `phys` itself, inside that mapping, and
 * the rest of those pages is trapped too. With IVSHMEM2_MAP_AT_PHYS the host address equals
 * `phys`; otherwise the kernel chooses. ivshmem2_unmap takes *out (or any address inside).
 *
 * Supported (x86-64 only): MOV loads and stores of 1, 2, 4 and 8 bytes between a general-purpose
 * register and memory (opcodes 88h, 89h, 8Ah, 8Bh), MOV stores of an immediate (C6h /0, C7h /0),
 * MOVZX and MOVSX loads (0F B6h/B7h/BEh/BFh), MOVSXD (63h with REX.W), and MOV between AL/AX/EAX/RAX and an absolute
 * address (A0h-A3h, what compilers emit for a constant pointer); with any ModRM/SIB
 * addressing form (including RIP-relative and disp8/disp32), REX prefixes (W/R/X/B, and
 * SPL/BPL/SIL/DIL vs AH/CH/DH/BH), the 66h operand-size prefix, the 67h address-size prefix and
 * segment prefixes. This covers `volatile` scalar accesses as GCC and Clang emit them at -O0..-O2.
 * Not supported: read-modify-write instructions on window memory (ADD/OR/AND/INC/XCHG/CMPXCHG/
 * LOCK-prefixed, or CMP/TEST with a memory operand), string instructions (MOVS/STOS, so no memcpy
 * or memset into a window), SSE/AVX loads and stores, x87, PUSH/POP with memory operands, and
 * accesses that cross the end of a window. An unsupported instruction that faults in a window
 * stops the process with exit status IVSHMEM2_EXIT_UNSUPPORTED_ACCESS after a message on
 * standard error naming the instruction's mnemonic, its address, the window and the fix.
 *
 * The handler is installed (sigaction(SIGSEGV, SA_SIGINFO | SA_ONSTACK)) on the first map; faults
 * outside every window are passed to the handler that was installed before (or the default
 * action). The calling thread gets an alternate signal stack; other threads that touch windows
 * should call ivshmem2_trap_thread_init() first (otherwise the handler runs on their normal
 * stack, which is also fine unless that stack is nearly full). At most 64 windows exist at once
 * across all platforms. Accesses through a window are thread-safe.
 *
 * What runs in signal context: the emulated access itself. On a fault in a window, the handler
 * (on the faulting thread, inside the SIGSEGV handler) decodes the instruction and calls into
 * the device model, which takes its locks and may allocate; when the access rings a doorbell or
 * writes State, the eventfd writes happen there too. This is sound because the fault is
 * synchronous: the thread was executing the driver's own load or store, never library code.
 * So: do not touch a window from a signal handler of your own, nor while holding a lock that an
 * interrupt callback (ivshmem2_on_interrupt; it runs on the device's event thread, not in
 * signal context) also takes, or the two can deadlock. Nothing else in this library runs in
 * signal context.
 * Errors: IVSHMEM2_EINVAL (alignment, length), IVSHMEM2_EBUSY (the host range is in use),
 * IVSHMEM2_ENOSPC (too many windows), IVSHMEM2_ESYSTEM. */
int ivshmem2_mmio_map(ivshmem2_platform *platform, uint64_t phys, uint64_t length, int flags, void **out);

/* Maps the shared memory that the physical range [phys, phys + length) shows — a programmed
 * BAR2 (spec, qemu-rfc; Memory Space on) or the Base Address range (jailhouse) — as ordinary
 * host memory shared with the other peers: loads and stores go straight to the shared memory
 * at full speed. Sections this peer may only read (the State Table, other peers' output
 * sections) are mapped PROT_READ; a plain store into them (MOV forms as for ivshmem2_mmio_map) is
 * trapped, dropped and recorded as a finding (SHM-ST-1, SHM-OUT-2), exactly as the model does
 * for an MMIO write. Other writes into read-only sections (memcpy, SSE, atomics) fault.
 *
 * `phys` must be page-aligned and decode to shared memory; `length` 0 means "to the end of the
 * shared memory", otherwise it must lie inside it (BAR2's rounding tail is not mapped).
 * With IVSHMEM2_MAP_AT_PHYS the view is placed at host address `phys` (MAP_FIXED_NOREPLACE).
 * Errors: IVSHMEM2_EINVAL, IVSHMEM2_ENODEV (phys does not decode to shared memory now),
 * IVSHMEM2_EBUSY (host range in use), IVSHMEM2_ESYSTEM, IVSHMEM2_ENOSPC (window table full). */
int ivshmem2_shm_map(ivshmem2_platform *platform, uint64_t phys, uint64_t length, int flags, void **out);

/* Unmaps a window or view returned by ivshmem2_mmio_map / ivshmem2_shm_map. Another thread may
 * still be faulting in the window: the window is first taken out of the handler's table, then
 * this call waits until every access already being emulated in it has finished, and only then
 * unmaps; an access that starts after that faults as on any unmapped address.
 * Errors: IVSHMEM2_ENODEV (not a mapping of this platform). */
int ivshmem2_unmap(ivshmem2_platform *platform, void *host);

/* Gives the calling thread an alternate signal stack for the trap handler (idempotent). */
int ivshmem2_trap_thread_init(void);

/* Number of accesses emulated by the trap handler so far (all windows, all threads). */
uint64_t ivshmem2_trap_count(void);

/* ------------------------------------------------------------------------------------------ */
/* Interrupts                                                                                  */
/* ------------------------------------------------------------------------------------------ */

enum { IVSHMEM2_IRQ_MSIX = 1, IVSHMEM2_IRQ_INTX = 2 };

typedef struct ivshmem2_interrupt {
    uint64_t sequence;  /* position in the platform's interrupt log, from 0 */
    uint64_t time_ns;   /* CLOCK_MONOTONIC */
    uint8_t bus, device, function; /* the source */
    uint8_t kind;       /* IVSHMEM2_IRQ_MSIX or IVSHMEM2_IRQ_INTX */
    uint8_t pin;        /* INTx: 1..4 (INTA#..INTD#) */
    uint32_t vector;    /* MSI-X: table entry */
    uint64_t address;   /* MSI-X: message address */
    uint32_t data;      /* MSI-X: message data */
} ivshmem2_interrupt;

typedef void (*ivshmem2_interrupt_fn)(void *context, const ivshmem2_interrupt *interrupt);

/* Sets (or, with NULL, clears) the platform's interrupt callback, called once for every MSI-X
 * message and INTx edge any of its devices sends. THREADING: the callback runs on the thread that
 * caused the delivery — normally the event-loop thread of the receiving device's link (a doorbell
 * or state change from another peer, a departure), or the driver's own thread when it rings its
 * own ID. It may call any function of this header except the destroy/detach/stop/unmap ones; it
 * should return quickly. Interrupts are also logged for ivshmem2_wait_interrupt, callback or not. */
int ivshmem2_set_interrupt_handler(ivshmem2_platform *platform, ivshmem2_interrupt_fn fn, void *context);

/* Waits up to `timeout_ms` (< 0: forever, 0: poll) for an interrupt with sequence >= *cursor,
 * stores it in *out and sets *cursor to its sequence + 1, so that a loop starting at cursor 0
 * sees every interrupt exactly once. Several threads may wait; each uses its own cursor.
 * Errors: IVSHMEM2_ETIMEDOUT, IVSHMEM2_EINVAL. */
int ivshmem2_wait_interrupt(ivshmem2_platform *platform, uint64_t *cursor, int timeout_ms, ivshmem2_interrupt *out);

/* Number of interrupts logged so far (the next interrupt's sequence). */
uint64_t ivshmem2_interrupt_count(ivshmem2_platform *platform);

/* ------------------------------------------------------------------------------------------ */
/* Findings (driver checking)                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* VIOLATION and INEFFECTIVE are the driver's doing (§0); ENVIRONMENT is something a peer or the
 * server did that the device survived (a full eventfd, shared memory that shrank). */
enum { IVSHMEM2_FINDING_VIOLATION = 1, IVSHMEM2_FINDING_INEFFECTIVE = 2, IVSHMEM2_FINDING_ENVIRONMENT = 3 };
enum { IVSHMEM2_SPACE_NONE = 0, IVSHMEM2_SPACE_CONFIG = 1, IVSHMEM2_SPACE_BAR = 2, IVSHMEM2_SPACE_SHM = 3 };

typedef struct ivshmem2_finding {
    char requirement[32]; /* the requirement ID in spec/ivshmem2.md, e.g. "REG-ACC-3" */
    char message[320];    /* what happened (truncated if longer) */
    int kind;             /* IVSHMEM2_FINDING_VIOLATION, _INEFFECTIVE or _ENVIRONMENT */
    uint32_t peer;        /* the ID of the device that recorded it */
    int space;            /* the access's space; IVSHMEM2_SPACE_NONE: no single access caused it */
    int bar;              /* IVSHMEM2_SPACE_BAR: which BAR */
    uint64_t offset;      /* offset within the space (config offset, BAR offset, shm offset) */
    unsigned size;        /* access size in bytes */
    int is_write;
    int has_value;        /* 1 when `value` holds the written value */
    uint64_t value;
} ivshmem2_finding;

/* Number of findings the device recorded (in order). 0 for NULL. */
size_t ivshmem2_finding_count(ivshmem2_device *device);

/* Copies finding `index` (0-based). Errors: IVSHMEM2_ENOSPC (index >= count), IVSHMEM2_EINVAL. */
int ivshmem2_get_finding(ivshmem2_device *device, size_t index, ivshmem2_finding *out);

/* Forgets the findings recorded so far. */
int ivshmem2_clear_findings(ivshmem2_device *device);

typedef void (*ivshmem2_finding_fn)(void *context, const ivshmem2_finding *finding);

/* Sets (NULL: clears) a callback called for each finding as it is recorded, on the thread whose
 * access caused it (the driver's thread; for CFG-CMD-9 "interrupt lost" the link's event-loop
 * thread). The same rules as for interrupt callbacks apply. */
int ivshmem2_set_finding_handler(ivshmem2_device *device, ivshmem2_finding_fn fn, void *context);

/* Formats a finding as one line ("[REG-ACC-3] peer 0: ... (write32 BAR0+0x2 0x1)") into buf
 * (always NUL-terminated when len > 0). Returns the length snprintf would return. */
int ivshmem2_format_finding(const ivshmem2_finding *finding, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* IVSHMEM2_H */
