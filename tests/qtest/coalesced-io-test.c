/*
 * Coalesced I/O without KVM: x-query-coalesced-io says it is inactive and
 * why, HMP says the same, and the pc/q35 machine property coalesced-pio
 * reads back what was set (on the command line and at run time).  The KVM
 * side is tested with tiny guests (tests/kvm/kvm_tests.py).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

static void test_inactive_without_kvm(const void *data)
{
    const char *machine = data;
    QTestState *qts = qtest_initf("-M %s", machine);
    QDict *info = qtest_qmp_assert_success_ref(qts,
        "{'execute': 'x-query-coalesced-io'}");
    g_autofree char *hmp = NULL;

    g_assert_false(qdict_get_bool(info, "active"));
    g_assert_nonnull(strstr(qdict_get_str(info, "reason"), "KVM"));
    g_assert_true(qdict_get_bool(info, "pio-allowed"));
    g_assert_cmpint(qlist_size(qdict_get_qlist(info, "zones")), ==, 0);
    qobject_unref(info);

    hmp = qtest_hmp(qts, "info coalesced-io");
    g_assert_nonnull(strstr(hmp, "inactive"));
    qtest_quit(qts);
}

static bool get_coalesced_pio(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
                           " {'path': '/machine', 'property': 'coalesced-pio'}}");
    bool val = qdict_get_bool(rsp, "return");

    qobject_unref(rsp);
    return val;
}

static void test_machine_property(const void *data)
{
    const char *machine = data;
    QTestState *qts = qtest_initf("-M %s,coalesced-pio=off", machine);
    QDict *info;

    g_assert_false(get_coalesced_pio(qts));
    info = qtest_qmp_assert_success_ref(qts, "{'execute': 'x-query-coalesced-io'}");
    g_assert_false(qdict_get_bool(info, "pio-allowed"));
    qobject_unref(info);

    qtest_qmp_assert_success(qts, "{'execute': 'qom-set', 'arguments':"
                             " {'path': '/machine', 'property': 'coalesced-pio',"
                             "  'value': true}}");
    g_assert_true(get_coalesced_pio(qts));
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    static const char *machines[] = { "pc", "q35" };

    g_test_init(&argc, &argv, NULL);
    for (int i = 0; i < G_N_ELEMENTS(machines); i++) {
        g_autofree char *p1 = g_strdup_printf("coalesced-io/%s/inactive-without-kvm",
                                              machines[i]);
        g_autofree char *p2 = g_strdup_printf("coalesced-io/%s/machine-property",
                                              machines[i]);
        qtest_add_data_func(p1, machines[i], test_inactive_without_kvm);
        qtest_add_data_func(p2, machines[i], test_machine_property);
    }
    return g_test_run();
}
