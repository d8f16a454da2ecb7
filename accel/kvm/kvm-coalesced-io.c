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
 * - The ring is replayed when the VM stops, before any device's stop
 *   handler runs, so no queued write is left in the kernel while devices
 *   stop and their state is saved or migrated.
 * - A zone leaving the address space is unregistered first and the ring is
 *   replayed only after the memory transaction committed: never from inside
 *   the listener callbacks, where a replayed write that begins a memory
 *   transaction would re-enter the topology update.  The kernel adds
 *   nothing to a zone once KVM_UNREGISTER_COALESCED_MMIO returned, so every
 *   write queued for it is in the ring by then, before any later write.
 * - A zone the kernel refuses is reported, and its region works uncoalesced
 *   (it stays flush-coalesced, so it is simply accessed through exits).
 * - A region that only needs writes of one size coalesced
 *   (memory_region_set_coalesced_access_size(): PCI CONFIG_ADDRESS) gets,
 *   where KVM can restrict a zone to one access length
 *   (KVM_CAP_COALESCED_ZONE_LEN), one zone of that length per aligned
 *   block whose first byte the flat view maps to it, even where other
 *   regions hide the block's later bytes (the reset control register at
 *   0xcf9): those regions' accesses, of other lengths, keep exiting.
 *   Without the capability, or when KVM refuses such a zone as invalid
 *   (the capability number meaning something else), the region gets the
 *   zones of its flat ranges, as any other.
 *
 * Zones change and the ring is replayed under the BQL: replays come from
 * flushing accesses (prepare_mmio_access takes it), the memory transaction
 * code, a bottom half and the VM state handler.  Exits are counted without
 * it: the registered zones are published for them with RCU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/stats64.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-coalesced-io.h"
#include "exec/address-spaces.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-coalesced-io.h"
#include "system/runstate.h"
#include "trace.h"

#define PIO_OFF_REASON \
    "port I/O coalescing is off (accelerator property coalesced-pio)"

/* A latch value is at most this long (KVM entries carry up to 8 bytes). */
#define LATCH_MAX_LEN 8

typedef struct CoalescedZone {
    struct rcu_head rcu;
    char *region;
    bool pio;
    bool latch;
    bool registered;
    int error;                  /* -errno of a refused registration */
    const char *why_not;        /* or why it was never tried */
    /* the flat range the memory listener announced (its key) */
    uint64_t range_addr;
    uint64_t range_size;
    /*
     * the zone given to KVM: the flat range, or one block of a sized
     * region, which takes only accesses of access_len bytes (0: any)
     */
    uint64_t addr;
    uint64_t size;
    unsigned access_len;
    /*
     * a sized region's flat range in which no block starts: nothing is
     * registered for it, and it is not shown
     */
    bool covered;

    uint64_t writes;
    uint64_t replays;
    Stat64 exits;               /* counted outside the BQL */

    /* the collapsed latch write waiting to be replayed */
    bool pending;
    uint32_t pending_len;
    uint64_t pending_addr;
    uint8_t pending_data[LATCH_MAX_LEN];
} CoalescedZone;

/*
 * The registered zones, for the exit path, which runs without the BQL:
 * replaced as a whole (RCU) when one is registered or unregistered.
 */
typedef struct ExitFilter {
    struct rcu_head rcu;
    unsigned nr;
    CoalescedZone *zone[];
} ExitFilter;

/* A collapsed latch write of a zone that went away before it was replayed */
typedef struct OrphanWrite {
    bool pio;
    uint32_t len;
    uint64_t addr;
    uint8_t data[LATCH_MAX_LEN];
} OrphanWrite;

typedef struct CoalescedIO {
    KVMState *kvm;
    bool mmio_cap;
    bool pio_cap;
    bool zone_len_cap;          /* KVM_CAP_COALESCED_ZONE_LEN */
    bool zone_len_refused;      /* yet KVM refused a sized zone: fall back */
    bool pio_allowed;
    bool draining;
    bool in_update;             /* inside a topology update (begin..commit) */
    bool replay_after_update;   /* a zone went during it: replay at commit */
    struct kvm_coalesced_mmio_ring *ring;
    uint32_t ring_entries;
    MemoryListener mem_listener;
    MemoryListener io_listener;
    QEMUBH *replay_bh;

    GPtrArray *zones;           /* of CoalescedZone, few: a walk is cheap */
    ExitFilter *filter;         /* RCU */
    CoalescedZone *last_hit;    /* consecutive entries hit the same zone */
    GPtrArray *pending;         /* latch zones with a pending write */
    GArray *orphans;            /* of OrphanWrite */

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
    return z->pio == pio && addr >= z->addr &&
           addr - z->addr + len <= z->size &&
           (!z->access_len || len == z->access_len);
}

