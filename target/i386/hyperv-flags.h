/*
 * Hyper-V synthetic timer flags: dependencies and what CPUID says of them
 *
 * Pure logic (no CPU state), so that unit tests can check it.  The bit
 * numbers are those of HYPERV_FEAT_* in target/i386/cpu.h; the wiring code
 * checks at build time that they agree.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef TARGET_I386_HYPERV_FLAGS_H
#define TARGET_I386_HYPERV_FLAGS_H

#define HV_FLAG_TIME            2
#define HV_FLAG_VPINDEX         5
#define HV_FLAG_SYNIC           7
#define HV_FLAG_STIMER          8
#define HV_FLAG_STIMER_DIRECT   14

/* CPUID 0x40000003 EDX: direct-mode synthetic timers available */
#define HV_CPUID_EDX_STIMER_DIRECT  (1u << 19)

/* The user-visible name of a flag ("hv-stimer-direct"), or NULL. */
const char *hyperv_flag_name(int flag);

/*
 * Check that every flag in @features has the flags it needs (hv-stimer-direct
 * needs hv-stimer, which needs hv-synic and hv-time; hv-synic needs
 * hv-vpindex).  On failure, the error names the flag and what it lacks.
 */
bool hyperv_flags_check_deps(uint64_t features, Error **errp);

/*
 * The bits of CPUID 0x40000003 EDX that the synthetic timer flags own:
 * direct mode exactly when hv-stimer-direct and all it needs are on.
 */
uint32_t hyperv_flags_timer_cpuid_edx(uint64_t features);

#endif
