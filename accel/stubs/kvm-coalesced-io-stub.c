/*
 * KVM coalesced I/O, for builds without KVM
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/qapi-commands-coalesced-io.h"

CoalescedIOInfo *qmp_x_query_coalesced_io(Error **errp)
{
    CoalescedIOInfo *info = g_new0(CoalescedIOInfo, 1);

    info->pio_allowed = true;
    info->reason = g_strdup("coalesced I/O needs the KVM accelerator, "
                            "which this QEMU is built without");
    return info;
}
