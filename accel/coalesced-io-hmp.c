/*
 * HMP `info coalesced-io': the state and statistics of KVM coalesced I/O
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-coalesced-io.h"
#include "qapi/qapi-visit-coalesced-io.h"

void hmp_info_coalesced_io(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    CoalescedIOInfo *info = qmp_x_query_coalesced_io(&err);

    if (hmp_handle_error(mon, err)) {
        return;
    }
    if (!info->active) {
        monitor_printf(mon, "coalesced I/O: inactive: %s\n", info->reason);
        qapi_free_CoalescedIOInfo(info);
        return;
    }
    monitor_printf(mon, "coalesced I/O: active, MMIO %s, port I/O %s%s, "
                   "zones of one access length %s\n",
                   info->mmio ? "yes" : "no", info->pio ? "yes" : "no",
                   info->pio_allowed ? ""
                                     : " (off: -accel kvm,coalesced-pio=off)",
                   info->x_zone_len ? "yes" : "no");
    monitor_printf(mon, "ring: %u entries, %" PRIu64 " drains (%" PRIu64
                   " on VM stop), deepest %u\n", info->ring_entries,
                   info->drains, info->stop_drains, info->max_depth);
    monitor_printf(mon, "%-6s %-18s %-6s %-6s %-16s %10s %10s %8s  %s\n",
                   "space", "range", "kind", "access", "region", "writes",
                   "replays", "exits", "state");
    for (CoalescedIOZoneList *l = info->zones; l; l = l->next) {
        CoalescedIOZone *z = l->value;
        g_autofree char *range = g_strdup_printf("0x%" PRIx64 "+0x%" PRIx64,
                                                 z->addr, z->size);
        g_autofree char *access = z->has_x_access_len ?
            g_strdup_printf("%u-byte", z->x_access_len) : g_strdup("any");

        monitor_printf(mon, "%-6s %-18s %-6s %-6s %-16s %10" PRIu64
                       " %10" PRIu64 " %8" PRIu64 "  %s\n",
                       CoalescedIOSpace_str(z->space), range,
                       z->latch ? "latch" : "queue", access, z->region,
                       z->writes,
                       z->replays, z->exits,
                       z->registered ? "registered" : z->error);
    }
    qapi_free_CoalescedIOInfo(info);
}
