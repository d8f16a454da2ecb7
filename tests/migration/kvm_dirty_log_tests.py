"""Migration layer, KVM part: manual dirty-log reprotect (KVM_CLEAR_DIRTY_LOG).

Tiny real-mode guests under /dev/kvm (skipped with the reason where it is
missing).  This machine's KVM reports pages dirty only through "initially
set" (see ../shared/DESIGN.md), so these tests check the ioctl sequence,
the statistics, the migration parameter and the error path; migration
correctness is tested under TCG by migration_tests.py.
"""
import os
import sys
import tempfile
import time

import guests

GUEST = "cmos-migrate.bin"      # tests/guest/cmos-migrate.S
GUEST_RESULT = 0x5a             # what it reads back after migration
RAM_MB = 64
PAGE = 4096


KVM_FAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kvm_fault.py")


def vm(build, accel="kvm", incoming=None, extra=(), wrapper=(), start=True,
       image=GUEST):
    return guests.TinyVM(build, image, accel=accel, incoming=incoming, start=start,
                         extra=["-m", f"{RAM_MB}M"] + list(extra), wrapper=wrapper)


def spinning_guest(build, tmp):
    """A copy of the guest that spins for ever after "W" instead of exiting
    about 2 s later (its second wait_tsc made a jmp-to-self), for tests
    whose source must outlast a slow migration (kvm_fault.py in the lab)."""
    with open(os.path.join(build, "guest", GUEST), "rb") as f:
        data = bytearray(f.read())
    at = data.find(bytes.fromhex("66b900000000e8"))    # mov $0, %ecx; call
    if at < 0:
        raise RuntimeError(f"{GUEST}: the second wait_tsc call is not there")
    data[at:at + 2] = b"\xeb\xfe"
    out = os.path.join(tmp, "spin.bin")
    with open(out, "wb") as f:
        f.write(data)
    return out


def failing_clears(gpa, count=1, err=5, log=None):
    """A wrapper under which the first `count` KVM_CLEAR_DIRTY_LOG calls of
    a window that holds guest-physical `gpa` fail with `err` (EIO), as a
    kernel refusing them would (kvm_fault.py: seccomp, from outside QEMU)."""
    cmd = [sys.executable, KVM_FAULT, f"--errno={err}", f"--gpa={gpa:#x}",
           f"--count={count}"]
    return cmd + ([f"--log={log}"] if log else []) + ["--"]


def dirty_log(v):
    return v.qmp.cmd("x-query-dirty-log")


def migrate(src, uri, timeout=60, postcopy=False):
    src.qmp.cmd("migrate", uri=uri)
    if postcopy:
        src.qmp.cmd("migrate-start-postcopy")
    deadline = time.monotonic() + timeout
    while True:
        info = src.qmp.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled",
                                  "postcopy-paused"):
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"migration still {info.get('status')} after {timeout}s")
        time.sleep(0.02)


def delta(after, before, key):
    return after[key] - before[key]


def guest_result(dst):
    """The destination guest finishes its loop and exits with the NVRAM
    byte it reads: the RTC state came across and the guest kept running."""
    status = dst.wait_exit(60)
    want = guests.debug_exit_status(GUEST_RESULT)
    return status == want, f"destination guest exit status {status}, want {want}"


def test_active(build):
    """Manual reprotect is enabled with the flags the kernel offers."""
    with vm(build) as v:
        info = dirty_log(v)
        hmp = v.qmp.cmd("human-monitor-command", **{"command-line": "info dirty-log"})
    ok = (info["manual-protect"] is True and "reason" not in info
          and "manual reprotect: active" in hmp)
    return ok, f"x-query-dirty-log {info}; info dirty-log {hmp!r}"


