/*
 * Hyper-V flags without KVM: hv-stimer-direct's dependencies are checked
 * with an error naming the missing flag; hv-* flags on an accelerator that
 * cannot provide them are an error; hv-strict=off starts the VM as before
 * and hv-provided then reports that the guest gets none of them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
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
    expect_refusal("qemu64,hv-stimer-direct", "hv-stimer-direct needs hv-stimer");
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

static void test_strict_off(void)
{
    QTestState *qts = qtest_init("-accel tcg -cpu qemu64," TIMER_FLAGS
                                 ",hv-strict=off");
    QDict *rsp;

    rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
        " {'path': '/machine/unattached/device[0]', 'property': 'hv-provided'}}");
    g_assert_cmpint(qlist_size(qdict_get_qlist(rsp, "return")), ==, 0);
    qobject_unref(rsp);
    /* requested, but not provided */
    rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
        " {'path': '/machine/unattached/device[0]',"
        "  'property': 'hv-stimer-direct'}}");
    g_assert_true(qdict_get_bool(rsp, "return"));
    qobject_unref(rsp);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/hyperv-flags/missing-dependency-named", test_missing_dependency);
    qtest_add_func("/hyperv-flags/tcg-refuses-hv-flags", test_tcg_refuses);
    qtest_add_func("/hyperv-flags/hv-strict-off-starts-without-them", test_strict_off);
    return g_test_run();
}
