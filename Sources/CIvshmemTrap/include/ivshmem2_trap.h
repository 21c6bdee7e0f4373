/* Internal interface between the Swift side of libivshmem2 and its C trap handler. Not
 * installed; the public API is ivshmem2.h. */
#ifndef IVSHMEM2_TRAP_H
#define IVSHMEM2_TRAP_H
#include <stddef.h>
#include <stdint.h>
#include "ivshmem2.h"

/* Forwards one emulated access. Loads store the result in *value. */
typedef void (*ivs_trap_access_fn)(void *context, uint64_t phys, unsigned size, int is_write, uint64_t *value);

enum { IVS_WINDOW_MMIO = 0, IVS_WINDOW_READONLY = 1 };

/* Sets the calling thread's last-error message. */
void ivs_set_error(const char *message);

/* Registers [host, host+length) → phys. kind MMIO traps everything, READONLY only stores.
 * Installs the handler on first use. Returns 0, IVSHMEM2_ENOSPC or IVSHMEM2_ESYSTEM. */
int ivs_trap_register(void *host, size_t length, uint64_t phys, int kind, ivs_trap_access_fn fn, void *context, void *owner);
/* Unregisters every window whose owner is `owner` and whose host range starts inside
 * [host, host+length) (length 0: any). Returns how many. */
int ivs_trap_unregister(void *owner, void *host, size_t length);

/* mmap helpers (errno preserved on failure). */
void *ivs_map_reserve(void *at, size_t length, int fixed_noreplace); /* PROT_NONE anonymous */
/* A second view of a MAP_SHARED mapping's pages [source, source+length), at `at` if non-NULL
 * (which must be a reservation made by ivs_map_reserve). Read-write. */
void *ivs_map_alias(void *source, size_t length, void *at);
int ivs_protect(void *at, size_t length, int writable);
int ivs_unmap(void *at, size_t length);

/* Decoder, exposed for tests: decodes the instruction at `code`. Returns its length or 0. */
typedef struct ivs_insn {
    int length;
    int size;        /* memory access size */
    int is_store;
    int reg;         /* register number 0..15 (loads: destination; stores: source) */
    int has_rex;
    int has_imm;
    uint64_t imm;    /* immediate, already sign-extended to the access size */
    int extend;      /* 0: none, 1: zero-extend, 2: sign-extend */
    int dest_size;   /* loads: destination register size in bytes */
} ivs_insn;
int ivs_decode(const uint8_t *code, ivs_insn *out);
/* The mnemonic of the instruction at `code` (prefixes included, e.g. "lock or"), for messages
 * about instructions ivs_decode rejects. Writes a NUL-terminated name into out[n]. */
int ivs_mnemonic(const uint8_t *code, char *out, size_t n);
#endif
