/*
 * KVM coalesced I/O: zones, the ring, and its replay
 *
 * Devices mark write-only ranges (index registers, framebuffers) as
 * coalesced through the generic memory API.  Here those ranges become KVM
 * zones (KVM_REGISTER_COALESCED_MMIO, with the pio flag for port I/O), and
 * the ring the kernel fills is replayed into the devices in order.
 *
 * What differs from a plain in-order replay:
 * - Latch zones (memory_region_set_coalesced_latch(): a write only stores
 *   a value that a later flushing access reads) are collapsed: of the
 *   queued writes to one latch address, only the last is replayed.  This
 *   keeps the device state identical: pending latch writes are applied
 *   before any non-latch entry is replayed and before the drain returns,
 *   so every access that can observe them (a flushing access, or a
 *   non-latch write, which might) sees the last value, and latch writes to
 *   different addresses touch different registers and have no side effect.
 * - The ring is replayed when the VM stops, so no queued write is left in
 *   the kernel while device state is saved or the VM is migrated.
 * - A zone the kernel refuses is reported, and its region works uncoalesced
 *   (it stays flush-coalesced, so it is simply accessed through exits).
 *
 * Everything here runs under the BQL: replays come from flushing accesses
 * (prepare_mmio_access takes it), the memory transaction code and the VM
 * state handler; exits are counted with it taken.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "qemu/bitmap.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-coalesced-io.h"
#include "exec/address-spaces.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-coalesced-io.h"
#include "system/runstate.h"
#include "trace.h"

#define PIO_OFF_REASON \
    "port I/O coalescing is off (machine property coalesced-pio)"

/* A latch value is at most this long (KVM entries carry up to 8 bytes). */
#define LATCH_MAX_LEN 8

typedef struct CoalescedZone {
    char *region;
    bool pio;
    bool latch;
    bool registered;
    int error;                  /* -errno of a refused registration */
    const char *why_not;        /* or why it was never tried */
    uint64_t addr;
    uint64_t size;

    uint64_t writes;
    uint64_t replays;
    uint64_t exits;

    /* the collapsed latch write waiting to be replayed */
    bool pending;
    uint32_t pending_len;
    uint64_t pending_addr;
    uint8_t pending_data[LATCH_MAX_LEN];
} CoalescedZone;

typedef struct CoalescedIO {
    KVMState *kvm;
    bool mmio_cap;
    bool pio_cap;
    bool pio_allowed;
    bool draining;
    struct kvm_coalesced_mmio_ring *ring;
    uint32_t ring_entries;

    GPtrArray *zones;           /* of CoalescedZone, few: a walk is cheap */
    /*
     * Where registered zones are, readable without the BQL: a bit per port
     * for port I/O, an address range for MMIO (empty when lo > hi).  Exits
     * elsewhere, the common case, cost no lock.
     */
    unsigned long *pio_ports;
    uint64_t mmio_lo, mmio_hi;
    CoalescedZone *last_hit;    /* consecutive entries hit the same zone */
    GPtrArray *pending;         /* latch zones with a pending write */

    uint64_t drains;
    uint64_t stop_drains;
    uint32_t max_depth;
} CoalescedIO;

static CoalescedIO cio = {
    .pio_allowed = true,
};

static bool zone_covers(CoalescedZone *z, bool pio, uint64_t addr,
                        unsigned len)
{
    return z->pio == pio && addr >= z->addr && addr - z->addr + len <= z->size;
}

static CoalescedZone *zone_find(bool pio, uint64_t addr, unsigned len)
{
    if (cio.last_hit && zone_covers(cio.last_hit, pio, addr, len)) {
        return cio.last_hit;
    }
    for (guint i = 0; cio.zones && i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (zone_covers(z, pio, addr, len)) {
            cio.last_hit = z;
            return z;
        }
    }
    return NULL;
}

static void replay(bool pio, uint64_t addr, const uint8_t *data, unsigned len)
{
    address_space_write(pio ? &address_space_io : &address_space_memory,
                        addr, MEMTXATTRS_UNSPECIFIED, data, len);
}

