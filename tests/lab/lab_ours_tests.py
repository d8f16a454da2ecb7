"""lab-ours-kvm layer: tests of our patched kernel's KVM, run inside the
lab's L1 when it boots our Linux 6.12 (DM_LAB_KERNEL=ours, the lab-ours
layer; tests/lab/lab.py).

- the L1 runs the kernel scripts/lab-kernel built (uname -r), and its KVM
  announces KVM_CAP_COALESCED_ZONE_LEN
  (kernel-patches/6.12/0006-KVM-Add-KVM_CAP_COALESCED_ZONE_LEN-...);
- the tree's KVM selftest coalesced_io_test, extended for zones restricted
  to one access length (0007-KVM-selftests-...), built from the patched
  source, passes.

TESTS is the list; a test of another part of the tree that needs our
kernel's KVM can be appended to it.
"""
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402
# CONFIG_LOCALVERSION of tests/lab/l1-kernel.config
LOCALVERSION = "-dm-lab"
# What coalesced_io_test prints when it has tested the sized zones.
SELFTEST_LINES = (
    "sized zones: invalid flags and lengths refused: ok",
    "sized zones for 0-byte accesses: ok",
    "sized zones for 4-byte accesses: ok",
    "sized zones for 1-byte accesses: ok",
)


def selftest_path(build, name):
    return os.path.join(build, "kernel", "lab", "kvm-selftests", name)


def test_kernel(build):
    """The L1 runs our patched 6.12 kernel."""
    release = os.uname().release
    if not (release.startswith("6.12.") and release.endswith(LOCALVERSION)):
        return False, f"uname -r is {release!r}, not our 6.12 kernel (6.12.*{LOCALVERSION})"
    return True, release


def test_capability(build):
    """KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_ZONE_LEN) is 1 on /dev/kvm,
    where coalesced MMIO is there."""
    mmio = guests.kvm_check_extension(guests.KVM_CAP_COALESCED_MMIO)
    zone_len = guests.kvm_check_extension(guests.KVM_CAP_COALESCED_ZONE_LEN)
    return mmio > 0 and zone_len == 1, (f"KVM_CAP_COALESCED_MMIO = {mmio}, "
                                        f"KVM_CAP_COALESCED_ZONE_LEN = {zone_len} (wanted 1)")


def test_selftest(build):
    """The KVM selftest coalesced_io_test passes, sized zones included."""
    exe = selftest_path(build, "coalesced_io_test")
    if not os.access(exe, os.X_OK):
        return False, f"{exe} missing (make lab-kernel)"
    try:
        p = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        return False, f"coalesced_io_test still running after {e.timeout}s"
    missing = [line for line in SELFTEST_LINES if line not in p.stdout]
    for line in p.stdout.splitlines():
        print(f"# coalesced_io_test: {line}", flush=True)
    return p.returncode == 0 and not missing, (
        f"coalesced_io_test exited {p.returncode}; not printed: {missing}\n" + p.stdout[-3000:])


TESTS = [
    ("sized zone: the L1 runs our patched 6.12 kernel", test_kernel),
    ("sized zone: KVM announces KVM_CAP_COALESCED_ZONE_LEN", test_capability),
    ("sized zone: KVM selftest coalesced_io_test", test_selftest),
]


def run(tap, build):
    guests.run_tests(tap, "lab-ours-kvm", TESTS, build)
