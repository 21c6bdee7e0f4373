#define _GNU_SOURCE
#include "CPCIShim.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

// libpci's code assumes its error callback never returns (the default calls exit(1)), so ours
// records the message and jumps back to the entry point that armed `recovery`.
static _Thread_local char last_error[512];
static _Thread_local jmp_buf recovery;
static _Thread_local int recovery_armed;

// libpci declares the callback noreturn. Every libpci call that can report an error goes through
// an entry point below that arms `recovery`; an error anywhere else is a bug in the caller (an
// unaligned pci_read_word/long), and stopping there is what libpci's default handler does too.
__attribute__((noreturn)) static void record_error(char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    vsnprintf(last_error, sizeof last_error, msg, ap);
    va_end(ap);
    if (recovery_armed) {
        recovery_armed = 0;
        longjmp(recovery, 1);
    }
    fprintf(stderr, "libpci error outside a recoverable call: %s\n", last_error);
    abort();
}

static void ignore_message(char *msg, ...) { (void)msg; }

struct pci_access *ivs_pci_open_dump(const char *dump_path) {
    last_error[0] = 0;
    struct pci_access *a = pci_alloc();
    if (!a) return NULL;
    a->error = record_error;
    a->warning = ignore_message;
    a->debug = ignore_message;
    a->method = PCI_ACCESS_DUMP;
    pci_set_param(a, "dump.name", (char *)dump_path);
    if (setjmp(recovery)) {
        // The dump back-end reports errors between whole steps (it closes its FILE first and
        // every device it linked is complete), so the access can still be freed.
        pci_cleanup(a);
        return NULL;
    }
    recovery_armed = 1;
    pci_init(a);
    pci_scan_bus(a);
    recovery_armed = 0;
    return a;
}

int ivs_pci_fill_info(struct pci_dev *d, int flags) {
    last_error[0] = 0;
    if (setjmp(recovery)) return -1;
    recovery_armed = 1;
    int known = pci_fill_info(d, flags);
    recovery_armed = 0;
    return known;
}

int ivs_pci_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int ivs_pci_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

const char *ivs_pci_last_error(void) { return last_error; }

char *ivs_pci_lookup_device_name(struct pci_access *a, char *buf, int size, int vendor, int device) {
    return pci_lookup_name(a, buf, size, PCI_LOOKUP_VENDOR | PCI_LOOKUP_DEVICE, vendor, device);
}
