/* The virtio front-end part of libivshmem2's public C API is declared in include/ivshmem2_virtio.h
 * and implemented in Swift (Sources/IvshmemC/VirtioExports.swift); this file only makes the
 * header a module of its own. */
#include "ivshmem2_virtio.h"
