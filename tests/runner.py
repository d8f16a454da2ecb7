#!/usr/bin/env python3
"""Run the tree's test layers and print TAP, ending with one summary line.

Usage: tests/runner.py --build DIR LAYER...

Layers: unit, qtest, kvm, kvm-migration, e2e, migration, s390x, kernel,
asan (unit, qtest and migration again with the sanitizer build), fuzz
(our libFuzzer targets; tests/fuzz),
lab (boots the nested-KVM L1 guest and runs kvm, kvm-migration and lab-kvm
inside it; tests/lab/lab.py), lab-kvm (tests that need a complete KVM,
run only inside the lab), lab-ours (boots the L1 on our patched 6.12 kernel
and runs lab-ours-kvm, kvm and kvm-migration inside it) and lab-ours-kvm
(tests of our kernel's KVM, run only inside that L1).

Each layer's tests print as `ok N - layer: name`, `not ok N - ...` or
`ok N - ... # SKIP reason`; the last line is `N passed, N failed, N skipped`
and the exit status is non-zero when anything failed.  The KVM layers run
on the host's /dev/kvm when it can be opened (their names start with
`kvm:`/`kvm-migration:`) and always in the lab (`lab: kvm: ...`); a host
without /dev/kvm runs them only there, so nothing is skipped for it.
Each layer has a deadline: a hang is a failure, not a stuck CI.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))

import guests  # noqa: E402  (tests/guests.py: how to run our guests)


class Tap:
    def __init__(self):
        self.n = 0
        self.passed = self.failed = self.skipped = 0

    def result(self, ok, name, skip=None, diag=None):
        self.n += 1
        if skip is not None:
            self.skipped += 1
            print(f"ok {self.n} - {name} # SKIP {skip}", flush=True)
            return
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} - {name}", flush=True)
        if not ok and diag:
            for line in diag.rstrip().splitlines()[-40:]:
                print(f"#   {line}", flush=True)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped")
        return 1 if self.failed else 0


TAP_LINE = re.compile(r"^(ok|not ok) \d+ (.*?)(?: # (SKIP|TODO)\b(.*))?$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)")

# Layer deadlines (s): past one, the layer's running test fails and the
# layer ends.  Generous: they catch hangs, they time nothing.
DEADLINE = {"unit": 600, "qtest": 1800, "kvm": 900, "kvm-migration": 900, "e2e": 900,
            "migration": 1800, "s390x": 900, "compat": 900, "style": 600, "install": 900, "libvirt": 900, "kernel": 900, "lab": 3000, "lab-kvm": 2400,
            "asan": 3600, "fuzz": 1800, "lab-ours": 2400, "lab-ours-kvm": 900}


class LayerTimeout(BaseException):
    """Raised by the layer's alarm; a BaseException, so a test's own
    `except Exception` does not swallow it."""


def test_env(env=None):
    """The environment a test binary gets: ours without the variables that
    switch a test binary into a benchmark mode."""
    env = dict(os.environ if env is None else env)
    for k in list(env):
        if k.startswith("PMEM_BENCH"):
            del env[k]
    return env


def run_glib_test(tap, layer, exe, env=None, timeout=600):
    """Run a GLib test binary with --tap and relay each of its results.

    The binary's TAP plan must be met: a binary that aborts part-way (an
    assertion ends the process), prints no result at all, or exits
    non-zero is a failure even when every line it printed was `ok`."""
    name = os.path.basename(exe)
    if not os.access(exe, os.X_OK):
        tap.result(False, f"{layer}: {name} (not built: {exe})")
        return
    try:
        p = subprocess.run([exe, "--tap", "-k"], env=test_env(env), timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace"), f"timeout after {timeout}s"
    seen_failure = False
    plan = None
    results = 0
    log = []
    for line in out.splitlines():
        pm = TAP_PLAN.match(line)
        if pm:
            plan = int(pm.group(1))
            continue
        m = TAP_LINE.match(line)
        if not m:
            log.append(line)
            continue
        results += 1
        status, desc, directive, reason = m.groups()
        if directive == "SKIP":
            tap.result(True, f"{layer}: {name} {desc}", skip=reason.strip() or "skipped")
        else:
            ok = status == "ok"
            seen_failure |= not ok
            tap.result(ok, f"{layer}: {name} {desc}", diag="\n".join(log))
        log = []
    if results == 0:
        tap.result(False, f"{layer}: {name} printed no test result (status {rc})", diag=out)
    elif plan is None or plan != results:
        # an assertion ends a GLib test binary: name the test it ended in
        bail = re.search(r"Bail out! .*?:(\w+): ", out)
        where = f" (aborted in {bail.group(1)})" if bail else ""
        tap.result(False, f"{layer}: {name} planned {plan} tests, reported {results}{where}",
                   diag="\n".join(log) or out)
    elif rc != 0 and not seen_failure:
        tap.result(False, f"{layer}: {name} exited with status {rc}", diag=out)


def listed(path):
    names = []
    with open(os.path.join(TOP, path)) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if words:
                names.append(words[0])
    return names


def layer_unit(tap, build):
    for t in listed("tests/unit/downstream-unit-tests.txt"):
        run_glib_test(tap, "unit", os.path.join(build, "ours/qemu/tests/unit", t))


def layer_qtest(tap, build):
    env = dict(os.environ)
    env["QTEST_QEMU_BINARY"] = guests.qemu_binary(build)
    upstream = guests.qemu_binary(build, "upstream")
    if os.access(upstream, os.X_OK):
        env["QTEST_QEMU_BINARY_UPSTREAM"] = upstream
    env.setdefault("QTEST_QEMU_STORAGE_DAEMON_BINARY",
                   os.path.join(build, "ours/qemu/storage-daemon/qemu-storage-daemon"))
    # The virtio-pmem tests judge durability from syncfs's record of the
    # backing file's syncs (tests/fuse); without the mount they fail, saying so.
    with guests.Syncfs(build, "qtest") as fs:
        if fs.mounted:
            env["PMEM_TEST_FUSE_DIR"] = fs.dir
        for t in listed("tests/qtest/downstream-qtests.txt"):
            run_glib_test(tap, "qtest", os.path.join(build, "ours/qemu/tests/qtest", t),
                          env=env)


def host_kvm(layer):
    """True when the host's /dev/kvm runs this layer; else say where it runs."""
    why = guests.kvm_unavailable()
    if why is None:
        print(f"# layer {layer}: KVM is {guests.kvm_description()}", flush=True)
        return True
    if os.environ.get("DM_LAB"):
        raise RuntimeError(f"no /dev/kvm inside the lab: {why}")
    print(f"# layer {layer}: not on this host ({why}); the lab layer runs it "
          "under nested KVM", flush=True)
    return False