static bool sized_zones(void)
{
    return cio.zone_len_cap && !cio.zone_len_refused;
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
    while (cio.orphans->len) {
        OrphanWrite w = g_array_index(cio.orphans, OrphanWrite, 0);

        g_array_remove_index(cio.orphans, 0);
        replay(w.pio, w.addr, w.data, w.len);
    }
    while (cio.pending->len) {
        replay_pending(g_ptr_array_steal_index(cio.pending, 0));
    }
}

/*
 * Take the oldest entry off the ring, handing its slot back to the kernel
 * before it is replayed: a replay that changes the memory topology
 * unregisters zones and must find only the entries not taken yet.
 */
static bool ring_take(struct kvm_coalesced_mmio *ent)
{
    struct kvm_coalesced_mmio_ring *ring = cio.ring;
    uint32_t first = qatomic_read(&ring->first);

    if (first == qatomic_load_acquire(&ring->last)) {
        return false;
    }
    *ent = ring->coalesced_mmio[first];
    qatomic_store_release(&ring->first, (first + 1) % cio.ring_entries);
    return true;
}

static bool ring_empty(void)
{
    return !cio.ring ||
           qatomic_read(&cio.ring->first) == qatomic_read(&cio.ring->last);
}

/*
 * Replay the ring, in order.  The kernel may append more meanwhile (other
 * vCPUs), which the loop picks up before returning.  Never during a
 * topology update: the listener's commit hook replays once it is over.
 */
static void drain(void)
{
    struct kvm_coalesced_mmio ent;
    uint32_t depth, n = 0;

    if (!cio.ring || cio.draining || cio.in_update || ring_empty()) {
        return;
    }
    cio.draining = true;
    depth = (qatomic_read(&cio.ring->last) + cio.ring_entries -
             qatomic_read(&cio.ring->first)) % cio.ring_entries;
    cio.max_depth = MAX(cio.max_depth, depth);

    while (ring_take(&ent)) {
        bool pio = ent.pio == 1;
        unsigned len = MIN(ent.len, sizeof(ent.data));
        CoalescedZone *z = zone_find(pio, ent.phys_addr, len);

        n++;
        if (z) {
            z->writes++;
        }
        if (z && z->latch && len <= LATCH_MAX_LEN) {
            /* A later write to the same latch supersedes this one. */
            if (z->pending && (z->pending_addr != ent.phys_addr ||
                               z->pending_len != len)) {
                apply_pending();
            }
            if (!z->pending) {
                z->pending = true;
                g_ptr_array_add(cio.pending, z);
            }
            z->pending_addr = ent.phys_addr;
            z->pending_len = len;
            memcpy(z->pending_data, ent.data, len);
        } else {
            apply_pending();
            if (z) {
                z->replays++;
            }
            replay(pio, ent.phys_addr, ent.data, len);
        }
    }
    apply_pending();
    cio.drains++;
    cio.draining = false;
    trace_kvm_coalesced_io_drain(n, depth);
}

static void replay_bh(void *opaque)
{
    drain();
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
     * Registered as the prepare callback of the highest priority, this
     * runs before any device's stop handler (prepare or main); as the
     * main callback it then finds the ring empty.
     */
    if (!running && !ring_empty()) {
        cio.stop_drains++;
        drain();
    }
}

/* Publish the registered zones to the exit path (under the BQL). */
static void update_exit_filter(void)
{
    ExitFilter *old = cio.filter, *f = NULL;
    unsigned nr = 0;

    for (guint i = 0; i < cio.zones->len; i++) {
        nr += ((CoalescedZone *)g_ptr_array_index(cio.zones, i))->registered;
    }
    if (nr) {
        f = g_malloc(sizeof(*f) + nr * sizeof(f->zone[0]));
        f->nr = 0;
        for (guint i = 0; i < cio.zones->len; i++) {
            CoalescedZone *z = g_ptr_array_index(cio.zones, i);

            if (z->registered) {
                f->zone[f->nr++] = z;
            }
        }
    }
    qatomic_rcu_set(&cio.filter, f);
    if (old) {
        g_free_rcu(old, rcu);
    }
}