/* Replay a zone's collapsed write; copies first: the replay may free it. */
static void replay_pending(CoalescedZone *z)
{
    uint8_t data[LATCH_MAX_LEN];
    uint64_t addr = z->pending_addr;
    unsigned len = z->pending_len;
    bool pio = z->pio;

    memcpy(data, z->pending_data, len);
    z->pending = false;
    z->replays++;
    replay(pio, addr, data, len);
}

static void apply_pending(void)
{
    while (cio.pending->len) {
        replay_pending(g_ptr_array_steal_index(cio.pending, 0));
    }
}

/*
 * Replay the ring.  Entries are consumed in order; the kernel may append
 * more meanwhile (other vCPUs), which the loop picks up before returning.
 */
static void drain(void)
{
    struct kvm_coalesced_mmio_ring *ring = cio.ring;
    uint32_t first, last, depth, n = 0;

    if (!ring || cio.draining) {
        return;
    }
    first = qatomic_read(&ring->first);
    last = qatomic_load_acquire(&ring->last);
    if (first == last) {
        return;
    }
    cio.draining = true;
    depth = (last + cio.ring_entries - first) % cio.ring_entries;
    cio.max_depth = MAX(cio.max_depth, depth);

    while (first != last) {
        do {
            struct kvm_coalesced_mmio *ent = &ring->coalesced_mmio[first];
            bool pio = ent->pio == 1;
            unsigned len = MIN(ent->len, sizeof(ent->data));
            CoalescedZone *z = zone_find(pio, ent->phys_addr, len);

            if (z) {
                z->writes++;
            }
            if (z && z->latch && len <= LATCH_MAX_LEN) {
                /* A later write to the same latch supersedes this one. */
                if (z->pending && (z->pending_addr != ent->phys_addr ||
                                   z->pending_len != len)) {
                    apply_pending();
                }
                if (!z->pending) {
                    z->pending = true;
                    g_ptr_array_add(cio.pending, z);
                }
                z->pending_addr = ent->phys_addr;
                z->pending_len = len;
                memcpy(z->pending_data, ent->data, len);
            } else {
                apply_pending();
                if (z) {
                    z->replays++;
                }
                replay(pio, ent->phys_addr, ent->data, len);
            }
            first = (first + 1) % cio.ring_entries;
            n++;
            /* Hand the slot back: the kernel may fill it again. */
            qatomic_store_release(&ring->first, first);
        } while (first != last);
        last = qatomic_load_acquire(&ring->last);
    }
    apply_pending();
    cio.drains++;
    cio.draining = false;
    trace_kvm_coalesced_io_drain(n, depth);
}

void kvm_flush_coalesced_mmio_buffer(void)
{
    drain();
}

static void vm_state_changed(void *opaque, bool running, RunState state)
{
    /*
     * Once the vCPUs are stopped nothing adds to the ring: replay it now,
     * so that device state saved or inspected from here on is complete.
     */
    if (!running && cio.ring &&
        qatomic_read(&cio.ring->first) != qatomic_read(&cio.ring->last)) {
        cio.stop_drains++;
        drain();
    }
}

/* Recompute where registered zones are (under the BQL). */
static void update_exit_filter(void)
{
    uint64_t lo = UINT64_MAX, hi = 0;

    bitmap_zero(cio.pio_ports, 65536);
    for (guint i = 0; i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (!z->registered) {
            continue;
        }
        if (z->pio) {
            bitmap_set_atomic(cio.pio_ports, z->addr & 0xffff,
                              MIN(z->size, 65536 - (z->addr & 0xffff)));
        } else {
            lo = MIN(lo, z->addr);
            hi = MAX(hi, z->addr + z->size - 1);
        }
    }
    qatomic_set(&cio.mmio_lo, lo);
    qatomic_set(&cio.mmio_hi, hi);
}

