"""Sized coalesced zones: PCI CONFIG_ADDRESS (0xcf8) as one zone of 32-bit
writes where KVM has KVM_CAP_COALESCED_ZONE_LEN, the byte zones of the
flat ranges (as before) where it has not.

What the tests look at besides QEMU's own statistics:
- the port I/O exits KVM_RUN returned, as the base's own trace event
  kvm_run_exit (kvm-all.c, reason 2 = KVM_EXIT_IO) logs them: queued
  writes do not come back to QEMU, the others do.  (KVM's io_exits
  statistic counts the guest's I/O intercepts, the queued ones included:
  it is no measure of exits to QEMU.);
- the guests' own results: the PCI scan (tests/guest/pci-scan.S) against
  query-pci, CONFIG_ADDRESS and the reset control register read back
  (tests/guest/cf8-sizes.S), a reset that takes effect before the guest
  runs on (tests/guest/cf9-reset.S);
- QEMU's stderr: the fallback warns about nothing.

Which KVM this is comes from /dev/kvm itself (KVM_CHECK_EXTENSION), not
from QEMU.  A kernel that announces the capability and refuses the flag is
made with an LD_PRELOAD shim (zone-len-cap-shim.c) that answers 1 for the
capability on a kernel that lacks it: QEMU itself has no knob for it.
"""
import os
import subprocess
import tempfile

import guests

MACHINES = ("pc", "q35")
HERE = os.path.dirname(os.path.abspath(__file__))

# tests/guest/cf8-sizes.S
BYTE_WRITES = 400
DWORD_WRITES = 400
CF8_SIZES_OUT = "addr 80000800\nrcr 02 00\naddr 80001008\ndone\n"
# tests/guest/cf9-reset.S
RESET_QUEUED = 100
RESET_OUT = "first\nsecond\n"


def has_zone_len():
    return guests.kvm_check_extension(guests.KVM_CAP_COALESCED_ZONE_LEN) > 0


def conf_zones(info):
    return [z for z in info["zones"] if z["region"] == "pci-conf-idx"]


def zone_shape(zones):
    return sorted((z["addr"], z["size"], z.get("x-access-len")) for z in zones)


SIZED = [(0xcf8, 4, 4)]
BYTE_ZONES = [(0xcf8, 1, None), (0xcfa, 2, None)]


KVM_EXIT_IO = 2


def exit_trace(d):
    """QEMU options logging every KVM_RUN exit to a file in d, and the file."""
    path = os.path.join(d, "exits.log")
    return ["-trace", f"enable=kvm_run_exit,file={path}"], path


def io_exits(path):
    """The KVM_EXIT_IO exits KVM_RUN returned to QEMU (the base's trace)."""
    with open(path) as f:
        return sum(1 for line in f
                   if "kvm_run_exit" in line and line.rstrip().endswith(f"reason {KVM_EXIT_IO}"))


def shim(build):
    """The LD_PRELOAD library that makes KVM_CHECK_EXTENSION answer 1 for
    KVM_CAP_COALESCED_ZONE_LEN, built into a temporary directory (the
    caller removes it)."""
    d = tempfile.mkdtemp(prefix="zone-len-shim-")
    so = os.path.join(d, "zone-len-cap-shim.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", so,
                    os.path.join(HERE, "zone-len-cap-shim.c"), "-ldl"],
                   check=True)
    return so


def stderr_of(vm):
    vm.close()
    return vm.proc.stderr.read()


def zone_complaints(err):
    """QEMU's stderr lines about coalesced zones (warn_report's "KVM
    refused the coalesced ... zone"); the host's own CPUID warnings aside."""
    return [line for line in err.splitlines()
            if "coalesc" in line.lower() or "zone" in line.lower()]


def run_pci_scan(build, machine, pio="on", wrapper=()):
    """The PCI scan guest: (its devices, query-pci's, QMP info, port I/O
    exits to QEMU, HMP info coalesced-io, QEMU's stderr)."""
    with tempfile.TemporaryDirectory(prefix="pci-scan-") as d:
        trace, trace_path = exit_trace(d)
        vm = guests.TinyVM(build, "pci-scan.bin", machine=machine,
                           accel=f"kvm,coalesced-pio={pio}", start=False,
                           wrapper=wrapper, extra=trace)
        try:
            buses = vm.qmp.cmd("query-pci")
            vm.qmp.cmd("cont")
            out = vm.wait_output("done\n")
            info = vm.qmp.cmd("x-query-coalesced-io")
            hmp = vm.qmp.cmd("human-monitor-command",
                             **{"command-line": "info coalesced-io"})
        finally:
            err = stderr_of(vm)
        exits = io_exits(trace_path)
    want = sorted(f"{dev['slot']:02x}.{dev['function']:x} "
                  f"{dev['id']['vendor']:04x}:{dev['id']['device']:04x}"
                  for dev in next(b for b in buses if b["bus"] == 0)["devices"])
    got = sorted(line for line in out.splitlines() if line != "done")
    return got, want, info, exits, hmp, err


