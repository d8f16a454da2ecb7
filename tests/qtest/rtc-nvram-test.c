/*
 * MC146818 RTC through its index/data ports (0x70/0x71) on pc and q35:
 * CMOS NVRAM bytes written through the ports read back through them, the
 * index register selects independently of earlier data accesses, and the
 * time registers agree with the machine's QOM `rtc-time`.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"

#define RTC_INDEX       0x70
#define RTC_DATA        0x71
#define NVRAM_FIRST     0x40
#define NVRAM_LAST      0x7f

static uint8_t cmos_read(QTestState *qts, uint8_t reg)
{
    qtest_outb(qts, RTC_INDEX, reg);
    return qtest_inb(qts, RTC_DATA);
}

static void cmos_write(QTestState *qts, uint8_t reg, uint8_t val)
{
    qtest_outb(qts, RTC_INDEX, reg);
    qtest_outb(qts, RTC_DATA, val);
}

static int bcd_to_int(uint8_t v)
{
    return (v >> 4) * 10 + (v & 0xf);
}

static void test_nvram_roundtrip(const void *data)
{
    const char *machine = data;
    QTestState *qts = qtest_initf("-M %s", machine);

    /* Every NVRAM byte gets a value derived from its index... */
    for (int reg = NVRAM_FIRST; reg <= NVRAM_LAST; reg++) {
        cmos_write(qts, reg, (uint8_t)(reg * 7 + 3));
    }
    /* ...and reads back in reverse order, so each read depends on its index. */
    for (int reg = NVRAM_LAST; reg >= NVRAM_FIRST; reg--) {
        g_assert_cmphex(cmos_read(qts, reg), ==, (uint8_t)(reg * 7 + 3));
    }

    /* Several index writes before one data access: the last one counts. */
    qtest_outb(qts, RTC_INDEX, NVRAM_FIRST);
    qtest_outb(qts, RTC_INDEX, NVRAM_FIRST + 1);
    qtest_outb(qts, RTC_INDEX, NVRAM_FIRST + 2);
    g_assert_cmphex(qtest_inb(qts, RTC_DATA), ==,
                    (uint8_t)((NVRAM_FIRST + 2) * 7 + 3));
    qtest_quit(qts);
}

static void test_time_matches_qom(const void *data)
{
    const char *machine = data;
    /* The clock only moves when qtest steps it, so both views agree. */
    QTestState *qts = qtest_initf("-M %s -rtc base=2026-11-22T10:20:30,clock=vm",
                                  machine);
    QDict *tm = qtest_qmp_assert_success_ref(qts,
        "{'execute': 'qom-get', 'arguments':"
        " {'path': '/machine', 'property': 'rtc-time'}}");

    g_assert_cmpint(bcd_to_int(cmos_read(qts, 0x00)), ==,
                    qdict_get_int(tm, "tm_sec"));
    g_assert_cmpint(bcd_to_int(cmos_read(qts, 0x02)), ==,
                    qdict_get_int(tm, "tm_min"));
    g_assert_cmpint(bcd_to_int(cmos_read(qts, 0x04)), ==,
                    qdict_get_int(tm, "tm_hour"));
    g_assert_cmpint(bcd_to_int(cmos_read(qts, 0x07)), ==,
                    qdict_get_int(tm, "tm_mday"));
    g_assert_cmpint(bcd_to_int(cmos_read(qts, 0x08)), ==,
                    qdict_get_int(tm, "tm_mon") + 1);
    g_assert_cmpint(bcd_to_int(cmos_read(qts, 0x09)), ==,
                    qdict_get_int(tm, "tm_year") % 100);
    g_assert_cmpint(qdict_get_int(tm, "tm_year"), ==, 2026 - 1900);
    g_assert_cmpint(qdict_get_int(tm, "tm_hour"), ==, 10);
    qobject_unref(tm);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    static const char *machines[] = { "pc", "q35" };

    g_test_init(&argc, &argv, NULL);
    for (int i = 0; i < G_N_ELEMENTS(machines); i++) {
        g_autofree char *p1 = g_strdup_printf("rtc-nvram/%s/nvram-roundtrip",
                                              machines[i]);
        g_autofree char *p2 = g_strdup_printf("rtc-nvram/%s/time-matches-qom",
                                              machines[i]);
        qtest_add_data_func(p1, machines[i], test_nvram_roundtrip);
        qtest_add_data_func(p2, machines[i], test_time_matches_qom);
    }
    return g_test_run();
}
