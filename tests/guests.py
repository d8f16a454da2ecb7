"""How our tests, benchmarks and demo run QEMU with our guests.

- tiny guests: 64 KiB real-mode images (tests/guest/*.S, built into
  BUILD/guest/*.bin) loaded with -bios; they end by writing isa-debug-exit
  at port 0xf4, so QEMU exits with status (value << 1) | 1.
- the Linux guest: Debian's kernel and our initramfs (scripts/guest-linux);
  a test script is appended as a second cpio archive and its output is read
  from the serial console.
"""
import contextlib
import gzip
import io
import json
import os
import re
import select
import socket
import subprocess
import tempfile
import time

DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=1"]


def qemu_binary(build, which="ours", target="x86_64"):
    return os.path.join(build, which, "qemu", f"qemu-system-{target}")


class Skip:
    """What a test function returns when it cannot run here: a one-line
    reason.  Anything else a test returns is (bool, diagnostics)."""

    def __init__(self, reason):
        if not reason or "\n" in reason:
            raise ValueError(f"a skip reason is one non-empty line: {reason!r}")
        self.reason = reason


def kvm_unavailable():
    """None when /dev/kvm can be used, else the reason it cannot."""
    import fcntl
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as e:
        return f"/dev/kvm not usable here ({e.strerror})"
    try:
        version = fcntl.ioctl(fd, 0xae00)            # KVM_GET_API_VERSION
    except OSError as e:
        return f"/dev/kvm does not answer KVM_GET_API_VERSION ({e.strerror})"
    finally:
        os.close(fd)
    return None if version == 12 else f"/dev/kvm speaks KVM API {version}, not 12"


# KVM capabilities the tests ask about (linux-headers/linux/kvm.h; 239 is
# ours, kernel-patches/6.12 0006)
KVM_CAP_COALESCED_MMIO = 15
KVM_CAP_COALESCED_PIO = 162
KVM_CAP_COALESCED_ZONE_LEN = 239


def kvm_check_extension(cap):
    """KVM_CHECK_EXTENSION of `cap` on /dev/kvm: 0 when absent."""
    import fcntl
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, 0xae03, cap)          # KVM_CHECK_EXTENSION
    finally:
        os.close(fd)


def kvm_description():
    """Which KVM this is: the lab's nested one or the host's, and its module."""
    mods = [m for m in ("kvm_amd", "kvm_intel", "kvm_pvm") if os.path.isdir(f"/sys/module/{m}")]
    where = "lab: nested KVM in the L1 guest" if os.environ.get("DM_LAB") else "host"
    return f"{where}, /dev/kvm from {'+'.join(mods) or 'an unknown module'}"


def debug_exit_status(value):
    return ((value << 1) | 1) & 0xff


def tiny_cmd(build, image, machine="pc", accel="kvm", which="ours", extra=()):
    return [qemu_binary(build, which), "-M", machine, "-accel", accel,
            "-nodefaults", "-display", "none", "-m", "16M",
            "-bios", os.path.join(build, "guest", image)] + DEBUG_EXIT + list(extra)


