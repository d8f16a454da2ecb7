/*
 * Guest-physical ranges as KVM_CLEAR_DIRTY_LOG arguments
 *
 * KVM_CLEAR_DIRTY_LOG takes a slot-relative window: first_page a multiple
 * of 64, num_pages (a u32) a multiple of 64 unless the window ends at the
 * end of the slot, and a bitmap of the pages inside the window to clear.
 * These helpers turn "clear [start, end) of guest-physical memory" into such
 * windows and say which pages of each window belong to the range.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_KVM_DIRTY_RANGE_H
#define SYSTEM_KVM_DIRTY_RANGE_H

/* KVM's alignment for first_page and num_pages */
#define KVM_CLEAR_ALIGN_PAGES   64

typedef struct KVMClearWindow {
    uint64_t first_page;    /* slot-relative, a multiple of 64 */
    uint32_t num_pages;     /* a multiple of 64, or up to the slot's end */
    uint32_t mask_first;    /* first page to clear, relative to first_page */
    uint32_t mask_pages;    /* pages to clear from mask_first on */
} KVMClearWindow;

/*
 * The next window of the byte range [*pos, end) inside the slot that starts
 * at guest-physical @slot_gpa (page aligned) and holds @slot_pages pages of
 * 1 << @page_shift bytes.  Only pages that lie wholly inside the range are
 * put in the mask: a partly covered page keeps its dirty bit.  A window
 * spans at most @max_pages pages (rounded down to a multiple of 64, at
 * least 64).
 *
 * Returns false when the rest of the range holds no whole page of the
 * slot; otherwise fills @w and moves *pos past the pages it covers.
 */
bool kvm_dirty_clear_next_window(uint64_t slot_gpa, uint64_t slot_pages,
                                 unsigned page_shift, uint64_t *pos,
                                 uint64_t end, uint64_t max_pages,
                                 KVMClearWindow *w);

#endif
