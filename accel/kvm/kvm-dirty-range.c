/*
 * Guest-physical ranges as KVM_CLEAR_DIRTY_LOG arguments
 *
 * Pure arithmetic, kept apart from the ioctl code so that the unit tests can
 * check every edge (slot boundaries, alignment, chunk limits, huge ranges).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "system/kvm-dirty-range.h"

/* num_pages is a __u32 in struct kvm_clear_dirty_log */
#define KVM_CLEAR_MAX_PAGES \
    ((uint64_t)UINT32_MAX & ~(uint64_t)(KVM_CLEAR_ALIGN_PAGES - 1))

bool kvm_dirty_clear_next_window(uint64_t slot_gpa, uint64_t slot_pages,
                                 unsigned page_shift, uint64_t *pos,
                                 uint64_t end, uint64_t max_pages,
                                 KVMClearWindow *w)
{
    uint64_t page_size = 1ULL << page_shift;
    uint64_t slot_end = slot_gpa + (slot_pages << page_shift);
    uint64_t lo = MAX(*pos, slot_gpa);
    uint64_t hi = MIN(end, slot_end);
    uint64_t first, stop, win_first, win_end;

    /* Whole pages only: round the start up and the end down. */
    if (lo >= hi || hi - lo < page_size) {
        goto done;
    }
    first = (lo - slot_gpa + page_size - 1) >> page_shift;
    stop = (hi - slot_gpa) >> page_shift;
    if (first >= stop) {
        goto done;
    }

    max_pages = QEMU_ALIGN_DOWN(max_pages, KVM_CLEAR_ALIGN_PAGES);
    max_pages = MIN(MAX(max_pages, KVM_CLEAR_ALIGN_PAGES), KVM_CLEAR_MAX_PAGES);

    win_first = QEMU_ALIGN_DOWN(first, KVM_CLEAR_ALIGN_PAGES);
    win_end = MIN(QEMU_ALIGN_UP(stop, KVM_CLEAR_ALIGN_PAGES), slot_pages);
    if (win_end - win_first > max_pages) {
        win_end = win_first + max_pages;
    }
    stop = MIN(stop, win_end);

    w->first_page = win_first;
    w->num_pages = win_end - win_first;
    w->mask_first = first - win_first;
    w->mask_pages = stop - first;
    *pos = slot_gpa + (stop << page_shift);
    return true;

done:
    *pos = MAX(*pos, end);
    return false;
}
