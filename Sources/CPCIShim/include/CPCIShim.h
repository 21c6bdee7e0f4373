// libpci helpers Swift cannot express: the variadic name lookup, and error callbacks that
// return control instead of calling exit(1).
#ifndef CPCI_SHIM_H
#define CPCI_SHIM_H
#include <pci/pci.h>

/// Allocates a pci_access that reads `dump_path` (lspci -xxx format) and scans it. Returns NULL
/// (and sets ivs_pci_last_error) instead of exiting when libpci reports an error; the access is
/// then already freed.
struct pci_access *ivs_pci_open_dump(const char *dump_path);
/// pci_fill_info with the error callback armed: returns the known-fields mask, or -1 (and sets
/// ivs_pci_last_error) when libpci reported an error. Only for accesses from ivs_pci_open_dump.
int ivs_pci_fill_info(struct pci_dev *d, int flags);
/// memfd_create(name, MFD_CLOEXEC) (needs _GNU_SOURCE, which Swift's Glibc does not expose).
int ivs_pci_memfd_create(const char *name);
/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so a child spawned by another
/// thread cannot inherit them (and hold a write end open).
int ivs_pci_pipe_cloexec(int fds[2]);
/// The last error libpci reported through our callback ("" if none).
const char *ivs_pci_last_error(void);
/// Looks up "vendor device" names into buf; returns buf.
char *ivs_pci_lookup_device_name(struct pci_access *a, char *buf, int size, int vendor, int device);
#endif