static int zone_ioctl(CoalescedZone *z, bool add)
{
    struct kvm_coalesced_mmio_zone kz = {
        .addr = z->addr,
        .size = z->size,
        .pio = z->pio,
    };
    int ret = kvm_vm_ioctl(cio.kvm, add ? KVM_REGISTER_COALESCED_MMIO
                                        : KVM_UNREGISTER_COALESCED_MMIO, &kz);

    trace_kvm_coalesced_io_zone(add ? "register" : "unregister", z->pio,
                                z->addr, z->size, z->region, ret);
    return ret;
}

static void zone_register(CoalescedZone *z)
{
    int ret;

    z->why_not = NULL;
    z->error = 0;
    if (z->pio && !cio.pio_cap) {
        z->why_not = "KVM has no coalesced port I/O (KVM_CAP_COALESCED_PIO)";
        return;
    }
    if (z->pio && !cio.pio_allowed) {
        z->why_not = PIO_OFF_REASON;
        return;
    }
    ret = zone_ioctl(z, true);
    if (ret < 0) {
        z->error = ret;
        warn_report("KVM refused the coalesced %s zone 0x%" PRIx64 "+0x%" PRIx64
                    " of '%s': %s; the region works uncoalesced",
                    z->pio ? "port I/O" : "MMIO", z->addr, z->size, z->region,
                    strerror(-ret));
        return;
    }
    z->registered = true;
    update_exit_filter();
}

static void zone_unregister(CoalescedZone *z)
{
    if (z->registered) {
        /* Queued writes to the zone still reach the device. */
        drain();
        zone_ioctl(z, false);
        z->registered = false;
        update_exit_filter();
    }
}

static void zone_add(MemoryRegionSection *section, hwaddr addr, hwaddr size,
                     bool pio)
{
    CoalescedZone *z = g_new0(CoalescedZone, 1);

    z->region = g_strdup(memory_region_name(section->mr));
    z->latch = memory_region_coalesced_latch(section->mr);
    z->pio = pio;
    z->addr = addr;
    z->size = size;
    g_ptr_array_add(cio.zones, z);
    if (!cio.mmio_cap) {
        z->why_not = "KVM has no coalesced MMIO (KVM_CAP_COALESCED_MMIO)";
    } else {
        zone_register(z);
    }
}

static void zone_del(hwaddr addr, hwaddr size, bool pio)
{
    for (guint i = 0; i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (z->pio == pio && z->addr == addr && z->size == size) {
            zone_unregister(z);
            if (z->pending) {
                /* inside a drain: its queued write still goes out first */
                g_ptr_array_remove(cio.pending, z);
                replay_pending(z);
            }
            if (cio.last_hit == z) {
                cio.last_hit = NULL;
            }
            g_ptr_array_remove(cio.zones, z);
            return;
        }
    }
}

static void coalesced_mmio_add(MemoryListener *listener,
                               MemoryRegionSection *section,
                               hwaddr addr, hwaddr size)
{
    zone_add(section, addr, size, false);
}

static void coalesced_mmio_del(MemoryListener *listener,
                               MemoryRegionSection *section,
                               hwaddr addr, hwaddr size)
{
    zone_del(addr, size, false);
}

static void coalesced_pio_add(MemoryListener *listener,
                              MemoryRegionSection *section,
                              hwaddr addr, hwaddr size)
{
    zone_add(section, addr, size, true);
}

static void coalesced_pio_del(MemoryListener *listener,
                              MemoryRegionSection *section,
                              hwaddr addr, hwaddr size)
{
    zone_del(addr, size, true);
}

static void zone_free(gpointer p)
{
    CoalescedZone *z = p;

    g_free(z->region);
    g_free(z);
}

