/*
 * LD_PRELOAD shim for tests/kvm/zone_len_tests.py: KVM_CHECK_EXTENSION
 * answers 1 for KVM_CAP_COALESCED_ZONE_LEN (239), as a kernel would on
 * which that number means something else and the zone flag is unknown:
 * QEMU must then see KVM refuse a sized zone (EINVAL) and fall back.
 * Everything else goes to the C library's ioctl().
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>

#define KVM_CHECK_EXTENSION 0xae03UL
#define KVM_CAP_COALESCED_ZONE_LEN 239

typedef int (*IoctlFn)(int, unsigned long, ...);

int ioctl(int fd, unsigned long request, ...)
{
    static IoctlFn real_ioctl;
    va_list ap;
    void *arg;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_ioctl) {
        real_ioctl = (IoctlFn)dlsym(RTLD_NEXT, "ioctl");
    }
    if (request == KVM_CHECK_EXTENSION &&
        (uintptr_t)arg == KVM_CAP_COALESCED_ZONE_LEN) {
        return 1;
    }
    return real_ioctl(fd, request, arg);
}
