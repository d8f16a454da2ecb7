"""The KVM lab: a Linux L1 guest under our QEMU with TCG (-cpu max: TCG
emulates AMD's SVM with nested paging) loads kvm_amd, and so has a real,
hardware-like /dev/kvm on every machine, whatever the host's KVM is.

The L1 sees only what it needs: the host's /usr and the tree (read-only
9p exports; the build directory too when it is outside the tree) and one
writable results directory, BUILD/lab/results, all at their host paths,
so our build and the host's python run there unchanged (tests/lab/init).

run_in_lab() runs one shell command in a fresh L1 and relays its console;
run() is the test layer: it runs the kvm, kvm-migration and lab-kvm layers
inside the L1 and reports each of their results as `lab: ...`.

The L1 kernel is Debian's 6.1 (build/guest/vmlinuz, modules in
build/lab/initramfs.cpio.gz) unless DM_LAB_KERNEL=ours asks for our patched
6.12 (scripts/lab-kernel: build/kernel/lab/, everything built in).
run_ours() is the lab-ours layer: one boot of our L1 running the layers of
OURS_INNER_LAYERS, reported as `lab-6.12: ...`.
"""
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402

TAP = re.compile(r"^(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO)\b(.*))?$")
SUMMARY = re.compile(r"^\d+ passed, \d+ failed(, \d+ skipped)?$")
L1_MEMORY = "6G"
L1_CPUS = 2
# The layers that need KVM, run inside the L1 in this order.
INNER_LAYERS = ("kvm", "kvm-migration", "lab-kvm", "asan")
# The asan layer in the L1 runs the KVM layers with the sanitizer build
# (tests/asan): ours sanitized on a real KVM.
ASAN_INNER_LAYERS = "kvm,kvm-migration"
# The L1 kernels run_in_lab() boots (DM_LAB_KERNEL), the default first.
L1_KERNELS = ("debian", "ours")
# The layers run in our L1 (the lab-ours layer), in this order: the tests
# of our kernel's KVM (lab-ours-kvm) and the held-over KVM layers.
OURS_INNER_LAYERS = ("lab-ours-kvm", "kvm", "kvm-migration")
OURS_PREFIX = "lab-6.12"
# /etc files the host's programs read (the dynamic linker's cache, users,
# mke2fs's defaults, the alternatives links into /usr).
ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache", "ld.so.conf",
             "mke2fs.conf", "localtime")
ETC_DIRS = ("ld.so.conf.d", "alternatives")


def lab_dir(build):
    return os.path.join(build, "lab")


def results_dir(build):
    return os.path.join(lab_dir(build), "results")


def l1_kernel(kernel=None):
    """Which L1 kernel: `kernel`, else DM_LAB_KERNEL, else Debian's."""
    kernel = kernel or os.environ.get("DM_LAB_KERNEL") or L1_KERNELS[0]
    if kernel not in L1_KERNELS:
        raise ValueError(f"DM_LAB_KERNEL={kernel!r}: not one of {', '.join(L1_KERNELS)}")
    return kernel


def ours_dir(build):
    return os.path.join(build, "kernel", "lab")


def l1_files(build, kernel=None):
    """(kernel image, initramfs, make target building them) of an L1 kernel."""
    if l1_kernel(kernel) == "ours":
        return (os.path.join(ours_dir(build), "bzImage"),
                os.path.join(ours_dir(build), "initramfs.cpio.gz"), "make lab-kernel")
    return (os.path.join(build, "guest", "vmlinuz"),
            os.path.join(lab_dir(build), "initramfs.cpio.gz"), "make lab")


def unavailable(build, kernel=None):
    """None when the lab can boot, else what is missing (make lab builds it)."""
    image, initrd, target = l1_files(build, kernel)
    for path in (guests.qemu_binary(build), image, initrd):
        if not os.path.exists(path):
            return f"{path} missing ({target})"
    return None


def _etc_archive():
    files = {"etc.host": (0o040755, b"")}
    for d in ETC_DIRS:
        src = os.path.join("/etc", d)
        if not os.path.isdir(src):
            continue
        files[f"etc.host/{d}"] = (0o040755, b"")
        for name in sorted(os.listdir(src)):
            files[f"etc.host/{d}/{name}"] = _etc_entry(os.path.join(src, name))
    for name in ETC_FILES:
        src = os.path.join("/etc", name)
        if os.path.lexists(src):
            files[f"etc.host/{name}"] = _etc_entry(src)
    return files


def _etc_entry(path):
    if os.path.islink(path):
        return (0o120777, os.readlink(path).encode())
    with open(path, "rb") as f:
        return (0o100644, f.read())


def _mounts(build):
    """9p exports: (tag, path, mode).  Read-only but for the results.  A
    build directory's parts that are links elsewhere (the mutation check's
    build shares the main one's caches) are exported at their targets."""
    mounts = [("usr", "/usr", "ro"), ("tree", TOP, "ro")]
    if os.path.relpath(build, TOP).startswith(".."):
        mounts.append(("build", build, "ro"))
    for name in sorted(os.listdir(build)):
        path = os.path.join(build, name)
        if os.path.islink(path) and os.path.isdir(path):
            mounts.append((f"link-{name}", os.path.realpath(path), "ro"))
    mounts.append(("results", os.path.realpath(results_dir(build)), "rw"))
    return mounts