def run_tiny(build, image, timeout=120, **kw):
    """Run a tiny guest to its exit; returns (exit status, QEMU's stderr)."""
    p = subprocess.run(tiny_cmd(build, image, **kw), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stderr


def patched_image(build, image, out, **fields):
    """A copy of a tiny guest image with data fields at its 0xff00 block set
    (port-loop.S: count u32 at 0xff00, port u16 at 0xff04, width u8 at 0xff06)."""
    layout = {"count": (0xff00, 4), "port": (0xff04, 2), "width": (0xff06, 1)}
    with open(os.path.join(build, "guest", image), "rb") as f:
        data = bytearray(f.read())
    for name, value in fields.items():
        off, size = layout[name]
        data[off:off + size] = int(value).to_bytes(size, "little")
    with open(out, "wb") as f:
        f.write(data)
    return out


# Linux guest: load the virtio-pmem driver, wait for /dev/pmem0 (up to 20 s).
LOAD_PMEM = """modprobe virtio_pci
modprobe virtio_pmem
modprobe nd_pmem
i=0
while [ ! -b /dev/pmem0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
"""


def _cpio_newc(files):
    """A gzipped newc cpio archive of {path: (mode, bytes)}."""
    buf = io.BytesIO()
    ino = 1000

    def entry(name, mode, data):
        nonlocal ino
        ino += 1
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        buf.write(hdr.encode() + name_b)
        buf.write(b"\0" * (-(110 + len(name_b)) % 4))
        buf.write(data)
        buf.write(b"\0" * (-len(data) % 4))

    for path, (mode, data) in files.items():
        entry(path, mode, data)
    entry("TRAILER!!!", 0, b"")
    return gzip.compress(buf.getvalue(), compresslevel=1)


def linux_guest(build, script, qemu_args=(), timeout=300, which="ours",
                machine="q35", memory="512M,slots=2,maxmem=2G", qmp=None, **boot):
    """Boot the Linux guest (under TCG unless accel= says otherwise) and run
    `script` (sh) as /test.sh.

    Returns (QEMU exit status, console text).  To talk QMP to the guest
    while it runs, use linux_guest_start with qmp=PATH instead.  `boot`
    takes linux_guest_start's kernel, initrd and append."""
    p, initrd = linux_guest_start(build, script, qemu_args, which, machine, memory, qmp,
                                  **boot)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        out += f"\n[runner: guest killed after {timeout}s]\n"
    finally:
        os.unlink(initrd)
    return p.returncode, out


def linux_guest_start(build, script, qemu_args=(), which="ours", machine="q35",
                      memory="512M,slots=2,maxmem=2G", qmp=None, kernel=None,
                      initrd=None, append="console=ttyS0 panic=-1 quiet",
                      accel="tcg", cpu=None, binary=None):
    """Start the Linux guest; returns (Popen, initrd path to unlink after).

    By default the guest is Debian's kernel and our initramfs in BUILD/guest;
    `kernel` and `initrd` (a gzipped cpio) boot others, with `append` as
    the kernel command line.  The per-test initrd goes to the temporary
    directory, so the build tree may be read-only (as in the lab).
    `binary` runs another QEMU than BUILD's (an installed one)."""
    guest = os.path.join(build, "guest")
    kernel = kernel or os.path.join(guest, "vmlinuz")
    base_initrd = initrd or os.path.join(guest, "initramfs.cpio.gz")
    with open(base_initrd, "rb") as f:
        base = f.read()
    fd, initrd = tempfile.mkstemp(prefix="initrd-", suffix=".gz")
    with os.fdopen(fd, "wb") as f:
        f.write(base)
        f.write(_cpio_newc({"test.sh": (0o100755, script.encode())}))
    cmd = [binary or qemu_binary(build, which), "-M", machine, "-accel", accel, "-m", memory,
           "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-kernel", kernel, "-initrd", initrd, "-append", append]
    if cpu:
        cmd += ["-cpu", cpu]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    cmd += list(qemu_args)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, errors="replace")
    return p, initrd


def console_chunks(proc, deadline):
    """Yield what a guest prints on its console (proc.stdout), as it comes,
    until the guest ends or time.monotonic() reaches `deadline`.  Never
    blocks past the deadline, even when the guest prints nothing."""
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([fd], [], [], min(left, 1))
        if not r:
            continue
        chunk = os.read(fd, 65536).decode(errors="replace")
        if not chunk:
            return
        yield chunk


def read_until(proc, marker, timeout):
    """Read a guest's console (proc.stdout, text) until a line holds
    `marker`, the guest ends, or `timeout` s pass; returns the text."""
    out = []
    buf = ""
    deadline = time.monotonic() + timeout
    for chunk in console_chunks(proc, deadline):
        buf += chunk
        out.append(chunk)
        if marker in buf:
            break
        buf = buf[-len(marker):]
    else:
        if time.monotonic() >= deadline:
            out.append(f"[runner: no {marker!r} after {timeout}s]\n")
    return "".join(out)


