"""lab-kvm layer: tests that need a complete KVM, run inside the lab's L1
(tests/lab/lab.py), where /dev/kvm is kvm_amd on TCG's emulated SVM.

- Hyper-V synthetic timers in direct mode, seen by a Linux guest: its
  clockevent device, its stimer interrupt count, the misc features it read
  from CPUID; and our x-hv-provided against what the guest saw.
- Live migration of the mem-pattern guest under KVM with manual dirty-log
  reprotect: the pages the guest rewrites while RAM is sent are found by
  KVM's dirty log alone, and the destination's RAM is checked byte for
  byte; the same with dirty-log-manual-protect=off, and to and from the
  unmodified base.
- virtio-pmem under KVM: the DAX ext4 write and fsync of the e2e layer.
- Coalesced I/O with Linux: the guest reads its RTC many times; the time
  it reads agrees with the host's clock, NVRAM written through /dev/nvram
  reads back, and the RTC index zone queued the 0x70 writes (not with
  -accel kvm,coalesced-pio=off).
"""
import os
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for d in ("tests", "tests/e2e", "tests/migration"):
    sys.path.insert(0, os.path.join(TOP, d))
import guests  # noqa: E402
import e2e_tests  # noqa: E402
import migration_tests as mt  # noqa: E402

KVM_BOOT = {"accel": "kvm", "cpu": "host"}
HV_FLAGS = "hv-relaxed,hv-vpindex,hv-time,hv-synic,hv-stimer"
# CPUID 0x40000003 EDX bit 19: direct synthetic timers
HV_STIMER_DIRECT_BIT = 1 << 19

HV_SCRIPT = """#!/bin/sh
dmesg | grep -i 'hyper-v' | sed 's/^/dmesg: /'
echo "@@ misc $(dmesg | sed -n 's/.*Hyper-V: privilege flags.* misc \\(0x[0-9a-f]*\\).*/\\1/p')"
echo "@@ clockevent $(cat /sys/devices/system/clockevents/clockevent0/current_device)"
hvs() { awk '$1 == "HVS:" { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }' /proc/interrupts; }
echo "@@ hvs_before $(hvs)"
sleep 2
echo "@@ hvs_after $(hvs)"
"""


def cpu_qom_path(qmp):
    return qmp.cmd("query-cpus-fast")[0]["qom-path"]


def hv_guest(build, direct):
    # kvm=off: Linux takes KVM's CPUID signature over Hyper-V's when both show
    cpu = f"host,kvm=off,{HV_FLAGS}" + (",hv-stimer-direct" if direct else "")
    boot = dict(KVM_BOOT, cpu=cpu)
    out, provided = guests.linux_guest_session(
        build, HV_SCRIPT,
        query=lambda qmp: qmp.cmd("qom-get", path=cpu_qom_path(qmp), property="x-hv-provided"),
        **boot)
    return guests.guest_values(out), provided, out


def test_hv_stimer_direct(build):
    """With hv-stimer-direct the guest sees CPUID bit 19, takes the Hyper-V
    clockevent and its stimer interrupts (HVS) keep coming; x-hv-provided
    lists the flag.  Without it: no bit 19, the LAPIC timer, no flag."""
    diag = []
    for direct in (True, False):
        vals, provided, out = hv_guest(build, direct)
        misc = int(vals.get("misc") or "-1", 16)
        clock = vals.get("clockevent", "")
        before = int(vals.get("hvs_before") or 0)
        after = int(vals.get("hvs_after") or 0)
        label = "with" if direct else "without"
        if misc < 0:
            diag.append(f"{label} hv-stimer-direct: the guest did not detect Hyper-V\n{out}")
            continue
        if bool(misc & HV_STIMER_DIRECT_BIT) != direct:
            diag.append(f"{label} hv-stimer-direct: guest misc features {misc:#x}")
        if direct and (clock != "Hyper-V clockevent" or after <= before):
            diag.append(f"with hv-stimer-direct: clockevent {clock!r}, HVS interrupts "
                        f"{before} -> {after} in 2 s")
        if not direct and clock == "Hyper-V clockevent":
            diag.append("without hv-stimer-direct the guest still uses the Hyper-V clockevent")
        if ("hv-stimer-direct" in provided) != bool(misc & HV_STIMER_DIRECT_BIT):
            diag.append(f"{label} hv-stimer-direct: x-hv-provided {provided}, guest misc "
                        f"{misc:#x}")
        print(f"#   {label} hv-stimer-direct: misc {misc:#x}, clockevent {clock!r}, "
              f"HVS {before} -> {after}, x-hv-provided {provided}", flush=True)
    return not diag, "\n".join(diag)


