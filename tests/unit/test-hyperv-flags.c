/*
 * Unit tests of the Hyper-V synthetic timer flag logic
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitops.h"
#include "target/i386/hyperv-flags.h"

#define F(x) BIT_ULL(HV_FLAG_##x)
#define ALL_TIMER (F(STIMER_DIRECT) | F(STIMER) | F(SYNIC) | F(TIME) | \
                   F(VPINDEX))

static void check_missing(uint64_t features, const char *msg)
{
    Error *err = NULL;

    g_assert_false(hyperv_flags_check_deps(features, false, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    error_free(err);
}

static void test_dependency_errors(void)
{
    check_missing(F(STIMER_DIRECT), "hv-stimer-direct needs hv-stimer");
    check_missing(F(STIMER_DIRECT) | F(STIMER), "hv-stimer needs hv-time");
    check_missing(F(STIMER_DIRECT) | F(STIMER) | F(TIME),
                  "hv-stimer needs hv-synic");
    check_missing(F(STIMER_DIRECT) | F(STIMER) | F(SYNIC) | F(TIME),
                  "hv-synic needs hv-vpindex");
    check_missing(F(SYNIC), "hv-synic needs hv-vpindex");
    g_assert_true(hyperv_flags_check_deps(ALL_TIMER, false, &error_abort));
    g_assert_true(hyperv_flags_check_deps(0, false, &error_abort));
    g_assert_true(hyperv_flags_check_deps(F(TIME) | F(VPINDEX), false,
                                          &error_abort));
}

/*
 * x-hv-synic-kvm-only (pc-*-3.0 and older): hv-synic without hv-vpindex is
 * fine, as in the base; the other rules still hold.
 */
