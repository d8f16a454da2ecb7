/*
 * DIAGNOSE 0x318: the control program code an s390x guest reports
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_S390X_DIAG318_H
#define HW_S390X_DIAG318_H

#include "qapi/qapi-types-s390-diag318.h"

/*
 * The 8-byte code: byte 0 is the Control Program Name Code (CPNC),
 * bytes 1-7 the Control Program Version Code (CPVC).
 */
#define S390_DIAG318_CPNC_SHIFT     56
#define S390_DIAG318_CPVC_MASK      0x00ffffffffffffffULL
#define S390_DIAG318_CPNC_LINUX     4

/* The VM's code (0 until the guest sets one). */
uint64_t s390_diag318_get(void);

/* Give every CPU @code: the guest's DIAG 318, or 0 on machine reset. */
void s390_diag318_set_all(uint64_t code);

/* A CPU plugged after boot takes the VM's code. */
void s390_diag318_cpu_hotplugged(CPUState *cs);

/*
 * The guest executed DIAG 318 in supervisor state with @code in its R1
 * register.  Returns false when the CPU model lacks the facility: the
 * caller then raises a specification exception.
 */
bool s390_diag318_exec(CPUState *cs, uint64_t code);

/* @code decoded for QMP and HMP. */
S390Diag318Info *s390_diag318_describe(uint64_t code);

/*
 * Read-only QOM properties: "x-diag318" on the machine, "x-diag318-code"
 * on CPUs.
 */
void s390_diag318_machine_class_init(ObjectClass *oc);
void s390_diag318_cpu_class_init(ObjectClass *oc);

void hmp_info_diag318(Monitor *mon, const QDict *qdict);

#endif
