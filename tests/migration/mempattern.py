"""The mem-pattern guest (tests/guest/mem-pattern.S) from the host's side:
patch its parameters, start it under TCG, read its status page, and check
a RAM dump against the pattern.  Used by migration_tests.py and
bench/migration.py."""
import hashlib
import os
import struct
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402

PAGE = 4096
PAGE_MAGIC = 0x4d505447
STATUS_MAGIC = 0x5453504d
STATUS = 0x1000
PIT_HZ = 1193182
BASE = 0x100000          # page 0 of the pattern: 1 MiB, above the ROM holes
# parameter block at 0xff00 of the image
LAYOUT = {"base": (0xff00, 4), "npages": (0xff04, 4), "burst": (0xff08, 4),
          "burst_ticks": (0xff0c, 4), "flags": (0xff10, 4), "cmos_bytes": (0xff14, 8)}
CMOS_FIRST = 0x48        # NVRAM bytes the guest writes and mirrors: 0x48..0x4f


def patch_image(build, out, **fields):
    with open(os.path.join(build, "guest", "mem-pattern.bin"), "rb") as f:
        data = bytearray(f.read())
    for name, value in fields.items():
        off, size = LAYOUT[name]
        if isinstance(value, (bytes, bytearray)):
            assert len(value) == size
            data[off:off + size] = value
        else:
            data[off:off + size] = int(value).to_bytes(size, "little")
    with open(out, "wb") as f:
        f.write(data)
    return out


def pacing(dirty_bytes_per_s, burst=16):
    """burst/burst_ticks for a steady dirty rate (0: unpaced)."""
    if not dirty_bytes_per_s:
        return {"burst": burst, "burst_ticks": 0}
    pages_per_s = dirty_bytes_per_s / PAGE
    return {"burst": burst, "burst_ticks": max(1, round(PIT_HZ * burst / pages_per_s))}


def pattern_pages(ram_mib):
    """Pages of the pattern for a guest with ram_mib MiB: 1 MiB to the end of RAM."""
    return (ram_mib << 20) // PAGE - BASE // PAGE


def qemu_args(image, machine, ram, extra=(), accel="tcg"):
    """No default devices: the guest needs nothing but RAM, the PIT and the RTC."""
    return ["-M", machine, "-accel", accel, "-nodefaults", "-display", "none",
            "-m", ram, "-bios", image] + list(extra)


def page_bytes(p, g):
    if g == 0:
        return bytes(PAGE)
    fill = ((p * 0x9e3779b1) ^ (g * 0x85ebca77)) & 0xffffffff
    return struct.pack("<3I", PAGE_MAGIC, p, g) + struct.pack("<I", fill) * 1021


class Status:
    def __init__(self, raw):
        (self.magic, self.written, self.npages, self.mirrors, self.ticks,
         self.first_pass) = struct.unpack_from("<6I", raw, 0)
        self.cmos_mirror = bytes(raw[32:40])

    def __repr__(self):
        return (f"Status(W={self.written}, npages={self.npages}, mirrors={self.mirrors}, "
                f"ticks={self.ticks}, first_pass={self.first_pass}, "
                f"cmos={self.cmos_mirror.hex()})")


def read_status(vm, tmpdir):
    """The status page through pmemsave (works with the VM running or stopped)."""
    path = os.path.join(tmpdir, f"status-{os.getpid()}-{time.monotonic_ns()}.bin")
    vm.qmp.cmd("pmemsave", val=STATUS, size=PAGE, filename=path)
    with open(path, "rb") as f:
        raw = f.read()
    os.unlink(path)
    st = Status(raw)
    if st.magic != STATUS_MAGIC:
        raise RuntimeError(f"no mem-pattern status page at {STATUS:#x}: magic {st.magic:#x}")
    return st


