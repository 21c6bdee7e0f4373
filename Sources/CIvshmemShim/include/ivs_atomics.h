// Lock-free building blocks for the device model's hot path (IvshmemModel): atomic words for
// register images, a published pointer, and a sequence-locked table of decode windows.
// Header-only (static inline) so that the Swift optimizer inlines them into the access path.
#ifndef IVS_ATOMICS_H
#define IVS_ATOMICS_H
#include <stdint.h>

static inline uint32_t ivs_load32_relaxed(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED); }
/// Compare-and-swap of a 32-bit word: 1 and the word is `desired`, or 0 and *expected holds
/// the current value.
static inline int ivs_cas32(void *p, uint32_t *expected, uint32_t desired) {
    return __atomic_compare_exchange_n((uint32_t *)p, expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline uint64_t ivs_load64_acquire(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }
static inline void ivs_store64_release(void *p, uint64_t v) { __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); }
static inline uint64_t ivs_fetch_add64(void *p, uint64_t v) { return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_ACQ_REL); }
static inline void *ivs_load_ptr_acquire(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ivs_store_ptr_release(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/// The address ranges one PCI function decodes, readable without a lock by any thread while one
/// writer (holding the device's lock) republishes them: a sequence lock. Readers retry while
/// the sequence is odd or changed under them; every field is accessed atomically, so the
/// reader's copy is never torn and ThreadSanitizer sees no race.
#define IVS_MAX_WINDOWS 8
typedef struct {
    uint64_t base;
    uint64_t size;
    int32_t bar;    // BAR index, -1 for a Base Address range outside the BARs
    int32_t is_io;  // 1: I/O space, 0: memory space
} ivs_window;

typedef struct {
    uint32_t sequence;
    uint32_t count;
    ivs_window windows[IVS_MAX_WINDOWS];
} ivs_window_table;

static inline void ivs_windows_publish(ivs_window_table *t, const ivs_window *src, uint32_t count) {
    if (count > IVS_MAX_WINDOWS) count = IVS_MAX_WINDOWS;
    uint32_t s = __atomic_load_n(&t->sequence, __ATOMIC_RELAXED);
    __atomic_store_n(&t->sequence, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (uint32_t i = 0; i < count; i++) {
        __atomic_store_n(&t->windows[i].base, src[i].base, __ATOMIC_RELAXED);
        __atomic_store_n(&t->windows[i].size, src[i].size, __ATOMIC_RELAXED);
        __atomic_store_n(&t->windows[i].bar, src[i].bar, __ATOMIC_RELAXED);
        __atomic_store_n(&t->windows[i].is_io, src[i].is_io, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&t->count, count, __ATOMIC_RELAXED);
    __atomic_store_n(&t->sequence, s + 2, __ATOMIC_RELEASE);
}

/// Where an address landed: `bar` (-1: a Base Address range) and `offset`, when `found`.
/// Returned by value (in two registers) so the hot path keeps no out-parameters in memory.
typedef struct {
    uint64_t offset;
    int32_t bar;
    int32_t found;
} ivs_window_hit;

/// Finds the window of kind `is_io` holding `address`.
static inline ivs_window_hit ivs_windows_lookup(const ivs_window_table *t, uint64_t address, int32_t is_io) {
    for (;;) {
        uint32_t s1 = __atomic_load_n(&t->sequence, __ATOMIC_ACQUIRE);
        if (s1 & 1) { __builtin_ia32_pause(); continue; }
        ivs_window_hit hit = {0, 0, 0};
        uint32_t n = __atomic_load_n(&t->count, __ATOMIC_RELAXED);
        if (n > IVS_MAX_WINDOWS) n = IVS_MAX_WINDOWS;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t base = __atomic_load_n(&t->windows[i].base, __ATOMIC_RELAXED);
            uint64_t size = __atomic_load_n(&t->windows[i].size, __ATOMIC_RELAXED);
            int32_t io = __atomic_load_n(&t->windows[i].is_io, __ATOMIC_RELAXED);
            if (io == is_io && address >= base && address - base < size) {
                hit.found = 1;
                hit.bar = __atomic_load_n(&t->windows[i].bar, __ATOMIC_RELAXED);
                hit.offset = address - base;
                break;
            }
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->sequence, __ATOMIC_RELAXED) != s1) continue;
        return hit;
    }
}

/// A consistent copy of the table (for `decodeWindows`). Returns the number of windows.
static inline uint32_t ivs_windows_copy(const ivs_window_table *t, ivs_window *out) {
    for (;;) {
        uint32_t s1 = __atomic_load_n(&t->sequence, __ATOMIC_ACQUIRE);
        if (s1 & 1) { __builtin_ia32_pause(); continue; }
        uint32_t n = __atomic_load_n(&t->count, __ATOMIC_RELAXED);
        if (n > IVS_MAX_WINDOWS) n = IVS_MAX_WINDOWS;
        for (uint32_t i = 0; i < n; i++) {
            out[i].base = __atomic_load_n(&t->windows[i].base, __ATOMIC_RELAXED);
            out[i].size = __atomic_load_n(&t->windows[i].size, __ATOMIC_RELAXED);
            out[i].bar = __atomic_load_n(&t->windows[i].bar, __ATOMIC_RELAXED);
            out[i].is_io = __atomic_load_n(&t->windows[i].is_io, __ATOMIC_RELAXED);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->sequence, __ATOMIC_RELAXED) == s1) return n;
    }
}
#endif
