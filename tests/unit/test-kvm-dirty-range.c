/*
 * Unit tests of the KVM_CLEAR_DIRTY_LOG window arithmetic
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "system/kvm-dirty-range.h"

#define SHIFT   12
#define PAGE    (1ULL << SHIFT)

/*
 * Walk [start, end) over one slot, check every window against KVM's rules,
 * and mark the pages each mask covers in @cleared (one byte per page).
 * Returns the number of windows.
 */
static unsigned walk(uint64_t slot_gpa, uint64_t slot_pages, uint64_t start,
                     uint64_t end, uint64_t max_pages, uint8_t *cleared)
{
    uint64_t pos = start;
    KVMClearWindow w;
    unsigned n = 0;

    while (kvm_dirty_clear_next_window(slot_gpa, slot_pages, SHIFT, &pos, end,
                                       max_pages, &w)) {
        g_assert_cmpuint(w.first_page % KVM_CLEAR_ALIGN_PAGES, ==, 0);
        g_assert_cmpuint(w.num_pages, >, 0);
        g_assert_cmpuint(w.first_page + w.num_pages, <=, slot_pages);
        if (w.first_page + w.num_pages != slot_pages) {
            g_assert_cmpuint(w.num_pages % KVM_CLEAR_ALIGN_PAGES, ==, 0);
        }
        g_assert_cmpuint(w.mask_pages, >, 0);
        g_assert_cmpuint(w.mask_first + w.mask_pages, <=, w.num_pages);
        for (uint64_t p = 0; cleared && p < w.mask_pages; p++) {
            uint64_t page = w.first_page + w.mask_first + p;
            g_assert_cmpuint(cleared[page], ==, 0);     /* no page twice */
            cleared[page] = 1;
        }
        g_assert_cmpuint(++n, <, 1u << 20);             /* it terminates */
    }
    return n;
}

static void test_empty_and_outside(void)
{
    uint64_t pos;
    KVMClearWindow w;

    pos = 0x100000;
    g_assert_false(kvm_dirty_clear_next_window(0x100000, 256, SHIFT, &pos,
                                               0x100000, 1024, &w));
    /* wholly below, wholly above, and touching the slot's end */
    pos = 0;
    g_assert_false(kvm_dirty_clear_next_window(0x100000, 256, SHIFT, &pos,
                                               0x100000, 1024, &w));
    pos = 0x100000 + 256 * PAGE;
    g_assert_false(kvm_dirty_clear_next_window(0x100000, 256, SHIFT, &pos,
                                               UINT64_MAX, 1024, &w));
    g_assert_cmpuint(pos, ==, UINT64_MAX);
    /* less than one whole page */
    pos = 0x100000 + 10;
    g_assert_false(kvm_dirty_clear_next_window(0x100000, 256, SHIFT, &pos,
                                               0x100000 + PAGE + 10, 1024, &w));
}

static void test_aligned(void)
{
    uint64_t pos = 0x100000 + 64 * PAGE;
    KVMClearWindow w;

    g_assert_true(kvm_dirty_clear_next_window(0x100000, 256, SHIFT, &pos,
                                              0x100000 + 128 * PAGE, 1024, &w));
    g_assert_cmpuint(w.first_page, ==, 64);
    g_assert_cmpuint(w.num_pages, ==, 64);
    g_assert_cmpuint(w.mask_first, ==, 0);
    g_assert_cmpuint(w.mask_pages, ==, 64);
    g_assert_cmpuint(pos, ==, 0x100000 + 128 * PAGE);
    g_assert_false(kvm_dirty_clear_next_window(0x100000, 256, SHIFT, &pos,
                                               0x100000 + 128 * PAGE, 1024,
                                               &w));
}

static void test_unaligned_inside(void)
{
    /* pages 10..19: a 64-page window from 0, with 10 pages in the mask */
    uint64_t pos = 10 * PAGE;
    KVMClearWindow w;

    g_assert_true(kvm_dirty_clear_next_window(0, 256, SHIFT, &pos, 20 * PAGE,
                                              1024, &w));
    g_assert_cmpuint(w.first_page, ==, 0);
    g_assert_cmpuint(w.num_pages, ==, 64);
    g_assert_cmpuint(w.mask_first, ==, 10);
    g_assert_cmpuint(w.mask_pages, ==, 10);
}

static void test_partial_pages_keep_their_bits(void)
{
    /* [page 3 + 1 byte, page 9 - 1 byte): only pages 4..7 are whole */
    uint64_t pos = 3 * PAGE + 1;
    KVMClearWindow w;

    g_assert_true(kvm_dirty_clear_next_window(0, 256, SHIFT, &pos,
                                              9 * PAGE - 1, 1024, &w));
    g_assert_cmpuint(w.mask_first, ==, 4);
    g_assert_cmpuint(w.mask_pages, ==, 4);
}

