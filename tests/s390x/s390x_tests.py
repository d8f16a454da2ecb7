"""s390x layer: DIAGNOSE 0x318 under TCG with a tiny s390x guest.

tests/guest-s390x/diag318.S runs SCLP Read SCP Info, issues DIAG 318 in
supervisor and in problem state, records what happened in a result block
in its memory and stops in a disabled wait, which QEMU (-no-shutdown) turns
into a stopped VM; the tests read the block and QEMU's view through QMP.
"""
import json
import os
import shlex
import struct
import subprocess
import tempfile
import time

import guests

GUEST = "s390x/diag318.elf"
CODE = 0x04123456789abcde               # diag318.S: CODE
DONE = 0x444941473331384f               # diag318.S: DONE
RESULTS = 0x11000                       # diag318.S: RESULTS
PGM_PRIVILEGED = 0x02
PGM_SPECIFICATION = 0x06


class S390VM(guests.QemuVM):
    def __init__(self, build, kernel=GUEST, machine="s390-ccw-virtio",
                 cpu=None, smp=1, extra=(), incoming=None):
        args = ["-M", machine, "-accel", "tcg", "-nodefaults", "-display", "none",
                "-m", "64M", "-smp", str(smp), "-no-shutdown",
                "-kernel", os.path.join(build, "guest", kernel)]
        if cpu:
            args += ["-cpu", cpu]
        super().__init__(guests.qemu_binary(build, target="s390x"),
                         args + list(extra), incoming=incoming)

    def results(self):
        """The guest's result block, or None if the guest did not finish."""
        out = self.hmp(f"xp /7xg {RESULTS:#x}")
        words = [int(w, 16) for line in out.splitlines()
                 for w in line.split(":", 1)[1].split()]
        keys = ("servc_cc", "sclp_rc", "byte134", "pic_supervisor",
                "pic_problem", "problem_fell_through", "done")
        res = dict(zip(keys, words))
        return res if res.get("done") == DONE else None

    def finish(self, timeout=60):
        self.wait_status("shutdown", timeout)
        res = self.results()
        if res is None:
            raise RuntimeError("the guest stopped without finishing")
        return res

    def diag318(self):
        return self.qmp.cmd("qom-get", path="/machine", property="x-diag318")

    def cpu_codes(self):
        return [self.qmp.cmd("qom-get", path=c["qom-path"], property="x-diag318-code")
                for c in self.qmp.cmd("query-cpus-fast")]


def expect(cond, what, diag):
    if not cond:
        diag.append(what)


def test_supervisor(build):
    """DIAG 318 in supervisor state: every CPU holds the code, QMP and HMP
    decode it, SCLP byte 134 bit 0 announced the facility."""
    diag = []
    with S390VM(build, smp=2) as vm:
        res = vm.finish()
        info = vm.diag318()
        cpus = vm.cpu_codes()
        hmp = vm.hmp("info diag318")
    expect(res["servc_cc"] == 0 and res["sclp_rc"] == 0x10,
           f"read SCP info: cc {res['servc_cc']} rc {res['sclp_rc']:#x}", diag)
    expect(res["byte134"] & 0x80, f"SCCB byte 134 is {res['byte134']:#x}, bit 0 clear", diag)
    expect(res["pic_supervisor"] == 0,
           f"supervisor DIAG 318 interrupted: code {res['pic_supervisor']:#x}", diag)
    want = {"available": True, "code": CODE, "name-code": 4, "name": "Linux",
            "version": "123456789abcde"}
    expect(info == want, f"diag318 property {info}, want {want}", diag)
    expect(cpus == [CODE, CODE], f"per-CPU codes {cpus}", diag)
    expect("0x04123456789abcde" in hmp and "4 (Linux)" in hmp
           and "12 34 56 78 9a bc de" in hmp, f"info diag318: {hmp!r}", diag)
    return not diag, "\n".join(diag)


def test_problem_state(build):
    """In problem state DIAG is a privileged-operation program interrupt."""
    with S390VM(build) as vm:
        res = vm.finish()
    ok = res["pic_problem"] == PGM_PRIVILEGED and res["problem_fell_through"] == 0
    return ok, f"problem state: code {res['pic_problem']:#x}, " \
               f"fell through {res['problem_fell_through']}"


