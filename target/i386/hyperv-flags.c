/*
 * Hyper-V synthetic timer flags: dependencies and what CPUID says of them
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitops.h"
#include "qemu/host-utils.h"
#include "hyperv-flags.h"

static const struct {
    int flag;
    const char *name;
    uint64_t needs;
} timer_flags[] = {
    { HV_FLAG_TIME, "hv-time", 0 },
    { HV_FLAG_VPINDEX, "hv-vpindex", 0 },
    { HV_FLAG_SYNIC, "hv-synic", BIT_ULL(HV_FLAG_VPINDEX) },
    { HV_FLAG_STIMER, "hv-stimer",
      BIT_ULL(HV_FLAG_SYNIC) | BIT_ULL(HV_FLAG_TIME) },
    { HV_FLAG_STIMER_DIRECT, "hv-stimer-direct", BIT_ULL(HV_FLAG_STIMER) },
};

const char *hyperv_flag_name(int flag)
{
    for (int i = 0; i < ARRAY_SIZE(timer_flags); i++) {
        if (timer_flags[i].flag == flag) {
            return timer_flags[i].name;
        }
    }
    return NULL;
}

bool hyperv_flags_check_deps(uint64_t features, Error **errp)
{
    /* From the most dependent flag down, so the first error is the one asked */
    for (int i = ARRAY_SIZE(timer_flags) - 1; i >= 0; i--) {
        uint64_t missing = timer_flags[i].needs & ~features;

        if (!(features & BIT_ULL(timer_flags[i].flag)) || !missing) {
            continue;
        }
        error_setg(errp, "%s needs %s", timer_flags[i].name,
                   hyperv_flag_name(ctz64(missing)));
        error_append_hint(errp, "Add %s=on to -cpu.\n",
                          hyperv_flag_name(ctz64(missing)));
        return false;
    }
    return true;
}

uint32_t hyperv_flags_timer_cpuid_edx(uint64_t features)
{
    if ((features & BIT_ULL(HV_FLAG_STIMER_DIRECT)) &&
        hyperv_flags_check_deps(features, NULL)) {
        return HV_CPUID_EDX_STIMER_DIRECT;
    }
    return 0;
}
