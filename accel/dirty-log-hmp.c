/*
 * HMP `info dirty-log': how KVM's dirty log is used, with statistics
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-dirty-log.h"
#include "qapi/qapi-visit-dirty-log.h"

void hmp_info_dirty_log(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    g_autoptr(DirtyLogInfo) info = qmp_x_query_dirty_log(&err);

    if (hmp_handle_error(mon, err)) {
        return;
    }
    if (info->manual_protect) {
        monitor_printf(mon, "manual reprotect: active%s\n",
                       info->initially_set ? ", initially set" : "");
    } else {
        monitor_printf(mon, "manual reprotect: inactive: %s\n", info->reason);
    }
    monitor_printf(mon, "fetches: %" PRIu64 " (%" PRIu64 " pages dirty, %"
                   PRIu64 " us)\n", info->fetches, info->pages_dirty,
                   info->fetch_ns / 1000);
    monitor_printf(mon, "clears: %" PRIu64 " calls for %" PRIu64
                   " requests (%" PRIu64 " pages, %" PRIu64 " us), %" PRIu64
                   " failed\n", info->clears, info->clear_requests,
                   info->pages_cleared, info->clear_ns / 1000,
                   info->clear_errors);
}