def test_migrate_file(build):
    """Migration to a file clears every RAM chunk (1 MiB chunks: at least
    one request per MiB of RAM, every initially-set RAM page re-protected),
    and the destination guest reads its NVRAM byte."""
    diag = []
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        stream = os.path.join(d, "state")
        with vm(build) as src:
            src.wait_output("W\n")
            src.qmp.cmd("migrate-set-parameters", **{"x-dirty-log-clear-size": 1 << 20})
            before = dirty_log(src)
            info = migrate(src, f"file:{stream}")
            after = dirty_log(src)
        if info["status"] != "completed":
            return False, f"migration {info}"
        requests = delta(after, before, "clear-requests")
        cleared = delta(after, before, "pages-cleared")
        if requests < RAM_MB:
            diag.append(f"{requests} clear requests for {RAM_MB} MiB in 1 MiB chunks")
        if cleared < (RAM_MB - 1) * (1 << 20) // PAGE:
            diag.append(f"only {cleared} pages re-protected")
        # a page is only re-protected after a fetch reported it dirty
        if delta(after, before, "pages-dirty") < cleared:
            diag.append(f"{delta(after, before, 'pages-dirty')} pages reported "
                        f"dirty, fewer than the {cleared} re-protected")
        if delta(after, before, "clears") == 0 or after["clear-errors"]:
            diag.append(f"statistics {after}")
        with vm(build, incoming="defer") as dst:
            dst.qmp.cmd("migrate-incoming", uri=f"file:{stream}")
            ok, why = guest_result(dst)
        if not ok:
            diag.append(why)
    return not diag, "\n".join(diag)


def test_migrate_socket(build):
    """Live migration over a local socket with manual reprotect; the
    destination guest carries on and reads its NVRAM byte."""
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        sock = os.path.join(d, "mig.sock")
        with vm(build, incoming=f"unix:{sock}") as dst, vm(build) as src:
            src.wait_output("W\n")
            before = dirty_log(src)
            info = migrate(src, f"unix:{sock}")
            after = dirty_log(src)
            if info["status"] != "completed":
                return False, f"migration {info}"
            ok, why = guest_result(dst)
    clears = delta(after, before, "clears")
    return ok and clears > 0, f"{why}; {clears} clear calls; {after}"


def test_manual_off(build):
    """dirty-log-manual-protect=off: the same migration succeeds with no
    clear at all, and the reason is reported."""
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        sock = os.path.join(d, "mig.sock")
        accel = "kvm,dirty-log-manual-protect=off"
        with vm(build, accel=accel, incoming=f"unix:{sock}") as dst, \
                vm(build, accel=accel) as src:
            src.wait_output("W\n")
            info = migrate(src, f"unix:{sock}")
            stats = dirty_log(src)
            if info["status"] != "completed":
                return False, f"migration {info}"
            ok, why = guest_result(dst)
    ok = (ok and stats["manual-protect"] is False and stats["clears"] == 0
          and stats["fetches"] > 0
          and "dirty-log-manual-protect=off" in stats.get("reason", ""))
    return ok, f"{why}; {stats}"


def test_clear_failure(build):
    """A failed KVM_CLEAR_DIRTY_LOG fails the migration with its error; the
    source keeps running, and a second migration succeeds."""
    diag = []
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        with vm(build, wrapper=failing_clears(0x1000000),
                image=spinning_guest(build, d)) as src:
            src.wait_output("W\n")
            first = migrate(src, f"file:{os.path.join(d, 'a')}")
            status = src.qmp.cmd("query-status")["status"]
            stats = dirty_log(src)
            second = migrate(src, f"file:{os.path.join(d, 'b')}")
    if first["status"] != "failed" or \
            "KVM_CLEAR_DIRTY_LOG failed" not in first.get("error-desc", ""):
        diag.append(f"first migration: {first}")
    if status != "running":
        diag.append(f"source status after the failure: {status}")
    if stats["clear-errors"] != 1:
        diag.append(f"statistics: {stats}")
    if second["status"] != "completed":
        diag.append(f"second migration: {second}")
    return not diag, "\n".join(diag)


