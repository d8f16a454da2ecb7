"""compat layer: the base's released machine types keep the base's guest ABI
and migration stream; this tree's own machine types carry its behaviour.

The base's binaries (build/upstream, the unmodified QEMU 10.0 of the base)
are the reference: every test here runs them next to ours, under TCG, with
the same command line, and compares what a guest or a migration peer sees.
"""
import json
import os
import subprocess
import tempfile

import guests

# What "-M <alias>" must pick in ours, and what the base picks.
ALIASES = {
    "x86_64": {"pc": ("pc-i440fx-10.0-dm1", "pc-i440fx-10.0"),
               "q35": ("pc-q35-10.0-dm1", "pc-q35-10.0")},
    "s390x": {"s390-ccw-virtio": ("s390-ccw-virtio-10.0-dm1", "s390-ccw-virtio-10.0")},
}
PGM_SPECIFICATION = 0x06
FIRMWARE = ["-L", "/usr/share/qemu", "-L", "/usr/share/seabios"]


def vm(build, which, target, args, incoming=None):
    return guests.QemuVM(guests.qemu_binary(build, which, target), args, incoming=incoming)


def machines(build, which, target):
    with vm(build, which, target, ["-M", "none", "-display", "none"]) as v:
        return v.qmp.cmd("query-machines")


def test_aliases(build):
    """-M pc, -M q35, -M s390-ccw-virtio pick our machine types; the base's
    names are all still there."""
    diag = []
    for target, table in ALIASES.items():
        ours = {m["name"]: m for m in machines(build, "ours", target)}
        base = {m["name"]: m for m in machines(build, "upstream", target)}
        for alias, (our_name, base_name) in table.items():
            got = [n for n, m in ours.items() if m.get("alias") == alias]
            if got != [our_name]:
                diag.append(f"{target}: -M {alias} picks {got} in ours, want {our_name}")
            got = [n for n, m in base.items() if m.get("alias") == alias]
            if got != [base_name]:
                diag.append(f"{target}: -M {alias} picks {got} in the base, want {base_name}")
        missing = sorted(set(base) - set(ours))
        if missing:
            diag.append(f"{target}: the base's machine types missing in ours: {missing}")
        extra = sorted(set(ours) - set(base))
        if extra != sorted(n for n, _ in table.values()):
            diag.append(f"{target}: ours adds {extra}")
    return not diag, "\n".join(diag) or "aliases and names as expected"


def saved_stream(build, which, target, args, path):
    """Start a stopped VM, save its state to PATH, return the bytes."""
    with vm(build, which, target, args + ["-S"]) as v:
        v.qmp.cmd("migrate", uri=f"file:{path}")
        v.wait_migration()
    with open(path, "rb") as f:
        return f.read()


