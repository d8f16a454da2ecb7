/*
 * DIAGNOSE 0x318: the control program code an s390x guest reports
 *
 * Once at boot the guest passes 8 bytes in a register: a Control Program
 * Name Code (byte 0; Linux is 4) and a 7-byte version code.  The code
 * belongs to the VM, but it is kept in every CPU's state: KVM takes it per
 * vCPU (sync register KVM_SYNC_DIAG318), and the "cpu/diag318" migration
 * subsection carries it per CPU, so streams stay compatible both ways.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qapi/visitor.h"
#include "cpu.h"
#include "kvm/kvm_s390x.h"
#include "system/kvm.h"
#include "hw/s390x/diag318.h"
#include "trace.h"

static void diag318_store(CPUState *cs, run_on_cpu_data data)
{
    CPUS390XState *env = cpu_env(cs);

    /* readers (QOM, migration) hold the BQL; TCG vCPUs never read it */
    qatomic_set(&env->diag318_info, data.host_ulong);
    if (kvm_enabled()) {
        kvm_s390_set_diag318(cs, data.host_ulong);
    }
}

static void diag318_give(CPUState *cs, uint64_t code)
{
    if (kvm_enabled()) {
        /* the vCPU thread owns kvm_run's sync registers */
        run_on_cpu(cs, diag318_store, RUN_ON_CPU_HOST_ULONG(code));
    } else {
        diag318_store(cs, RUN_ON_CPU_HOST_ULONG(code));
    }
}

void s390_diag318_set_all(uint64_t code)
{
    CPUState *cs;

    trace_s390_diag318_set_all(code);
    CPU_FOREACH(cs) {
        diag318_give(cs, code);
    }
}

uint64_t s390_diag318_get(void)
{
    return first_cpu ? qatomic_read(&cpu_env(first_cpu)->diag318_info) : 0;
}

void s390_diag318_cpu_hotplugged(CPUState *cs)
{
    /* s390x CPUs are never unplugged: first_cpu is an older one */
    diag318_give(cs, s390_diag318_get());
}

bool s390_diag318_exec(CPUState *cs, uint64_t code)
{
    if (!s390_has_feat(S390_FEAT_DIAG_318)) {
        trace_s390_diag318_refused(cs->cpu_index, code);
        return false;
    }
    trace_s390_diag318(cs->cpu_index, code);
    s390_diag318_set_all(code);
    return true;
}

static void diag318_cpu_get_code(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    uint64_t code = qatomic_read(&cpu_env(CPU(obj))->diag318_info);

    visit_type_uint64(v, name, &code, errp);
}

void s390_diag318_cpu_class_init(ObjectClass *oc)
{
    object_class_property_add(oc, "x-diag318-code", "uint64",
                              diag318_cpu_get_code, NULL, NULL, NULL);
    object_class_property_set_description(oc, "x-diag318-code",
        "control program code this CPU holds (DIAGNOSE 0x318)");
}