def test_clear_failure_stopped(build):
    """A clear that fails while the vCPUs are stopped (a stopped VM's
    migration, the same as after switchover) is reported, not fatal: the
    migration completes and the destination guest carries on."""
    diag = []
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        stream = os.path.join(d, "state")
        with vm(build, wrapper=failing_clears(0x1000000)) as src:
            src.wait_output("W\n")
            src.qmp.cmd("stop")
            info = migrate(src, f"file:{stream}")
            stats = dirty_log(src)
        if info["status"] != "completed":
            diag.append(f"migration: {info}")
        if stats["clear-errors"] != 1:
            diag.append(f"statistics (the clear did not fail?): {stats}")
        if not diag:
            with vm(build, incoming="defer") as dst:
                dst.qmp.cmd("migrate-incoming", uri=f"file:{stream}")
                while dst.qmp.cmd("query-migrate").get("status") != "completed":
                    time.sleep(0.02)
                dst.qmp.cmd("cont")
                ok, why = guest_result(dst)
            if not ok:
                diag.append(why)
    return not diag, "\n".join(diag)


def test_clear_failure_postcopy(build):
    """A clear that fails in postcopy (source stopped) is not fatal: the
    migration completes instead of going to postcopy-paused, and the
    destination runs."""
    diag = []
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        sock = os.path.join(d, "mig.sock")
        # 1 MiB chunks, the failure at 60 MiB, precopy at 1 MiB/s: that
        # chunk is only sent (and re-protected) after the switch.  The
        # guest spins for ever (a slow postcopy in the lab outlasts the
        # original's 2 s), and the destination waits (-S) until the end.
        spin = spinning_guest(build, d)
        with vm(build, incoming=f"unix:{sock}", start=False, image=spin) as dst, \
                vm(build, wrapper=failing_clears(60 << 20), image=spin) as src:
            for v in (src, dst):
                v.qmp.cmd("migrate-set-capabilities", capabilities=[
                    {"capability": "postcopy-ram", "state": True}])
            src.qmp.cmd("migrate-set-parameters", **{
                "x-dirty-log-clear-size": 1 << 20, "max-bandwidth": 1 << 20})
            src.wait_output("W\n")
            try:
                info = migrate(src, f"unix:{sock}", postcopy=True)
            except RuntimeError as e:
                if "userfaultfd" in str(e).lower() or "postcopy" in str(e).lower():
                    return guests.Skip(f"no postcopy here: {e}")
                raise
            stats = dirty_log(src)
            if info["status"] == "completed":
                while dst.qmp.cmd("query-migrate").get("status") != "completed":
                    time.sleep(0.02)
                dst.qmp.cmd("cont")
                time.sleep(0.5)
                status = dst.qmp.cmd("query-status")["status"]
                if status != "running":
                    diag.append(f"destination {status} after cont")
    if info["status"] != "completed":
        diag.append(f"migration: {info}")
    if stats["clear-errors"] != 1:
        diag.append(f"statistics (the clear did not fail?): {stats}")
    return not diag, "\n".join(diag)


VIRTIO_MEM = ["-m", f"{RAM_MB}M,maxmem=1G",
              "-object", "memory-backend-ram,id=vmem0,size=128M",
              "-device", "virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0"]


