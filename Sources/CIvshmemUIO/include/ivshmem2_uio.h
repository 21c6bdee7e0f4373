/* libivshmem2-uio.so has no API of its own: it replaces open/read/write/close/mmap/munmap/stat/
 * access/readlink/opendir and their variants for /dev/uio0 and /sys/class/uio (see uio_preload.c).
 * This header only names the environment variables it reads. */
#ifndef IVSHMEM2_UIO_H
#define IVSHMEM2_UIO_H
#define IVSHMEM2_UIO_ENV_SOCKET "IVSHMEM2_UIO_SOCKET"     /* server socket (required) */
#define IVSHMEM2_UIO_ENV_PROFILE "IVSHMEM2_UIO_PROFILE"   /* spec | jailhouse | qemu-rfc */
#define IVSHMEM2_UIO_ENV_INTX "IVSHMEM2_UIO_INTX"         /* 1: INTx instead of MSI-X */
#define IVSHMEM2_UIO_ENV_CHECKING "IVSHMEM2_UIO_CHECKING" /* 0: no findings */
#define IVSHMEM2_UIO_ENV_FINDINGS "IVSHMEM2_UIO_FINDINGS" /* findings go to this file, not stderr */
#define IVSHMEM2_UIO_ENV_LIBRARY "IVSHMEM2_UIO_LIBRARY"   /* libivshmem2 to load (default: next to this library) */
#endif
