/*
 * Fuzzing: run the thread-pool completions an input started inside that
 * input
 *
 * Devices such as virtio-pmem answer requests from thread_pool_submit_aio()
 * completions.  flush_events() runs only what the main loop has pending at
 * the moment; a completion whose worker is still running would otherwise
 * run in a later input (or in none), and a crash it causes would be blamed
 * on the wrong input.  The fuzzer binaries are linked with
 * -Wl,-wrap,thread_pool_submit_aio: every submission is counted here, and
 * fuzz_drain_async() runs the main loop until each has completed.
 *
 * Downstream addition of this tree; not in upstream QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "block/aio.h"
#include "block/thread-pool.h"
#include "fuzz.h"
#include "dm_fuzz.h"

/* How long an input may wait for its completions before we give up. */
#define DRAIN_TIMEOUT_US (10 * G_USEC_PER_SEC)

typedef struct AsyncWrap {
    BlockCompletionFunc *cb;
    void *opaque;
} AsyncWrap;

static unsigned async_pending;

BlockAIOCB *__real_thread_pool_submit_aio(ThreadPoolFunc *func, void *arg,
                                          BlockCompletionFunc *cb,
                                          void *opaque);
BlockAIOCB *__wrap_thread_pool_submit_aio(ThreadPoolFunc *func, void *arg,
                                          BlockCompletionFunc *cb,
                                          void *opaque);

static void async_wrap_done(void *opaque, int ret)
{
    AsyncWrap *w = opaque;
    BlockCompletionFunc *cb = w->cb;
    void *cb_opaque = w->opaque;

    g_free(w);
    async_pending--;
    if (cb) {
        cb(cb_opaque, ret);
    }
}

BlockAIOCB *__wrap_thread_pool_submit_aio(ThreadPoolFunc *func, void *arg,
                                          BlockCompletionFunc *cb,
                                          void *opaque)
{
    AsyncWrap *w = g_new(AsyncWrap, 1);

    w->cb = cb;
    w->opaque = opaque;
    async_pending++;
    return __real_thread_pool_submit_aio(func, arg, async_wrap_done, w);
}

unsigned fuzz_async_pending(void)
{
    return async_pending;
}

bool fuzz_drain_async(void)
{
    int64_t deadline = g_get_monotonic_time() + DRAIN_TIMEOUT_US;

    /*
     * A completion may schedule a bottom half that submits more work
     * (virtio-pmem's next sync): done when neither is left.  The pending
     * events are run a bounded number of times, as flush_events() does:
     * some sources never stop being ready.
     */
    for (;;) {
        while (async_pending) {
            if (g_get_monotonic_time() > deadline) {
                return false;
            }
            main_loop_wait(true);
            if (async_pending) {
                g_usleep(20);     /* the worker is still at it */
            }
        }
        for (int i = 0; i < 10 && !async_pending &&
             g_main_context_pending(NULL); i++) {
            main_loop_wait(true);
        }
        if (!async_pending) {
            return true;
        }
    }
}