def test_clear_failure_virtio_mem(build):
    """A clear that fails while migration setup re-protects virtio-mem's
    unplugged (discarded) memory fails the migration of the running VM
    like any other: it is this migration's, not an earlier one's."""
    with vm(build, extra=VIRTIO_MEM) as v:
        devices = v.qmp.cmd("query-memory-devices")
    addr = [m["data"]["memaddr"] for m in devices if m["type"] == "virtio-mem"]
    if not addr:
        return False, f"no virtio-mem device: {devices}"
    diag = []
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        log = os.path.join(d, "faults")
        with vm(build, extra=VIRTIO_MEM, image=spinning_guest(build, d),
                wrapper=failing_clears(addr[0], log=log)) as src:
            src.wait_output("W\n")
            first = migrate(src, f"file:{os.path.join(d, 'a')}")
            status = src.qmp.cmd("query-status")["status"]
            stats = dirty_log(src)
            second = None
            if first["status"] == "failed":
                second = migrate(src, f"file:{os.path.join(d, 'b')}")
        with open(log) as f:
            faults = f.read()
    if not faults:
        diag.append(f"no clear of virtio-mem's memory at {addr[0]:#x} was made")
    if first["status"] != "failed" or \
            "KVM_CLEAR_DIRTY_LOG failed" not in first.get("error-desc", ""):
        diag.append(f"first migration: {first}")
    if status != "running":
        diag.append(f"source status after the failure: {status}")
    if second and second["status"] != "completed":
        diag.append(f"second migration: {second}")
    if diag:
        diag.append(f"faults made: {faults!r}; statistics {stats}")
    return not diag, "\n".join(diag)


def test_chunk_parameter(build):
    """x-dirty-log-clear-size: validated, shown by QMP and HMP, and it sets the
    chunk (a migration of the stopped VM asks for one clear per chunk)."""
    diag = []
    with vm(build) as v:
        default = v.qmp.cmd("query-migrate-parameters")["x-dirty-log-clear-size"]
        for bad in (3 << 20, 4096, 1 << 50):
            try:
                v.qmp.cmd("migrate-set-parameters", **{"x-dirty-log-clear-size": bad})
                diag.append(f"x-dirty-log-clear-size={bad} accepted")
            except RuntimeError as e:
                if "power of two" not in str(e):
                    diag.append(f"error for {bad}: {e}")
        v.qmp.cmd("human-monitor-command",
                  **{"command-line": "migrate_set_parameter x-dirty-log-clear-size 2M"})
        hmp = v.qmp.cmd("human-monitor-command", **{"command-line": "info migrate_parameters"})
        if "x-dirty-log-clear-size: 2097152 bytes" not in hmp:
            diag.append(f"info migrate_parameters: {hmp!r}")
    if default != 64 << 20:
        diag.append(f"default {default}")
    requests = {}
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        for size in (1 << 20, 16 << 20):
            with vm(build) as v:
                v.qmp.cmd("migrate-set-parameters", **{"x-dirty-log-clear-size": size})
                v.qmp.cmd("stop")       # one pass over RAM: a clear per chunk
                before = dirty_log(v)
                info = migrate(v, f"file:{os.path.join(d, str(size))}")
                requests[size] = delta(dirty_log(v), before, "clear-requests")
                if info["status"] != "completed":
                    diag.append(f"migration with {size}: {info}")
    # A request per chunk and per flat range in it: RAM_MB chunks of 1 MiB
    # against RAM_MB / 16; the first chunk's many low-memory ranges (PAM,
    # SMRAM) are the same in both, give or take the range that starts at
    # 1 MiB.
    if requests[1 << 20] - requests[16 << 20] < RAM_MB - RAM_MB // 16 - 2:
        diag.append(f"clear requests by chunk size: {requests}")
    return not diag, "\n".join(diag)


class Qtest:
    """The qtest protocol (-qtest unix:PATH,server=on,wait=off): port I/O
    from outside the guest, to do what the guest's ACPI code would."""

    def __init__(self, path, timeout=10):
        self.sock = guests.connect_unix(path, timeout)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rw")

    def cmd(self, line):
        self.file.write(line + "\n")
        self.file.flush()
        reply = self.file.readline().strip()
        if not reply.startswith("OK"):
            raise RuntimeError(f"qtest {line!r}: {reply!r}")
        return reply

    def close(self):
        self.sock.close()


ACPI_MEM_HOTPLUG = 0xa00        # piix4's memory hotplug registers (pc)


