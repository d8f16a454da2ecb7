/*
 * Hyper-V flags of an x86 CPU: checked at realize, reported through QOM
 *
 * - hv-stimer-direct and the flags it needs (hv-stimer, hv-synic, hv-time,
 *   hv-vpindex) are checked for their dependencies, with an error naming
 *   the missing flag;
 * - any hv-* flag on an accelerator that cannot provide Hyper-V
 *   enlightenments (everything but KVM) is an error, unless hv-strict=off
 *   asks for the old behaviour of dropping them silently;
 * - under KVM, direct-mode timers (or hv-passthrough) need the host kernel
 *   to report Hyper-V CPUID leaves; we ask it, and say so when it cannot;
 * - the read-only property hv-provided lists the hv-* flags the guest
 *   actually gets.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-common.h"
#include "qapi/visitor.h"
#include "qemu/accel.h"
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

#ifdef CONFIG_KVM
/*
 * EDX of CPUID 0x40000003 as the host kernel offers it, from the system
 * ioctl; -1 when the kernel cannot tell without a vCPU, -2 when it has no
 * Hyper-V CPUID reporting at all.
 */
static int64_t host_hv_cpuid_edx(void)
{
    g_autofree struct kvm_cpuid2 *cpuid = NULL;
    const int nent = 64;

    if (kvm_check_extension(kvm_state, KVM_CAP_SYS_HYPERV_CPUID) <= 0) {
        return kvm_check_extension(kvm_state, KVM_CAP_HYPERV_CPUID) > 0 ? -1 : -2;
    }
    cpuid = g_malloc0(sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
    cpuid->nent = nent;
    if (kvm_ioctl(kvm_state, KVM_GET_SUPPORTED_HV_CPUID, cpuid) < 0) {
        return -2;
    }
    for (int i = 0; i < cpuid->nent; i++) {
        if (cpuid->entries[i].function == 0x40000003) {
            return cpuid->entries[i].edx;
        }
    }
    return 0;
}

static bool kvm_check_timer_flags(X86CPU *cpu, Error **errp)
{
    bool direct = cpu->hyperv_features & BIT_ULL(HYPERV_FEAT_STIMER_DIRECT);
    const char *what = direct ? "hv-stimer-direct" : "hv-passthrough";
    int64_t edx;

    if (!direct && !cpu->hyperv_passthrough) {
        return true;
    }
    edx = host_hv_cpuid_edx();
    if (edx == -2) {
        error_setg(errp, "%s: the host kernel's KVM offers no Hyper-V "
                   "enlightenments (no KVM_CAP_HYPERV_CPUID)", what);
        return false;
    }
    if (edx >= 0 && direct && !(edx & HV_CPUID_EDX_STIMER_DIRECT)) {
        error_setg(errp, "hv-stimer-direct: the host kernel's KVM does not "
                   "offer direct-mode synthetic timers");
        return false;
    }
    /* edx == -1: the per-vCPU check at KVM vCPU init decides */
    return true;
}
#endif

bool x86_cpu_hyperv_flags_realize(X86CPU *cpu, Error **errp)
{
    g_autoptr(strList) flags = NULL;
    g_autofree char *names = NULL;

    if (!cpu->hyperv_features && !cpu->hyperv_passthrough) {
        return true;
    }
    if (!cpu->hyperv_passthrough &&
        !hyperv_flags_check_deps(cpu->hyperv_features, errp)) {
        return false;
    }
    if (kvm_enabled()) {
#ifdef CONFIG_KVM
        return kvm_check_timer_flags(cpu, errp);
#endif
    }
    if (!cpu->hyperv_strict) {
        return true;            /* the flags are dropped, as they always were */
    }
    if (cpu->hyperv_passthrough) {
        names = g_strdup("hv-passthrough");
    } else {
        GString *s = g_string_new(NULL);

        flags = hv_flags_set(cpu);
        for (strList *l = flags; l; l = l->next) {
            g_string_append_printf(s, "%s%s", s->len ? ", " : "", l->value);
        }
        names = g_string_free(s, false);
    }
    error_setg(errp, "the %s accelerator cannot provide Hyper-V enlightenments "
               "(%s): they need KVM", current_accel_name(), names);
    error_append_hint(errp, "Use -accel kvm, or hv-strict=off to start without "
                      "them (the old behaviour).\n");
    return false;
}

static void get_hv_provided(Object *obj, Visitor *v, const char *name,
                            void *opaque, Error **errp)
{
    X86CPU *cpu = X86_CPU(obj);
    g_autoptr(strList) list = kvm_enabled() ? hv_flags_set(cpu) : NULL;

    visit_type_strList(v, name, &list, errp);
}

void x86_cpu_hyperv_flags_class_init(ObjectClass *oc)
{
    object_class_property_add(oc, "hv-provided", "strList", get_hv_provided,
                              NULL, NULL, NULL);
    object_class_property_set_description(oc, "hv-provided",
        "The hv-* flags the guest gets (none without KVM)");
}