def linux_guest_session(build, script, qemu_args=(), query=None, timeout=300, **boot):
    """Boot the Linux guest with QMP and -no-shutdown, run `script`, then
    (QEMU still there after the guest's poweroff) call query(qmp) and quit.
    Returns (console text, what query returned)."""
    d = tempfile.mkdtemp(prefix="linux-guest-")
    qmp_path = os.path.join(d, "qmp.sock")
    p, initrd = linux_guest_start(build, script, list(qemu_args) + ["-no-shutdown"],
                                  qmp=qmp_path, **boot)
    qmp = None
    try:
        qmp = QMP(qmp_path)
        out = read_until(p, "guest: test.sh exit", timeout)
        got = query(qmp) if query else None
        stop_qemu(p, qmp)
        qmp = None
        out += p.stdout.read()
        return out, got
    finally:
        if qmp:
            stop_qemu(p, qmp)
        if p.poll() is None:
            p.kill()
            p.wait()
        os.unlink(initrd)
        subprocess.run(["rm", "-rf", d])


def guest_values(console):
    """The `@@ key value` lines a guest script printed, as a dict."""
    values = {}
    for line in console.splitlines():
        line = line.strip()
        if line.startswith("@@ "):
            parts = line[3:].split(None, 1)
            values[parts[0]] = parts[1] if len(parts) > 1 else ""
    return values


def stop_qemu(proc, qmp):
    """Quit a QEMU through QMP, kill it if it does not go, close the QMP."""
    if proc.poll() is None:
        try:
            qmp.cmd("quit")
        except Exception:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:
        qmp.close()
    except Exception:
        pass


# What the nested KVM has been seen to do, rarely, to a QEMU that runs
# fine the next time (docs/lab.md): an emulation failure mid-boot (the
# mem-pattern guest's registers turned to pattern data), KVM_SET_SREGS
# refusing the state QEMU puts after init (CI of stops 19 and 20), and a
# tiny guest's vCPU found outside its code (TinyVM.left_its_code; stop 21),
# a source that stopped with a KVM internal error during a live migration
# (its destination then takes over the stopped state: a local make check).
GUEST_LEFT_ITS_CODE = "the guest's vCPU left its code"
NESTED_FAULTS = ("KVM internal error", "Failed to set special registers",
                 GUEST_LEFT_ITS_CODE, "VM status 'internal-error'")
# runs of a test that failed with a nested fault, the first included: one
# such fault in seven runs of the remap test on our 6.12 L1 (docs/lab.md)
NESTED_FAULT_RUNS = 3


def nested_fault(texts):
    """The first line of `texts` that shows a nested fault, or None."""
    for text in texts:
        for line in text.splitlines():
            if any(f in line for f in NESTED_FAULTS):
                return line.strip()[:200]
    return None


def retry_on_nested_fault(fn):
    """A test that, in the lab, runs again when it failed with a nested
    fault in its diagnostics, NESTED_FAULT_RUNS times at most.  A fault of
    ours would fail every run."""
    def run(build):
        for attempt in range(1, NESTED_FAULT_RUNS + 1):
            try:
                res = fn(build)
            except Exception as e:
                res = (False, repr(e))
            if not (isinstance(res, tuple) and res[0] is False):
                return res
            fault = nested_fault([str(res[1])])
            if fault is None or attempt == NESTED_FAULT_RUNS:
                return res
            print(f"#   nested KVM fault, running the test again: {fault}", flush=True)
    return run


def run_tests(tap, layer, tests, build, skip=None, fail=None):
    """Run a layer's (name, fn) tests.  fn(build) returns (ok, diag) with ok
    a bool, or a Skip when it cannot run here.  A `skip` reason (one line)
    skips them all; a `fail` reason (something missing that the layer
    needs) fails them all.  An exception, or any other result (None from
    an `and` chain, say), is a failure.  In the lab (DM_LAB), a test that
    failed with a nested fault runs again (retry_on_nested_fault)."""
    if skip is not None:
        Skip(skip)                      # one line, or the harness is wrong
    for name, fn in tests:
        name = f"{layer}: {name}"
        if os.environ.get("DM_LAB"):
            fn = retry_on_nested_fault(fn)
        if skip or fail:
            tap.result(not fail, name, skip=None if fail else skip, diag=fail)
            continue
        try:
            res = fn(build)
        except Exception as e:
            res = (False, repr(e))
        if isinstance(res, Skip):
            tap.result(True, name, skip=res.reason)
            continue
        ok, diag = res if isinstance(res, tuple) and len(res) == 2 else (None, repr(res))
        if not isinstance(ok, bool):
            ok, diag = False, f"the test returned {ok!r}, not True or False\n{diag}"
        tap.result(ok, name, diag=diag)