/* Register or unregister a zone; both with the same flags. */
static int zone_ioctl(CoalescedZone *z, bool add)
{
    struct kvm_coalesced_mmio_zone kz = {
        .addr = z->addr,
        .size = z->size,
        .flags = (z->pio ? KVM_COALESCED_ZONE_PIO : 0) |
                 KVM_COALESCED_ZONE_LEN(z->access_len),
    };
    int ret = kvm_vm_ioctl(cio.kvm, add ? KVM_REGISTER_COALESCED_MMIO
                                        : KVM_UNREGISTER_COALESCED_MMIO, &kz);

    trace_kvm_coalesced_io_zone(add ? "register" : "unregister", z->pio,
                                z->addr, z->size, z->access_len, z->region,
                                ret);
    return ret;
}

static void zones_fall_back(void);

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
    if (ret == -EINVAL && z->access_len) {
        /*
         * The capability said yes, yet the kernel does not know the flag
         * (a capability number of another meaning): not the user's
         * problem, the region gets the zones every kernel takes.  This
         * frees z.
         */
        trace_kvm_coalesced_io_zone_len_refused(z->pio, z->addr, z->size,
                                                z->region, z->access_len);
        cio.zone_len_refused = true;
        zones_fall_back();
        return;
    }
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

/*
 * Once this returns the kernel queues nothing more for the zone (the
 * ioctl waits for vCPUs that are inside a write); what it queued before
 * is still in the ring, in order, for the next drain.
 */
static void zone_unregister(CoalescedZone *z)
{
    if (z->registered) {
        zone_ioctl(z, false);
        z->registered = false;
        update_exit_filter();
    }
}

static void zone_free_rcu(CoalescedZone *z)
{
    g_free(z->region);
    g_free(z);
}

static CoalescedZone *zone_new(const char *region, bool latch, bool pio,
                               hwaddr range_addr, hwaddr range_size,
                               hwaddr addr, hwaddr size, unsigned access_len)
{
    CoalescedZone *z = g_new0(CoalescedZone, 1);

    z->region = g_strdup(region);
    z->latch = latch;
    z->pio = pio;
    z->range_addr = range_addr;
    z->range_size = range_size;
    z->addr = addr;
    z->size = size;
    z->access_len = access_len;
    g_ptr_array_add(cio.zones, z);
    return z;
}

/* Register a new zone, or say why not; z may be gone when this returns. */
static void zone_start(CoalescedZone *z)
{
    if (!cio.mmio_cap) {
        z->why_not = "KVM has no coalesced MMIO (KVM_CAP_COALESCED_MMIO)";
    } else {
        zone_register(z);
    }
}

/*
 * A region that asked for zones of one access length gets one zone per
 * naturally aligned block of its coalesced range whose first byte lies in
 * this flat range: every access of that length the zone can take starts
 * at the block's first byte, so it is dispatched to the region, whatever
 * covers the block's later bytes.  (memory_region_add_coalescing() keeps
 * the coalesced ranges of such a region aligned to the length.)
 */
static void zone_add_sized(MemoryRegionSection *section, hwaddr addr,
                           hwaddr size, bool pio, unsigned len)
{
    MemoryRegion *mr = section->mr;
    const char *name = memory_region_name(mr);
    bool latch = memory_region_coalesced_latch(mr);
    hwaddr off = section->offset_within_region +
                 (addr - section->offset_within_address_space);
    unsigned blocks = 0;

    for (hwaddr b = ROUND_UP(off, len);
         b < off + size && b + len <= memory_region_size(mr) && sized_zones();
         b += len, blocks++) {
        zone_start(zone_new(name, latch, pio, addr, size, addr + (b - off),
                            len, len));
    }
    trace_kvm_coalesced_io_range(pio, addr, size, name, len, blocks);
    if (!blocks) {
        zone_new(name, latch, pio, addr, size, addr, size, 0)->covered = true;
    }
}

