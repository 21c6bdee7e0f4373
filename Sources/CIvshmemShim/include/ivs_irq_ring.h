// The platform's interrupt log as a bounded ring that writers do not serialise on
// (IvshmemPlatform.InterruptLog): each writer reserves a sequence number with one atomic add,
// fills its slot, marks it complete and helps advance the published prefix; readers copy slots
// under a per-slot sequence check and wait on a futex word for new records.
#ifndef IVS_IRQ_RING_H
#define IVS_IRQ_RING_H
#include <stdint.h>

typedef struct {
    uint32_t source;   // bus << 8 | device << 3 | function
    uint32_t kind;     // 0: MSI-X message, 1: INTx edge
    int64_t vector;    // MSI-X vector, or the INTx pin
    uint64_t address;
    uint32_t data;
    uint32_t reserved;
    uint64_t time;     // monotonic ns
} ivs_irq_record;

typedef struct {
    uint64_t stamp;    // 2n+1 while record n is written, 2n+2 once it is complete; 0: empty
    ivs_irq_record record;
} ivs_irq_slot;

typedef struct ivs_irq_ring ivs_irq_ring;

/// A ring of `capacity` (a power of two) slots; NULL on allocation failure.
ivs_irq_ring *ivs_irq_ring_create(uint64_t capacity);
void ivs_irq_ring_destroy(ivs_irq_ring *ring);
/// Reserves the next sequence number (the writer then fills it with ivs_irq_ring_publish).
uint64_t ivs_irq_ring_reserve(ivs_irq_ring *ring);
/// Stores record `n`, marks it complete, advances the published prefix, wakes waiters.
void ivs_irq_ring_publish(ivs_irq_ring *ring, uint64_t n, const ivs_irq_record *record);
/// Records 0..<published are complete (and readable unless overwritten).
uint64_t ivs_irq_ring_published(const ivs_irq_ring *ring);
/// Sequence numbers reserved so far.
uint64_t ivs_irq_ring_reserved(const ivs_irq_ring *ring);
/// Copies record `n`: 1 copied, 0 not complete yet, -1 overwritten by a newer record.
int ivs_irq_ring_read(const ivs_irq_ring *ring, uint64_t n, ivs_irq_record *out);
/// Records overwritten before everyone could read them (published − capacity, at least 0).
uint64_t ivs_irq_ring_overwritten(const ivs_irq_ring *ring);
/// The futex word: changes after every publish. Read it, check the records, then wait on it.
uint32_t ivs_irq_ring_epoch(const ivs_irq_ring *ring);
/// Sleeps until the epoch differs from `seen` or `timeout_ns` pass (spurious wake-ups allowed).
void ivs_irq_ring_wait(ivs_irq_ring *ring, uint32_t seen, int64_t timeout_ns);
#endif
