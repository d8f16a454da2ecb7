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
#include "kvm/hyperv-proto.h"

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

bool hyperv_flags_check_deps(uint64_t features, bool synic_kvm_only,
                             Error **errp)
{
    /* From the most dependent flag down, so the first error is the one asked */
    for (int i = ARRAY_SIZE(timer_flags) - 1; i >= 0; i--) {
        uint64_t missing = timer_flags[i].needs & ~features;

        if (synic_kvm_only && timer_flags[i].flag == HV_FLAG_SYNIC) {
            missing &= ~BIT_ULL(HV_FLAG_VPINDEX);
        }

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
        hyperv_flags_check_deps(features, false, NULL)) {
        return HV_CPUID_EDX_STIMER_DIRECT;
    }
    return 0;
}

/* "Hv#1": the Hyper-V interface signature, CPUID 0x40000001 EAX */
#define HV_INTERFACE_SIGNATURE  0x31237648

/* The CPUID bits that tell a guest it has a flag's enlightenment */
static const struct {
    const char *name;
    uint32_t leaf;
    uint32_t eax, edx;
} cpuid_bits[] = {
    { "hv-relaxed", HV_CPUID_ENLIGHTMENT_INFO, HV_RELAXED_TIMING_RECOMMENDED },
    { "hv-vapic", HV_CPUID_FEATURES, HV_APIC_ACCESS_AVAILABLE },
    { "hv-time", HV_CPUID_FEATURES,
      HV_TIME_REF_COUNT_AVAILABLE | HV_REFERENCE_TSC_AVAILABLE },
    { "hv-crash", HV_CPUID_FEATURES, 0, HV_GUEST_CRASH_MSR_AVAILABLE },
    { "hv-reset", HV_CPUID_FEATURES, HV_RESET_AVAILABLE },
    { "hv-vpindex", HV_CPUID_FEATURES, HV_VP_INDEX_AVAILABLE },
    { "hv-runtime", HV_CPUID_FEATURES, HV_VP_RUNTIME_AVAILABLE },
    { "hv-synic", HV_CPUID_FEATURES, HV_SYNIC_AVAILABLE },
    { "hv-stimer", HV_CPUID_FEATURES, HV_SYNTIMERS_AVAILABLE },
    { "hv-frequencies", HV_CPUID_FEATURES, HV_ACCESS_FREQUENCY_MSRS,
      HV_FREQUENCY_MSRS_AVAILABLE },
    { "hv-reenlightenment", HV_CPUID_FEATURES,
      HV_ACCESS_REENLIGHTENMENTS_CONTROL },
    { "hv-tlbflush", HV_CPUID_ENLIGHTMENT_INFO,
      HV_REMOTE_TLB_FLUSH_RECOMMENDED | HV_EX_PROCESSOR_MASKS_RECOMMENDED },
    { "hv-evmcs", HV_CPUID_ENLIGHTMENT_INFO, HV_ENLIGHTENED_VMCS_RECOMMENDED },
    { "hv-ipi", HV_CPUID_ENLIGHTMENT_INFO,
      HV_CLUSTER_IPI_RECOMMENDED | HV_EX_PROCESSOR_MASKS_RECOMMENDED },
    { "hv-stimer-direct", HV_CPUID_FEATURES, 0,
      HV_STIMER_DIRECT_MODE_AVAILABLE },
    { "hv-avic", HV_CPUID_ENLIGHTMENT_INFO, HV_DEPRECATING_AEOI_RECOMMENDED },
    { "hv-emsr-bitmap", HV_CPUID_NESTED_FEATURES, HV_NESTED_MSR_BITMAP },
    { "hv-xmm-input", HV_CPUID_FEATURES, 0, HV_HYPERCALL_XMM_INPUT_AVAILABLE },
    { "hv-tlbflush-ext", HV_CPUID_FEATURES, 0,
      HV_EXT_GVA_RANGES_FLUSH_AVAILABLE },
    { "hv-tlbflush-direct", HV_CPUID_NESTED_FEATURES, HV_NESTED_DIRECT_FLUSH },
    { "hv-syndbg", HV_CPUID_FEATURES, 0, HV_FEATURE_DEBUG_MSRS_AVAILABLE },
};

QEMU_BUILD_BUG_ON(HV_CPUID_NESTED_FEATURES - HV_CPUID_LEAF_FIRST >=
                  HV_CPUID_LEAVES);

const char **hyperv_flags_shown(const uint32_t (*regs)[4])
{
    const char **names = g_new0(const char *, ARRAY_SIZE(cpuid_bits) + 1);
    uint32_t max;
    int n = 0;

    if (!regs || regs[HV_CPUID_INTERFACE - HV_CPUID_LEAF_FIRST][0] !=
                 HV_INTERFACE_SIGNATURE) {
        return names;
    }
    /* Above the maximum leaf, CPUID answers with something else */
    max = regs[0][0];
    for (int i = 0; i < ARRAY_SIZE(cpuid_bits); i++) {
        const uint32_t *r = regs[cpuid_bits[i].leaf - HV_CPUID_LEAF_FIRST];

        if (cpuid_bits[i].leaf <= max &&
            (r[0] & cpuid_bits[i].eax) == cpuid_bits[i].eax &&
            (r[3] & cpuid_bits[i].edx) == cpuid_bits[i].edx) {
            names[n++] = cpuid_bits[i].name;
        }
    }
    return names;
}

int hyperv_flags_fetch_growing(int (*fetch)(int room, void *opaque),
                               void *opaque)
{
    int room = HV_CPUID_ENTRIES_FIRST;

    for (;;) {
        int r = fetch(room, opaque);

        if (r != -E2BIG && r < room) {
            return r;
        }
        if (room >= HV_CPUID_ENTRIES_MAX) {
            return -E2BIG;
        }
        room = MIN(room * 2, HV_CPUID_ENTRIES_MAX);
    }
}
