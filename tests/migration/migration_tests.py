"""Migration layer, TCG part: a guest that keeps writing a known pattern
(tests/guest/mem-pattern.S) is migrated and its memory checked byte for
byte on the destination.

Every test runs the guest under TCG with the same machine type on both
sides (a versioned one when the two sides are different binaries), waits
until the guest has written its whole pattern range once, and migrates it
while it keeps rewriting pages at a steady rate.  What is checked:

- the destination's RAM (pmemsave of all of it, both sides stopped) equals
  the source's byte for byte, and is a consistent state of the pattern
  (every page holds the generation its position implies, see
  mempattern.check_pattern), and the guest wrote pages while RAM was being
  sent (so dirty pages had to be sent again);
- the CMOS NVRAM bytes the guest wrote at boot arrive: after `cont` the
  guest re-reads them from the destination's RTC into its RAM mirror;
- postcopy: pages the destination faults on or receives in the background,
  checked against the source's last state and the pattern;
- virtio-pmem (ours to ours, a backend smaller and one larger than RAM,
  each side with a file of its own, x-migrate-contents=on): the backing
  file's contents reach the destination's own file, and RAM arrives
  intact beside it;
- compat, virtio-pmem on pc-i440fx-10.0 between ours and the unmodified
  base, both ways: the base's stream (x-dm-migration=off), one shared
  file, RAM and CMOS as without the device, the file untouched, the
  range at the same address;
- a destination killed mid-stream: the source reports failed, keeps
  running with its memory intact, and a retried migration succeeds.
"""
import os
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mempattern as mp  # noqa: E402
import guests  # noqa: E402  (tests/guests.py, put on sys.path by mempattern)

RAM_MIB = 128
DIRTY_RATE = 16 << 20          # bytes/s the guest rewrites during migration
BANDWIDTH = 256 << 20          # max-bandwidth for the migrations that should finish
PMEM_SIZE = 16 << 20
PMEM_BIG = 256 << 20          # more than the guest's RAM
PMEM_BANDWIDTH = 32 << 20     # several dirty-bitmap syncs while the guest runs


DEATHS = []                    # QEMUs that died under a scenario: its diagnostics


