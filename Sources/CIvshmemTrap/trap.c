/* libivshmem2: trapped MMIO windows (SIGSEGV + x86-64 MOV decoder), mmap helpers, thread-local
 * last error and small pure-C parts of the public API. */
#define _GNU_SOURCE
#include "ivshmem2_trap.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* ---- last error ---------------------------------------------------------------------------- */

static _Thread_local char last_error[512];

void ivs_set_error(const char *message) {
    if (!message) message = "";
    snprintf(last_error, sizeof last_error, "%s", message);
}

const char *ivshmem2_last_error(void) { return last_error; }

const char *ivshmem2_status_name(int status) {
    switch (status) {
    case IVSHMEM2_OK: return "IVSHMEM2_OK";
    case IVSHMEM2_EINVAL: return "IVSHMEM2_EINVAL";
    case IVSHMEM2_ENODEV: return "IVSHMEM2_ENODEV";
    case IVSHMEM2_EBUSY: return "IVSHMEM2_EBUSY";
    case IVSHMEM2_ECONNECT: return "IVSHMEM2_ECONNECT";
    case IVSHMEM2_ESYSTEM: return "IVSHMEM2_ESYSTEM";
    case IVSHMEM2_ETIMEDOUT: return "IVSHMEM2_ETIMEDOUT";
    case IVSHMEM2_ENOSPC: return "IVSHMEM2_ENOSPC";
    default: return "IVSHMEM2_UNKNOWN";
    }
}

void ivshmem2_server_options_init(ivshmem2_server_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->shm_size = 4u << 20;
    o->max_peers = 2;
    o->vectors = 1;
}

void ivshmem2_device_options_init(ivshmem2_device_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->profile = "spec";
    o->checking = 1;
}

int ivshmem2_format_finding(const ivshmem2_finding *f, char *buf, size_t len) {
    if (!f) return snprintf(buf, len, "(null)");
    char access[96] = "";
    if (f->space != IVSHMEM2_SPACE_NONE) {
        char space[16];
        if (f->space == IVSHMEM2_SPACE_CONFIG) snprintf(space, sizeof space, "config");
        else if (f->space == IVSHMEM2_SPACE_BAR) snprintf(space, sizeof space, "BAR%d", f->bar);
        else snprintf(space, sizeof space, "shmem");
        char value[24] = "";
        if (f->has_value) snprintf(value, sizeof value, " 0x%llx", (unsigned long long)f->value);
        snprintf(access, sizeof access, " (%s%u %s+0x%llx%s)", f->is_write ? "write" : "read", f->size * 8, space,
                 (unsigned long long)f->offset, value);
    }
    return snprintf(buf, len, "[%s%s] peer %u: %s%s", f->requirement,
                    f->kind == IVSHMEM2_FINDING_INEFFECTIVE ? ", ineffective"
                    : f->kind == IVSHMEM2_FINDING_ENVIRONMENT ? ", environment" : "",
                    f->peer, f->message, access);
}

/* ---- mmap helpers -------------------------------------------------------------------------- */

void *ivs_map_reserve(void *at, size_t length, int fixed_noreplace) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    if (fixed_noreplace) flags |= MAP_FIXED_NOREPLACE;
    void *p = mmap(at, length, PROT_NONE, flags, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (fixed_noreplace && p != at) { /* kernels before 4.17 treat the flag as a hint */
        munmap(p, length);
        errno = EEXIST;
        return NULL;
    }
    return p;
}

void *ivs_map_alias(void *source, size_t length, void *at) {
    /* mremap with old_size 0 on a MAP_SHARED mapping creates a new mapping of the same pages. */
    void *p = at ? mremap(source, 0, length, MREMAP_MAYMOVE | MREMAP_FIXED, at)
                 : mremap(source, 0, length, MREMAP_MAYMOVE);
    return p == MAP_FAILED ? NULL : p;
}

int ivs_protect(void *at, size_t length, int writable) {
    return mprotect(at, length, writable ? PROT_READ | PROT_WRITE : PROT_READ);
}

int ivs_unmap(void *at, size_t length) { return munmap(at, length); }

/* ---- window table -------------------------------------------------------------------------- */

#define MAX_WINDOWS 64

struct window {
    _Atomic uintptr_t start; /* 0: free slot; published last */
    _Atomic int in_flight;   /* handlers using this slot right now (see ivs_trap_unregister) */
    uintptr_t end;
    uint64_t phys;
    int kind;
    ivs_trap_access_fn fn;
    void *context;
    void *owner;
};

