/*
 * KVM dirty logging with manual reprotect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)
 *
 * kvm-all.c keeps the slots and the log_sync/log_clear listener hooks; this
 * file decides whether manual protect is on, fetches bitmaps, turns a clear
 * request into KVM_CLEAR_DIRTY_LOG calls and keeps the statistics
 * (x-query-dirty-log, info dirty-log).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/kvm.h>
#include "qemu/bitmap.h"
#include "qemu/error-report.h"
#include "qemu/stats64.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qapi/qapi-commands-dirty-log.h"
#include "qapi/qapi-visit-common.h"
#include "system/kvm.h"
#include "system/kvm_int.h"
#include "system/kvm-dirty-log.h"
#include "system/kvm-dirty-range.h"
#include "trace.h"

/* The address-ordered view of a listener's slots, for the clear lookup. */
typedef struct KVMDirtySlotIndex {
    KVMSlot **slots;
    unsigned n;
    bool stale;
} KVMDirtySlotIndex;

static struct {
    OnOffAuto mode;             /* property dirty-log-manual-protect */
    uint64_t flags;             /* what we enabled, 0 when off */
    const char *reason;         /* why it is off */

    Stat64 fetches, fetch_ns, pages_dirty;
    Stat64 requests, clears, pages_cleared, clear_ns, clear_errors;

    /* first clear failure not yet taken by migration; under err_lock */
    QemuMutex err_lock;
    Error *err;

    /* reusable clear mask; used with the slots lock held */
    unsigned long *mask;
    uint64_t mask_bits;
} dl = {
    .mode = ON_OFF_AUTO_AUTO,
    .reason = "the KVM accelerator is not in use",
};

/* Properties */

static void dl_get_mode(Object *obj, Visitor *v, const char *name,
                        void *opaque, Error **errp)
{
    visit_type_OnOffAuto(v, name, &dl.mode, errp);
}

static void dl_set_mode(Object *obj, Visitor *v, const char *name,
                        void *opaque, Error **errp)
{
    visit_type_OnOffAuto(v, name, &dl.mode, errp);
}

void kvm_dirty_log_class_init(ObjectClass *oc)
{
    object_class_property_add(oc, "dirty-log-manual-protect", "OnOffAuto",
                              dl_get_mode, dl_set_mode, NULL, NULL);
    object_class_property_set_description(oc, "dirty-log-manual-protect",
        "Re-protect dirty pages with KVM_CLEAR_DIRTY_LOG just before "
        "migration sends them (auto: where the kernel offers it)");
}

/* Setup */

