/*
 * DIAGNOSE 0x318 for users: the machine's "x-diag318" QOM property and
 * HMP "info diag318", both showing the guest's control program code
 * decoded and raw.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qapi/qapi-visit-s390-diag318.h"
#include "monitor/monitor.h"
#include "hw/core/cpu.h"
#include "cpu.h"
#include "hw/s390x/diag318.h"

/* Control Program Name Codes we can put a name to. */
static const char *diag318_cpnc_name(uint8_t cpnc)
{
    switch (cpnc) {
    case S390_DIAG318_CPNC_LINUX:
        return "Linux";
    default:
        return NULL;
    }
}

S390Diag318Info *s390_diag318_describe(uint64_t code)
{
    S390Diag318Info *info = g_new0(S390Diag318Info, 1);
    const char *name;

    info->available = s390_has_feat(S390_FEAT_DIAG_318);
    info->code = code;
    info->name_code = code >> S390_DIAG318_CPNC_SHIFT;
    name = diag318_cpnc_name(info->name_code);
    info->name = g_strdup(name);
    info->version = g_strdup_printf("%014" PRIx64,
                                    code & S390_DIAG318_CPVC_MASK);
    return info;
}

static void diag318_machine_get(Object *obj, Visitor *v, const char *name,
                                void *opaque, Error **errp)
{
    g_autoptr(S390Diag318Info) info = s390_diag318_describe(s390_diag318_get());

    visit_type_S390Diag318Info(v, name, &info, errp);
}

void s390_diag318_machine_class_init(ObjectClass *oc)
{
    object_class_property_add(oc, "x-diag318", "S390Diag318Info",
                              diag318_machine_get, NULL, NULL, NULL);
    object_class_property_set_description(oc, "x-diag318",
        "control program code the guest reported with DIAGNOSE 0x318");
}

void hmp_info_diag318(Monitor *mon, const QDict *qdict)
{
    g_autoptr(S390Diag318Info) info = s390_diag318_describe(s390_diag318_get());
    int i;

    if (!info->available) {
        monitor_printf(mon, "DIAG 318: not offered by this CPU model\n");
        return;
    }
    if (!info->code) {
        monitor_printf(mon, "DIAG 318: no code set since the last reset\n");
        return;
    }
    monitor_printf(mon, "DIAG 318 code: 0x%016" PRIx64 "\n", info->code);
    monitor_printf(mon, "  name code: %u (%s)\n", info->name_code,
                   info->name ?: "unknown");
    monitor_printf(mon, "  version:  ");
    for (i = 0; i < 14; i += 2) {
        monitor_printf(mon, " %.2s", info->version + i);
    }
    monitor_printf(mon, "\n");
}