def test_fallback(build, machine):
    """Without the capability: the byte zones of the flat ranges, no
    access length, the PCI scan right, nothing on stderr."""
    if has_zone_len():
        return guests.Skip("this KVM has KVM_CAP_COALESCED_ZONE_LEN")
    got, want, info, _, hmp, err = run_pci_scan(build, machine)
    zones = conf_zones(info)
    ok = (got == want and got and not info["x-zone-len"]
          and zone_shape(zones) == BYTE_ZONES
          and all(z["registered"] for z in zones) == bool(guests.kvm_check_extension(guests.KVM_CAP_COALESCED_PIO))
          and not zone_complaints(err))
    return ok, (f"guest saw {got}, query-pci {want}\nzones {zones}\n"
                f"x-zone-len {info['x-zone-len']}\nHMP:\n{hmp}\nstderr: {err!r}")


def test_refused_flag(build, machine):
    """KVM announces the capability but refuses the flag (EINVAL): the
    byte zones, no warning, the trace event, the PCI scan and a reset
    through 0xcf9 right."""
    if has_zone_len():
        return guests.Skip("this KVM takes sized zones: nothing to refuse")
    if not guests.kvm_check_extension(guests.KVM_CAP_COALESCED_PIO):
        return guests.Skip("this KVM has no coalesced port I/O")
    so = shim(build)
    try:
        wrap = ["env", f"LD_PRELOAD={so}"]
        got, want, info, _, hmp, err = run_pci_scan(build, machine, wrapper=wrap)
        zones = conf_zones(info)
        vm = guests.TinyVM(build, "cf9-reset.bin", machine=machine, wrapper=wrap,
                           extra=["-trace", "kvm_coalesced_io_zone_len_refused"])
        try:
            vm.wait_output("second\n")
            out = vm.output()
        finally:
            err2 = stderr_of(vm)
    finally:
        subprocess.run(["rm", "-rf", os.path.dirname(so)])
    traced = [line for line in err2.splitlines() if "zone_len_refused" in line]
    others = [line for line in zone_complaints(err2) if "zone_len_refused" not in line]
    ok = (got == want and got and not info["x-zone-len"] and info["pio"]
          and zone_shape(zones) == BYTE_ZONES and all(z["registered"] for z in zones)
          and not zone_complaints(err) and len(traced) >= 1 and not others
          and out == RESET_OUT)
    return ok, (f"guest saw {got}, query-pci {want}\nzones {zones}\n"
                f"x-zone-len {info['x-zone-len']}\nHMP:\n{hmp}\nstderr: {err!r}\n"
                f"reset guest printed {out!r}, stderr {err2!r}")


def test_sized_pci_scan(build, machine):
    """With the capability: one 4-byte zone of 32-bit writes at 0xcf8; the
    PCI scan is right, its 0xcf8 writes are queued (QMP), and KVM_RUN
    returns that many fewer port exits than with coalesced-pio=off."""
    if not has_zone_len():
        return guests.Skip("this KVM has no KVM_CAP_COALESCED_ZONE_LEN")
    got, want, info, exits_on, hmp, err = run_pci_scan(build, machine)
    got_off, _, _, exits_off, _, _ = run_pci_scan(build, machine, pio="off")
    zones = conf_zones(info)
    queued = sum(z["writes"] for z in zones)
    ok = (got == want and got_off == want and got and info["x-zone-len"]
          and zone_shape(zones) == SIZED and zones[0]["registered"]
          and queued >= 32                # one per device probed, at least
          and exits_off - exits_on >= queued - 2 and not zone_complaints(err)
          and "4-byte" in hmp)
    return ok, (f"guest saw {got} (off: {got_off}), query-pci {want}\nzones {zones}\n"
                f"port I/O exits to QEMU: {exits_on} with the zone, {exits_off} with "
                f"coalesced-pio=off; {queued} writes queued\nHMP:\n{hmp}\nstderr: {err!r}")


