/*
 * Hyper-V flags of an x86 CPU: checked at realize, reported through QOM
 *
 * With x-hv-strict=on (our machine types):
 * - hv-stimer-direct and the flags it needs (hv-stimer, hv-synic, hv-time,
 *   hv-vpindex) are checked for their dependencies, with an error naming
 *   the missing flag;
 * - any hv-* flag on an accelerator that cannot provide Hyper-V
 *   enlightenments (TCG, or KVM without KVM_CAP_HYPERV) is an error;
 * - under KVM, direct-mode timers need the host kernel to report them in
 *   its Hyper-V CPUID leaves; we ask it, and say so when it cannot.
 * With x-hv-strict=off (the base's machine types) none of this: the base's
 * own checks decide, with one exception (see compat_base()).
 *
 * The read-only property x-hv-provided lists the hv-* flags that the
 * Hyper-V CPUID leaves the vCPU presents show the guest.
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
#include "kvm/kvm_i386.h"
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
           strcmp(prop->name, "hv-enforce-cpuid");
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
                      "x-hv-strict=off to start as the base does (the default "
                      "of the pc-*-10.0 and older machine types).\n");
    return false;
}

#ifdef CONFIG_KVM
/* KVM_GET_SUPPORTED_HV_CPUID on the system fd into *opaque, @room entries */
static int fetch_sys_hv_cpuid(int room, void *opaque)
{
    struct kvm_cpuid2 **cpuid = opaque;
    int r;

    g_free(*cpuid);
    *cpuid = g_malloc0(sizeof(**cpuid) + room * sizeof((*cpuid)->entries[0]));
    (*cpuid)->nent = room;
    r = kvm_ioctl(kvm_state, KVM_GET_SUPPORTED_HV_CPUID, *cpuid);
    return r < 0 ? r : (*cpuid)->nent;
}

/*
 * EDX of CPUID 0x40000003 as the host kernel offers it, from the system
 * ioctl; -1 when it cannot tell us here (only per vCPU, or the ioctl
 * failed: the base's vCPU code says why), -2 when it has no Hyper-V CPUID
 * reporting at all.
 */
static int64_t host_hv_cpuid_edx(void)
{
    g_autofree struct kvm_cpuid2 *cpuid = NULL;
    int n;

    if (kvm_check_extension(kvm_state, KVM_CAP_SYS_HYPERV_CPUID) <= 0) {
        return kvm_check_extension(kvm_state, KVM_CAP_HYPERV_CPUID) > 0 ?
               -1 : -2;
    }
    n = hyperv_flags_fetch_growing(fetch_sys_hv_cpuid, &cpuid);
    if (n < 0) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
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
        return refuse(cpu, "the host kernel's KVM", "it lacks KVM_CAP_HYPERV",
                      errp);
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

/*
 * x-hv-strict=off: what the base does, its own checks and messages.  One
 * exception: under a KVM without KVM_CAP_HYPERV the base fills no Hyper-V
 * CPUID leaf but still loads the MSRs of hv-time, hv-vapic, hv-synic,
 * hv-reenlightenment..., and aborts when KVM refuses one (hv-time: MSR
 * 0x40000021, an assertion in kvm_buf_set_msrs).  There we drop the flags
 * for real, with a warning, and the guest runs without them, as the base's
 * guest does with the flags that set no MSR.  Not with hv-vpindex: the
 * base refuses that one cleanly (VP_INDEX not settable, in the CPU pre-plug
 * handler), and so do we, by leaving it to that check.
 */
static void compat_base(X86CPU *cpu)
{
#ifdef CONFIG_KVM
    if (!kvm_enabled() || kvm_check_extension(kvm_state, KVM_CAP_HYPERV) > 0) {
        return;
    }
    if ((cpu->hyperv_features & BIT_ULL(HYPERV_FEAT_VPINDEX)) &&
        !kvm_hv_vpindex_settable()) {
        return;
    }
    warn_report("the host kernel's KVM lacks KVM_CAP_HYPERV: starting "
                "without the hv-* flags (x-hv-strict=off)");
    cpu->hyperv_features = 0;
    cpu->hyperv_passthrough = false;
#endif
}

bool x86_cpu_hyperv_flags_check(X86CPU *cpu, Error **errp)
{
    g_autofree char *who = NULL;

    if (!cpu->hyperv_features && !cpu->hyperv_passthrough) {
        return true;
    }
    if (!cpu->hyperv_strict) {
        compat_base(cpu);
        return true;
    }
    if (!cpu->hyperv_passthrough &&
        !hyperv_flags_check_deps(cpu->hyperv_features,
                                 cpu->hyperv_synic_kvm_only, errp)) {
        return false;
    }
    if (kvm_enabled()) {
#ifdef CONFIG_KVM
        return kvm_check_host(cpu, errp);
#endif
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
    object_class_property_add(oc, "x-hv-provided", "strList", get_hv_provided,
                              NULL, NULL, NULL);
    object_class_property_set_description(oc, "x-hv-provided",
        "The hv-* flags the Hyper-V CPUID leaves of the vCPU show the guest");
}
