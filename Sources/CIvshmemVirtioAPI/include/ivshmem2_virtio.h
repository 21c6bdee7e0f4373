/*
 * ivshmem2_virtio.h — the virtio-over-ivshmem front-end driver model of libivshmem2 (the guest
 * side of spec/virtio-ivshmem.md), for C programs. A separate block from ivshmem2.h; the same
 * conventions apply (status codes, ivshmem2_last_error(), nothing aborts).
 *
 * ivshmem2_virtio_open attaches an emulated ivshmem v2 device to the server (protocol
 * 8000h-BFFFh: the front-end; the back-end, e.g. `ivshmem2 virtio console --backend`, must be
 * peer 0), waits for the back-end's ready state, negotiates features (VIRTIO_F_VERSION_1
 * required), sets up the queues and sets DRIVER_OK, as Linux's virtio_ivshmem plus the console
 * or block driver do. Transport violations the back-end commits are recorded as findings with
 * their VIRTIO-... requirement IDs.
 *
 * A device handle may be used by one thread at a time (calls on one handle are serialised).
 */
#ifndef IVSHMEM2_VIRTIO_H
#define IVSHMEM2_VIRTIO_H

#include <stddef.h>
#include <stdint.h>
#include "ivshmem2.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ivshmem2_virtio_device ivshmem2_virtio_device;

#define IVSHMEM2_VIRTIO_ID_BLOCK 2
#define IVSHMEM2_VIRTIO_ID_CONSOLE 3

/* Attaches, probes and brings up the console or block device the link's protocol names.
 * profile: NULL means "spec". timeout_ms: how long to wait for the back-end (< 0: 10 s).
 * Errors: IVSHMEM2_EINVAL, IVSHMEM2_ECONNECT (no server / not a virtio front-end link),
 * IVSHMEM2_ETIMEDOUT (no back-end), IVSHMEM2_ENODEV (a device ID this model does not drive). */
int ivshmem2_virtio_open(const char *socket_path, const char *profile, int timeout_ms, ivshmem2_virtio_device **out);

/* Resets nothing on the other side: writes State 0 (the back-end starts over) and detaches. NULL is ignored. */
void ivshmem2_virtio_close(ivshmem2_virtio_device *device);

/* The virtio device ID (2 block, 3 console); 0 for NULL. */
uint16_t ivshmem2_virtio_device_id(const ivshmem2_virtio_device *device);

/* Console: sends `length` bytes (waits until the back-end took them). */
int ivshmem2_virtio_console_write(ivshmem2_virtio_device *device, const void *data, size_t length, int timeout_ms);
/* Console: waits up to timeout_ms for bytes from the back-end, stores at most `capacity` of them
 * (more are kept for the next call) and their count in *received. IVSHMEM2_ETIMEDOUT: none came. */
int ivshmem2_virtio_console_read(ivshmem2_virtio_device *device, void *buffer, size_t capacity, int timeout_ms, size_t *received);

/* Block: capacity in 512-byte sectors (0 for NULL or a console). */
uint64_t ivshmem2_virtio_block_capacity(const ivshmem2_virtio_device *device);
/* Block: the largest `length` of one read or write. */
size_t ivshmem2_virtio_block_max_transfer(const ivshmem2_virtio_device *device);
/* Block: `length` (whole sectors, at most max_transfer) bytes at `sector`. Errors: IVSHMEM2_EINVAL,
 * IVSHMEM2_ESYSTEM (the device answered IOERR/UNSUPP), IVSHMEM2_ETIMEDOUT. */
int ivshmem2_virtio_block_read(ivshmem2_virtio_device *device, uint64_t sector, void *buffer, size_t length, int timeout_ms);
int ivshmem2_virtio_block_write(ivshmem2_virtio_device *device, uint64_t sector, const void *data, size_t length, int timeout_ms);
int ivshmem2_virtio_block_flush(ivshmem2_virtio_device *device, int timeout_ms);

enum { IVSHMEM2_VIRTIO_CULPRIT_FRONTEND = 1, IVSHMEM2_VIRTIO_CULPRIT_BACKEND = 2 };

typedef struct ivshmem2_virtio_finding {
    char requirement[32]; /* e.g. "VIRTIO-WT-3" (spec/virtio-ivshmem.md) */
    char message[320];
    int culprit;          /* IVSHMEM2_VIRTIO_CULPRIT_* */
} ivshmem2_virtio_finding;

size_t ivshmem2_virtio_finding_count(ivshmem2_virtio_device *device);
/* Errors: IVSHMEM2_ENOSPC (index >= count), IVSHMEM2_EINVAL. */
int ivshmem2_virtio_get_finding(ivshmem2_virtio_device *device, size_t index, ivshmem2_virtio_finding *out);

#ifdef __cplusplus
}
#endif
#endif /* IVSHMEM2_VIRTIO_H */
