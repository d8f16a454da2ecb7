#!/usr/bin/env python3
"""Cost of re-protecting guest memory with KVM_CLEAR_DIRTY_LOG, per GiB.

A tiny guest with 1 GiB of RAM, stopped (-S), is migrated to a file; under
this machine's KVM every page is reported dirty once ("initially set"), so
each migration re-protects all of RAM exactly once.  For each
x-dirty-log-clear-size we report KVM_CLEAR_DIRTY_LOG calls and the time spent
in them per GiB (x-query-dirty-log), and the migration's total time; then
ours at its default against upstream at its default (1 GiB chunks), whose
clear calls are counted with its kvm_clear_dirty_log trace event (ours
counts them in x-query-dirty-log).
Medians and ranges of REPS runs, on the host's KVM when it is usable and in
the KVM lab always (where the dirty log is a real one).  Writes
BUILD/bench/kvm-dirty-log.{md,json} and appends the same to
migration.{md,json}.
"""
import json
import os
import statistics
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402
import lab_run  # noqa: E402
from report import write_report  # noqa: E402

GUEST = "cmos-migrate.bin"
RAM_GIB = 1
SIZES = [1 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30]


def migrate_once(build, which, size=None, trace_log=None):
    extra = ["-m", f"{RAM_GIB}G"]
    if trace_log:
        extra += ["-trace", "kvm_clear_dirty_log", "-D", trace_log]
    with tempfile.TemporaryDirectory(prefix="bench-dl-") as d, \
            guests.TinyVM(build, GUEST, which=which, extra=extra, start=False) as vm:
        if size:
            vm.qmp.cmd("migrate-set-parameters", **{"x-dirty-log-clear-size": size})
        before = vm.qmp.cmd("x-query-dirty-log") if which == "ours" else None
        vm.qmp.cmd("migrate", uri=f"file:{os.path.join(d, 'state')}")
        while True:
            info = vm.qmp.cmd("query-migrate")
            if info["status"] in ("completed", "failed"):
                break
            time.sleep(0.01)
        if info["status"] != "completed":
            raise RuntimeError(f"{which}: migration {info}")
        res = {"total_ms": info["total-time"]}
        if before is not None:
            after = vm.qmp.cmd("x-query-dirty-log")
            res["clears"] = after["clears"] - before["clears"]
            res["clear_ms"] = (after["clear-ns"] - before["clear-ns"]) / 1e6
            res["pages"] = after["pages-cleared"] - before["pages-cleared"]
    if trace_log:
        with open(trace_log) as f:
            res["clears"] = sum(1 for line in f if "kvm_clear_dirty_log" in line)
    return res


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def range_of(runs, key):
    vals = [r[key] for r in runs]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def figures_here(build, reps, accel):
    data = {"accel": accel, "ram_gib": RAM_GIB, "reps": reps, "chunks": []}
    for size in SIZES:
        runs = [migrate_once(build, "ours", size) for _ in range(reps)]
        data["chunks"].append({"size": size,
                               "clears_per_gib": median_of(runs, "clears") / RAM_GIB,
                               "clear_ms_per_gib": range_of(runs, "clear_ms"),
                               "total_ms": range_of(runs, "total_ms")})
    # Timed runs alternate and run untraced on both sides; upstream's clear
    # calls are counted in one more, traced run (the count does not vary).
    ours, up = [], []
    for _ in range(reps):
        ours.append(migrate_once(build, "ours"))
        up.append(migrate_once(build, "upstream"))
    with tempfile.TemporaryDirectory(prefix="bench-dl-") as d:
        up_clears = migrate_once(build, "upstream",
                                 trace_log=os.path.join(d, "trace"))["clears"]
    data["compare"] = {"ours": {"clears": median_of(ours, "clears"),
                                "total_ms": range_of(ours, "total_ms")},
                       "upstream": {"clears": up_clears,
                                    "total_ms": range_of(up, "total_ms")}}
    return data


def rng(r):
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def report_lines(data):
    where = lab_run.ACCEL_NAMES[data["accel"]]
    reps = data["reps"]
    lines = [f"KVM_CLEAR_DIRTY_LOG cost, ours, {where}: a stopped {RAM_GIB} GiB tiny guest "
             f"migrated to a file (every page re-protected once), median [min-max] of {reps}",
             "",
             "| x-dirty-log-clear-size | clear calls per GiB | clear time per GiB (ms) "
             "| migration total (ms) |",
             "|---|---|---|---|"]
    for row in data["chunks"]:
        lines.append(f"| {row['size'] >> 20} MiB | {row['clears_per_gib']:.0f} | "
                     f"{rng(row['clear_ms_per_gib'])} | {rng(row['total_ms'])} |")
    c = data["compare"]
    lines += ["",
              f"Defaults side by side, {where} (ours 64 MiB chunks, upstream 1 GiB), same "
              f"guest, {reps} alternating untraced runs each; upstream's calls counted in "
              "one traced run",
              "",
              "| | KVM_CLEAR_DIRTY_LOG calls | migration total (ms) |",
              "|---|---|---|",
              f"| upstream | {c['upstream']['clears']:.0f} | {rng(c['upstream']['total_ms'])} |",
              f"| ours | {c['ours']['clears']:.0f} | {rng(c['ours']['total_ms'])} |",
              f"| ours / upstream | {c['ours']['clears'] / max(c['upstream']['clears'], 1):.2f} "
              f"| {c['ours']['total_ms']['median'] / c['upstream']['total_ms']['median']:.2f} |"]
    return lines


def main():
    args = lab_run.parser().parse_args()
    build = os.path.abspath(args.build)
    out = lab_run.out_dir(args)

    results, lines = [], []
    for accel in lab_run.places(args.where):
        if args.where == "here" or accel == "host":
            data = figures_here(build, args.reps, accel)
        else:
            data = lab_run.run_in_lab(build, "kvm_dirty_log.py", "kvm-dirty-log",
                                      ["--reps", str(args.reps)])["results"][0]
        results.append(data)
        lines += report_lines(data) + [""]
    report = {"results": results}
    write_report(out, "kvm-dirty-log", lines, report)
    if args.where == "auto":
        add_to_migration_report(out, lines, report)
    return 0


def add_to_migration_report(out, lines, data):
    """The issue's report is migration.{md,json}: append ours to it when
    bench/migration.py wrote it in this run (make bench runs it first)."""
    md, js = (os.path.join(out, f"migration.{ext}") for ext in ("md", "json"))
    if not (os.path.exists(md) and os.path.exists(js)):
        return
    with open(js) as f:
        report = json.load(f)
    report["kvm_dirty_log"] = data
    with open(js, "w") as f:
        json.dump(report, f, indent=2)
    with open(md, "a") as f:
        f.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
