#!/usr/bin/env python3
"""Cost of re-protecting guest memory with KVM_CLEAR_DIRTY_LOG, per GiB.

A tiny guest with 1 GiB of RAM, stopped (-S), is migrated to a file; under
this machine's KVM every page is reported dirty once ("initially set"), so
each migration re-protects all of RAM exactly once.  For each
dirty-log-clear-size we report KVM_CLEAR_DIRTY_LOG calls and the time spent
in them per GiB (x-query-dirty-log), and the migration's total time; then
ours at its default against upstream at its default (1 GiB chunks), whose
clear calls are counted with its kvm_clear_dirty_log trace event (ours
counts them in x-query-dirty-log).
Medians of REPS runs.  Writes BUILD/bench/kvm-dirty-log.{md,json} and
appends the same to migration.{md,json}.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402
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
            vm.qmp.cmd("migrate-set-parameters", **{"dirty-log-clear-size": size})
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out = os.path.join(build, "bench")
    os.makedirs(out, exist_ok=True)
    why = guests.kvm_unavailable()
    if why:
        print(f"kvm-dirty-log: skipped: {why}")
        return 0

    data = {"ram_gib": RAM_GIB, "reps": args.reps, "chunks": [], "compare": {}}
    lines = [f"KVM_CLEAR_DIRTY_LOG cost, ours: a stopped {RAM_GIB} GiB tiny guest "
             f"migrated to a file (every page re-protected once), median of {args.reps}",
             "",
             "| dirty-log-clear-size | clear calls per GiB | clear time per GiB (ms) "
             "| migration total (ms) |",
             "|---|---|---|---|"]
    for size in SIZES:
        runs = [migrate_once(build, "ours", size) for _ in range(args.reps)]
        row = {"size": size,
               "clears_per_gib": median_of(runs, "clears") / RAM_GIB,
               "clear_ms_per_gib": median_of(runs, "clear_ms") / RAM_GIB,
               "total_ms": median_of(runs, "total_ms")}
        data["chunks"].append(row)
        lines.append(f"| {size >> 20} MiB | {row['clears_per_gib']:.0f} | "
                     f"{row['clear_ms_per_gib']:.2f} | {row['total_ms']:.0f} |")

    with tempfile.TemporaryDirectory(prefix="bench-dl-") as d:
        ours, up = [], []
        for i in range(args.reps):
            ours.append(migrate_once(build, "ours"))
            up.append(migrate_once(build, "upstream", trace_log=os.path.join(d, f"u{i}")))
    cmp_ = {"ours": {"clears": median_of(ours, "clears"), "total_ms": median_of(ours, "total_ms")},
            "upstream": {"clears": median_of(up, "clears"), "total_ms": median_of(up, "total_ms")}}
    data["compare"] = cmp_
    lines += ["",
              "Defaults side by side (ours 64 MiB chunks, upstream 1 GiB), same guest, "
              f"median of {args.reps}, alternating",
              "",
              "| | KVM_CLEAR_DIRTY_LOG calls | migration total (ms) |",
              "|---|---|---|",
              f"| upstream | {cmp_['upstream']['clears']:.0f} | {cmp_['upstream']['total_ms']:.0f} |",
              f"| ours | {cmp_['ours']['clears']:.0f} | {cmp_['ours']['total_ms']:.0f} |",
              f"| ours / upstream | {cmp_['ours']['clears'] / max(cmp_['upstream']['clears'], 1):.2f} "
              f"| {cmp_['ours']['total_ms'] / max(cmp_['upstream']['total_ms'], 1):.2f} |"]
    write_report(out, "kvm-dirty-log", lines, data)
    add_to_migration_report(out, lines, data)
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