def run_module(tap, subdir, name, build):
    """Import tests/SUBDIR/NAME.py and run it; a missing module is a failure."""
    path = os.path.join(TOP, "tests", subdir, name + ".py")
    if not os.path.exists(path):
        tap.result(False, f"{subdir}: {name} missing ({path})")
        return
    sys.path.insert(0, os.path.dirname(path))
    __import__(name).run(tap, build)


def layer_kvm(tap, build):
    if host_kvm("kvm"):
        run_module(tap, "kvm", "kvm_tests", build)


def layer_kvm_migration(tap, build):
    if host_kvm("kvm-migration"):
        run_module(tap, "migration", "kvm_dirty_log_tests", build)


def layer_lab(tap, build):
    run_module(tap, "lab", "lab", build)


def layer_lab_kvm(tap, build):
    if not os.environ.get("DM_LAB"):
        tap.result(False, "lab-kvm: runs inside the lab only (make check-lab)")
        return
    run_module(tap, "lab", "lab_kvm_tests", build)


def layer_lab_ours(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/lab"))
    import lab
    lab.run_ours(tap, build)


def layer_lab_ours_kvm(tap, build):
    if os.environ.get("DM_LAB_KERNEL") != "ours":
        tap.result(False, "lab-ours-kvm: runs inside the lab on our kernel only (make check-lab)")
        return
    run_module(tap, "lab", "lab_ours_tests", build)


def layer_e2e(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/e2e"))
    import e2e_tests
    e2e_tests.run(tap, build)


def layer_kernel(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/kernel"))
    import kernel_tests
    kernel_tests.run(tap, build)


def layer_migration(tap, build):
    run_module(tap, "migration", "migration_tests", build)


def layer_compat(tap, build):
    run_module(tap, "compat", "compat_tests", build)


def layer_install(tap, build):
    run_module(tap, "install", "install_tests", build)


def layer_libvirt(tap, build):
    run_module(tap, "libvirt", "libvirt_tests", build)


def layer_style(tap, build):
    run_module(tap, "style", "style_tests", build)


def layer_asan(tap, build):
    run_module(tap, "asan", "asan_tests", build)


def layer_fuzz(tap, build):
    run_module(tap, "fuzz", "fuzz_tests", build)


def layer_s390x(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/s390x"))
    import s390x_tests
    s390x_tests.run(tap, build)


LAYERS = {"unit": layer_unit, "qtest": layer_qtest, "kvm": layer_kvm,
          "kvm-migration": layer_kvm_migration, "e2e": layer_e2e, "kernel": layer_kernel,
          "s390x": layer_s390x, "migration": layer_migration, "compat": layer_compat,
          "style": layer_style, "install": layer_install,
          "libvirt": layer_libvirt, "lab": layer_lab, "lab-kvm": layer_lab_kvm,
          "asan": layer_asan, "fuzz": layer_fuzz, "lab-ours": layer_lab_ours,
          "lab-ours-kvm": layer_lab_ours_kvm}


def on_alarm(signum, frame):
    raise LayerTimeout()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("layers", nargs="+", choices=sorted(LAYERS))
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tap = Tap()
    signal.signal(signal.SIGALRM, on_alarm)
    for layer in args.layers:
        t0 = time.monotonic()
        print(f"# layer {layer}", flush=True)
        signal.alarm(DEADLINE[layer])
        try:
            LAYERS[layer](tap, build)
        except LayerTimeout:
            tap.result(False, f"{layer}: layer not finished after its {DEADLINE[layer]}s "
                       "deadline")
        except Exception as e:  # a broken harness is a failure, not a crash
            tap.result(False, f"{layer}: harness error: {e!r}")
        finally:
            signal.alarm(0)
        print(f"# layer {layer}: {time.monotonic() - t0:.0f}s", flush=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(main())