static void test_synic_kvm_only(void)
{
    Error *err = NULL;

    g_assert_true(hyperv_flags_check_deps(F(SYNIC), true, &error_abort));
    g_assert_true(hyperv_flags_check_deps(F(STIMER_DIRECT) | F(STIMER) |
                                          F(SYNIC) | F(TIME), true,
                                          &error_abort));
    g_assert_false(hyperv_flags_check_deps(F(STIMER) | F(TIME), true, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "hv-stimer needs hv-synic");
    error_free(err);
    g_assert_false(hyperv_flags_check_deps(F(SYNIC), false, NULL));
}

/* The rules, written out independently of the table under test. */
static bool deps_hold(uint64_t f)
{
    bool direct = f & F(STIMER_DIRECT), stimer = f & F(STIMER);
    bool synic = f & F(SYNIC), time = f & F(TIME), vpindex = f & F(VPINDEX);

    return (!direct || stimer) && (!stimer || (synic && time)) &&
           (!synic || vpindex);
}

/* Every combination of the five flags: bit 19 exactly when all are on. */
static void test_cpuid_bit19_exhaustive(void)
{
    static const int flags[] = { HV_FLAG_STIMER_DIRECT, HV_FLAG_STIMER,
                                 HV_FLAG_SYNIC, HV_FLAG_TIME, HV_FLAG_VPINDEX };

    for (unsigned combo = 0; combo < 32; combo++) {
        uint64_t features = 0;

        for (int i = 0; i < 5; i++) {
            if (combo & (1u << i)) {
                features |= BIT_ULL(flags[i]);
            }
        }
        /* unrelated flags do not matter */
        features |= combo & 1 ? BIT_ULL(0) | BIT_ULL(20) : 0;
        g_assert_cmphex(hyperv_flags_timer_cpuid_edx(features), ==,
                        combo == 31 ? HV_CPUID_EDX_STIMER_DIRECT : 0);
        g_assert_cmpint(hyperv_flags_check_deps(features, false, NULL), ==,
                        deps_hold(features));
    }
}

static void test_names(void)
{
    g_assert_cmpstr(hyperv_flag_name(HV_FLAG_STIMER_DIRECT), ==,
                    "hv-stimer-direct");
    g_assert_cmpstr(hyperv_flag_name(HV_FLAG_VPINDEX), ==, "hv-vpindex");
    g_assert_null(hyperv_flag_name(63));
}

/* The flags shown, joined with spaces ("" for none) */
static char *shown(const uint32_t (*regs)[4])
{
    g_autofree const char **names = hyperv_flags_shown(regs);

    return g_strjoinv(" ", (char **)names);
}

#define LEAF(n) ((n) - HV_CPUID_LEAF_FIRST)

/* Bit numbers from the Hyper-V TLFS, written out here on purpose */
static void test_flags_shown(void)
{
    uint32_t regs[HV_CPUID_LEAVES][4] = { { 0 } };
    g_autofree char *none = shown(NULL);
    g_autofree char *no_iface = NULL, *timers = NULL, *half_time = NULL;
    g_autofree char *freq = NULL, *nested_hidden = NULL, *nested = NULL;

    g_assert_cmpstr(none, ==, "");

    regs[LEAF(0x40000000)][0] = 0x40000005;
    /* time (bits 1, 9), synic 2, stimer 3, vpindex 6; EDX 19 direct */
    regs[LEAF(0x40000003)][0] = BIT(1) | BIT(9) | BIT(2) | BIT(3) | BIT(6);
    regs[LEAF(0x40000003)][3] = BIT(19);
    no_iface = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(no_iface, ==, "");          /* no "Hv#1": not Hyper-V */

    regs[LEAF(0x40000001)][0] = 0x31237648;
    timers = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(timers, ==,
                    "hv-time hv-vpindex hv-synic hv-stimer hv-stimer-direct");

    regs[LEAF(0x40000003)][0] &= ~BIT(9);
    regs[LEAF(0x40000003)][3] = 0;
    half_time = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(half_time, ==, "hv-vpindex hv-synic hv-stimer");

    /* frequencies: EAX bit 11 and EDX bit 8, both */
    memset(regs[LEAF(0x40000003)], 0, sizeof(regs[0]));
    regs[LEAF(0x40000003)][0] = BIT(11);
    regs[LEAF(0x40000004)][0] = BIT(5);         /* relaxed */
    freq = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(freq, ==, "hv-relaxed");
    regs[LEAF(0x40000003)][3] = BIT(8);
    g_free(freq);
    freq = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(freq, ==, "hv-relaxed hv-frequencies");

    /* 0x4000000a counts only up to the maximum leaf */
    memset(regs[LEAF(0x40000003)], 0, sizeof(regs[0]));
    regs[LEAF(0x40000004)][0] = 0;
    regs[LEAF(0x4000000a)][0] = BIT(19) | BIT(17);
    nested_hidden = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(nested_hidden, ==, "");
    regs[LEAF(0x40000000)][0] = 0x4000000a;
    nested = shown((const uint32_t (*)[4])regs);
    g_assert_cmpstr(nested, ==, "hv-emsr-bitmap hv-tlbflush-direct");
}

/*
 * A kernel that has @need Hyper-V CPUID entries: -E2BIG for a smaller
 * buffer, as KVM_GET_SUPPORTED_HV_CPUID does; -@err instead when set.
 */
typedef struct {
    int need, err, calls, last_room;
} FakeKernel;

static int fake_fetch(int room, void *opaque)
{
    FakeKernel *k = opaque;

    k->calls++;
    k->last_room = room;
    if (k->err) {
        return -k->err;
    }
    return room < k->need ? -E2BIG : k->need;
}

static int fetch_for(int need, int err, FakeKernel *k)
{
    *k = (FakeKernel) { .need = need, .err = err };
    return hyperv_flags_fetch_growing(fake_fetch, k);
}

static void test_fetch_growing(void)
{
    FakeKernel k;
    static const int needs[] = { 0, 5, 10, 12, 64, 65, 100, 700, 1023 };

    for (int i = 0; i < ARRAY_SIZE(needs); i++) {
        g_assert_cmpint(fetch_for(needs[i], 0, &k), ==, needs[i]);
        g_assert_cmpint(k.last_room, >, needs[i]);
    }
    /* the first buffer holds what the base asks for first */
    g_assert_cmpint(fetch_for(10, 0, &k), ==, 10);
    g_assert_cmpint(k.calls, ==, 1);
    /* a full buffer may be a cut one: ask again with more room */
    g_assert_cmpint(fetch_for(HV_CPUID_ENTRIES_FIRST, 0, &k), ==,
                    HV_CPUID_ENTRIES_FIRST);
    g_assert_cmpint(k.calls, ==, 2);
    /* bounded: a kernel that always wants more gets E2BIG back */
    g_assert_cmpint(fetch_for(HV_CPUID_ENTRIES_MAX, 0, &k), ==, -E2BIG);
    g_assert_cmpint(k.last_room, ==, HV_CPUID_ENTRIES_MAX);
    g_assert_cmpint(fetch_for(100000, 0, &k), ==, -E2BIG);
    g_assert_cmpint(k.calls, <=, 8);
    /* any other error at once */
    g_assert_cmpint(fetch_for(5, EINVAL, &k), ==, -EINVAL);
    g_assert_cmpint(k.calls, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hyperv-flags/dependency-errors-name-the-flag",
                    test_dependency_errors);
    g_test_add_func("/hyperv-flags/cpuid-40000003-edx-bit19-exhaustive",
                    test_cpuid_bit19_exhaustive);
    g_test_add_func("/hyperv-flags/synic-kvm-only-needs-no-vpindex",
                    test_synic_kvm_only);
    g_test_add_func("/hyperv-flags/hv-cpuid-buffer-grows-on-e2big",
                    test_fetch_growing);
    g_test_add_func("/hyperv-flags/names", test_names);
    g_test_add_func("/hyperv-flags/flags-shown-by-cpuid", test_flags_shown);
    return g_test_run();
}
