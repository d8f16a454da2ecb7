/*
 * Hyper-V flags of an x86 CPU: checked at realize, reported through QOM
 *
 * - hv-stimer-direct and the flags it needs (hv-stimer, hv-synic, hv-time,
 *   hv-vpindex) are checked for their dependencies, with an error naming
 *   the missing flag;
 * - any hv-* flag on an accelerator that cannot provide Hyper-V
 *   enlightenments (TCG, or KVM without KVM_CAP_HYPERV) is an error,
 *   unless hv-strict=off asks for the old behaviour of dropping them;
 * - under KVM, direct-mode timers need the host kernel to report them in
 *   its Hyper-V CPUID leaves; we ask it, and say so when it cannot;
 * - the read-only property hv-provided lists the hv-* flags that the
 *   Hyper-V CPUID leaves the vCPU presents show the guest.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-common.h"
#include "qapi/visitor.h"
#include "qemu/accel.h"
#include "qemu/error-report.h"
#include "cpu.h"
#include "system/kvm.h"
#include "hyperv-flags.h"
#ifdef CONFIG_KVM
#include <sys/ioctl.h>
#include <linux/kvm.h>
#endif

QEMU_BUILD_BUG_ON(HV_FLAG_TIME != HYPERV_FEAT_TIME);
QEMU_BUILD_BUG_ON(HV_FLAG_VPINDEX != HYPERV_FEAT_VPINDEX);
QEMU_BUILD_BUG_ON(HV_FLAG_SYNIC != HYPERV_FEAT_SYNIC);
QEMU_BUILD_BUG_ON(HV_FLAG_STIMER != HYPERV_FEAT_STIMER);
QEMU_BUILD_BUG_ON(HV_FLAG_STIMER_DIRECT != HYPERV_FEAT_STIMER_DIRECT);
QEMU_BUILD_BUG_ON(sizeof_field(X86CPU, hyperv_presented) !=
                  HV_CPUID_LEAVES * 4 * sizeof(uint32_t));

/* Boolean hv-* properties that are not enlightenments themselves */
static bool is_hv_flag(ObjectProperty *prop)
{
    return g_str_has_prefix(prop->name, "hv-") && !strcmp(prop->type, "bool") &&
           strcmp(prop->name, "hv-passthrough") &&
           strcmp(prop->name, "hv-enforce-cpuid") &&
           strcmp(prop->name, "hv-strict");
}

/* The hv-* flags set on @cpu, by name */
static strList *hv_flags_set(X86CPU *cpu)
{
    strList *list = NULL, **tail = &list;
    ObjectPropertyIterator iter;
    ObjectProperty *prop;

    object_property_iter_init(&iter, OBJECT(cpu));
    while ((prop = object_property_iter_next(&iter))) {
        if (is_hv_flag(prop) &&
            object_property_get_bool(OBJECT(cpu), prop->name, NULL)) {
            QAPI_LIST_APPEND(tail, g_strdup(prop->name));
        }
    }
    return list;
}

/* Refuse @cpu's hv-* flags: @who cannot provide them, because @why */
static bool refuse(X86CPU *cpu, const char *who, const char *why,
                   Error **errp)
{
    g_autoptr(strList) flags = NULL;
    g_autoptr(GString) names = g_string_new(NULL);

    if (cpu->hyperv_passthrough) {
        g_string_append(names, "hv-passthrough");
    } else {
        flags = hv_flags_set(cpu);
        for (strList *l = flags; l; l = l->next) {
            g_string_append_printf(names, "%s%s", names->len ? ", " : "",
                                   l->value);
        }
    }
    error_setg(errp, "%s cannot provide Hyper-V enlightenments (%s): %s",
               who, names->str, why);
    error_append_hint(errp, "Use KVM on a host with Hyper-V support, or "
                      "hv-strict=off to start without them (the old "
                      "behaviour).\n");
    return false;
}

#ifdef CONFIG_KVM
/*
 * EDX of CPUID 0x40000003 as the host kernel offers it, from the system
 * ioctl; -1 when it cannot tell us here (only per vCPU, or the ioctl
 * failed: the base's vCPU code says why), -2 when it has no Hyper-V CPUID
 * reporting at all.
 */
