/*
 * The limit for port-write costs: run the port-loop guest image directly on
 * /dev/kvm, with no VMM work but the exits themselves.
 *
 *   kvm-port-loop IMAGE PORT WIDTH COUNT coalesced|sized|plain [REPEAT]
 *
 * Loads the 64 KiB real-mode image at f000:0000, patches COUNT/PORT/WIDTH
 * into it, and runs it to its exit write on port 0xf4.  With `coalesced' the
 * port is registered as a coalesced PIO zone (KVM_CAP_COALESCED_PIO) of
 * WIDTH bytes and the ring is emptied whenever KVM exits because it is full;
 * `sized' restricts that zone to accesses of exactly WIDTH bytes
 * (KVM_CAP_COALESCED_ZONE_LEN), as QEMU does for PCI CONFIG_ADDRESS.
 * Prints one line per repetition: "<ns per write> <exits> <ring entries>".
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
/* the tree's linux-headers/ (-I linux-headers): the sized zone flag */
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define IMAGE_SIZE      0x10000
#define IMAGE_GPA       0xf0000
#define PARAMS_OFFSET   0xff00      /* count (u32), port (u16), width (u8) */
#define EXIT_PORT       0xf4
#define RING_PAGE_SIZE  4096
/* Entries in the coalesced ring page, as the kernel's uapi defines it. */
#define RING_MAX ((RING_PAGE_SIZE - sizeof(struct kvm_coalesced_mmio_ring)) / \
                  sizeof(struct kvm_coalesced_mmio))

static void die(const char *what)
{
    fprintf(stderr, "kvm-port-loop: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A whole decimal or 0x number; a stand-alone tool has no qemu_strtoul. */
static unsigned long number(const char *s)
{
    long v;
    int n = 0;

    if (sscanf(s, "%li%n", &v, &n) != 1 || s[n] || v < 0) {
        fprintf(stderr, "kvm-port-loop: not a number: %s\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s IMAGE PORT WIDTH COUNT coalesced|sized|plain "
                "[REPEAT]\n",
                argv[0]);
        return 2;
    }
    const char *image = argv[1];
    uint16_t port = number(argv[2]);
    uint8_t width = number(argv[3]);
    uint32_t count = number(argv[4]);
    int sized = !strcmp(argv[5], "sized");
    int coalesced = sized || !strcmp(argv[5], "coalesced");
    int repeat = argc > 6 ? atoi(argv[6]) : 1;

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        die("/dev/kvm");
    }
    int ring_off = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
    int pio = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO);
    if (coalesced && (ring_off <= 0 || pio <= 0)) {
        fprintf(stderr, "kvm-port-loop: this KVM has no coalesced PIO\n");
        return 3;
    }
    if (sized && ioctl(kvm, KVM_CHECK_EXTENSION,
                       KVM_CAP_COALESCED_ZONE_LEN) <= 0) {
        fprintf(stderr, "kvm-port-loop: this KVM has no sized zones\n");
        return 3;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        die("KVM_CREATE_VM");
    }
    uint8_t *mem = mmap(NULL, IMAGE_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        die("mmap");
    }
    FILE *f = fopen(image, "rb");
    if (!f || fread(mem, 1, IMAGE_SIZE, f) != IMAGE_SIZE) {
        die(image);
    }
    fclose(f);
    memcpy(mem + PARAMS_OFFSET, &count, 4);
    memcpy(mem + PARAMS_OFFSET + 4, &port, 2);
    mem[PARAMS_OFFSET + 6] = width;

    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = IMAGE_GPA,
        .memory_size = IMAGE_SIZE, .userspace_addr = (uintptr_t)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        die("KVM_SET_USER_MEMORY_REGION");
    }
    if (coalesced) {
        struct kvm_coalesced_mmio_zone zone = {
            .addr = port, .size = width,
            .flags = KVM_COALESCED_ZONE_PIO |
                   (sized ? KVM_COALESCED_ZONE_LEN(width) : 0),
        };
        if (ioctl(vm, KVM_REGISTER_COALESCED_MMIO, &zone) < 0) {
            die("KVM_REGISTER_COALESCED_MMIO");
        }
    }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) {
        die("KVM_CREATE_VCPU");
    }
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE,
                               MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) {
        die("mmap kvm_run");
    }
    struct kvm_coalesced_mmio_ring *ring =
        ring_off > 0 ? (void *)((char *)run + ring_off * RING_PAGE_SIZE) : NULL;

    for (int r = 0; r < repeat; r++) {
        struct kvm_sregs sregs;
        if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
            die("KVM_GET_SREGS");
        }
        sregs.cs.selector = 0xf000;
        sregs.cs.base = IMAGE_GPA;
        if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) {
            die("KVM_SET_SREGS");
        }
        struct kvm_regs regs = { .rip = 0, .rflags = 2 };
        if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
            die("KVM_SET_REGS");
        }

        unsigned long exits = 0, entries = 0;
        double t0 = now_ns();
        for (;;) {
            if (ioctl(vcpu, KVM_RUN, 0) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                die("KVM_RUN");
            }
            exits++;
            if (ring) {
                /* What a VMM does on every exit: replay the ring. */
                while (ring->first != ring->last) {
                    ring->first = (ring->first + 1) % RING_MAX;
                    entries++;
                }
            }
            if (run->exit_reason == KVM_EXIT_IO && run->io.port == EXIT_PORT) {
                break;
            }
            if (run->exit_reason != KVM_EXIT_IO) {
                fprintf(stderr, "kvm-port-loop: unexpected exit %u\n",
                        run->exit_reason);
                return 2;
            }
        }
        double t1 = now_ns();
        printf("%.1f %lu %lu\n", count ? (t1 - t0) / count : 0.0,
               exits, entries);
    }
    return 0;
}