def check_facility_off(build, diag, **kw):
    with S390VM(build, **kw) as vm:
        res = vm.finish()
        info = vm.diag318()
        hmp = vm.hmp("info diag318")
    expect(res["pic_supervisor"] == PGM_SPECIFICATION,
           f"supervisor DIAG 318: code {res['pic_supervisor']:#x}, want specification", diag)
    expect(not res["byte134"] & 0x80, f"SCCB byte 134 is {res['byte134']:#x}", diag)
    expect(not info["available"] and info["code"] == 0, f"diag318 property {info}", diag)
    expect("not offered" in hmp, f"info diag318: {hmp!r}", diag)


def test_facility_off(build):
    """-cpu qemu,diag318=off: specification exception, no SCLP bit."""
    diag = []
    check_facility_off(build, diag, cpu="qemu,diag318=off")
    return not diag, "\n".join(diag)


def test_old_machine_type(build):
    """The base's machine types (10.0, 9.2) keep the base's CPU model: no
    DIAG 318 under TCG; only this tree's s390-ccw-virtio-10.0-dm1 has it."""
    diag = []
    for machine in ("s390-ccw-virtio-10.0", "s390-ccw-virtio-9.2"):
        check_facility_off(build, diag, machine=machine)
    return not diag, "\n".join(diag)


def test_unknown_name_code(build):
    """A name code we cannot name is shown as a number only."""
    src = os.path.join(build, "guest", GUEST)
    alt_code = 0x7f00000000000102
    patched = os.path.join(build, "guest", "s390x/diag318-alt.elf")
    with open(src, "rb") as f:
        data = f.read()
    old = struct.pack(">Q", CODE)
    if data.count(old) != 1:
        return False, "CODE not found once in the guest image"
    with open(patched, "wb") as f:
        f.write(data.replace(old, struct.pack(">Q", alt_code)))
    with S390VM(build, kernel="s390x/diag318-alt.elf") as vm:
        vm.finish()
        info = vm.diag318()
        hmp = vm.hmp("info diag318")
    want = {"available": True, "code": alt_code, "name-code": 127,
            "version": "00000000000102"}
    ok = info == want and "127 (unknown)" in hmp
    return ok, f"diag318 property {info}, want {want}; hmp {hmp!r}"


def test_reset(build):
    """A machine reset clears the code; the re-IPLed guest sets it again."""
    diag = []
    with S390VM(build, smp=2) as vm:
        vm.finish()
        before = vm.diag318()["code"]
        vm.qmp.cmd("system_reset")
        vm.wait_status("prelaunch")
        after = vm.diag318()["code"]
        cpus = vm.cpu_codes()
        vm.qmp.cmd("cont")
        vm.finish()
        again = vm.diag318()["code"]
    expect(before == CODE, f"before reset: {before:#x}", diag)
    expect(after == 0 and cpus == [0, 0], f"after reset: {after:#x}, CPUs {cpus}", diag)
    expect(again == CODE, f"after the guest ran again: {again:#x}", diag)
    return not diag, "\n".join(diag)


RESET_GUEST = "s390x/diag318-reset.elf"
RESET_BOOTS = 0x30000                   # diag318-reset.S: BOOTS


def test_load_normal_reset(build):
    """DIAG 308 subcode 1 (load normal) resets the CPUs without a clear
    reset, so only the machine's own clearing drops the code: the guest
    sets it, resets, boots again without DIAG 318, and the code is 0."""
    with S390VM(build, kernel=RESET_GUEST, smp=2) as vm:
        vm.wait_status("shutdown", 60)
        out = vm.hmp(f"xp /2xg {RESET_BOOTS:#x}")
        boots, done = [int(w, 16) for line in out.splitlines()
                       for w in line.split(":", 1)[1].split()]
        code = vm.diag318()["code"]
        cpus = vm.cpu_codes()
    ok = boots == 2 and done == DONE and code == 0 and cpus == [0, 0]
    return ok, (f"boots {boots}, done {done:#x}; after the load-normal reset the code is "
                f"{code:#x}, CPUs {[hex(c) for c in cpus]}")


def test_cpu_hotplug(build):
    """A CPU plugged after the guest's DIAG 318 holds the VM's code."""
    with S390VM(build, smp="1,maxcpus=2") as vm:
        vm.finish()
        vm.qmp.cmd("device_add", driver="qemu-s390x-cpu", id="cpu1", **{"core-id": 1})
        cpus = vm.cpu_codes()
    return cpus == [CODE, CODE], f"CPU codes after hotplug: {cpus}"