static void zone_add(MemoryRegionSection *section, hwaddr addr, hwaddr size,
                     bool pio)
{
    unsigned len = memory_region_coalesced_access_size(section->mr);

    if (len && sized_zones()) {
        zone_add_sized(section, addr, size, pio, len);
        return;
    }
    zone_start(zone_new(memory_region_name(section->mr),
                        memory_region_coalesced_latch(section->mr), pio,
                        addr, size, addr, size, 0));
}

/* Unregister a zone, keep what it queued for the next drain, free it. */
static void zone_remove(CoalescedZone *z)
{
    zone_unregister(z);
    if (z->pending) {
        /*
         * A drain is replaying and changed the topology: the zone's
         * collapsed write goes out with the other pending ones, when the
         * drain goes on after the update.
         */
        OrphanWrite w = {
            .pio = z->pio, .len = z->pending_len, .addr = z->pending_addr,
        };

        memcpy(w.data, z->pending_data, w.len);
        g_array_append_val(cio.orphans, w);
        g_ptr_array_remove(cio.pending, z);
    }
    if (cio.last_hit == z) {
        cio.last_hit = NULL;
    }
    g_ptr_array_remove(cio.zones, z);
    /* the exit path may still be looking at it */
    call_rcu(z, zone_free_rcu, rcu);
    /*
     * Writes queued for it until the unregister: replayed once the update
     * has committed; outside one (a region that stops coalescing), from a
     * bottom half, or by any flush before.
     */
    if (!ring_empty()) {
        if (cio.in_update) {
            cio.replay_after_update = true;
        } else {
            qemu_bh_schedule(cio.replay_bh);
        }
    }
}

static void zone_del(hwaddr addr, hwaddr size, bool pio)
{
    /* a sized region's flat range may have several zones */
    for (guint i = cio.zones->len; i-- > 0;) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (z->pio == pio && z->range_addr == addr && z->range_size == size) {
            zone_remove(z);
        }
    }
}

static bool zone_plain_exists(CoalescedZone *sized)
{
    for (guint i = 0; i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (!z->access_len && !z->covered && z->pio == sized->pio &&
            z->range_addr == sized->range_addr &&
            z->range_size == sized->range_size) {
            return true;
        }
    }
    return false;
}

/*
 * KVM refused a sized zone: replace every sized zone, and every flat range
 * they left without one, by the zones of the flat ranges.
 */
static void zones_fall_back(void)
{
    g_autoptr(GPtrArray) sized = g_ptr_array_new();

    for (guint i = 0; i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);

        if (z->access_len || z->covered) {
            g_ptr_array_add(sized, z);
        }
    }
    for (guint i = 0; i < sized->len; i++) {
        CoalescedZone *z = g_ptr_array_index(sized, i);

        if (!zone_plain_exists(z)) {
            zone_start(zone_new(z->region, z->latch, z->pio, z->range_addr,
                                z->range_size, z->range_addr, z->range_size,
                                0));
        }
        zone_remove(z);
    }
}

static void coalesced_begin(MemoryListener *listener)
{
    cio.in_update = true;
}