class Syncfs:
    """syncfs (tests/fuse: a passthrough FUSE file system that records every
    sync of its files) mounted at BUILD/syncfs-NAME/mnt over .../real, its
    log in .../sync.log; `mounted` is False, with the reason printed, when
    it cannot be mounted (the tests that need it then fail)."""

    def __init__(self, build, name):
        self.dir = os.path.join(build, f"syncfs-{name}")
        self.mnt = os.path.join(self.dir, "mnt")
        self.real = os.path.join(self.dir, "real")
        self.log = os.path.join(self.dir, "sync.log")
        self.script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "fuse", "syncfs-mount")
        p = subprocess.run([self.script, os.path.join(build, "fuse", "syncfs"), self.dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.mounted = p.returncode == 0
        if not self.mounted:
            print(f"# syncfs not mounted at {self.mnt}: {p.stdout.strip()}", flush=True)

    def records(self):
        with open(self.log) as f:
            return [line.split() for line in f if line.strip()]

    def close(self):
        if self.mounted:
            subprocess.run([self.script, "-u", self.dir])
            self.mounted = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect_unix(path, timeout, interval=0.05):
    """A connected AF_UNIX socket to PATH, retried until it is listened on
    or TIMEOUT seconds passed (then the last error is raised)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


class QMP:
    """A minimal QMP client over a unix socket."""

    def __init__(self, path, timeout=30):
        self.sock = connect_unix(path, timeout)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())          # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            resp = json.loads(self.file.readline())
            if "event" in resp:
                continue
            if "error" in resp:
                raise RuntimeError(f"{name}: {resp['error'].get('desc')}")
            return resp["return"]

    def close(self):
        self.sock.close()


class TinyVM:
    """A tiny guest run with QMP and isa-debugcon output, for tests that
    inspect QEMU while the guest is parked (tests/guest/debugcon.inc)."""

    def __init__(self, build, image, machine="pc", accel="kvm", which="ours",
                 extra=(), incoming=None, start=True, wrapper=()):
        """`wrapper`: a command QEMU's command line is handed to, which
        execs it (tests/migration/kvm_fault.py)."""
        self.dir = tempfile.mkdtemp(prefix="tinyvm-")
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.out_path = os.path.join(self.dir, "debugcon.txt")
        cmd = tiny_cmd(build, image, machine=machine, accel=accel, which=which,
                       extra=list(extra) + [
                           "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                           "-chardev", f"file,id=dbgcon,path={self.out_path}",
                           "-device", "isa-debugcon,iobase=0xe9,chardev=dbgcon"])
        if not start:
            cmd.append("-S")
        if incoming:
            cmd += ["-incoming", incoming]
        self.proc = subprocess.Popen(list(wrapper) + cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        try:
            self.qmp = QMP(self.qmp_path)
        except Exception:
            self.proc.kill()
            raise RuntimeError(f"QEMU did not start: {self.proc.communicate()[1]}")

    def output(self):
        try:
            with open(self.out_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_output(self, marker, timeout=60):
        deadline = time.monotonic() + timeout
        while marker not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}) before "
                                   f"{marker!r}: {self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {marker!r} from the guest in {timeout}s; "
                                   f"it printed {self.output()!r}")
            time.sleep(0.02)
        return self.output()

    def wait_exit(self, timeout=60):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"QEMU did not exit in {timeout}s")
        return self.proc.returncode

    def migrate_to_file(self, stream, timeout=60):
        """Migrate to the file `stream`; returns how it ended: "completed",
        "failed", or "did not complete" when it was neither in time."""
        self.qmp.cmd("migrate", uri=f"file:{stream}")
        deadline = time.monotonic() + timeout
        while self.qmp.cmd("query-migrate").get("status") not in ("completed", "failed"):
            if time.monotonic() > deadline:
                return "did not complete"
            time.sleep(0.05)
        return self.qmp.cmd("query-migrate")["status"]

    def load_file(self, stream, timeout=60):
        """Load the migration file `stream` into this VM (started with
        incoming="defer"); whether it was loaded (the VM paused) in time."""
        self.qmp.cmd("migrate-incoming", uri=f"file:{stream}")
        deadline = time.monotonic() + timeout
        while self.qmp.cmd("query-status")["status"] != "paused":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def left_its_code(self):
        """None while the vCPU is in the tiny guest's code (real mode, CS
        0xf000: the -bios image), else where it is, GUEST_LEFT_ITS_CODE
        first: a sign of its registers spoiled under nested KVM.  Only for
        guests that stay in real mode."""
        regs = self.qmp.cmd("human-monitor-command",
                            **{"command-line": "info registers"})
        ip = re.search(r"[ER]IP=([0-9a-f]+)", regs)
        cs = re.search(r"^CS =([0-9a-f]+)", regs, re.M)
        cr0 = re.search(r"CR0=([0-9a-f]+)", regs)
        if not (ip and cs and cr0):
            return f"{GUEST_LEFT_ITS_CODE}? no registers in {regs[:200]!r}"
        if int(cs.group(1), 16) == 0xf000 and not int(cr0.group(1), 16) & 1:
            return None
        return (f"{GUEST_LEFT_ITS_CODE}: CS={cs.group(1)} IP={ip.group(1)} "
                f"CR0={cr0.group(1)}")

    def close(self):
        stop_qemu(self.proc, self.qmp)
        subprocess.run(["rm", "-rf", self.dir])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def tiny_migrated(build, image, machine, query):
    """The tiny guest `image` run until it prints "W" (it waits for the
    harness there), stopped, migrated to a file, and loaded from it into
    a second QEMU, paused.  Yields (that TinyVM, QMP command `query`'s
    answer before the stop, its answer after).  Raises when the guest
    finished before the stop, or the migration or the load failed."""
    with tempfile.TemporaryDirectory() as d:
        stream = os.path.join(d, "vm.migration")
        with TinyVM(build, image, machine=machine) as src:
            src.wait_output("W\n")
            before = src.qmp.cmd(query)
            src.qmp.cmd("stop")
            if src.proc.poll() is not None:
                raise RuntimeError("the guest finished before the harness stopped it")
            after = src.qmp.cmd(query)
            status = src.migrate_to_file(stream)
        if status != "completed":
            raise RuntimeError(f"migration {status}")
        with TinyVM(build, image, machine=machine, incoming="defer") as dst:
            if not dst.load_file(stream):
                raise RuntimeError("destination did not load the stream")
            yield dst, before, after


class QemuVM:
    """Any QEMU binary run with QMP on a unix socket (stderr kept for
    diagnostics): for guests that report through memory or QMP."""

    def __init__(self, binary, args, incoming=None):
        self.dir = tempfile.mkdtemp(prefix="qemuvm-")
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.err_path = os.path.join(self.dir, "stderr.txt")
        cmd = [binary] + list(args) + [
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if incoming:
            cmd += ["-incoming", incoming]
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.err)
        try:
            self.qmp = QMP(self.qmp_path)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"QEMU did not start: {self.stderr()}")

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def hmp(self, line):
        return self.qmp.cmd("human-monitor-command", **{"command-line": line})

    def wait_status(self, status, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            now = self.qmp.cmd("query-status")["status"]
            if now == status:
                return
            if (self.proc.poll() is not None or now == "internal-error"
                    or time.monotonic() > deadline):
                raise RuntimeError(f"VM status {now!r}, waited for {status!r}; "
                                   f"stderr: {self.stderr()}")
            time.sleep(0.05)

    def wait_migration(self, timeout=120):
        """Wait for this side's migration to complete; raise if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.qmp.cmd("query-migrate").get("status")
            if st == "completed":
                return
            if st in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"migration {st}: {self.stderr()}")
            time.sleep(0.05)

    def close(self):
        stop_qemu(self.proc, self.qmp)
        self.err.close()
        subprocess.run(["rm", "-rf", self.dir])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
