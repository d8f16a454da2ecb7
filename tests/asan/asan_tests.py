"""The asan layer: the unit, qtest and migration layers again, with ours
from the sanitizer build (make sanitized: build/sanitized, clang with
AddressSanitizer and UndefinedBehaviorSanitizer).

Each inner result is reported as `asan: <inner name>`, so a test that
passes normally but fails under the sanitizers shows which.  A sanitizer
report does not always fail the test it happens in (a QEMU process
started by a test may be reaped without its status being looked at), so
every sanitized process writes its reports to files (log_path), and
after each layer `asan: <layer>: no sanitizer report` fails, showing the
reports, when any process wrote one.  halt_on_error=1: the first report
ends the process.

The layers find ours as BUILD/ours/qemu; the layer runs them on a view of
the build directory (a temporary directory, as the lab's build directory
is read-only) in which `ours` is the sanitizer build and everything else
(the base, the guests, the FUSE tools) is the normal build's.

DM_ASAN_LAYERS (comma-separated) names other inner layers: the lab runs
the KVM layers this way (kvm, kvm-migration).
"""
import glob
import os
import re
import shutil
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests"))
import runner  # noqa: E402

INNER_LAYERS = ("unit", "qtest", "migration")
# Leaks at exit: QEMU frees little of what it allocates for the life of
# the process (machines, devices, the monitor) before exiting, so LSan's
# exit report is about the base's teardown, not about errors; the fuzz
# layer checks leaks per input, where a leak is one.
ASAN_OPTIONS = "halt_on_error=1:detect_leaks=0:abort_on_error=0:print_summary=1"
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1"
MAX_REPORT_LINES = 60
# What a sanitized QEMU prints that is not a report: QEMU's coroutines
# start with swapcontext() once (then switch with siglongjmp, telling
# ASan about each switch), and ASan warns about the call.
NOT_A_REPORT = re.compile(r"^==\d+==WARNING: ASan doesn't fully support "
                          r"makecontext/swapcontext functions")


class PrefixTap:
    """Relays each inner result to the outer TAP stream, named `asan: ...`."""

    def __init__(self, tap):
        self.tap = tap

    def result(self, ok, name, skip=None, diag=None):
        self.tap.result(ok, f"asan: {name}", skip=skip, diag=diag)


def sanitized_obj(build):
    return os.path.join(build, "sanitized", "qemu")


def make_view(build, view):
    """VIEW: every entry of BUILD, except `ours`, which is the sanitizer
    build (its qemu/ holds the sanitized binaries)."""
    os.makedirs(view)
    for entry in os.listdir(build):
        if entry in ("ours", "sanitized"):
            continue
        os.symlink(os.path.join(build, entry), os.path.join(view, entry))
    os.symlink(os.path.join(build, "sanitized"), os.path.join(view, "ours"))
    return view


def sanitizer_env(reports):
    sym = shutil.which("llvm-symbolizer")
    # both runtimes write to the one log_path (the last set wins): one name
    env = {"ASAN_OPTIONS": f"{ASAN_OPTIONS}:log_path={reports}/report",
           "UBSAN_OPTIONS": f"{UBSAN_OPTIONS}:log_path={reports}/report"}
    if sym:
        env["ASAN_SYMBOLIZER_PATH"] = env["UBSAN_SYMBOLIZER_PATH"] = sym
    return env


def reports_in(directory):
    """The report files in DIRECTORY that hold more than the known warning."""
    found = []
    for p in glob.glob(os.path.join(directory, "*")):
        with open(p, errors="replace") as f:
            if any(line.strip() and not NOT_A_REPORT.match(line) for line in f):
                found.append(p)
    return found


def report_text(paths):
    lines = []
    for p in sorted(paths):
        with open(p, errors="replace") as f:
            body = f.read().splitlines()
        lines.append(f"== {os.path.basename(p)} ({len(body)} lines)")
        lines += body[:MAX_REPORT_LINES]
    return "\n".join(lines)


def run(tap, build):
    obj = sanitized_obj(build)
    if not os.access(os.path.join(obj, "qemu-system-x86_64"), os.X_OK):
        tap.result(False, f"asan: sanitizer build missing ({obj}; make sanitized)")
        return
    layers = (os.environ["DM_ASAN_LAYERS"].split(",") if os.environ.get("DM_ASAN_LAYERS")
              else INNER_LAYERS)
    work = tempfile.mkdtemp(prefix="dm-asan-")
    view = make_view(build, os.path.join(work, "build"))
    reports = os.path.join(work, "reports")
    inner = PrefixTap(tap)
    saved = {k: os.environ.get(k) for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS",
                                           "ASAN_SYMBOLIZER_PATH", "UBSAN_SYMBOLIZER_PATH")}
    try:
        for layer in layers:
            shutil.rmtree(reports, ignore_errors=True)
            os.makedirs(reports)
            os.environ.update(sanitizer_env(reports))
            print(f"# asan: layer {layer}", flush=True)
            runner.LAYERS[layer](inner, view)
            found = reports_in(reports)
            tap.result(not found, f"asan: {layer}: no sanitizer report",
                       diag=report_text(found) if found else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