static void coalesced_commit(MemoryListener *listener)
{
    cio.in_update = false;
    if (cio.replay_after_update) {
        cio.replay_after_update = false;
        /*
         * The update is over: every address space has its new view and,
         * this listener being the last, every listener has seen the
         * commit, so a replay may begin a memory transaction of its own.
         * Replay now, with the BQL still held: a vCPU's next access to
         * what is now at a zone's address waits for it, so it comes after
         * the writes queued before.
         */
        drain();
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

void kvm_coalesced_io_init(KVMState *s)
{
    cio.kvm = s;
    cio.mmio_cap = kvm_check_extension(s, KVM_CAP_COALESCED_MMIO) > 0;
    cio.pio_cap = cio.mmio_cap &&
                  kvm_check_extension(s, KVM_CAP_COALESCED_PIO) > 0;
    cio.zone_len_cap = cio.mmio_cap &&
                       kvm_check_extension(s, KVM_CAP_COALESCED_ZONE_LEN) > 0;
    cio.zones = g_ptr_array_new();
    cio.pending = g_ptr_array_new();
    cio.orphans = g_array_new(false, false, sizeof(OrphanWrite));
    cio.replay_bh = qemu_bh_new(replay_bh, NULL);

    /*
     * The memory listener's begin and commit hooks bracket every topology
     * update (they are called for all address spaces).  Its priority,
     * above the accelerator's and the device backends', makes its commit
     * the last: a replay from there finds every listener committed.
     */
    cio.io_listener = (MemoryListener) {
        .name = "kvm-coalesced-pio",
        .coalesced_io_add = coalesced_pio_add,
        .coalesced_io_del = coalesced_pio_del,
        .priority = MEMORY_LISTENER_PRIORITY_ACCEL,
    };
    cio.mem_listener = (MemoryListener) {
        .name = "kvm-coalesced-mmio",
        .begin = coalesced_begin,
        .commit = coalesced_commit,
        .coalesced_io_add = coalesced_mmio_add,
        .coalesced_io_del = coalesced_mmio_del,
        .priority = MEMORY_LISTENER_PRIORITY_DEV_BACKEND + 1,
    };
    memory_listener_register(&cio.io_listener, &address_space_io);
    memory_listener_register(&cio.mem_listener, &address_space_memory);

    /* On stop: the highest priority runs first (and prepare before main) */
    qemu_add_vm_change_state_handler_prio_full(vm_state_changed,
                                               vm_state_changed, NULL,
                                               INT_MAX);
}

void kvm_coalesced_io_vcpu_init(KVMState *s, struct kvm_run *run)
{
    int page = kvm_check_extension(s, KVM_CAP_COALESCED_MMIO);
    size_t page_size = qemu_real_host_page_size();

    if (page > 0 && !cio.ring) {
        cio.ring = (void *)((char *)run + page * page_size);
        cio.ring_entries =
            (page_size - sizeof(struct kvm_coalesced_mmio_ring)) /
            sizeof(struct kvm_coalesced_mmio);
    }
}

void kvm_coalesced_io_note_exit(bool pio, uint64_t addr, unsigned len)
{
    ExitFilter *f;

    /*
     * Called on every write exit, outside the BQL.  An exit racing with a
     * zone change may be counted for the zone just going, or not for the
     * one just coming: only the statistics see it.
     */
    RCU_READ_LOCK_GUARD();
    f = qatomic_rcu_read(&cio.filter);
    for (unsigned i = 0; f && i < f->nr; i++) {
        if (zone_covers(f->zone[i], pio, addr, len)) {
            stat64_add(&f->zone[i]->exits, 1);
            trace_kvm_coalesced_io_exit(pio, addr, len);
            return;
        }
    }
}

static bool get_coalesced_pio(Object *obj, Error **errp)
{
    return cio.pio_allowed;
}

static void set_coalesced_pio(Object *obj, bool value, Error **errp)
{
    if (cio.kvm) {
        error_setg(errp, "coalesced-pio cannot change once KVM is initialized");
        return;
    }
    cio.pio_allowed = value;
}

void kvm_coalesced_io_class_init(ObjectClass *oc)
{
    object_class_property_add_bool(oc, "coalesced-pio", get_coalesced_pio,
                                   set_coalesced_pio);
    object_class_property_set_description(oc, "coalesced-pio",
        "Let KVM queue guest writes to port I/O ranges marked coalesced, "
        "such as the RTC index port 0x70, instead of exiting for each "
        "(default on)");
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
    info->x_zone_len = sized_zones();
    info->ring_entries = cio.ring_entries;
    info->drains = cio.drains;
    info->stop_drains = cio.stop_drains;
    info->max_depth = cio.max_depth;

    for (guint i = 0; i < cio.zones->len; i++) {
        CoalescedZone *z = g_ptr_array_index(cio.zones, i);
        CoalescedIOZone *qz;

        if (z->covered) {
            continue;
        }
        qz = g_new0(CoalescedIOZone, 1);
        qz->region = g_strdup(z->region);
        qz->space = z->pio ? COALESCED_IO_SPACE_IO : COALESCED_IO_SPACE_MEMORY;
        qz->addr = z->addr;
        qz->size = z->size;
        qz->latch = z->latch;
        qz->has_x_access_len = z->access_len != 0;
        qz->x_access_len = z->access_len;
        qz->registered = z->registered;
        if (z->error) {
            qz->error = g_strdup_printf("KVM refused it: %s",
                                        strerror(-z->error));
        } else if (z->why_not) {
            qz->error = g_strdup(z->why_not);
        }
        qz->writes = z->writes;
        qz->replays = z->replays;
        qz->exits = stat64_get(&z->exits);
        QAPI_LIST_APPEND(tail, qz);
    }
    return info;
}