class Fail(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


class Guest:
    """One mem-pattern image (random CMOS bytes) and the VMs that run it."""

    def __init__(self, build, tmp, ram_mib=RAM_MIB, dirty_rate=DIRTY_RATE, accel="tcg"):
        self.build, self.tmp, self.ram_mib, self.accel = build, tmp, ram_mib, accel
        self.cmos = bytes(b | 0x80 for b in os.urandom(8))   # never the RTC's 0
        self.image = mp.patch_image(build, os.path.join(tmp, "guest.bin"),
                                    npages=mp.pattern_pages(ram_mib), flags=1,
                                    cmos_bytes=self.cmos, **mp.pacing(dirty_rate))
        self.vms = []

    def start(self, which, machine, extra=(), incoming=None, paused=False, ram=None):
        args = list(extra) + (["-S"] if paused else [])
        vm = mp.start_vm(guests.qemu_binary(self.build, which), self.image, machine,
                         ram or f"{self.ram_mib}M", args, incoming=incoming,
                         accel=self.accel)
        vm.which = which
        self.vms.append(vm)
        return vm

    def dump(self, vm, name):
        return mp.dump_ram(vm, os.path.join(self.tmp, name), self.ram_mib << 20)

    def status(self, vm):
        return mp.read_status(vm, self.tmp)

    def close(self):
        for vm in self.vms:
            rc = vm.proc.poll()
            if rc not in (None, 0) and not getattr(vm, "killed", False):
                DEATHS.append(f"{vm.which} QEMU exited with status {rc}: "
                              f"{vm.stderr().strip()[-800:]}")
            try:
                vm.close()
            except Exception:
                mp.kill(vm)


def listen(dst, kind, tmp):
    """Make dst (started with -incoming defer) listen; returns the URI for the source."""
    if kind == "unix":
        path = os.path.join(tmp, f"mig-{len(os.listdir(tmp))}.sock")
        dst.qmp.cmd("migrate-incoming", uri=f"unix:{path}")
        return f"unix:{path}"
    if kind == "tcp":
        dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
        addrs = dst.qmp.cmd("query-migrate").get("socket-address", [])
        port = next(a["port"] for a in addrs if a.get("type") == "inet")
        return f"tcp:127.0.0.1:{port}"
    raise ValueError(kind)


def set_params(vm, **params):
    vm.qmp.cmd("migrate-set-parameters", **params)


def wait_final(vm, timeout=120):
    info = mp.wait_done(vm, timeout)
    expect(info.get("status") == "completed",
           f"{vm.which}: migration {info.get('status')}: {info.get('error-desc', '')} "
           f"{vm.stderr()[-500:]}")
    return info


def migrate_over_socket(g, src, dst, tmp, kind="unix"):
    """Migrate src into dst (started with -incoming defer) over a `kind`
    socket until both sides completed; returns how many pages the guest
    had written when it began (for check_equal_ram)."""
    uri = listen(dst, kind, tmp)
    w0 = g.status(src).written
    src.qmp.cmd("migrate", uri=uri)
    wait_final(src)
    wait_final(dst)
    return w0


def check_equal_ram(g, src, dst, w_before):
    """Both sides stopped: RAM byte for byte, the pattern consistent, and the
    guest wrote pages after migration began.  Returns the checked status."""
    a, b = g.dump(src, "src.ram"), g.dump(dst, "dst.ram")
    equal, how = mp.compare_dumps(a, b)
    expect(equal, f"destination RAM differs from the source: {how}")
    ok, msg, st = mp.check_pattern(b)
    expect(ok, f"destination pattern inconsistent: {msg}")
    expect(st.written > w_before,
           f"the guest wrote no page during migration (W {w_before} -> {st.written})")
    os.unlink(a)
    os.unlink(b)
    return f"{how}; pattern {msg}; {st.written - w_before} pages written during migration"


def check_cmos(g, dst):
    """Run the destination until the guest re-read its NVRAM bytes twice;
    they must be the ones it wrote on the source at boot."""
    before = g.status(dst)
    dst.qmp.cmd("cont")
    deadline = time.monotonic() + 30
    while True:
        st = g.status(dst)
        if st.mirrors >= before.mirrors + 2 and st.written > before.written:
            break
        expect(time.monotonic() < deadline,
               f"the guest did not run on the destination ({before} -> {st})")
        time.sleep(0.05)
    dst.qmp.cmd("stop")
    st = g.status(dst)
    expect(st.cmos_mirror == g.cmos,
           f"NVRAM 0x48..0x4f on the destination {st.cmos_mirror.hex()}, "
           f"written on the source {g.cmos.hex()}")
    b = g.dump(dst, "dst-after.ram")
    ok, msg, _ = mp.check_pattern(b)
    os.unlink(b)
    expect(ok, f"pattern inconsistent after running on the destination: {msg}")
    return f"NVRAM {g.cmos.hex()} read back on the destination; pattern {msg}"


def set_caps(vm, caps):
    if caps:
        vm.qmp.cmd("migrate-set-capabilities",
                   capabilities=[{"capability": c, "state": True} for c in caps])


def precopy(build, tmp, src_which, dst_which, machine, kind, results, name, caps=(),
            accel="tcg", src_watch=None):
    """Precopy src -> dst (-S) over a socket or through a file; RAM, then CMOS.

    `src_watch`, when given, is a pair of functions of the source VM: the
    first called when migration starts, the second after it completed
    with what the first returned; the second returns (ok, how) and is
    reported as `NAME: source dirty log`."""
    g = Guest(build, tmp, accel=accel)
    try:
        src = g.start(src_which, machine)
        mp.wait_first_pass(src, tmp)
        watched = src_watch[0](src) if src_watch else None
        set_params(src, **{"max-bandwidth": BANDWIDTH})
        set_caps(src, caps)
        if kind == "file":
            dst_uri = src_uri = f"file:{os.path.join(tmp, 'vm.mig')}"
            w0 = g.status(src).written
            src.qmp.cmd("migrate", uri=src_uri)
            wait_final(src)
            dst = g.start(dst_which, machine, paused=True, incoming="defer")
            set_caps(dst, caps)
            dst.qmp.cmd("migrate-incoming", uri=dst_uri)
            wait_final(dst)
        else:
            dst = g.start(dst_which, machine, paused=True, incoming="defer")
            set_caps(dst, caps)
            w0 = migrate_over_socket(g, src, dst, tmp, kind)
        dst.wait_status("paused")
        if src_watch:
            ok, how = src_watch[1](src, watched)
            expect(ok, f"source dirty log: {how}")
            results.append((f"{name}: source dirty log", how))
        results.append((f"{name}: RAM equal byte for byte", check_equal_ram(g, src, dst, w0)))
        results.append((f"{name}: CMOS NVRAM bytes carried over", check_cmos(g, dst)))
    finally:
        g.close()


def postcopy(build, tmp, results, name, machine="pc"):
    """Precopy at a low bandwidth, then postcopy with the destination running:
    it faults on pages it touches first.  Pages equal the source's last
    state except those the destination guest rewrote after the switch."""
    g = Guest(build, tmp)
    try:
        src = g.start("ours", machine)
        dst = g.start("ours", machine, incoming="defer")
        for vm in (src, dst):
            vm.qmp.cmd("migrate-set-capabilities",
                       capabilities=[{"capability": "postcopy-ram", "state": True}])
        mp.wait_first_pass(src, tmp)
        set_params(src, **{"max-bandwidth": 16 << 20})
        uri = listen(dst, "unix", tmp)
        w0 = g.status(src).written
        src.qmp.cmd("migrate", uri=uri)
        deadline = time.monotonic() + 60
        while True:   # RAM is flowing: switch to postcopy
            info = src.qmp.cmd("query-migrate")
            if info.get("ram", {}).get("transferred", 0) > 8 << 20:
                break
            expect(info.get("status") in ("setup", "active") and time.monotonic() < deadline,
                   f"precopy did not start sending RAM: {info}")
            time.sleep(0.05)
        src.qmp.cmd("migrate-start-postcopy")
        info = wait_final(src)
        wait_final(dst)
        expect(info["ram"].get("postcopy-requests", 0) > 0,
               f"the destination requested no page in postcopy: {info['ram']}")
        dst.wait_status("running")
        dst.qmp.cmd("stop")
        src_st, dst_st = g.status(src), g.status(dst)
        a, b = g.dump(src, "src.ram"), g.dump(dst, "dst.ram")
        ok, msg_src, _ = mp.check_pattern(a)
        expect(ok, f"source pattern inconsistent: {msg_src}")
        ok, msg_dst, _ = mp.check_pattern(b)
        expect(ok, f"destination pattern inconsistent: {msg_dst}")
        expect(src_st.written > w0, "the guest wrote no page during precopy")
        expect(dst_st.written >= src_st.written,
               f"destination W {dst_st.written} behind the source's {src_st.written}")
        # pages the destination guest may have rewritten: W_src .. W_dst (mod n)
        n = src_st.npages
        rewritten = dst_st.written - src_st.written + 1
        allowed = set() if rewritten >= n else {
            (src_st.written + i) % n for i in range(rewritten)}
        differ = []
        with open(a, "rb") as fa, open(b, "rb") as fb:
            for pfn in range((RAM_MIB << 20) // mp.PAGE):
                pa, pb = fa.read(mp.PAGE), fb.read(mp.PAGE)
                if pa == pb:
                    continue
                addr = pfn * mp.PAGE
                if addr == mp.STATUS or addr == 0x6000:    # status page, stack
                    continue
                p = (addr - mp.BASE) // mp.PAGE
                if addr < mp.BASE or (rewritten < n and p not in allowed):
                    differ.append(addr)
        os.unlink(a)
        os.unlink(b)
        expect(not differ, "pages differ that the destination guest did not rewrite: " +
               ", ".join(f"{x:#x}" for x in differ[:8]))
        results.append((f"{name}: RAM equal to the source's but for pages the destination "
                        "rewrote",
                        f"source {msg_src}, destination {msg_dst}, "
                        f"{info['ram']['postcopy-requests']} page requests"))
    finally:
        g.close()


def first_difference(a, b):
    for off in range(0, max(len(a), len(b)), mp.PAGE):
        if a[off:off + mp.PAGE] != b[off:off + mp.PAGE]:
            return off
    return None


def pmem(build, tmp, results, name, size, machine="pc"):
    """ours -> ours with a virtio-pmem device of `size` bytes: the source's
    backing file (random 1 MiB every 4 MiB, zeros between) arrives in the
    destination's own zeroed file, and RAM arrives as without the device."""
    src_file, dst_file = os.path.join(tmp, "src.pmem"), os.path.join(tmp, "dst.pmem")
    content = bytearray(size)
    for off in range(0, size, 4 << 20):
        content[off:off + (1 << 20)] = os.urandom(1 << 20)
    content = bytes(content)
    with open(src_file, "wb") as f:
        f.write(content)
    with open(dst_file, "wb") as f:
        f.write(bytes(size))

    def pmem_args(path):
        return ["-object", f"memory-backend-file,id=pm,share=on,mem-path={path},"
                f"size={size}", "-device",
                "virtio-pmem-pci,memdev=pm,id=vp,x-migrate-contents=on"]

    ram = f"{RAM_MIB}M,slots=1,maxmem=2G"
    g = Guest(build, tmp)
    try:
        src = g.start("ours", machine, pmem_args(src_file), ram=ram)
        dst = g.start("ours", machine, pmem_args(dst_file), ram=ram, paused=True,
                      incoming="defer")
        mp.wait_first_pass(src, tmp)
        devs = src.qmp.cmd("query-memory-devices")
        expect(any(d.get("type") == "virtio-pmem" and d["data"]["size"] == size
                   for d in devs), f"no virtio-pmem of {size} bytes: {devs}")
        set_params(src, **{"max-bandwidth": PMEM_BANDWIDTH})
        w0 = migrate_over_socket(g, src, dst, tmp)
        with open(dst_file, "rb") as f:
            got = f.read()
        if got != content:
            raise Fail("the destination's pmem file differs from the source's "
                       f"at {first_difference(got, content):#x}")
        with open(src_file, "rb") as f:
            expect(f.read() == content, "the source's pmem file changed")
        results.append((f"{name}: pmem file contents on the destination",
                        f"{size} bytes equal"))
        results.append((f"{name}: RAM equal byte for byte", check_equal_ram(g, src, dst, w0)))
    finally:
        g.close()


PMEM_VDEV = "/machine/peripheral/vp/virtio-backend"


def compat_global(build, image, machine, path, size):
    """What ours needs on the base's machine type for the base's stream:
    -global virtio-pmem.x-dm-migration=off, unless the machine type
    already gives it."""
    args = ["-object", f"memory-backend-file,id=pm,share=on,mem-path={path},size={size}",
            "-device", "virtio-pmem-pci,memdev=pm,id=vp"]
    probe = mp.start_vm(guests.qemu_binary(build, "ours"), image, machine,
                        f"{RAM_MIB}M,slots=1,maxmem=2G", args + ["-S"])
    try:
        on = probe.qmp.cmd("qom-get", path=PMEM_VDEV, property="x-dm-migration")
    finally:
        probe.close()
    return ["-global", "virtio-pmem.x-dm-migration=off"] if on else []


def plug_pmem(vm, path, size):
    """The backend and device added by QMP, after the machine's RAM: a
    backend given with -object gets the first ram_addr, and the base's
    TCG dirty-bitmap sync (fixed by patches/0019) then aborts a base
    source in tlb_reset_dirty_range_all()."""
    vm.qmp.cmd("object-add", **{"qom-type": "memory-backend-file", "id": "pm",
                                "mem-path": path, "size": size, "share": True})
    vm.qmp.cmd("device_add", driver="virtio-pmem-pci", id="vp", memdev="pm",
               addr="4.0", memaddr=0x140000000)


def compat_pmem(build, tmp, src_which, dst_which, results, name,
                machine="pc-i440fx-10.0", size=PMEM_SIZE):
    """The mem-pattern guest with a virtio-pmem device on one shared file,
    between ours and the unmodified base on the base's machine type: the
    migration completes (the base's stream both ways), RAM is equal and
    the CMOS bytes arrive as without the device, the range is at the same
    address and size on the destination, and the file, which neither side
    may write, is unchanged."""
    path = os.path.join(tmp, "shared.pmem")
    content = os.urandom(size)
    with open(path, "wb") as f:
        f.write(content)
    ram = f"{RAM_MIB}M,slots=1,maxmem=2G"
    g = Guest(build, tmp)
    try:
        ours_args = compat_global(build, g.image, machine, path, size)
        src = g.start(src_which, machine, ours_args if src_which == "ours" else [],
                      ram=ram)
        plug_pmem(src, path, size)
        mp.wait_first_pass(src, tmp)
        set_params(src, **{"max-bandwidth": BANDWIDTH})
        dst = g.start(dst_which, machine, ours_args if dst_which == "ours" else [],
                      ram=ram, paused=True, incoming="defer")
        plug_pmem(dst, path, size)
        w0 = migrate_over_socket(g, src, dst, tmp)
        dst.wait_status("paused")
        devs = [d["data"] for d in dst.qmp.cmd("query-memory-devices")
                if d.get("type") == "virtio-pmem"]
        expect(len(devs) == 1 and devs[0]["memaddr"] == 0x140000000 and
               devs[0]["size"] == size, f"destination's virtio-pmem: {devs}")
        results.append((f"{name}: RAM equal byte for byte", check_equal_ram(g, src, dst, w0)))
        results.append((f"{name}: CMOS NVRAM bytes carried over", check_cmos(g, dst)))
        with open(path, "rb") as f:
            got = f.read()
        if got != content:
            raise Fail(f"the shared pmem file changed at {first_difference(got, content):#x}")
        results.append((f"{name}: pmem range at the same address, file untouched",
                        f"memaddr {devs[0]['memaddr']:#x}, {size} bytes unchanged"))
    finally:
        g.close()


def killed_destination(build, tmp, results, name, machine="pc"):
    """SIGKILL the destination mid-stream; the source fails the migration,
    keeps running intact; a retry to a new destination succeeds."""
    g = Guest(build, tmp)
    try:
        src = g.start("ours", machine)
        mp.wait_first_pass(src, tmp)
        set_params(src, **{"max-bandwidth": 8 << 20})     # 128 MiB: ~16 s
        dst = g.start("ours", machine, paused=True, incoming="defer")
        src.qmp.cmd("migrate", uri=listen(dst, "unix", tmp))
        deadline = time.monotonic() + 60
        while src.qmp.cmd("query-migrate").get("ram", {}).get("transferred", 0) < 8 << 20:
            expect(time.monotonic() < deadline, "migration did not send 8 MiB")
            time.sleep(0.05)
        dst.killed = True
        os.kill(dst.proc.pid, signal.SIGKILL)
        dst.proc.wait()
        info = mp.wait_done(src, 60)
        expect(info.get("status") == "failed",
               f"source migration {info.get('status')} after the destination died")
        status = src.qmp.cmd("query-status")["status"]
        expect(status == "running", f"source is {status!r} after the failed migration")
        w1 = g.status(src).written
        time.sleep(0.5)
        w2 = g.status(src).written
        expect(w2 > w1, f"the guest stopped writing on the source (W {w1} -> {w2})")
        src.qmp.cmd("stop")
        a = g.dump(src, "src.ram")
        ok, msg, _ = mp.check_pattern(a)
        os.unlink(a)
        expect(ok, f"source memory inconsistent after the failed migration: {msg}")
        src.qmp.cmd("cont")
        results.append((f"{name}: source fails the migration, keeps running intact",
                        f"{info.get('error-desc', '')}; W {w1} -> {w2}; {msg}"))

        dst2 = g.start("ours", machine, paused=True, incoming="defer")
        set_params(src, **{"max-bandwidth": BANDWIDTH})
        w0 = migrate_over_socket(g, src, dst2, tmp)
        results.append((f"{name}: retried migration to a new destination, RAM equal",
                        check_equal_ram(g, src, dst2, w0)))
    finally:
        g.close()


def upstream_missing(build):
    exe = guests.qemu_binary(build, "upstream")
    return None if os.access(exe, os.X_OK) else f"no upstream build ({exe})"


def postcopy_unavailable():
    """Postcopy needs userfaultfd(2)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(323, 0x80000)     # SYS_userfaultfd (x86_64), O_CLOEXEC
    if fd < 0:
        return f"userfaultfd unavailable ({os.strerror(ctypes.get_errno())})"
    os.close(fd)
    return None


def scenarios(build):
    """(test names it reports, skip reason or None, function(tmp, results))."""
    up = upstream_missing(build)

    def pre(src, dst, machine, kind, name, caps=()):
        return ([f"{name}: RAM equal byte for byte", f"{name}: CMOS NVRAM bytes carried over"],
                up if "upstream" in (src, dst) else None,
                lambda tmp, res: precopy(build, tmp, src, dst, machine, kind, res, name, caps))

    post = "migration: postcopy ours->ours, pc, unix socket"
    pm = f"migration: virtio-pmem {PMEM_SIZE >> 20} MiB ours->ours, pc, own files"
    pm_big = (f"migration: virtio-pmem {PMEM_BIG >> 20} MiB (more than RAM) ours->ours, pc, "
              "own files")

    def compat(src, dst):
        name = f"migration: compat virtio-pmem {src}->{dst}, pc-i440fx-10.0, shared file"
        return ([f"{name}: RAM equal byte for byte", f"{name}: CMOS NVRAM bytes carried over",
                 f"{name}: pmem range at the same address, file untouched"], up,
                lambda tmp, res: compat_pmem(build, tmp, src, dst, res, name))
    kill = "migration: killed destination, pc"
    return [
        pre("ours", "ours", "pc", "tcp", "migration: precopy ours->ours, pc, tcp"),
        pre("ours", "ours", "q35", "unix", "migration: precopy ours->ours, q35, unix socket"),
        pre("ours", "ours", "pc", "file", "migration: precopy ours->ours, pc, file"),
        pre("ours", "ours", "q35", "file", "migration: precopy ours->ours, q35, file, mapped-ram",
            caps=("mapped-ram",)),
        ([f"{post}: RAM equal to the source's but for pages the destination rewrote"],
         postcopy_unavailable(), lambda tmp, res: postcopy(build, tmp, res, post)),
        pre("ours", "upstream", "pc-i440fx-10.0", "tcp",
            "migration: compat: precopy ours->upstream, pc-i440fx-10.0, tcp"),
        pre("upstream", "ours", "pc-i440fx-10.0", "tcp",
            "migration: compat: precopy upstream->ours, pc-i440fx-10.0, tcp"),
        pre("ours", "upstream", "pc-q35-10.0", "unix",
            "migration: compat: precopy ours->upstream, pc-q35-10.0, unix socket"),
        pre("upstream", "ours", "pc-q35-10.0", "unix",
            "migration: compat: precopy upstream->ours, pc-q35-10.0, unix socket"),
        ([f"{pm}: pmem file contents on the destination", f"{pm}: RAM equal byte for byte"],
         None, lambda tmp, res: pmem(build, tmp, res, pm, PMEM_SIZE)),
        # a backend larger than RAM: the base's TCG dirty-bitmap sync then resets
        # the wrong TLB range without tripping its assertion (see the report)
        ([f"{pm_big}: pmem file contents on the destination",
          f"{pm_big}: RAM equal byte for byte"],
         None, lambda tmp, res: pmem(build, tmp, res, pm_big, PMEM_BIG)),
        compat("ours", "upstream"),
        compat("upstream", "ours"),
        ([f"{kill}: source fails the migration, keeps running intact",
          f"{kill}: retried migration to a new destination, RAM equal"], None,
         lambda tmp, res: killed_destination(build, tmp, res, kill)),
    ]


def run(tap, build):
    run_scenarios(tap, build, scenarios(build))


def run_scenarios(tap, build, scens):
    """Run (names, skip, fn) scenarios; each of its names is a result."""
    image = os.path.join(build, "guest", "mem-pattern.bin")
    for names, skip, fn in scens:
        if not os.path.exists(image):
            for n in names:     # make check builds it: missing is a failure
                tap.result(False, n, diag=f"{image} not built (make guest-tiny)")
            continue
        if skip is not None:
            for n in names:
                tap.result(True, n, skip=skip)
            continue
        results = []
        del DEATHS[:]
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="migtest-") as tmp:
            try:
                fn(tmp, results)
                err = None
            except Fail as e:
                err = str(e)
            except Exception as e:
                err = f"harness error: {e!r}"
        if err and DEATHS:
            err = "\n".join(DEATHS) + f"\n(the harness then saw: {err})"
        took = time.monotonic() - t0
        for n, how in results:
            tap.result(True, n)
            print(f"#   {how} ({took:.1f}s for the scenario)", flush=True)
        # the first check that did not pass, and the ones it prevented
        done = {n for n, _ in results}
        failed_reported = False
        for n in names:
            if n in done:
                continue
            if not failed_reported:
                tap.result(False, n, diag=err or "not reached")
                failed_reported = True
            else:
                tap.result(False, n, diag="not reached: an earlier check of this scenario failed")


if __name__ == "__main__":
    # python3 tests/migration/migration_tests.py BUILD [SUBSTRING]: one layer run, filtered
    class _Tap:
        n = 0

        def result(self, ok, name, skip=None, diag=None):
            self.n += 1
            print(f"{'ok' if ok else 'not ok'} {self.n} - {name}"
                  + (f" # SKIP {skip}" if skip else ""), flush=True)
            if not ok and diag:
                print("#   " + diag.replace("\n", "\n#   "), flush=True)

    _build = os.path.abspath(sys.argv[1])
    _only = sys.argv[2] if len(sys.argv) > 2 else ""
    _all = scenarios
    scenarios = lambda b: [s for s in _all(b) if any(_only in n for n in s[0])]  # noqa: E731
    run(_Tap(), _build)
