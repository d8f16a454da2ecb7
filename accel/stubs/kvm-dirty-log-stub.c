/*
 * KVM dirty log, for builds without KVM
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/qapi-commands-dirty-log.h"
#include "system/kvm-dirty-log.h"

void kvm_dirty_log_migration_start(void)
{
}

bool kvm_dirty_log_migration_check(bool live, Error **errp)
{
    return true;
}

DirtyLogInfo *qmp_x_query_dirty_log(Error **errp)
{
    DirtyLogInfo *info = g_new0(DirtyLogInfo, 1);

    info->reason = g_strdup("this QEMU is built without KVM");
    return info;
}