static struct window windows[MAX_WINDOWS];
static pthread_mutex_t windows_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous_action;
static int handler_installed;
static _Atomic uint64_t trap_count;

uint64_t ivshmem2_trap_count(void) { return atomic_load(&trap_count); }

#define ALT_STACK_SIZE (256 * 1024)
static _Thread_local void *thread_alt_stack;

int ivshmem2_trap_thread_init(void) {
    if (thread_alt_stack) return IVSHMEM2_OK;
    stack_t current;
    if (sigaltstack(NULL, &current) == 0 && !(current.ss_flags & SS_DISABLE) && current.ss_size >= ALT_STACK_SIZE) {
        thread_alt_stack = current.ss_sp; /* someone already gave this thread a big enough one */
        return IVSHMEM2_OK;
    }
    void *stack = mmap(NULL, ALT_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) {
        ivs_set_error("mmap of the alternate signal stack failed");
        return IVSHMEM2_ESYSTEM;
    }
    stack_t ss = {.ss_sp = stack, .ss_size = ALT_STACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(stack, ALT_STACK_SIZE);
        ivs_set_error("sigaltstack failed");
        return IVSHMEM2_ESYSTEM;
    }
    thread_alt_stack = stack;
    return IVSHMEM2_OK;
}

static void segv_handler(int sig, siginfo_t *info, void *ucontext);

static int install_handler_locked(void) {
    if (handler_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous_action) != 0) return -1;
    handler_installed = 1;
    return 0;
}

int ivs_trap_register(void *host, size_t length, uint64_t phys, int kind, ivs_trap_access_fn fn, void *context, void *owner) {
    pthread_mutex_lock(&windows_lock);
    if (install_handler_locked() != 0) {
        pthread_mutex_unlock(&windows_lock);
        ivs_set_error("sigaction(SIGSEGV) failed");
        return IVSHMEM2_ESYSTEM;
    }
    int slot = -1;
    for (int i = 0; i < MAX_WINDOWS; i++)
        if (atomic_load(&windows[i].start) == 0) { slot = i; break; }
    if (slot < 0) {
        pthread_mutex_unlock(&windows_lock);
        ivs_set_error("too many trapped windows (at most 64)");
        return IVSHMEM2_ENOSPC;
    }
    struct window *w = &windows[slot];
    w->end = (uintptr_t)host + length;
    w->phys = phys;
    w->kind = kind;
    w->fn = fn;
    w->context = context;
    w->owner = owner;
    atomic_store_explicit(&w->start, (uintptr_t)host, memory_order_release);
    pthread_mutex_unlock(&windows_lock);
    ivshmem2_trap_thread_init(); /* best effort: the handler also works on the normal stack */
    return IVSHMEM2_OK;
}

int ivs_trap_unregister(void *owner, void *host, size_t length) {
    int n = 0;
    pthread_mutex_lock(&windows_lock);
    for (int i = 0; i < MAX_WINDOWS; i++) {
        uintptr_t s = atomic_load(&windows[i].start);
        if (s == 0 || windows[i].owner != owner) continue;
        if (host && !(s >= (uintptr_t)host && s < (uintptr_t)host + (length ? length : 1))) continue;
        atomic_store(&windows[i].start, 0);
        /* Quiesce: a handler that found this slot before the store above may still be calling
         * its callback with its context. Wait until it is done, so that the caller can free
         * the context and a later registration can reuse the slot (both seq_cst: either the
         * handler sees start == 0 after announcing itself, or we see it in flight). The lock
         * stays held, so no registration takes the slot meanwhile. */
        while (atomic_load(&windows[i].in_flight) != 0) sched_yield();
        n++;
    }
    pthread_mutex_unlock(&windows_lock);
    return n;
}

/* ---- x86-64 decoder ------------------------------------------------------------------------ */