def wait_first_pass(vm, tmpdir, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        try:
            st = read_status(vm, tmpdir)
            if st.first_pass:
                return st
        except RuntimeError:
            st = None           # not in protected mode yet
        if vm.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"guest did not finish its first pass ({st}); "
                               f"stderr: {vm.stderr()}")
        time.sleep(0.1)


def dump_ram(vm, path, ram_bytes):
    """Guest-physical 0..ram_bytes into path (the VM should be stopped)."""
    vm.qmp.cmd("pmemsave", val=0, size=ram_bytes, filename=path)
    # pmemsave is synchronous, but be sure the file is complete
    if os.path.getsize(path) != ram_bytes:
        raise RuntimeError(f"pmemsave wrote {os.path.getsize(path)} of {ram_bytes} bytes")
    return path


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _partial_ok(data, new, old):
    """A page being rewritten: a prefix of the new generation, the rest old
    (the guest writes the page's words in ascending order)."""
    k = 0
    while k < PAGE and data[k] == new[k]:
        k += 1
    k &= ~3                                  # whole words only
    return data[k:] == old[k:]


def check_pattern(dump_path, written=None):
    """Check a RAM dump of a stopped mem-pattern guest against its pattern.

    W (pages written, from the dump's own status page unless given)
    decides every page: with n pages, generation G = W // n + 1 is being
    written at cursor c = W % n; pages before c hold G, after c G - 1,
    page c a prefix of G over G - 1.  Returns (ok, message, status)."""
    with open(dump_path, "rb") as f:
        f.seek(STATUS)
        st = Status(f.read(PAGE))
        if st.magic != STATUS_MAGIC:
            return False, f"status magic {st.magic:#x}", st
        n = st.npages
        w = st.written if written is None else written
        gen, cur = w // n + 1, w % n
        bad = []
        f.seek(BASE)
        for p in range(n):
            data = f.read(PAGE)
            if p < cur:
                ok = data == page_bytes(p, gen)
            elif p > cur:
                ok = data == page_bytes(p, gen - 1)
            else:
                ok = _partial_ok(data, page_bytes(p, gen), page_bytes(p, gen - 1))
            if not ok:
                bad.append(p)
                if len(bad) >= 8:
                    break
    if bad:
        words = struct.unpack_from("<3I", _read_page(dump_path, bad[0]))
        return False, (f"W={w} (generation {gen}, cursor {cur}, {n} pages): pages {bad} "
                       f"do not match; page {bad[0]} starts {[hex(x) for x in words]}"), st
    return True, f"W={w} (generation {gen}, cursor {cur} of {n})", st


def _read_page(dump_path, p):
    with open(dump_path, "rb") as f:
        f.seek(BASE + p * PAGE)
        return f.read(PAGE)


def compare_dumps(a, b):
    """(equal, description): byte for byte, with the first differing pages."""
    diffs = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = 0
        while True:
            da, db = fa.read(PAGE), fb.read(PAGE)
            if not da and not db:
                break
            if da != db:
                diffs.append(off)
                if len(diffs) >= 8:
                    break
            off += PAGE
    if diffs:
        return False, "pages differ at " + ", ".join(f"{x:#x}" for x in diffs)
    return True, f"{off} bytes equal (sha256 {file_hash(a)[:16]})"


def start_vm(binary, image, machine, ram, extra=(), incoming=None, accel="tcg"):
    return guests.QemuVM(binary, qemu_args(image, machine, ram, extra, accel),
                         incoming=incoming)


def wait_done(vm, timeout=120):
    """Wait for query-migrate to reach a final state; returns the reply."""
    deadline = time.monotonic() + timeout
    while True:
        info = vm.qmp.cmd("query-migrate")
        st = info.get("status")
        if st in ("completed", "failed", "cancelled"):
            return info
        if vm.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"migration still {st} after {timeout}s; stderr: {vm.stderr()}")
        time.sleep(0.05)


def kill(vm):
    if vm.proc.poll() is None:
        vm.proc.kill()
        vm.proc.wait()
