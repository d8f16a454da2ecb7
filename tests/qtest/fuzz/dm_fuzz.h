/*
 * Fuzzing helpers of this tree (tests/qtest/fuzz/dm_fuzz_async.c)
 *
 * Downstream addition of this tree; not in upstream QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef DM_FUZZ_H
#define DM_FUZZ_H

/* thread_pool_submit_aio() work submitted and not completed yet */
unsigned fuzz_async_pending(void);

/*
 * Run the main loop until every submitted piece of work has completed and
 * nothing else is pending; false if that took more than 10 s.
 */
bool fuzz_drain_async(void);

#endif