int kvm_dirty_log_init(KVMState *s, bool dirty_ring)
{
    uint64_t offered, want;
    int ret;

    qemu_mutex_init(&dl.err_lock);
    s->manual_dirty_log_protect = 0;
    dl.flags = 0;

    if (dl.mode == ON_OFF_AUTO_OFF) {
        dl.reason = "switched off (dirty-log-manual-protect=off)";
        return 0;
    }
    if (dirty_ring) {
        /*
         * The dirty ring starts with every page write-protected; "initially
         * set" would contradict it.
         */
        dl.reason = "the dirty ring is in use";
    } else {
        offered = kvm_check_extension(s, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
        want = offered & (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
                          KVM_DIRTY_LOG_INITIALLY_SET);
        if (!(want & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
            dl.reason = "the kernel lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2";
        } else {
            ret = kvm_vm_enable_cap(s, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 0,
                                    want);
            if (ret == 0) {
                dl.flags = want;
                dl.reason = NULL;
                s->manual_dirty_log_protect = want;
                trace_kvm_dirty_log_manual(want);
                return 0;
            }
            dl.reason = "the kernel refused to enable "
                        "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2";
        }
    }
    if (dl.mode == ON_OFF_AUTO_ON) {
        error_report("dirty-log-manual-protect=on: %s", dl.reason);
        return -EINVAL;
    }
    if (!dirty_ring) {
        warn_report("KVM dirty log: manual reprotect not available (%s); "
                    "KVM_GET_DIRTY_LOG write-protects whole slots", dl.reason);
    }
    return 0;
}

/* Fetch */

bool kvm_dirty_log_fetch(KVMState *s, KVMSlot *slot)
{
    struct kvm_dirty_log d = {
        .slot = slot->slot | (slot->as_id << 16),
        .dirty_bitmap = slot->dirty_bmap,
    };
    int64_t t0 = get_clock();
    int ret;

    ret = kvm_vm_ioctl(s, KVM_GET_DIRTY_LOG, &d);
    stat64_add(&dl.fetches, 1);
    stat64_add(&dl.fetch_ns, get_clock() - t0);
    if (ret == -ENOENT) {
        /* the kernel keeps no bitmap for this slot */
        return true;
    }
    if (ret) {
        error_report_once("KVM_GET_DIRTY_LOG failed for slot %d: %s",
                          slot->slot, strerror(-ret));
        return false;
    }
    return true;
}

void kvm_dirty_log_fetched(KVMSlot *slot, uint64_t dirty)
{
    stat64_add(&dl.pages_dirty, dirty);
    trace_kvm_dirty_log_fetch(slot->slot, dirty);
}

/* Slot lookup */

static KVMDirtySlotIndex *slot_index(KVMMemoryListener *kml)
{
    if (!kml->dirty_index) {
        kml->dirty_index = g_new0(KVMDirtySlotIndex, 1);
        kml->dirty_index->stale = true;
    }
    return kml->dirty_index;
}

void kvm_dirty_log_slots_changed(KVMMemoryListener *kml)
{
    slot_index(kml)->stale = true;
}

static int slot_cmp(const void *a, const void *b)
{
    const KVMSlot *x = *(KVMSlot * const *)a, *y = *(KVMSlot * const *)b;

    return x->start_addr < y->start_addr ? -1 : x->start_addr > y->start_addr;
}

static void slot_index_rebuild(KVMMemoryListener *kml, KVMDirtySlotIndex *idx)
{
    unsigned i;

    idx->slots = g_renew(KVMSlot *, idx->slots, kml->nr_slots_allocated);
    idx->n = 0;
    for (i = 0; i < kml->nr_slots_allocated; i++) {
        if (kml->slots[i].memory_size) {
            idx->slots[idx->n++] = &kml->slots[i];
        }
    }
    qsort(idx->slots, idx->n, sizeof(idx->slots[0]), slot_cmp);
    idx->stale = false;
}

/* Position of the first slot that ends after @addr (slots never overlap). */
static unsigned slot_index_find(KVMDirtySlotIndex *idx, hwaddr addr)
{
    unsigned lo = 0, hi = idx->n;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        KVMSlot *m = idx->slots[mid];

        if (m->start_addr + m->memory_size <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Clear */

static void clear_failed(KVMSlot *slot, const KVMClearWindow *w, int err)
{
    stat64_add(&dl.clear_errors, 1);
    trace_kvm_dirty_log_clear_failed(slot->slot, w->first_page, w->num_pages,
                                     err);
    qemu_mutex_lock(&dl.err_lock);
    if (!dl.err) {
        error_setg_errno(&dl.err, -err, "KVM_CLEAR_DIRTY_LOG failed for slot "
                         "%d, pages 0x%" PRIx64 "+0x%" PRIx32,
                         slot->slot, w->first_page, w->num_pages);
    }
    qemu_mutex_unlock(&dl.err_lock);
}

/* The window's pages that the last fetch reported dirty, or NULL if none. */
static unsigned long *clear_mask(KVMSlot *slot, const KVMClearWindow *w)
{
    uint64_t from = w->first_page + w->mask_first;
    uint64_t tail;

    if (find_next_bit(slot->dirty_bmap, from + w->mask_pages, from) >=
        from + w->mask_pages) {
        return NULL;
    }
    if (w->mask_first == 0 && w->mask_pages == w->num_pages) {
        /* first_page is a multiple of 64: a word boundary of the cache */
        return slot->dirty_bmap + BIT_WORD(w->first_page);
    }
    if (dl.mask_bits < w->num_pages) {
        g_free(dl.mask);
        dl.mask = bitmap_new(w->num_pages);
        dl.mask_bits = w->num_pages;
    }
    bitmap_copy_with_src_offset(dl.mask, slot->dirty_bmap, w->first_page,
                                w->num_pages);
    bitmap_clear(dl.mask, 0, w->mask_first);
    tail = w->mask_first + w->mask_pages;
    bitmap_clear(dl.mask, tail, w->num_pages - tail);
    return dl.mask;
}

static void clear_slot(KVMMemoryListener *kml, KVMSlot *slot, hwaddr start,
                       hwaddr end, unsigned page_shift)
{
    uint64_t pos = start;
    KVMClearWindow w;

    while (kvm_dirty_clear_next_window(slot->start_addr,
                                       slot->memory_size >> page_shift,
                                       page_shift, &pos, end, UINT64_MAX,
                                       &w)) {
        unsigned long *mask = clear_mask(slot, &w);
        struct kvm_clear_dirty_log d;
        uint64_t pages;
        int ret;

        if (!mask) {
            continue;           /* nothing reported dirty: nothing to protect */
        }
        pages = bitmap_count_one_with_offset(slot->dirty_bmap,
                                             w.first_page + w.mask_first,
                                             w.mask_pages);
        d = (struct kvm_clear_dirty_log) {
            .slot = slot->slot | (kml->as_id << 16),
            .num_pages = w.num_pages,
            .first_page = w.first_page,
            .dirty_bitmap = mask,
        };
        ret = kvm_vm_ioctl(kvm_state, KVM_CLEAR_DIRTY_LOG, &d);
        stat64_add(&dl.clears, 1);
        if (ret < 0 && ret != -ENOENT) {
            /* the pages stay dirty in the kernel and in our cache */
            clear_failed(slot, &w, ret);
            continue;
        }
        /* a second clear of the range must not touch newer dirty bits */
        bitmap_clear(slot->dirty_bmap, w.first_page + w.mask_first,
                     w.mask_pages);
        stat64_add(&dl.pages_cleared, pages);
        trace_kvm_dirty_log_clear(slot->slot, w.first_page, w.num_pages, pages);
    }
}

void kvm_dirty_log_clear(KVMMemoryListener *kml, MemoryRegionSection *section)
{
    hwaddr start = section->offset_within_address_space;
    hwaddr end = start + int128_get64(section->size);
    unsigned page_shift = ctz64(qemu_real_host_page_size());
    KVMDirtySlotIndex *idx;
    int64_t t0;
    unsigned i;

    if (!dl.flags || start == end) {
        return;     /* without manual protect, the fetch re-protected */
    }
    t0 = get_clock();
    stat64_add(&dl.requests, 1);
    idx = slot_index(kml);
    if (idx->stale) {
        slot_index_rebuild(kml, idx);
    }
    for (i = slot_index_find(idx, start);
         i < idx->n && idx->slots[i]->start_addr < end; i++) {
        KVMSlot *slot = idx->slots[i];

        /* we never clear what was not fetched */
        if ((slot->flags & KVM_MEM_LOG_DIRTY_PAGES) && slot->dirty_bmap) {
            clear_slot(kml, slot, start, end, page_shift);
        }
    }
    stat64_add(&dl.clear_ns, get_clock() - t0);
}

/* Migration */

static Error *take_error(void)
{
    Error *err;

    if (!dl.flags) {
        return NULL;
    }
    qemu_mutex_lock(&dl.err_lock);
    err = dl.err;
    dl.err = NULL;
    qemu_mutex_unlock(&dl.err_lock);
    return err;
}

void kvm_dirty_log_migration_start(void)
{
    Error *err = take_error();

    if (err) {
        /* a dirty-rate measurement's, say: counted in clear-errors */
        trace_kvm_dirty_log_clear_error_dropped(error_get_pretty(err));
        error_free(err);
    }
}

bool kvm_dirty_log_migration_check(bool live, Error **errp)
{
    Error *err = take_error();

    if (!err) {
        return true;
    }
    if (!live) {
        /*
         * vCPUs stopped for good (after switchover, in postcopy) or for
         * now: the failed window's pages stay dirty in the kernel, so a
         * later sync reports them again and nothing is lost; with no vCPU
         * writing, nothing has to converge.
         */
        warn_reportf_err(err, "dirty-log re-protect failed with vCPUs "
                         "stopped, not fatal: ");
        return true;
    }
    error_propagate_prepend(errp, err, "dirty-log re-protect failed: ");
    return false;
}

/* QMP */

DirtyLogInfo *qmp_x_query_dirty_log(Error **errp)
{
    DirtyLogInfo *info = g_new0(DirtyLogInfo, 1);

    info->manual_protect = dl.flags & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
    info->initially_set = dl.flags & KVM_DIRTY_LOG_INITIALLY_SET;
    info->reason = g_strdup(dl.reason);
    info->fetches = stat64_get(&dl.fetches);
    info->pages_dirty = stat64_get(&dl.pages_dirty);
    info->fetch_ns = stat64_get(&dl.fetch_ns);
    info->clear_requests = stat64_get(&dl.requests);
    info->clears = stat64_get(&dl.clears);
    info->pages_cleared = stat64_get(&dl.pages_cleared);
    info->clear_ns = stat64_get(&dl.clear_ns);
    info->clear_errors = stat64_get(&dl.clear_errors);
    return info;
}