static int64_t host_hv_cpuid_edx(void)
{
    g_autofree struct kvm_cpuid2 *cpuid = NULL;
    const int nent = 64;

    if (kvm_check_extension(kvm_state, KVM_CAP_SYS_HYPERV_CPUID) <= 0) {
        return kvm_check_extension(kvm_state, KVM_CAP_HYPERV_CPUID) > 0 ?
               -1 : -2;
    }
    cpuid = g_malloc0(sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
    cpuid->nent = nent;
    if (kvm_ioctl(kvm_state, KVM_GET_SUPPORTED_HV_CPUID, cpuid) < 0) {
        return -1;
    }
    for (int i = 0; i < cpuid->nent; i++) {
        if (cpuid->entries[i].function == 0x40000003) {
            return cpuid->entries[i].edx;
        }
    }
    return 0;
}

/* Refuse what the host kernel provably cannot give the guest */
static bool kvm_check_host(X86CPU *cpu, Error **errp)
{
    int64_t edx;

    if (kvm_check_extension(kvm_state, KVM_CAP_HYPERV) <= 0) {
        if (cpu->hyperv_strict) {
            return refuse(cpu, "the host kernel's KVM",
                          "it lacks KVM_CAP_HYPERV", errp);
        }
        /*
         * The base fills no Hyper-V leaf then, but would still load the
         * flags' MSRs, and abort when KVM refuses them (hv-time: 0x40000021):
         * drop the flags for real.
         */
        warn_report("the host kernel's KVM lacks KVM_CAP_HYPERV: starting "
                    "without the hv-* flags (hv-strict=off)");
        cpu->hyperv_features = 0;
        cpu->hyperv_passthrough = false;
        return true;
    }
    if (!(cpu->hyperv_features & BIT_ULL(HYPERV_FEAT_STIMER_DIRECT))) {
        return true;
    }
    edx = host_hv_cpuid_edx();
    if (edx == -2) {
        /* and the base's fallback for such kernels never offers it */
        error_setg(errp, "hv-stimer-direct: the host kernel's KVM cannot "
                   "offer direct-mode synthetic timers (no "
                   "KVM_CAP_HYPERV_CPUID)");
        return false;
    }
    if (edx >= 0 && !(edx & HV_CPUID_EDX_STIMER_DIRECT)) {
        error_setg(errp, "hv-stimer-direct: the host kernel's KVM does not "
                   "offer direct-mode synthetic timers");
        return false;
    }
    /* edx == -1: the per-vCPU check at KVM vCPU init decides */
    return true;
}

void x86_cpu_hyperv_flags_presented(X86CPU *cpu,
                                    const struct kvm_cpuid_entry2 *entries,
                                    int n)
{
    memset(cpu->hyperv_presented, 0, sizeof(cpu->hyperv_presented));
    for (int i = 0; i < n; i++) {
        uint32_t leaf = entries[i].function - HV_CPUID_LEAF_FIRST;

        if (leaf < HV_CPUID_LEAVES) {
            cpu->hyperv_presented[leaf][0] = entries[i].eax;
            cpu->hyperv_presented[leaf][1] = entries[i].ebx;
            cpu->hyperv_presented[leaf][2] = entries[i].ecx;
            cpu->hyperv_presented[leaf][3] = entries[i].edx;
        }
    }
    cpu->hyperv_presented_valid = true;
}
#endif

bool x86_cpu_hyperv_flags_check(X86CPU *cpu, Error **errp)
{
    g_autofree char *who = NULL;

    if (!cpu->hyperv_features && !cpu->hyperv_passthrough) {
        return true;
    }
    if (!cpu->hyperv_passthrough &&
        !hyperv_flags_check_deps(cpu->hyperv_features, errp)) {
        return false;
    }
    if (kvm_enabled()) {
#ifdef CONFIG_KVM
        return kvm_check_host(cpu, errp);
#endif
    }
    if (!cpu->hyperv_strict) {
        return true;            /* the flags are dropped, as they always were */
    }
    who = g_strdup_printf("the %s accelerator", current_accel_name());
    return refuse(cpu, who, "they need KVM", errp);
}

static void get_hv_provided(Object *obj, Visitor *v, const char *name,
                            void *opaque, Error **errp)
{
    X86CPU *cpu = X86_CPU(obj);
    g_autofree const char **shown = NULL;
    strList *list = NULL, **tail = &list;

    /* Only what the vCPU's CPUID shows, whatever was asked for */
    shown = hyperv_flags_shown(cpu->hyperv_presented_valid ?
        (const uint32_t (*)[4])cpu->hyperv_presented : NULL);
    for (int i = 0; shown[i]; i++) {
        QAPI_LIST_APPEND(tail, g_strdup(shown[i]));
    }
    visit_type_strList(v, name, &list, errp);
    qapi_free_strList(list);
}

void x86_cpu_hyperv_flags_class_init(ObjectClass *oc)
{
    object_class_property_add(oc, "hv-provided", "strList", get_hv_provided,
                              NULL, NULL, NULL);
    object_class_property_set_description(oc, "hv-provided",
        "The hv-* flags the Hyper-V CPUID leaves of the vCPU show the guest");
}