def test_sizes(build, machine):
    """Byte and word accesses around 0xcf8 still exit and work; a byte
    written to 0xcf9 (reset control) reads back at once; 32-bit writes to
    0xcf8 are queued where the capability is."""
    sized = has_zone_len()
    with tempfile.TemporaryDirectory() as d:
        trace, trace_path = exit_trace(d)
        with guests.TinyVM(build, "cf8-sizes.bin", machine=machine, extra=trace) as vm:
            out = vm.wait_output("done\n")
            info = vm.qmp.cmd("x-query-coalesced-io")
        exits = io_exits(trace_path)
    zones = conf_zones(info)
    ok = out == CF8_SIZES_OUT
    diag = [f"guest printed {out!r}, want {CF8_SIZES_OUT!r}", f"zones {zones}",
            f"port I/O exits to QEMU {exits}"]
    if sized:
        queued = sum(z["writes"] + z["exits"] for z in zones)
        # every byte and word write exits; the dword ones are queued (but
        # for one exit per full ring, counted as the zone's exits), so the
        # exits are those and the prints and reads
        ok = ok and zone_shape(zones) == SIZED and queued >= DWORD_WRITES \
            and BYTE_WRITES <= exits < BYTE_WRITES + DWORD_WRITES // 2
        diag.append(f"sized zone: {queued} writes queued or ring-full exits, want >= "
                    f"{DWORD_WRITES}; exits want {BYTE_WRITES}..{BYTE_WRITES + DWORD_WRITES // 2}")
    else:
        ok = ok and zone_shape(zones) == BYTE_ZONES
    return ok, "\n".join(diag)


def test_reset(build, machine):
    """A reset through 0xcf9 happens at once, with 32-bit writes to 0xcf8
    queued before it where the capability is: the guest never runs past
    the request ('late', 'flushed'), boots again, and the zone counts the
    writes as queued (after the reset, which replays them)."""
    sized = has_zone_len()
    with guests.TinyVM(build, "cf9-reset.bin", machine=machine) as vm:
        vm.wait_output("second\n")
        out = vm.output()
        info = vm.qmp.cmd("x-query-coalesced-io")
    zones = conf_zones(info)
    queued = sum(z["writes"] for z in zones)
    ok = out == RESET_OUT
    if sized:
        ok = ok and zone_shape(zones) == SIZED and queued >= RESET_QUEUED - 2
    return ok, (f"guest printed {out!r}, want {RESET_OUT!r} ('late' or 'flushed': "
                f"it ran on after the reset request)\nsized zones: {sized}; zones "
                f"{zones}: {queued} writes queued")


def test_migrate_queued_cf8(build, machine):
    """A 32-bit 0xcf8 write still queued when the VM stops reaches
    CONFIG_ADDRESS before the PCI host's state is saved: after migration
    the guest reads the register it selected (tests/guest/cf8-migrate.S):
    the host bridge's class code, as query-pci has it, not its IDs."""
    sized = has_zone_len()
    with guests.tiny_migrated(build, "cf8-migrate.bin", machine,
                              "x-query-coalesced-io") as (dst, before, info):
        host = next(b for b in dst.qmp.cmd("query-pci") if b["bus"] == 0)["devices"][0]
        dst.qmp.cmd("cont")
        out = dst.wait_output("done\n")
    before = conf_zones(before)
    values = dict(line.split() for line in out.splitlines() if line.startswith(("first", "then")))
    first, then = int(values.get("first", "0"), 16), int(values.get("then", "0"), 16)
    want_first = host["id"]["device"] << 16 | host["id"]["vendor"]
    ok = first == want_first and then >> 16 == host["class_info"]["class"]
    diag = [f"guest printed {out!r}; host bridge {host}",
            f"zones before stop {before}, after {conf_zones(info)}; "
            f"stop-drains {info['stop-drains']}"]
    if sized:
        # the write was in the ring when the VM stopped, not replayed before
        after = conf_zones(info)
        ok = (ok and zone_shape(after) == SIZED and info["stop-drains"] >= 1
              and after[0]["writes"] > before[0]["writes"])
    return ok, "\n".join(diag)


# Each test runs on every machine type, as "coalesced-io/MACHINE: what it checks".
PER_MACHINE = [
    ("0xcf8 without KVM_CAP_COALESCED_ZONE_LEN: byte zones as before, PCI scan "
     "right, no warning", test_fallback),
    ("0xcf8 sized zone refused by KVM (EINVAL): byte zones, no warning, trace "
     "event, PCI scan and reset right", test_refused_flag),
    ("sized zone: PCI scan with the 4-byte zone at 0xcf8, its writes queued "
     "(QMP) and not exits to QEMU (kvm_run_exit)", test_sized_pci_scan),
    ("0xcf8 byte and word accesses exit and work, 0xcf9 reads back at once, "
     "sized zone queues the dword writes", test_sizes),
    ("0xcf8 writes then a reset through 0xcf9: the reset is immediate, the "
     "writes queued in the sized zone", test_reset),
    ("a 32-bit 0xcf8 write queued at stop survives migration", test_migrate_queued_cf8),
]
TESTS = [(f"coalesced-io/{m}: {what}", lambda b, m=m, fn=fn: fn(b, m))
         for m in MACHINES for what, fn in PER_MACHINE]
