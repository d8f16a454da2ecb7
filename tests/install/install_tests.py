"""install layer: our QEMU as a user gets it from `make install` (docs/install.md).

Installs the build with scripts/install-qemu under a temporary DESTDIR and a
PREFIX that is not the build's own (/usr/local), runs the installed binary
with no -L, and uninstalls.
"""
import glob
import os
import subprocess
import sys
import tempfile

import guests

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import e2e_tests  # noqa: E402  (the DAX guest script and its verdict)

PREFIX = "/opt/qemu-dm"
INSTALL = os.path.join(TOP, "scripts", "install-qemu")


class Installed:
    """make install DESTDIR=<temporary dir> PREFIX=/opt/qemu-dm, removed after."""

    def __init__(self, build):
        self.build = build

    def __enter__(self):
        self.destdir = tempfile.mkdtemp(prefix="install-")
        self.root = self.destdir + PREFIX
        p = subprocess.run([INSTALL, os.path.join(self.build, "ours", "qemu"), PREFIX,
                            self.destdir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        self.log = p.stdout
        if p.returncode:
            raise RuntimeError(f"install-qemu failed:\n{p.stdout}")
        return self

    def binary(self, name="qemu-system-x86_64"):
        return os.path.join(self.root, "bin", name)

    def __exit__(self, *exc):
        subprocess.run(["rm", "-rf", self.destdir])


def test_layout(build):
    """The emulators, qemu-img, keymaps, trace events and docs are under
    PREFIX; the installed emulator's search path is Debian's firmware
    plus its own relocated data directory, and it says it is ours."""
    want = ["bin/qemu-system-x86_64", "bin/qemu-img", "share/qemu/keymaps/en-us",
            "share/qemu/trace-events-all", "share/doc/qemu-dm/virtio-pmem.md",
            "share/doc/qemu-dm/README.md"]
    if os.path.exists(guests.qemu_binary(build, target="s390x")):
        want.append("bin/qemu-system-s390x")
    with Installed(build) as inst:
        missing = [w for w in want if not os.path.exists(os.path.join(inst.root, w))]
        lpath = subprocess.run([inst.binary(), "-L", "help"], stdout=subprocess.PIPE,
                               text=True).stdout.split()
        version = subprocess.run([inst.binary(), "--version"], stdout=subprocess.PIPE,
                                 text=True).stdout
        img = subprocess.run([inst.binary("qemu-img"), "--version"],
                             stdout=subprocess.PIPE, text=True).stdout
    want_path = ["/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu",
                 inst.root + "/bin/../share/qemu"]
    diag = []
    if missing:
        diag.append(f"not installed: {missing}")
    if lpath != want_path:
        diag.append(f"-L help: {lpath}, want {want_path}")
    if "(dm; base " not in version or "10.0." not in img:
        diag.append(f"--version: {version!r}; qemu-img: {img!r}")
    return not diag, "\n".join(diag) or f"installed and relocated: {want}"


def test_boots_without_L(build):
    """The installed emulator, with no -L and no build tree, boots the Linux
    guest on the default machine with its firmware and NIC ROM (a default
    e1000 is left on), and the guest's DAX write and fsync on virtio-pmem
    reach the host file."""
    text = "written through DAX by the installed QEMU"
    script = e2e_tests.dax_write_script("hello.txt", text)
    with Installed(build) as inst, tempfile.TemporaryDirectory() as d:
        backing = os.path.join(d, "pmem.img")
        e2e_tests.make_ext4(backing)
        args = e2e_tests.pmem_args(backing) + ["-nic", "user,model=e1000"]
        out, stats = guests.linux_guest_session(build, script, args,
                                                query=e2e_tests.pmem_stats,
                                                binary=inst.binary(), machine="pc")
        host = e2e_tests.host_read_ext4(backing, "hello.txt")
    return e2e_tests.dax_verdict(out, stats, host, text)


def test_uninstall(build):
    """make uninstall removes every file make install put there, and the
    directories it created, and nothing else."""
    with Installed(build) as inst:
        keep = os.path.join(inst.root, "share", "doc", "someone-else.txt")
        os.makedirs(os.path.dirname(keep), exist_ok=True)
        with open(keep, "w") as f:
            f.write("not ours\n")
        p = subprocess.run([INSTALL, "--uninstall", PREFIX, inst.destdir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        left = sorted(os.path.relpath(os.path.join(r, f), inst.root)
                      for r, _, fs in os.walk(inst.root) for f in fs)
    ok = p.returncode == 0 and left == ["share/doc/someone-else.txt"]
    return ok, f"{p.stdout.strip()}; left behind: {left}"


def package(build):
    debs = sorted(glob.glob(os.path.join(build, "deb", "qemu-dm-system_*.deb")))
    return debs[-1] if debs else None


def test_deb(build):
    """make deb: lintian finds no error; apt resolves its dependencies from
    the archive; installed with dpkg, /usr/bin/qemu-dm-system-x86_64 runs
    (virtio-pmem-pci's options), Debian's QEMU paths are untouched; purged
    again, nothing of it is left."""
    deb = package(build)
    if not deb:
        return False, f"no package in {build}/deb (make deb)"
    diag = []
    lint = subprocess.run(["lintian", "--tag-display-limit", "0", deb],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    errors = [line for line in lint.splitlines() if line.startswith("E:")]
    if errors:
        diag.append("lintian: " + "; ".join(errors))
    sim = subprocess.run(["apt-get", "install", "-s", deb], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if sim.returncode or "Inst qemu-dm-system" not in sim.stdout:
        diag.append(f"apt-get install -s: {sim.stdout[-600:]}")
    files = subprocess.run(["dpkg-deb", "-c", deb], stdout=subprocess.PIPE,
                           text=True).stdout
    paths = [line.split()[5].lstrip(".") for line in files.splitlines()]
    clash = [p for p in paths if p.startswith(("/usr/bin/qemu-system", "/usr/share/qemu/"))]
    if clash:
        diag.append(f"paths of Debian's QEMU in the package: {clash[:5]}")
    st = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "qemu-dm-system"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    if os.geteuid() != 0 or st == "installed":
        return guests.Skip("dpkg -i needs root and no qemu-dm-system installed already") \
            if not diag else (False, "\n".join(diag))
    inst = subprocess.run(["dpkg", "-i", deb], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        if inst.returncode:
            diag.append(f"dpkg -i: {inst.stdout[-600:]}")
        else:
            run = subprocess.run(["/usr/bin/qemu-dm-system-x86_64", "-device",
                                  "virtio-pmem-pci,help"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
            if run.returncode or "memdev=" not in run.stdout:
                diag.append(f"installed binary: {run.stdout[-600:]}")
    finally:
        purge = subprocess.run(["dpkg", "--purge", "qemu-dm-system"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    left = [p for p in ("/usr/lib/qemu-dm", "/usr/bin/qemu-dm-system-x86_64")
            if os.path.lexists(p)]
    if purge.returncode or left:
        diag.append(f"dpkg --purge: rc {purge.returncode}, left {left}")
    return not diag, "\n".join(diag) or f"{os.path.basename(deb)}: lintian clean of " \
        f"errors, installed, ran, purged"


TESTS = [
    ("make install: emulators, qemu-img, data and docs under PREFIX, relocated",
     test_layout),
    ("make install: the installed QEMU boots the Linux guest without -L; DAX write "
     "reaches the host file", test_boots_without_L),
    ("make uninstall: removes what was installed, nothing else", test_uninstall),
    ("make deb: lintian, apt, dpkg -i, the packaged QEMU runs, dpkg --purge", test_deb),
]


def run(tap, build):
    why = None
    for f in ("ours/qemu/qemu-img", "ours/qemu/trace/trace-events-all"):
        if not os.path.exists(os.path.join(build, f)):
            why = f"{build}/{f} not built (make install-extras)"
    guests.run_tests(tap, "install", TESTS, build, fail=why)