int ivs_decode(const uint8_t *p, ivs_insn *out) {
    ivs_insn in;
    memset(&in, 0, sizeof in);
    int i = 0, opsize16 = 0, addr32 = 0, rex = 0;
    for (;; i++) {
        uint8_t b = p[i];
        if (b == 0x66) opsize16 = 1;
        else if (b == 0x67) addr32 = 1;
        else if (b == 0x2E || b == 0x3E || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65) continue;
        else break;
        if (i > 8) return 0;
    }
    if ((p[i] & 0xF0) == 0x40) rex = p[i++];
    int w = (rex & 8) != 0, r = (rex & 4) != 0;
    int osize = w ? 8 : (opsize16 ? 2 : 4);
    uint8_t op = p[i++];
    int needs_reg0 = 0, imm_size = 0;
    if (op >= 0xA0 && op <= 0xA3) {
        /* MOV AL/AX/EAX/RAX <-> moffs: an absolute address (8 bytes, 4 with 67h), what compilers
         * emit for a constant pointer such as (volatile uint32_t *)0xC0000004. */
        in.size = (op & 1) ? osize : 1;
        in.is_store = op >= 0xA2;
        in.dest_size = in.size;
        in.reg = 0;
        in.has_rex = rex != 0;
        in.length = i + (addr32 ? 4 : 8);
        *out = in;
        return in.length;
    }
    switch (op) {
    case 0x88: in.size = 1; in.is_store = 1; break;
    case 0x89: in.size = osize; in.is_store = 1; break;
    case 0x8A: in.size = 1; in.dest_size = 1; break;
    case 0x8B: in.size = osize; in.dest_size = osize; break;
    case 0xC6: in.size = 1; in.is_store = 1; in.has_imm = 1; imm_size = 1; needs_reg0 = 1; break;
    case 0xC7: in.size = osize; in.is_store = 1; in.has_imm = 1; imm_size = osize == 2 ? 2 : 4; needs_reg0 = 1; break;
    case 0x63:
        if (!w) return 0; /* MOVSXD without REX.W is discouraged and rare */
        in.size = 4; in.dest_size = 8; in.extend = 2; break;
    case 0x0F: {
        uint8_t op2 = p[i++];
        switch (op2) {
        case 0xB6: in.size = 1; in.extend = 1; break;
        case 0xB7: in.size = 2; in.extend = 1; break;
        case 0xBE: in.size = 1; in.extend = 2; break;
        case 0xBF: in.size = 2; in.extend = 2; break;
        default: return 0;
        }
        in.dest_size = osize;
        break;
    }
    default: return 0;
    }
    uint8_t modrm = p[i++];
    int mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
    if (mod == 3) return 0; /* register operand: cannot be the faulting access */
    if (needs_reg0 && reg != 0) return 0;
    if (rm == 4) {
        uint8_t sib = p[i++];
        if (mod == 0 && (sib & 7) == 5) i += 4;
    } else if (mod == 0 && rm == 5) {
        i += 4; /* RIP-relative */
    }
    if (mod == 1) i += 1;
    else if (mod == 2) i += 4;
    if (in.has_imm) {
        uint64_t v = 0;
        for (int k = 0; k < imm_size; k++) v |= (uint64_t)p[i + k] << (8 * k);
        if (imm_size == 4 && in.size == 8) v = (uint64_t)(int64_t)(int32_t)(uint32_t)v; /* sign-extended imm32 */
        in.imm = v;
        i += imm_size;
    }
    in.reg = reg | (r ? 8 : 0);
    in.has_rex = rex != 0;
    in.length = i;
    *out = in;
    return i;
}

/* ---- the fault handler --------------------------------------------------------------------- */

static const int greg_index[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                   REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static uint64_t read_reg(greg_t *g, int reg, int size, int has_rex) {
    if (size == 1 && !has_rex && reg >= 4 && reg < 8) return ((uint64_t)g[greg_index[reg - 4]] >> 8) & 0xFF; /* AH..BH */
    uint64_t v = (uint64_t)g[greg_index[reg]];
    return size == 8 ? v : v & ((1ull << (8 * size)) - 1);
}

static void write_reg(greg_t *g, int reg, int size, int has_rex, uint64_t v) {
    if (size == 1 && !has_rex && reg >= 4 && reg < 8) {
        greg_t *t = &g[greg_index[reg - 4]];
        *t = (greg_t)(((uint64_t)*t & ~0xFF00ull) | ((v & 0xFF) << 8));
        return;
    }
    greg_t *t = &g[greg_index[reg]];
    switch (size) {
    case 8: *t = (greg_t)v; break;
    case 4: *t = (greg_t)(v & 0xFFFFFFFFull); break; /* 32-bit writes zero-extend */
    case 2: *t = (greg_t)(((uint64_t)*t & ~0xFFFFull) | (v & 0xFFFF)); break;
    default: *t = (greg_t)(((uint64_t)*t & ~0xFFull) | (v & 0xFF)); break;
    }
}

static void say(const char *s) {
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void pass_on(int sig, siginfo_t *info, void *uc) {
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction) { previous_action.sa_sigaction(sig, info, uc); return; }
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
        previous_action.sa_handler(sig);
        return;
    }
    /* Default action: restore it; returning re-executes the faulting instruction, which then
     * terminates the process with SIGSEGV as it would have without us. */
    signal(sig, SIG_DFL);
}