def process_uses(pid, path):
    """Whether process @pid has @path open or mapped (/proc/PID/fd, maps)."""
    uses = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) == path:
                uses.append(f"fd {fd}")
        except OSError:
            pass
    with open(f"/proc/{pid}/maps") as f:
        if any(line.rstrip("\n").endswith(" " + path) for line in f):
            uses.append("mapped")
    return uses


def test_unplug_after_migration(build, accel="kvm"):
    """After a migration (every chunk re-protected), a hot-unplugged DIMM
    and its memory-backend-file go: qom-list no longer lists the backend,
    and QEMU has its file neither open nor mapped."""
    diag = []
    with tempfile.TemporaryDirectory(prefix="dirty-log-") as d:
        backing = os.path.join(d, "dimm.img")
        with open(backing, "wb") as f:
            f.truncate(16 << 20)
        qtest_path = os.path.join(d, "qtest.sock")
        extra = ["-m", f"{RAM_MB}M,slots=2,maxmem=1G",
                 "-object", "memory-backend-file,id=dimm-mem,size=16M,"
                            f"share=on,mem-path={backing}",
                 "-device", "pc-dimm,id=dimm0,memdev=dimm-mem",
                 "-qtest", f"unix:{qtest_path},server=on,wait=off"]
        with vm(build, accel=accel, extra=extra) as src:
            qt = Qtest(qtest_path)
            try:
                src.wait_output("W\n")
                src.qmp.cmd("stop")     # the guest exits 2 s after "W"
                pid = src.proc.pid
                before = process_uses(pid, backing)
                info = migrate(src, f"file:{os.path.join(d, 'state')}")
                if info["status"] != "completed":
                    return False, f"migration {info}"
                src.qmp.cmd("device_del", id="dimm0")
                # the guest's _EJ0: select slot 0, eject
                qt.cmd(f"outl 0x{ACPI_MEM_HOTPLUG:x} 0x0")
                qt.cmd(f"outb 0x{ACPI_MEM_HOTPLUG + 0x14:x} 0x8")
                peripherals = [p["name"] for p in
                               src.qmp.cmd("qom-list", path="/machine/peripheral")]
                if "dimm0" in peripherals:
                    diag.append(f"dimm0 still plugged: {peripherals}")
                src.qmp.cmd("object-del", id="dimm-mem")
                deadline = time.monotonic() + 10
                while True:
                    objects = [o["name"] for o in
                               src.qmp.cmd("qom-list", path="/objects")]
                    uses = process_uses(pid, backing)
                    if ("dimm-mem" not in objects and not uses) or \
                            time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
            finally:
                qt.close()
    if not before:
        diag.append("the backing file was not open before the unplug "
                    "(the test cannot see it)")
    if "dimm-mem" in objects:
        diag.append(f"backend still in /objects: {objects}")
    if uses:
        diag.append(f"10 s after object-del QEMU still has {backing}: "
                    + ", ".join(uses))
    return not diag, "\n".join(diag)


TESTS = [
    ("kvm dirty log: manual reprotect active", test_active),
    ("kvm dirty log: migrate to a file, every chunk re-protected", test_migrate_file),
    ("kvm dirty log: live migration over a socket", test_migrate_socket),
    ("kvm dirty log: dirty-log-manual-protect=off migrates without clears", test_manual_off),
    ("kvm dirty log: a failed clear fails the migration cleanly", test_clear_failure),
    ("kvm dirty log: a clear failed with vCPUs stopped is not fatal",
     test_clear_failure_stopped),
    ("kvm dirty log: a clear failed in postcopy is not fatal", test_clear_failure_postcopy),
    ("kvm dirty log: a failed clear of virtio-mem's discarded memory fails the migration",
     test_clear_failure_virtio_mem),
    ("kvm dirty log: x-dirty-log-clear-size parameter", test_chunk_parameter),
    ("kvm dirty log: a DIMM unplugged after a migration is freed with its backend",
     test_unplug_after_migration),
]


def run(tap, build):
    guests.run_tests(tap, "kvm-migration", TESTS, build)