static void test_slot_end_not_aligned(void)
{
    /* a 100-page slot: the last window ends at the slot end, not at 128 */
    uint64_t pos = 0x40000000;
    KVMClearWindow w;

    g_assert_true(kvm_dirty_clear_next_window(0x40000000, 100, SHIFT, &pos,
                                              UINT64_MAX, 64, &w));
    g_assert_cmpuint(w.first_page, ==, 0);
    g_assert_cmpuint(w.num_pages, ==, 64);
    g_assert_true(kvm_dirty_clear_next_window(0x40000000, 100, SHIFT, &pos,
                                              UINT64_MAX, 64, &w));
    g_assert_cmpuint(w.first_page, ==, 64);
    g_assert_cmpuint(w.num_pages, ==, 36);
    g_assert_cmpuint(w.mask_pages, ==, 36);
    g_assert_false(kvm_dirty_clear_next_window(0x40000000, 100, SHIFT, &pos,
                                               UINT64_MAX, 64, &w));
}

static void test_chunk_edges(void)
{
    /* 1000 pages from page 5 in windows of at most 256 pages */
    g_autofree uint8_t *cleared = g_malloc0(4096);
    unsigned n = walk(0, 4096, 5 * PAGE, 1005 * PAGE, 256, cleared);

    g_assert_cmpuint(n, ==, 4);
    for (unsigned p = 0; p < 4096; p++) {
        g_assert_cmpuint(cleared[p], ==, p >= 5 && p < 1005);
    }
    /* a chunk limit below 64 pages still makes 64-page windows */
    memset(cleared, 0, 4096);
    g_assert_cmpuint(walk(0, 4096, 0, 4096 * PAGE, 1, cleared), ==, 64);
}

static void test_huge_range(void)
{
    /* a 64 TiB slot, the whole address space asked: num_pages stays a u32 */
    uint64_t slot_pages = 1ULL << 34;
    uint64_t pos = 0;
    uint64_t covered = 0;
    KVMClearWindow w;

    while (kvm_dirty_clear_next_window(1ULL << 32, slot_pages, SHIFT, &pos,
                                       UINT64_MAX, UINT64_MAX, &w)) {
        g_assert_cmpuint(w.first_page, ==, covered);
        g_assert_cmpuint(w.num_pages % KVM_CLEAR_ALIGN_PAGES, ==, 0);
        g_assert_cmpuint(w.mask_pages, ==, w.num_pages);
        covered += w.num_pages;
    }
    g_assert_cmpuint(covered, ==, slot_pages);
}

static void test_random_ranges(void)
{
    GRand *rand = g_rand_new_with_seed(20261122);

    for (int i = 0; i < 2000; i++) {
        uint64_t slot_pages = g_rand_int_range(rand, 1, 3000);
        uint64_t slot_gpa =
            (uint64_t)g_rand_int_range(rand, 0, 1 << 20) << SHIFT;
        uint64_t a = slot_gpa + g_rand_int_range(rand, -5000, 3100 * PAGE);
        uint64_t b = a + g_rand_int_range(rand, 0, 3100 * PAGE);
        uint64_t max_pages = g_rand_int_range(rand, 0, 1000);
        g_autofree uint8_t *cleared = g_malloc0(slot_pages);

        if ((int64_t)a < 0) {
            a = 0;
        }
        walk(slot_gpa, slot_pages, a, b, max_pages, cleared);
        for (uint64_t p = 0; p < slot_pages; p++) {
            uint64_t ps = slot_gpa + p * PAGE;
            bool whole = ps >= a && ps + PAGE <= b;
            g_assert_cmpuint(cleared[p], ==, whole);
        }
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kvm-dirty-range/empty-and-outside",
                    test_empty_and_outside);
    g_test_add_func("/kvm-dirty-range/aligned", test_aligned);
    g_test_add_func("/kvm-dirty-range/unaligned-inside", test_unaligned_inside);
    g_test_add_func("/kvm-dirty-range/partial-pages-keep-their-bits",
                    test_partial_pages_keep_their_bits);
    g_test_add_func("/kvm-dirty-range/slot-end-not-aligned",
                    test_slot_end_not_aligned);
    g_test_add_func("/kvm-dirty-range/chunk-edges", test_chunk_edges);
    g_test_add_func("/kvm-dirty-range/huge-range", test_huge_range);
    g_test_add_func("/kvm-dirty-range/random-ranges", test_random_ranges);
    return g_test_run();
}