static void segv_handler(int sig, siginfo_t *info, void *ucontext) {
    int saved_errno = errno;
    ucontext_t *uc = ucontext;
    uintptr_t addr = (uintptr_t)info->si_addr;
    struct window *w = NULL;
    uintptr_t start = 0;
    for (int i = 0; i < MAX_WINDOWS; i++) {
        uintptr_t s = atomic_load_explicit(&windows[i].start, memory_order_acquire);
        if (!s || addr < s || addr >= windows[i].end) continue;
        /* Announce the use, then check the slot still holds the same window: an unregister
         * in between waits for us, or we see it and leave the slot alone. */
        atomic_fetch_add(&windows[i].in_flight, 1);
        if (atomic_load(&windows[i].start) == s) { w = &windows[i]; start = s; break; }
        atomic_fetch_sub(&windows[i].in_flight, 1);
    }
    if (!w) { pass_on(sig, info, ucontext); errno = saved_errno; return; }
    greg_t *g = uc->uc_mcontext.gregs;
    const uint8_t *rip = (const uint8_t *)g[REG_RIP];
    ivs_insn in;
    if (!ivs_decode(rip, &in)) {
        /* Stop here, cleanly: passing the fault on would end in a crash report of the
         * runtime (a long backtrace) that hides what happened. */
        char name[48], msg[600];
        ivs_mnemonic(rip, name, sizeof name);
        snprintf(msg, sizeof msg,
                 "libivshmem2: unsupported instruction '%s' (bytes %02x %02x %02x %02x %02x %02x) at code address %p,\n"
                 "  accessing %p = physical 0x%llx (offset 0x%lx of the trapped %s window at 0x%llx).\n"
                 "  Only plain loads and stores (mov, movzx, movsx) are emulated in trapped windows.\n"
                 "  Fix: make this access through the accessors: ivshmem2_mmio_read() then ivshmem2_mmio_write()\n"
                 "  at physical 0x%llx for a read-modify-write, a loop of volatile stores instead of memcpy/memset.\n"
                 "  Stopping the process (exit status %d).\n",
                 name, rip[0], rip[1], rip[2], rip[3], rip[4], rip[5], (void *)rip, (void *)addr,
                 (unsigned long long)(w->phys + (addr - start)), (unsigned long)(addr - start),
                 w->kind == IVS_WINDOW_READONLY ? "read-only shared-memory" : "MMIO", (unsigned long long)w->phys,
                 (unsigned long long)(w->phys + (addr - start)), IVSHMEM2_EXIT_UNSUPPORTED_ACCESS);
        say(msg);
        _exit(IVSHMEM2_EXIT_UNSUPPORTED_ACCESS);
    }
    if (w->kind == IVS_WINDOW_READONLY && !in.is_store) {
        atomic_fetch_sub(&w->in_flight, 1);
        pass_on(sig, info, ucontext);
        errno = saved_errno;
        return;
    }
    uint64_t phys = w->phys + (addr - start);
    if (in.is_store) {
        uint64_t v = in.has_imm ? in.imm : read_reg(g, in.reg, in.size, in.has_rex);
        if (in.size < 8) v &= (1ull << (8 * in.size)) - 1;
        w->fn(w->context, phys, (unsigned)in.size, 1, &v);
    } else {
        uint64_t v = 0;
        w->fn(w->context, phys, (unsigned)in.size, 0, &v);
        if (in.size < 8) v &= (1ull << (8 * in.size)) - 1;
        if (in.extend == 2 && in.size < 8) {
            int bits = 8 * in.size;
            v = (uint64_t)(((int64_t)(v << (64 - bits))) >> (64 - bits));
        }
        write_reg(g, in.reg, in.dest_size, in.has_rex, v);
    }
    atomic_fetch_sub(&w->in_flight, 1);
    g[REG_RIP] += in.length;
    atomic_fetch_add(&trap_count, 1);
    errno = saved_errno;
}