def stream_state(build, path):
    """The device state analyze-migration.py of the base reads from a
    stream, for a diff; None if it cannot read it."""
    script = os.path.join(build, "base", "scripts", "analyze-migration.py")
    p = subprocess.run(["python3", script, "-f", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        return None
    try:
        return json.loads(p.stdout)
    except ValueError:
        return None


def describe_difference(build, a_path, b_path, a, b):
    sa, sb = stream_state(build, a_path), stream_state(build, b_path)
    if sa is not None and sb is not None:
        lines = []
        for key in sorted(set(sa) | set(sb)):
            if sa.get(key) != sb.get(key):
                lines.append(f"section {key}: ours {json.dumps(sa.get(key))[:300]}"
                             f" / base {json.dumps(sb.get(key))[:300]}")
        if lines:
            return "\n".join(lines[:8])
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return (f"{len(a)} vs {len(b)} bytes, first difference at {n}: "
            f"ours {a[n:n + 32]!r} / base {b[n:n + 32]!r}")


def x86_args(machine, extra=()):
    """Every device this tree changed that a plain PC has: the RTC (index
    port coalescing), the PCI host (CONFIG_ADDRESS), the CPU (hv-* flags
    are KVM's, but x-hv-strict is a CPU property)."""
    return ["-M", machine, "-accel", "tcg", "-display", "none", "-nodefaults",
            "-m", "128M", "-rtc", "base=2020-01-01T00:00:00,clock=vm",
            "-device", "virtio-rng-pci"] + FIRMWARE + list(extra)


def same_stream(build, target, args, name):
    with tempfile.TemporaryDirectory(prefix="compat-") as d:
        ours_path, base_path = os.path.join(d, "ours"), os.path.join(d, "base")
        a = saved_stream(build, "ours", target, args, ours_path)
        b = saved_stream(build, "upstream", target, args, base_path)
        if a == b:
            return True, f"{name}: {len(a)} bytes, identical"
        return False, f"{name}: " + describe_difference(build, ours_path, base_path, a, b)


def test_pc_stream(build):
    """On pc-i440fx-10.0 ours writes the base's migration stream, byte for byte."""
    return same_stream(build, "x86_64", x86_args("pc-i440fx-10.0"), "pc-i440fx-10.0")


def test_q35_stream(build):
    """On pc-q35-10.0 ours writes the base's migration stream, byte for byte."""
    return same_stream(build, "x86_64", x86_args("pc-q35-10.0"), "pc-q35-10.0")


def pmem_args(machine, path):
    """x86_args plus a virtio-pmem-pci on a file: the base has the device
    (no state section, no migratable RAM); ours adds both on its own
    machine types only."""
    args = x86_args(machine)
    i = args.index("-m")
    args[i + 1] = "128M,slots=2,maxmem=1G"
    return args + ["-object", f"memory-backend-file,id=pm0,mem-path={path},size=16M,share=on",
                   "-device", "virtio-pmem-pci,memdev=pm0,id=vp0"]


def test_pmem_stream(build, machine):
    with tempfile.TemporaryDirectory(prefix="compat-pmem-") as d:
        path = os.path.join(d, "pmem.img")
        with open(path, "wb") as f:
            f.truncate(16 << 20)
        return same_stream(build, "x86_64", pmem_args(machine, path),
                           f"{machine} with virtio-pmem-pci")


def test_pmem_ours_on_dm1(build):
    """On our pc-i440fx-10.0-dm1 the device has its state section (the
    base's stream has none): our behaviour is on there."""
    with tempfile.TemporaryDirectory(prefix="compat-pmem-") as d:
        path = os.path.join(d, "pmem.img")
        with open(path, "wb") as f:
            f.truncate(16 << 20)
        data = saved_stream(build, "ours", "x86_64", pmem_args("pc-i440fx-10.0-dm1", path),
                            os.path.join(d, "stream"))
    name = b"/virtio-pmem"
    return name in data, f"section {name!r} {'in' if name in data else 'missing from'} " \
        f"the dm1 stream ({len(data)} bytes)"


def qom_cpu(build, machine, prop):
    with vm(build, "ours", "x86_64", x86_args(machine) + ["-S"]) as v:
        path = v.qmp.cmd("query-cpus-fast")[0]["qom-path"]
        return v.qmp.cmd("qom-get", path=path, property=prop)


def test_hv_strict_default(build):
    """x-hv-strict is off on the base's machine types (the base accepts any
    hv-* combination) and on on ours."""
    got = {m: qom_cpu(build, m, "x-hv-strict")
           for m in ("pc-i440fx-10.0", "pc-q35-10.0", "pc-i440fx-9.2", "pc", "q35")}
    want = {"pc-i440fx-10.0": False, "pc-q35-10.0": False, "pc-i440fx-9.2": False,
            "pc": True, "q35": True}
    return got == want, f"x-hv-strict per machine type: {got}"


def s390_model(build, which, machine):
    args = ["-M", machine, "-accel", "tcg", "-display", "none", "-nodefaults", "-S"]
    with vm(build, which, "s390x", args) as v:
        return v.qmp.cmd("query-cpu-model-expansion", type="full",
                         model={"name": "qemu"})["model"]


def test_s390_cpu_model(build):
    """The "qemu" CPU model of s390-ccw-virtio-10.0 (and 9.2) is the base's,
    feature for feature; ours adds DIAG 318 (and ELS) on its own machine."""
    diag = []
    for machine in ("s390-ccw-virtio-10.0", "s390-ccw-virtio-9.2"):
        ours, base = s390_model(build, "ours", machine), s390_model(build, "upstream", machine)
        if ours != base:
            diff = {k: (ours["props"].get(k), base["props"].get(k))
                    for k in set(ours["props"]) | set(base["props"])
                    if ours["props"].get(k) != base["props"].get(k)}
            diag.append(f"{machine}: ours/base differ: {diff or (ours['name'], base['name'])}")
    dm = s390_model(build, "ours", "s390-ccw-virtio")["props"]
    if not (dm.get("diag318") and dm.get("els")):
        diag.append(f"s390-ccw-virtio: diag318 {dm.get('diag318')}, els {dm.get('els')}")
    return not diag, "\n".join(diag) or "10.0 and 9.2 as the base; ours with diag318 and els"


def s390_guest(build, which, machine, incoming=None):
    args = ["-M", machine, "-cpu", "qemu", "-accel", "tcg", "-nodefaults",
            "-display", "none", "-m", "64M", "-smp", "2", "-no-shutdown",
            "-kernel", os.path.join(build, "guest", "s390x", "diag318.elf")]
    return vm(build, which, "s390x", args, incoming=incoming)


def s390_view(v):
    """What the guest left: its result block (tests/guest-s390x/diag318.S)
    and every CPU's registers."""
    return {"results": v.hmp("xp /7xg 0x11000"),
            "registers": [v.hmp(f"cpu {c['cpu-index']}") + v.hmp("info registers")
                          for c in v.qmp.cmd("query-cpus-fast")]}


def s390_migration(build, src_which, dst_which, machine):
    """The diag318 guest runs on SRC (it probes SCLP and issues DIAG 318:
    without the facility it takes a specification exception), is saved and
    restored on DST: the result block and the CPUs' registers arrive as
    they were, and DST sees no DIAG 318 code."""
    with tempfile.TemporaryDirectory(prefix="compat-s390-") as d:
        state = os.path.join(d, "state")
        with s390_guest(build, src_which, machine) as src:
            src.wait_status("shutdown")
            before = s390_view(src)
            src.qmp.cmd("migrate", uri=f"file:{state}")
            src.wait_migration()
        with s390_guest(build, dst_which, machine, incoming="defer") as dst:
            dst.qmp.cmd("migrate-incoming", uri=f"file:{state}")
            dst.wait_migration()
            after = s390_view(dst)
            code = dst.qmp.cmd("qom-get", path="/machine", property="x-diag318") \
                if dst_which == "ours" else None
    diag = []
    words = [int(w, 16) for line in before["results"].splitlines()
             for w in line.split(":", 1)[1].split()]
    # result block word 3: the supervisor DIAG 318's program interruption code
    if len(words) != 7 or words[3] != PGM_SPECIFICATION or words[2] & 0x80:
        diag.append(f"the guest did not take a specification exception: {before['results']}")
    if after != before:
        diag.append(f"state changed in migration:\nbefore {before}\nafter {after}")
    if code is not None and (code["available"] or code["code"]):
        diag.append(f"{machine}: ours offers DIAG 318 after migration: {code}")
    return not diag, "\n".join(diag) or f"{src_which}->{dst_which} on {machine}: state intact"


TESTS = [
    ("-M pc, q35, s390-ccw-virtio pick this tree's machine types", test_aliases),
    ("pc-i440fx-10.0 migration stream is the base's, byte for byte", test_pc_stream),
    ("pc-q35-10.0 migration stream is the base's, byte for byte", test_q35_stream),
    ("pc-i440fx-10.0 with virtio-pmem: migration stream is the base's, byte for byte",
     lambda b: test_pmem_stream(b, "pc-i440fx-10.0")),
    ("pc-q35-10.0 with virtio-pmem: migration stream is the base's, byte for byte",
     lambda b: test_pmem_stream(b, "pc-q35-10.0")),
    ("pc-i440fx-10.0-dm1 with virtio-pmem: our device state section is there",
     test_pmem_ours_on_dm1),
    ("x-hv-strict off on the base's machine types, on on ours", test_hv_strict_default),
    ("s390-ccw-virtio-10.0 keeps the base's qemu CPU model", test_s390_cpu_model),
    ("s390-ccw-virtio-10.0 migration stream is the base's, byte for byte",
     lambda b: same_stream(b, "s390x", ["-M", "s390-ccw-virtio-10.0", "-cpu", "qemu",
                                        "-accel", "tcg", "-display", "none", "-nodefaults",
                                        "-m", "64M"], "s390-ccw-virtio-10.0")),
    ("s390-ccw-virtio-10.0 guest migrates base->ours with its state",
     lambda b: s390_migration(b, "upstream", "ours", "s390-ccw-virtio-10.0")),
    ("s390-ccw-virtio-10.0 guest migrates ours->base with its state",
     lambda b: s390_migration(b, "ours", "upstream", "s390-ccw-virtio-10.0")),
]


def needs(target, fn):
    """FN runs when both builds have TARGET; the s390x one is optional."""
    def run(build):
        for which in ("ours", "upstream"):
            exe = guests.qemu_binary(build, which, target)
            if not os.access(exe, os.X_OK):
                if target == "s390x":
                    return guests.Skip(f"{exe} not built (configure --targets with s390x)")
                return False, f"{exe} not built (make build upstream)"
        return fn(build)
    return run


def run(tap, build):
    tests = [(name, needs("s390x" if "s390" in name else "x86_64", fn))
             for name, fn in TESTS]
    guests.run_tests(tap, "compat", tests, build)