# compat: a Hyper-V guest migrated between the base and ours on the base's
# machine type.  The guest prints a tick a second; its sleep needs its
# clockevent, the direct-mode synthetic timer, to keep firing.
HV_MIGRATE_CPU = f"host,kvm=off,{HV_FLAGS},hv-stimer-direct"
HV_MIGRATE_SCRIPT = """#!/bin/sh
hvs() { awk '$1 == "HVS:" { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n }' /proc/interrupts; }
ce=/sys/devices/system/clockevents/clockevent0/current_device
i=0
while [ $i -lt 150 ]; do
    echo "HVTICK $i $(hvs) $(cat $ce | tr ' ' _)"
    i=$((i + 1))
    sleep 1
done
"""


def hv_ticks(console):
    """[(tick, HVS count, clockevent)] from HV_MIGRATE_SCRIPT's lines."""
    import re
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in
            re.finditer(r"^HVTICK (\d+) (\d+) (\S+)\r?$", console, re.M)]


def hv_migrate(build, src, dst):
    """Start the Hyper-V guest on `src` (ours or upstream) on
    pc-i440fx-10.0, migrate it live to `dst`; returns (ok, diagnostics).
    The destination's guest must go on ticking with the Hyper-V clockevent,
    its HVS (stimer) interrupt count going on from the source's."""
    import socket
    d = tempfile.mkdtemp(prefix="hv-migrate-")
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    boot = dict(accel="kvm", cpu=HV_MIGRATE_CPU, machine="pc-i440fx-10.0", memory="256M")
    procs, qmps, initrds = [], [], []
    diag = [f"{src} -> {dst}, -M pc-i440fx-10.0 -cpu {HV_MIGRATE_CPU}"]
    try:
        p, rd = guests.linux_guest_start(build, HV_MIGRATE_SCRIPT, which=src,
                                         qmp=os.path.join(d, "src.qmp"), **boot)
        procs.append(p)
        initrds.append(rd)
        qmps.append(guests.QMP(os.path.join(d, "src.qmp")))
        out_src = guests.read_until(p, "HVTICK 3 ", 240)
        before = hv_ticks(out_src)
        if len(before) < 2 or before[-1][1] <= before[0][1] or \
                before[-1][2] != "Hyper-V_clockevent":
            return False, "\n".join(diag + [f"source: no Hyper-V ticks\n{out_src}"])
        p, rd = guests.linux_guest_start(build, HV_MIGRATE_SCRIPT, which=dst,
                                         qmp=os.path.join(d, "dst.qmp"),
                                         qemu_args=["-incoming", f"tcp:127.0.0.1:{port}"],
                                         **boot)
        procs.append(p)
        initrds.append(rd)
        qmps.append(guests.QMP(os.path.join(d, "dst.qmp")))
        qmps[0].cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        deadline = time.monotonic() + 300
        while True:
            st = qmps[0].cmd("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                return False, "\n".join(diag + [f"migration did not complete: {st}"])
            time.sleep(0.2)
        if st["status"] != "completed":
            return False, "\n".join(diag + [f"migration {st['status']}: {st}"])
        guests.stop_qemu(procs[0], qmps[0])
        out_src += procs[0].stdout.read()
        before = hv_ticks(out_src)
        last = before[-1]
        # three whole ticks on the destination: up to the start of a fourth
        out_dst = guests.read_until(procs[1], f"HVTICK {last[0] + 4} ", 120)
        after = hv_ticks(out_dst)
        status = qmps[1].cmd("query-status")["status"]
        diag.append(f"source ticks {before[0]}..{last}; destination ({status}) "
                    f"ticks {after[:1]}..{after[-1:]}; downtime {st.get('downtime')} ms")
        ok = (len(after) >= 3 and after[0][1] >= last[1]
              and all(b[1] > a[1] for a, b in zip(after, after[1:]))
              and all(t[2] == "Hyper-V_clockevent" for t in after))
        if not ok:
            diag.append(f"destination console:\n{out_dst}")
        return ok, "\n".join(diag)
    finally:
        for p, q in zip(procs, qmps):
            guests.stop_qemu(p, q)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for rd in initrds:
            os.unlink(rd)
        subprocess.run(["rm", "-rf", d])


def test_hv_migrate_compat(build, src, dst):
    up = mt.upstream_missing(build)
    if up:
        return guests.Skip(up)
    ok, diag = hv_migrate(build, src, dst)
    print("#   " + diag.splitlines()[1 if len(diag.splitlines()) > 1 else 0], flush=True)
    return ok, diag


def test_pmem_under_kvm(build):
    return e2e_tests.test_dax_write_reaches_host(build, **KVM_BOOT)


RTC_READS = 300
NVRAM_OFFSET = 40           # /dev/nvram byte 40 is CMOS register 54
RTC_SCRIPT = f"""#!/bin/sh
modprobe nvram
t0=$(cat /sys/class/rtc/rtc0/since_epoch)
i=0
while [ $i -lt {RTC_READS} ]; do t=$(cat /sys/class/rtc/rtc0/since_epoch); i=$((i+1)); done
echo "@@ rtc_first $t0"
echo "@@ rtc_last $t"
printf 'lab!' | dd of=/dev/nvram bs=1 seek={NVRAM_OFFSET} conv=notrunc 2>/dev/null
echo "@@ nvram $(dd if=/dev/nvram bs=1 skip={NVRAM_OFFSET} count=4 2>/dev/null)"
"""


def rtc_guest(build, coalesced):
    boot = dict(KVM_BOOT, accel=f"kvm,coalesced-pio={'on' if coalesced else 'off'}")
    t0 = time.time()
    out, info = guests.linux_guest_session(
        build, RTC_SCRIPT, machine="q35",
        query=lambda qmp: (time.time(), qmp.cmd("x-query-coalesced-io")), **boot)
    return guests.guest_values(out), info, t0, out


def test_rtc_reads(build):
    """The guest's RTC reads agree with the host clock (UTC; the RTC starts
    from it), NVRAM written through /dev/nvram reads back, and the RTC
    index zone queued at least one 0x70 write per register read (each
    since_epoch read is several registers); coalesced-pio=off queues none
    and reads the same."""
    diag = []
    for coalesced in (True, False):
        vals, (t_end, info), t_start, out = rtc_guest(build, coalesced)
        label = f"coalesced-pio={'on' if coalesced else 'off'}"
        first, last = int(vals.get("rtc_first") or 0), int(vals.get("rtc_last") or 0)
        if not (t_start - 2 <= first <= last <= t_end + 2):
            diag.append(f"{label}: RTC read {first}..{last}, host clock "
                        f"{t_start:.0f}..{t_end:.0f}\n{out}")
        if vals.get("nvram") != "lab!":
            diag.append(f"{label}: /dev/nvram read back {vals.get('nvram')!r}")
        zone = next((z for z in info["zones"] if z["region"] == "rtc-index"), None)
        if zone is None:
            diag.append(f"{label}: no rtc-index zone: {info}")
            continue
        if coalesced and not (zone["registered"] and zone["writes"] >= RTC_READS):
            diag.append(f"{label}: rtc-index zone {zone}")
        if not coalesced and (zone["registered"] or zone["writes"]):
            diag.append(f"{label}: rtc-index zone {zone}")
        print(f"#   {label}: RTC {first}..{last} (host {t_start:.0f}..{t_end:.0f}), "
              f"rtc-index writes {zone['writes']}, replays {zone['replays']}", flush=True)
    return not diag, "\n".join(diag)


def dirty_log_watch(manual):
    """src_watch for mt.precopy: KVM's dirty log as the source used it."""
    def before(src):
        return src.qmp.cmd("x-query-dirty-log")

    def after(src, b):
        a = src.qmp.cmd("x-query-dirty-log")
        d = {k: a[k] - b[k] for k in ("fetches", "pages-dirty", "clears", "pages-cleared")}
        ok = (a["manual-protect"] is manual and d["fetches"] > 1 and d["pages-dirty"] > 0
              and a["clear-errors"] == 0
              and (d["clears"] > 0 and d["pages-cleared"] > 0 if manual
                   else d["clears"] == 0))
        return ok, f"manual-protect {a['manual-protect']}; during migration {d}"
    return before, after


def retry_nested_fault(fn):
    """Run a scenario again, guests.NESTED_FAULT_RUNS times at most, when
    the nested KVM failed it before any check ran (docs/lab.md): a fault of
    the nested setup, not of migration, so it is reported and the scenario
    runs anew, in a fresh directory. A fault of ours would fail every run."""
    def run(tmp, res):
        for attempt in range(1, guests.NESTED_FAULT_RUNS + 1):
            try:
                if attempt == 1:
                    fn(tmp, res)
                else:
                    with tempfile.TemporaryDirectory(prefix="migretry-") as again:
                        fn(again, res)
                return
            except Exception as e:
                # a QEMU that dies with QMP open reaches the harness as a
                # reset connection: its stderr (mt.DEATHS) has the fault
                fault = guests.nested_fault([str(e)] + mt.DEATHS)
                if res or fault is None or attempt == guests.NESTED_FAULT_RUNS:
                    raise
                print(f"#   nested KVM fault before the scenario's first check, "
                      f"running it again: {fault}", flush=True)
                del mt.DEATHS[:]
    return run


def migration_scenarios(build):
    up = mt.upstream_missing(build)

    def pre(src, dst, machine, kind, name, watch=None, accel="kvm"):
        name = f"lab-kvm: {name}"
        names = ([f"{name}: source dirty log"] if watch else []) + \
            [f"{name}: RAM equal byte for byte", f"{name}: CMOS NVRAM bytes carried over"]
        return (names, up if "upstream" in (src, dst) else None,
                retry_nested_fault(lambda tmp, res: mt.precopy(
                    build, tmp, src, dst, machine, kind, res, name, accel=accel,
                    src_watch=watch)))

    off = "kvm,dirty-log-manual-protect=off"
    return [
        pre("ours", "ours", "pc", "unix", "kvm live migration: ours->ours, manual reprotect",
            dirty_log_watch(True)),
        pre("ours", "ours", "pc", "unix", "kvm live migration: ours->ours, "
            "dirty-log-manual-protect=off", dirty_log_watch(False), accel=off),
        pre("ours", "upstream", "pc-i440fx-10.0", "tcp",
            "kvm live migration: compat: ours->upstream, pc-i440fx-10.0", dirty_log_watch(True)),
        pre("upstream", "ours", "pc-i440fx-10.0", "tcp",
            "kvm live migration: compat: upstream->ours, pc-i440fx-10.0"),
    ]


TESTS = [
    ("hyperv: Linux guest uses stimer direct mode with hv-stimer-direct, not without; "
     "x-hv-provided agrees", test_hv_stimer_direct),
    ("hyperv compat: Linux guest with hv-stimer-direct on pc-i440fx-10.0 migrates "
     "upstream->ours and keeps ticking on its Hyper-V stimer",
     lambda b: test_hv_migrate_compat(b, "upstream", "ours")),
    ("hyperv compat: Linux guest with hv-stimer-direct on pc-i440fx-10.0 migrates "
     "ours->upstream and keeps ticking on its Hyper-V stimer",
     lambda b: test_hv_migrate_compat(b, "ours", "upstream")),
    ("virtio-pmem-pci under KVM: ext4 -o dax file written and fsynced in the guest is in "
     "the host file", test_pmem_under_kvm),
    ("coalesced-io: Linux guest's RTC reads right with 0x70 queued, and with "
     "coalesced-pio=off", test_rtc_reads),
]


def run(tap, build):
    guests.run_tests(tap, "lab-kvm", TESTS, build)
    mt.run_scenarios(tap, build, migration_scenarios(build))
