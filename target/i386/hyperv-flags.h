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

/*
 * The Hyper-V CPUID leaves a vCPU presents, 0x40000000 up to 0x4000000a:
 * regs[leaf - HV_CPUID_LEAF_FIRST] holds EAX, EBX, ECX, EDX.
 */
#define HV_CPUID_LEAF_FIRST     0x40000000
#define HV_CPUID_LEAVES         11

/* The user-visible name of a flag ("hv-stimer-direct"), or NULL. */
const char *hyperv_flag_name(int flag);

/*
 * Check that every flag in @features has the flags it needs (hv-stimer-direct
 * needs hv-stimer, which needs hv-synic and hv-time; hv-synic needs
 * hv-vpindex, except with @synic_kvm_only: x-hv-synic-kvm-only, set by the
 * pc-*-3.0 and older machine types, whose SynIC is KVM's alone and works
 * without VP_INDEX).  On failure, the error names the flag and what it
 * lacks.
 */
bool hyperv_flags_check_deps(uint64_t features, bool synic_kvm_only,
                             Error **errp);

/*
 * The bits of CPUID 0x40000003 EDX that the synthetic timer flags own:
 * direct mode exactly when hv-stimer-direct and all it needs are on.
 */
uint32_t hyperv_flags_timer_cpuid_edx(uint64_t features);

/*
 * The hv-* flags (property names) that Hyper-V CPUID leaves @regs show a
 * guest: a Hyper-V interface ("Hv#1" in 0x40000001 EAX) and all the CPUID
 * bits of the flag set, in leaves up to the maximum leaf 0x40000000 EAX
 * gives.  @regs NULL: no Hyper-V leaves.  NULL-terminated; free the array
 * with g_free (the names are static).
 */
const char **hyperv_flags_shown(const uint32_t (*regs)[4]);

/*
 * KVM_GET_SUPPORTED_HV_CPUID fails with E2BIG when its buffer is too small
 * and does not say how many entries it needs.  Call @fetch with room for
 * HV_CPUID_ENTRIES_FIRST entries, then twice as many each time it answers
 * -E2BIG or fills the buffer (a full buffer may be a cut one), up to
 * HV_CPUID_ENTRIES_MAX.  @fetch returns the number of entries it got, or a
 * negative errno.  Returns the last answer: the entries got, -E2BIG when
 * even HV_CPUID_ENTRIES_MAX were too few, or @fetch's other error.
 */
#define HV_CPUID_ENTRIES_FIRST  11
#define HV_CPUID_ENTRIES_MAX    1024
int hyperv_flags_fetch_growing(int (*fetch)(int room, void *opaque),
                               void *opaque);

#endif
