/*
 * MC146818 RTC through its index/data ports (0x70/0x71) on pc and q35:
 * CMOS NVRAM bytes written through the ports read back through them, the
 * index register selects independently of earlier data accesses, and the
 * time registers tell the time of a clock the test knows independently of
 * the RTC model: the host's, or a VM clock the test steps from a base it set.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/timer.h"
#include "libqtest.h"

#define RTC_INDEX       0x70
#define RTC_DATA        0x71
#define NVRAM_FIRST     0x40
#define NVRAM_LAST      0x7f
#define RTC_REG_B       0x0b
#define RTC_CENTURY     0x32

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

/*
 * The date and time in the CMOS registers (24-hour BCD, as the machine sets
 * register B), read twice until no update came in between, as a DOS-era
 * BIOS does; with the day of week checked against the date.
 */
static GDateTime *cmos_time(QTestState *qts)
{
    static const uint8_t regs[] = { 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09,
                                    RTC_CENTURY };
    uint8_t v[ARRAY_SIZE(regs)], again[ARRAY_SIZE(regs)];
    GDateTime *dt;

    g_assert_cmphex(cmos_read(qts, RTC_REG_B) & 0x06, ==, 0x02);
    do {
        for (int i = 0; i < ARRAY_SIZE(regs); i++) {
            v[i] = cmos_read(qts, regs[i]);
        }
        for (int i = 0; i < ARRAY_SIZE(regs); i++) {
            again[i] = cmos_read(qts, regs[i]);
        }
    } while (memcmp(v, again, sizeof(v)));

    dt = g_date_time_new_utc(bcd_to_int(v[7]) * 100 + bcd_to_int(v[6]),
                             bcd_to_int(v[5]), bcd_to_int(v[4]),
                             bcd_to_int(v[2]), bcd_to_int(v[1]),
                             bcd_to_int(v[0]));
    g_assert_nonnull(dt);
    /* register 6: 1 is Sunday; GLib: 1 is Monday ... 7 Sunday */
    g_assert_cmpint(bcd_to_int(v[3]), ==,
                    g_date_time_get_day_of_week(dt) % 7 + 1);
    return dt;
}

static void assert_cmos_is(QTestState *qts, GDateTime *want)
{
    g_autoptr(GDateTime) got = cmos_time(qts);
    g_autofree char *got_s = g_date_time_format_iso8601(got);
    g_autofree char *want_s = g_date_time_format_iso8601(want);

    g_assert_cmpstr(got_s, ==, want_s);
}

/*
 * Start at @base with clock=vm (the virtual clock only moves when qtest
 * steps it), step by @steps seconds in turn: after each step the
 * registers must tell @base plus the time stepped, computed here by GLib.
 */
static void check_vm_clock(const char *machine, const char *base,
                           const int *steps, int n)
{
    g_autoptr(GTimeZone) utc = g_time_zone_new_utc();
    g_autoptr(GDateTime) start = g_date_time_new_from_iso8601(base, utc);
    QTestState *qts = qtest_initf("-M %s -rtc base=%s,clock=vm", machine,
                                  base);
    int64_t total = 0;

    g_assert_nonnull(start);
    for (int i = 0; i < n; i++) {
        g_autoptr(GDateTime) want = NULL;

        if (steps[i]) {
            qtest_clock_step(qts, steps[i] * NANOSECONDS_PER_SECOND);
        }
        total += steps[i];
        want = g_date_time_add_seconds(start, total);
        assert_cmos_is(qts, want);
    }
    qtest_quit(qts);
}

/* Across a minute, an hour, a day, a month and a year; into a leap day */
static void test_time_follows_vm_clock(const void *data)
{
    static const int new_year[] = { 0, 1, 28, 1, 30, 3600 };
    static const int leap_day[] = { 0, 1, 86400 };

    check_vm_clock(data, "2026-12-31T23:59:30", new_year,
                   ARRAY_SIZE(new_year));
    check_vm_clock(data, "2028-02-28T23:59:59", leap_day,
                   ARRAY_SIZE(leap_day));
}

/* With the default clock=host, base=utc the RTC tells the host's UTC time */
static void test_time_matches_host(const void *data)
{
    const char *machine = data;
    QTestState *qts = qtest_initf("-M %s -rtc base=utc", machine);
    int64_t before = g_get_real_time() / G_USEC_PER_SEC;
    g_autoptr(GDateTime) got = cmos_time(qts);
    int64_t after = g_get_real_time() / G_USEC_PER_SEC + 1;
    int64_t t = g_date_time_to_unix(got);

    /* The RTC drops the fraction of the second it started in */
    g_test_message("host %" PRId64 "..%" PRId64 ", RTC %" PRId64,
                   before, after, t);
    g_assert_cmpint(t, >=, before - 1);
    g_assert_cmpint(t, <=, after);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    static const char *machines[] = { "pc", "q35" };

    g_test_init(&argc, &argv, NULL);
    for (int i = 0; i < G_N_ELEMENTS(machines); i++) {
        g_autofree char *p1 = g_strdup_printf("rtc-nvram/%s/nvram-roundtrip",
                                              machines[i]);
        g_autofree char *p2 = g_strdup_printf(
            "rtc-nvram/%s/time-follows-vm-clock", machines[i]);
        g_autofree char *p3 = g_strdup_printf("rtc-nvram/%s/time-matches-host",
                                              machines[i]);
        qtest_add_data_func(p1, machines[i], test_nvram_roundtrip);
        qtest_add_data_func(p2, machines[i], test_time_follows_vm_clock);
        qtest_add_data_func(p3, machines[i], test_time_matches_host);
    }
    return g_test_run();
}