def test_migration(build):
    """Migration (to a file, then into a new QEMU) keeps the code on every CPU."""
    diag = []
    with tempfile.TemporaryDirectory(prefix="s390x-mig-") as d:
        state = os.path.join(d, "state")
        with S390VM(build, smp=2) as src:
            src.finish()
            src.qmp.cmd("migrate", uri=f"file:{state}")
            src.wait_migration()
        with S390VM(build, smp=2, incoming="defer") as dst:
            dst.qmp.cmd("migrate-incoming", uri=f"file:{state}")
            dst.wait_migration()
            info = dst.diag318()
            cpus = dst.cpu_codes()
            res = dst.results()
    expect(info["code"] == CODE and info["available"], f"destination: {info}", diag)
    expect(cpus == [CODE, CODE], f"destination CPUs: {cpus}", diag)
    expect(res is not None, "destination memory lacks the guest's results", diag)
    return not diag, "\n".join(diag)


def test_linux_guest(build):
    """Debian bookworm's s390x kernel reports itself with DIAG 318 early in
    its boot (setup_arch): name code 4, Linux; no root file system needed."""
    kernel = os.path.join(build, "guest", "s390x", "vmlinuz")
    if not os.path.exists(kernel):
        return False, f"{kernel} missing (make guest-s390x)"
    with tempfile.TemporaryDirectory(prefix="s390x-linux-") as d:
        console = os.path.join(d, "console.txt")
        extra = ["-append", "console=ttysclp0 panic=-1", "-no-reboot",
                 "-chardev", f"file,id=con,path={console}",
                 "-device", "sclpconsole,chardev=con"]
        with S390VM(build, kernel="s390x/vmlinuz", extra=extra) as vm:
            vm.hmp("info status")
            deadline = time.monotonic() + 120
            while True:
                info = vm.diag318()
                if info["code"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            elapsed = 120 - (deadline - time.monotonic())
        with open(console, errors="replace") as f:
            tail = f.read()[-2000:]
    ok = info.get("name-code") == 4 and info.get("name") == "Linux"
    return ok, f"after {elapsed:.0f}s: {info}\nconsole: {tail}"


def test_kvm_code_compiles(build):
    """The s390x KVM code cannot be built on this x86_64 host; check that
    target/s390x/kvm/kvm.c (which calls our DIAG 318 code) still compiles
    against the s390 kernel headers, with the s390x build's own flags."""
    obj = os.path.join(build, "ours", "qemu")
    with open(os.path.join(obj, "compile_commands.json")) as f:
        entries = json.load(f)
    ref = [e for e in entries if e["file"].endswith("target/s390x/cpu-system.c")]
    if not ref:
        return False, "no s390x compile command in compile_commands.json"
    with tempfile.TemporaryDirectory(prefix="s390x-kvm-") as d:
        src = os.path.join(build, "ours", "src")
        os.symlink(os.path.join(src, "linux-headers", "asm-s390"), os.path.join(d, "asm"))
        args = shlex.split(ref[0]["command"])
        args = [a for a in args if a != "ccache"]
        i = args.index("-MD")
        del args[i:i + 5]                        # -MD -MQ x -MF y
        i = args.index("-o")
        del args[i:i + 2]
        args[-1] = os.path.join(src, "target/s390x/kvm/kvm.c")
        args[1:1] = ["-DCONFIG_KVM=1", "-isystem", d, "-fsyntax-only", "-Werror"]
        p = subprocess.run(args, cwd=ref[0]["directory"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    return p.returncode == 0, p.stdout


TESTS = [
    ("diag318 in supervisor state sets the code on every CPU", test_supervisor),
    ("diag318 in problem state is a privileged operation", test_problem_state),
    ("diag318=off: specification exception, no SCLP bit", test_facility_off),
    ("s390-ccw-virtio-10.0 and 9.2 keep the CPU model without diag318",
     test_old_machine_type),
    ("diag318 unknown name code", test_unknown_name_code),
    ("diag318 code cleared by machine reset", test_reset),
    ("diag318 code cleared by a load-normal reset (DIAG 308 subcode 1)",
     test_load_normal_reset),
    ("diag318 code reaches a hot-plugged CPU", test_cpu_hotplug),
    ("diag318 code survives migration", test_migration),
    ("Debian's s390x Linux kernel reports name code 4", test_linux_guest),
    ("target/s390x/kvm/kvm.c compiles (syntax check)", test_kvm_code_compiles),
]


def run(tap, build):
    binary = guests.qemu_binary(build, target="s390x")
    why = None
    if not os.access(binary, os.X_OK):
        why = f"{binary} not built (./configure --targets=...,s390x)"
    elif not os.path.exists(os.path.join(build, "guest", GUEST)):
        why = f"{GUEST} not built (make guest-s390x)"
    guests.run_tests(tap, "s390x", TESTS, build, fail=why)