def l1_command(build, initrd, kernel=None):
    cmd = [guests.qemu_binary(build), "-M", "q35", "-accel", "tcg,thread=multi",
           "-cpu", "max", "-smp", str(L1_CPUS), "-m", L1_MEMORY,
           "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-kernel", l1_files(build, kernel)[0], "-initrd", initrd,
           "-append", "console=ttyS0 panic=-1 quiet"]
    for tag, path, mode in _mounts(build):
        cmd += ["-virtfs", f"local,path={path},mount_tag={tag},security_model=none"
                + (",readonly=on" if mode == "ro" else "")]
    return cmd


def run_in_lab(build, command, timeout=2400, on_line=None, kernel=None):
    """Boot an L1, run `command` (sh, in the tree's top directory) as root
    with DM_LAB=1 and DM_LAB_KERNEL set to the L1 kernel's name, power off.
    The kernel is `kernel` or DM_LAB_KERNEL's ("debian", the default, or
    "ours").  Each console line goes to on_line(line).
    Returns (the command's exit status or None, console text)."""
    kernel = l1_kernel(kernel)
    res = os.path.realpath(results_dir(build))
    shutil.rmtree(res, ignore_errors=True)
    os.makedirs(res)
    conf = "".join([
        "LAB_MOUNTS=" + shlex.quote("\n".join(" ".join(m) for m in _mounts(build))) + "\n",
        "LAB_RESULTS=" + shlex.quote(res) + "\n",
        "LAB_CMD=" + shlex.quote(f"cd {shlex.quote(TOP)} && export DM_LAB_KERNEL={kernel}"
                                 f" && {command}") + "\n",
    ])
    files = _etc_archive()
    files["lab.conf"] = (0o100644, conf.encode())
    with open(l1_files(build, kernel)[1], "rb") as f:
        base = f.read()
    fd, initrd = tempfile.mkstemp(prefix="lab-initrd-", suffix=".gz")
    with os.fdopen(fd, "wb") as f:
        f.write(base)
        f.write(guests._cpio_newc(files))
    p = subprocess.Popen(l1_command(build, initrd, kernel), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    console = []
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                console.append(f"[lab: L1 killed after {timeout}s]")
                break
            r, _, _ = select.select([p.stdout], [], [], min(left, 5))
            if not r:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                console.append(line)
                if on_line:
                    on_line(line)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        os.unlink(initrd)
    try:
        with open(os.path.join(res, "exit-status")) as f:
            status = int(f.read())
    except (OSError, ValueError):
        status = None
    return status, "\n".join(console)


class Relay:
    """Reports the inner runner's TAP lines as results of the host's run,
    named `lab: ...` (`PREFIX: ...`), as they come; its `#` lines (a
    failure's diagnostics among them) are printed as they are."""

    def __init__(self, tap, prefix="lab"):
        self.tap = tap
        self.prefix = prefix
        self.results = 0
        self.summary = None

    def line(self, line):
        m = tap_line(line)
        if m:
            ok, name, skip = m
            self.tap.result(ok, f"{self.prefix}: {name}", skip=skip)
            self.results += 1
        elif line.startswith("#"):
            print(line, flush=True)
        elif SUMMARY.match(line):
            self.summary = line


def tap_line(line):
    m = TAP.match(line)
    if not m:
        return None
    status, name, directive, reason = m.groups()
    skip = None
    if directive == "SKIP":
        skip = (reason or "").strip() or "skipped"
    return status == "ok", name, skip



def inner_command(build, layers):
    return (f"DM_ASAN_LAYERS={ASAN_INNER_LAYERS} "
            f"/usr/bin/python3 tests/runner.py --build {shlex.quote(build)} "
            + " ".join(layers))


def run_layers(tap, build, prefix, layers, kernel=None, timeout=2400):
    """One boot of an L1 (`kernel`, as run_in_lab takes it) running the
    layers `layers`, their results reported as `PREFIX: ...`."""
    why = unavailable(build, kernel)
    if why:
        tap.result(False, f"{prefix}: L1 guest", diag=why)
        return
    relay = Relay(tap, prefix)
    t0 = time.monotonic()
    status, console = run_in_lab(build, inner_command(build, layers), timeout=timeout,
                                 on_line=relay.line, kernel=kernel)
    print(f"# {prefix}: L1 ran {time.monotonic() - t0:.0f}s, its runner exited {status}",
          flush=True)
    if relay.summary is None or status is None:
        tap.result(False, f"{prefix}: the L1's runner finished and reported its summary",
                   diag=console[-4000:])
    elif relay.results == 0:
        tap.result(False, f"{prefix}: the L1's runner reported no result",
                   diag=console[-4000:])


def layers_from(var, default):
    """The comma-separated layers in environment variable `var`, else `default`."""
    return os.environ[var].split(",") if os.environ.get(var) else default


def run(tap, build):
    """The lab layer: INNER_LAYERS in the L1 that DM_LAB_KERNEL names
    (Debian's by default); DM_LAB_LAYERS runs only some of them
    (tests/mutations.py)."""
    run_layers(tap, build, "lab", layers_from("DM_LAB_LAYERS", INNER_LAYERS))


def run_ours(tap, build):
    """The lab-ours layer: one boot of our patched L1 kernel running the
    layers of OURS_INNER_LAYERS (DM_LAB_OURS_LAYERS runs only some of
    them), their results reported as `lab-6.12: ...`."""
    run_layers(tap, build, OURS_PREFIX, layers_from("DM_LAB_OURS_LAYERS", OURS_INNER_LAYERS),
               kernel="ours", timeout=1800)
