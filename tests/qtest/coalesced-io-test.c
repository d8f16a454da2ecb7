/*
 * Coalesced I/O without KVM: x-query-coalesced-io says it is inactive and
 * why, HMP says the same; coalesced-pio is a property of the KVM
 * accelerator (-accel kvm,coalesced-pio=off), not of the machine.  The KVM
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

/* The property is the accelerator's: listed on kvm-accel, as a bool */
static void test_accel_property(void)
{
    QTestState *qts = qtest_init("-M none");
    QDict *rsp = qtest_qmp(qts, "{'execute': 'qom-list-properties',"
                           " 'arguments': {'typename': 'kvm-accel'}}");
    QList *props = qdict_get_qlist(rsp, "return");
    QListEntry *e;
    bool found = false;

    g_assert_nonnull(props);
    QLIST_FOREACH_ENTRY(props, e) {
        QDict *p = qobject_to(QDict, qlist_entry_obj(e));

        if (g_str_equal(qdict_get_str(p, "name"), "coalesced-pio")) {
            g_assert_cmpstr(qdict_get_str(p, "type"), ==, "bool");
            g_assert_nonnull(strstr(qdict_get_str(p, "description"),
                                    "0x70"));
            found = true;
        }
    }
    g_assert_true(found);
    qobject_unref(rsp);
    qtest_quit(qts);
}

/* ... and not the machine's: pc and q35 have no such property */
static void test_no_machine_property(const void *data)
{
    const char *machine = data;
    QTestState *qts = qtest_initf("-M %s", machine);
    QDict *rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
                           " {'path': '/machine', 'property': 'coalesced-pio'}}");

    g_assert_true(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    static const char *machines[] = { "pc", "q35" };

    g_test_init(&argc, &argv, NULL);
    qtest_add_func("coalesced-io/accel-property", test_accel_property);
    for (int i = 0; i < G_N_ELEMENTS(machines); i++) {
        g_autofree char *p1 = g_strdup_printf(
            "coalesced-io/%s/inactive-without-kvm", machines[i]);
        g_autofree char *p2 =
            g_strdup_printf("coalesced-io/%s/no-machine-property", machines[i]);
        qtest_add_data_func(p1, machines[i], test_inactive_without_kvm);
        qtest_add_data_func(p2, machines[i], test_no_machine_property);
    }
    return g_test_run();
}
