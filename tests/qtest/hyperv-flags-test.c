/*
 * Hyper-V flags without KVM: on our machine type (-M pc, x-hv-strict=on)
 * hv-stimer-direct's dependencies are checked with an error naming the
 * missing flag, and hv-* flags on an accelerator that cannot provide them
 * are an error; x-hv-strict=off, the default of the base's machine types,
 * starts the VM as the base does, and x-hv-provided then agrees with the
 * CPUID a guest reads: no Hyper-V.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

#define TIMER_FLAGS "hv-stimer-direct,hv-stimer,hv-synic,hv-time,hv-vpindex"

/* Start QEMU with @cpu under TCG; it must fail, saying @want. */
static void expect_refusal(const char *cpu, const char *want)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr(GError) gerr = NULL;
    int status;
    const char *argv[] = {
        g_getenv("QTEST_QEMU_BINARY"), "-M", "pc", "-accel", "tcg",
        "-nodefaults", "-display", "none", "-S", "-cpu", cpu, NULL
    };

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                               NULL, NULL, &out, &err, &status, &gerr));
    g_assert_false(g_spawn_check_wait_status(status, NULL));
    g_test_message("QEMU said: %s", err);
    g_assert_nonnull(strstr(err, want));
}

static void test_missing_dependency(void)
{
    expect_refusal("qemu64,hv-stimer-direct",
                   "hv-stimer-direct needs hv-stimer");
    expect_refusal("qemu64,hv-stimer-direct,hv-stimer,hv-time,hv-vpindex",
                   "hv-stimer needs hv-synic");
    expect_refusal("qemu64,hv-synic", "hv-synic needs hv-vpindex");
}

static void test_tcg_refuses(void)
{
    expect_refusal("qemu64," TIMER_FLAGS,
                   "the tcg accelerator cannot provide Hyper-V enlightenments");
    expect_refusal("qemu64," TIMER_FLAGS, "hv-stimer-direct");
    expect_refusal("qemu64,hv-passthrough", "(hv-passthrough)");
}

/*
 * A flat -bios image that reads CPUID 0x40000000 (EAX..EDX to 0x500) and
 * 0x40000001 (EAX to 0x510), then writes GUEST_DONE to 0x520 and halts.
 */
#define GUEST_DONE      0x600d
static const uint8_t cpuid_guest[] = {
    0x66, 0xb8, 0x00, 0x00, 0x00, 0x40,     /* mov $0x40000000, %eax */
    0x0f, 0xa2,                             /* cpuid */
    0x66, 0xa3, 0x00, 0x05,                 /* mov %eax, 0x500 */
    0x66, 0x89, 0x1e, 0x04, 0x05,           /* mov %ebx, 0x504 */
    0x66, 0x89, 0x0e, 0x08, 0x05,           /* mov %ecx, 0x508 */
    0x66, 0x89, 0x16, 0x0c, 0x05,           /* mov %edx, 0x50c */
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x40,     /* mov $0x40000001, %eax */
    0x0f, 0xa2,                             /* cpuid */
    0x66, 0xa3, 0x10, 0x05,                 /* mov %eax, 0x510 */
    0xc7, 0x06, 0x20, 0x05, 0x0d, 0x60,     /* movw $GUEST_DONE, 0x520 */
    0xf4,                                   /* 1: hlt */
    0xeb, 0xfd,                             /* jmp 1b */
};

static char *write_cpuid_guest(void)
{
    g_autofree uint8_t *image = g_malloc0(64 * KiB);
    g_autoptr(GError) gerr = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("hyperv-cpuid-XXXXXX.bin", &path, &gerr);

    g_assert_no_error(gerr);
    close(fd);
    memcpy(image, cpuid_guest, sizeof(cpuid_guest));
    /* reset vector f000:fff0: ljmp $0xf000, $0 */
    memcpy(image + 0xfff0, "\xea\x00\x00\x00\xf0", 5);
    g_assert_true(g_file_set_contents(path, (char *)image, 64 * KiB, &gerr));
    return path;
}

