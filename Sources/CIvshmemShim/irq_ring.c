#define _GNU_SOURCE
#include "ivs_irq_ring.h"
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct ivs_irq_ring {
    uint64_t head;       // next sequence number to reserve
    uint64_t published;  // records below are complete
    uint32_t epoch;      // futex word
    uint32_t waiters;
    uint64_t mask;
    ivs_irq_slot *slots;
};

ivs_irq_ring *ivs_irq_ring_create(uint64_t capacity) {
    if (capacity == 0 || (capacity & (capacity - 1)) != 0) return NULL;
    ivs_irq_ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->slots = calloc(capacity, sizeof(ivs_irq_slot));
    if (!r->slots) { free(r); return NULL; }
    r->mask = capacity - 1;
    return r;
}

void ivs_irq_ring_destroy(ivs_irq_ring *r) {
    if (!r) return;
    free(r->slots);
    free(r);
}

uint64_t ivs_irq_ring_reserve(ivs_irq_ring *r) { return __atomic_fetch_add(&r->head, 1, __ATOMIC_ACQ_REL); }

static void store_record(ivs_irq_record *d, const ivs_irq_record *s) {
    __atomic_store_n(&d->source, s->source, __ATOMIC_RELAXED);
    __atomic_store_n(&d->kind, s->kind, __ATOMIC_RELAXED);
    __atomic_store_n(&d->vector, s->vector, __ATOMIC_RELAXED);
    __atomic_store_n(&d->address, s->address, __ATOMIC_RELAXED);
    __atomic_store_n(&d->data, s->data, __ATOMIC_RELAXED);
    __atomic_store_n(&d->time, s->time, __ATOMIC_RELAXED);
}

static void load_record(ivs_irq_record *d, const ivs_irq_record *s) {
    d->source = __atomic_load_n(&s->source, __ATOMIC_RELAXED);
    d->kind = __atomic_load_n(&s->kind, __ATOMIC_RELAXED);
    d->vector = __atomic_load_n(&s->vector, __ATOMIC_RELAXED);
    d->address = __atomic_load_n(&s->address, __ATOMIC_RELAXED);
    d->data = __atomic_load_n(&s->data, __ATOMIC_RELAXED);
    d->reserved = 0;
    d->time = __atomic_load_n(&s->time, __ATOMIC_RELAXED);
}

void ivs_irq_ring_publish(ivs_irq_ring *r, uint64_t n, const ivs_irq_record *rec) {
    ivs_irq_slot *slot = &r->slots[n & r->mask];
    uint64_t writing = 2 * n + 1;
    // Claim the slot unless a record newer than n (a full lap later) already owns it.
    uint64_t s = __atomic_load_n(&slot->stamp, __ATOMIC_RELAXED);
    int claimed = 0;
    while (s < writing) {
        if (__atomic_compare_exchange_n(&slot->stamp, &s, writing, 1, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) { claimed = 1; break; }
    }
    if (claimed) {
        __atomic_thread_fence(__ATOMIC_RELEASE);
        store_record(&slot->record, rec);
        uint64_t expect = writing;
        __atomic_compare_exchange_n(&slot->stamp, &expect, writing + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }
    // Advance the published prefix over every complete (or lapped) record; any writer may do it.
    uint64_t p = __atomic_load_n(&r->published, __ATOMIC_ACQUIRE);
    for (;;) {
        if (p >= __atomic_load_n(&r->head, __ATOMIC_ACQUIRE)) break;
        uint64_t st = __atomic_load_n(&r->slots[p & r->mask].stamp, __ATOMIC_ACQUIRE);
        if (st < 2 * p + 2 && !(p == n && !claimed)) break;  // record p still being written
        if (__atomic_compare_exchange_n(&r->published, &p, p + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) p++;
    }
    __atomic_fetch_add(&r->epoch, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&r->waiters, __ATOMIC_SEQ_CST) > 0) {
        syscall(SYS_futex, &r->epoch, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
}

uint64_t ivs_irq_ring_published(const ivs_irq_ring *r) { return __atomic_load_n(&r->published, __ATOMIC_ACQUIRE); }
uint64_t ivs_irq_ring_reserved(const ivs_irq_ring *r) { return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE); }

uint64_t ivs_irq_ring_overwritten(const ivs_irq_ring *r) {
    uint64_t p = ivs_irq_ring_published(r), cap = r->mask + 1;
    return p > cap ? p - cap : 0;
}

int ivs_irq_ring_read(const ivs_irq_ring *r, uint64_t n, ivs_irq_record *out) {
    const ivs_irq_slot *slot = &r->slots[n & r->mask];
    uint64_t done = 2 * n + 2;
    uint64_t s1 = __atomic_load_n(&slot->stamp, __ATOMIC_ACQUIRE);
    if (s1 < done) return 0;
    if (s1 > done) return -1;
    load_record(out, &slot->record);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(&slot->stamp, __ATOMIC_RELAXED) == done ? 1 : -1;
}

uint32_t ivs_irq_ring_epoch(const ivs_irq_ring *r) { return __atomic_load_n(&r->epoch, __ATOMIC_SEQ_CST); }

void ivs_irq_ring_wait(ivs_irq_ring *r, uint32_t seen, int64_t timeout_ns) {
    if (timeout_ns <= 0) return;
    struct timespec ts = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
    __atomic_fetch_add(&r->waiters, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&r->epoch, __ATOMIC_SEQ_CST) == seen) {
        syscall(SYS_futex, &r->epoch, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
    }
    __atomic_fetch_sub(&r->waiters, 1, __ATOMIC_SEQ_CST);
}
