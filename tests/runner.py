#!/usr/bin/env python3
"""Run the tree's test layers and print TAP, ending with one summary line.

Usage: tests/runner.py --build DIR LAYER...   (unit, qtest, kvm, e2e, migration, s390x, kernel)

Each layer's tests print as `ok N - layer: name`, `not ok N - ...` or
`ok N - ... # SKIP reason`; the last line is `N passed, N failed, N skipped`
and the exit status is non-zero when anything failed.
"""
import argparse
import os
import re
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


def run_glib_test(tap, layer, exe, env=None, timeout=600):
    """Run a GLib test binary with --tap and relay each of its results."""
    name = os.path.basename(exe)
    if not os.access(exe, os.X_OK):
        tap.result(False, f"{layer}: {name} (not built: {exe})")
        return
    try:
        p = subprocess.run([exe, "--tap", "-k"], env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace"), "timeout"
    seen_failure = False
    log = []
    for line in out.splitlines():
        m = TAP_LINE.match(line)
        if not m:
            log.append(line)
            continue
        status, desc, directive, reason = m.groups()
        if directive == "SKIP":
            tap.result(True, f"{layer}: {name} {desc}", skip=reason.strip() or "skipped")
        else:
            ok = status == "ok"
            seen_failure |= not ok
            tap.result(ok, f"{layer}: {name} {desc}", diag="\n".join(log))
        log = []
    if rc != 0 and not seen_failure:
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
    for t in listed("tests/qtest/downstream-qtests.txt"):
        run_glib_test(tap, "qtest", os.path.join(build, "ours/qemu/tests/qtest", t), env=env)


def layer_kvm(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/kvm"))
    import kvm_tests
    kvm_tests.run(tap, build)


def layer_e2e(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/e2e"))
    import e2e_tests
    e2e_tests.run(tap, build)


def layer_kernel(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/kernel"))
    import kernel_tests
    kernel_tests.run(tap, build)


def layer_migration(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/migration"))
    for name in ("migration_tests", "kvm_dirty_log_tests"):
        if os.path.exists(os.path.join(TOP, "tests/migration", name + ".py")):
            __import__(name).run(tap, build)


def layer_s390x(tap, build):
    sys.path.insert(0, os.path.join(TOP, "tests/s390x"))
    import s390x_tests
    s390x_tests.run(tap, build)


LAYERS = {"unit": layer_unit, "qtest": layer_qtest, "kvm": layer_kvm, "e2e": layer_e2e,
          "kernel": layer_kernel, "s390x": layer_s390x, "migration": layer_migration}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("layers", nargs="+", choices=sorted(LAYERS))
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tap = Tap()
    for layer in args.layers:
        t0 = time.monotonic()
        print(f"# layer {layer}", flush=True)
        try:
            LAYERS[layer](tap, build)
        except Exception as e:  # a broken harness is a failure, not a crash
            tap.result(False, f"{layer}: harness error: {e!r}")
        print(f"# layer {layer}: {time.monotonic() - t0:.0f}s", flush=True)
    return tap.summary()


if __name__ == "__main__":
    sys.exit(main())