void kvm_coalesced_io_init(KVMState *s, MemoryListener *mem_listener,
                           MemoryListener *io_listener)
{
    cio.kvm = s;
    cio.mmio_cap = kvm_check_extension(s, KVM_CAP_COALESCED_MMIO) > 0;
    cio.pio_cap = cio.mmio_cap &&
                  kvm_check_extension(s, KVM_CAP_COALESCED_PIO) > 0;
    cio.zones = g_ptr_array_new_with_free_func(zone_free);
    cio.pio_ports = bitmap_new(65536);
    cio.mmio_lo = UINT64_MAX;
    cio.pending = g_ptr_array_new();

    mem_listener->coalesced_io_add = coalesced_mmio_add;
    mem_listener->coalesced_io_del = coalesced_mmio_del;
    io_listener->coalesced_io_add = coalesced_pio_add;
    io_listener->coalesced_io_del = coalesced_pio_del;

    qemu_add_vm_change_state_handler(vm_state_changed, NULL);
}

void kvm_coalesced_io_vcpu_init(KVMState *s, struct kvm_run *run)
{
    int page = kvm_check_extension(s, KVM_CAP_COALESCED_MMIO);
    size_t page_size = qemu_real_host_page_size();

    if (page > 0 && !cio.ring) {
        cio.ring = (void *)((char *)run + page * page_size);
        cio.ring_entries = (page_size - sizeof(struct kvm_coalesced_mmio_ring)) /
                           sizeof(struct kvm_coalesced_mmio);
    }
}

void kvm_coalesced_io_note_exit(bool pio, uint64_t addr, unsigned len)
{
    CoalescedZone *z;

    /*
     * Exits are handled outside the BQL; the zone list changes under it.
     * The filter is read without it: an exit racing with a zone change may
     * go uncounted, which only the statistics see.
     */
    if (pio ? !test_bit(addr & 0xffff, cio.pio_ports)
            : addr < qatomic_read(&cio.mmio_lo) ||
              addr > qatomic_read(&cio.mmio_hi)) {
        return;
    }
    bql_lock();
    z = zone_find(pio, addr, len);
    if (z && z->registered) {
        z->exits++;
        trace_kvm_coalesced_io_exit(pio, addr, len);
    }
    bql_unlock();
}

void kvm_coalesced_io_set_pio_allowed(bool allowed)
{
    if (cio.pio_allowed == allowed) {
        return;
    }
    cio.pio_allowed = allowed;
    for (guint i = 0; cio.zones && i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (!z->pio) {
            continue;
        }
        if (allowed) {
            zone_register(z);
        } else {
            zone_unregister(z);
            z->why_not = PIO_OFF_REASON;
        }
    }
}

bool kvm_coalesced_io_pio_allowed(void)
{
    return cio.pio_allowed;
}

CoalescedIOInfo *qmp_x_query_coalesced_io(Error **errp)
{
    CoalescedIOInfo *info = g_new0(CoalescedIOInfo, 1);
    CoalescedIOZoneList **tail = &info->zones;

    info->pio_allowed = cio.pio_allowed;
    if (!kvm_enabled()) {
        info->reason = g_strdup("coalesced I/O needs the KVM accelerator, "
                                "which this VM does not use");
        return info;
    }
    info->mmio = cio.mmio_cap;
    info->pio = cio.pio_cap;
    info->active = cio.mmio_cap;
    if (!info->active) {
        info->reason = g_strdup("KVM has no coalesced MMIO "
                                "(KVM_CAP_COALESCED_MMIO)");
    }
    info->ring_entries = cio.ring_entries;
    info->drains = cio.drains;
    info->stop_drains = cio.stop_drains;
    info->max_depth = cio.max_depth;

    for (guint i = 0; i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);
        CoalescedIOZone *qz = g_new0(CoalescedIOZone, 1);

        qz->region = g_strdup(z->region);
        qz->space = z->pio ? COALESCED_IO_SPACE_IO : COALESCED_IO_SPACE_MEMORY;
        qz->addr = z->addr;
        qz->size = z->size;
        qz->latch = z->latch;
        qz->registered = z->registered;
        if (z->error) {
            qz->error = g_strdup_printf("KVM refused it: %s", strerror(-z->error));
        } else if (z->why_not) {
            qz->error = g_strdup(z->why_not);
        }
        qz->writes = z->writes;
        qz->replays = z->replays;
        qz->exits = z->exits;
        QAPI_LIST_APPEND(tail, qz);
    }
    return info;
}