/* Wait for the CPUID guest; check that it saw TCG's leaves, no Hyper-V */
static void expect_no_hyperv(QTestState *qts)
{
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    char signature[13] = "";

    while (qtest_readw(qts, 0x520) != GUEST_DONE) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    qtest_memread(qts, 0x504, signature, 12);
    g_test_message("guest CPUID 0x40000000: max 0x%x, \"%s\"; 0x40000001 "
                   "EAX 0x%x", qtest_readl(qts, 0x500), signature,
                   qtest_readl(qts, 0x510));
    /* The guest ran CPUID, and it shows no Hyper-V interface ("Hv#1") */
    g_assert_cmpstr(signature, ==, "TCGTCGTCGTCG");
    g_assert_cmphex(qtest_readl(qts, 0x500), <, 0x40000003);
    g_assert_cmphex(qtest_readl(qts, 0x510), !=, 0x31237648);
}

static void test_strict_off(void)
{
    g_autofree char *bios = write_cpuid_guest();
    QTestState *qts = qtest_initf("-M pc -accel tcg -bios %s -cpu qemu64,"
                                  TIMER_FLAGS ",x-hv-strict=off", bios);
    QDict *rsp;

    expect_no_hyperv(qts);

    /* ...so x-hv-provided must list none of the flags asked for */
    rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
        " {'path': '/machine/unattached/device[0]', 'property': 'x-hv-provided'}}");
    g_assert_cmpint(qlist_size(qdict_get_qlist(rsp, "return")), ==, 0);
    qobject_unref(rsp);
    /* requested, but not provided */
    rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
        " {'path': '/machine/unattached/device[0]',"
        "  'property': 'hv-stimer-direct'}}");
    g_assert_true(qdict_get_bool(rsp, "return"));
    qobject_unref(rsp);
    qtest_quit(qts);
    unlink(bios);
}

/*
 * compat: the base's machine types default to x-hv-strict=off, and start
 * what the base starts under TCG: any hv-* set, dependencies or not (the
 * base checks those only under KVM with Hyper-V), without Hyper-V leaves.
 */
static void test_compat_base_machine(void)
{
    static const char *const cpus[] = {
        "qemu64,hv-stimer-direct",
        "qemu64,hv-stimer-direct,hv-stimer,hv-time,hv-vpindex",
        "qemu64,hv-synic",
        "qemu64," TIMER_FLAGS,
        "qemu64,hv-passthrough",
    };
    static const char *const machines[] = { "pc-i440fx-10.0", "pc-q35-10.0" };
    g_autofree char *bios = write_cpuid_guest();

    for (int m = 0; m < ARRAY_SIZE(machines); m++) {
        for (int i = 0; i < ARRAY_SIZE(cpus); i++) {
            QTestState *qts;
            QDict *rsp;

            g_test_message("-M %s -cpu %s", machines[m], cpus[i]);
            qts = qtest_initf("-M %s -accel tcg -bios %s -cpu %s",
                              machines[m], bios, cpus[i]);
            expect_no_hyperv(qts);
            rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
                " {'path': '/machine/unattached/device[0]',"
                "  'property': 'x-hv-strict'}}");
            g_assert_false(qdict_get_bool(rsp, "return"));
            qobject_unref(rsp);
            qtest_quit(qts);
        }
    }
    unlink(bios);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/hyperv-flags/missing-dependency-named",
                   test_missing_dependency);
    qtest_add_func("/hyperv-flags/tcg-refuses-hv-flags", test_tcg_refuses);
    qtest_add_func("/hyperv-flags/x-hv-strict-off-provided-matches-guest-cpuid",
                   test_strict_off);
    qtest_add_func("/hyperv-flags/compat/base-machine-starts-what-base-starts",
                   test_compat_base_machine);
    return g_test_run();
}
