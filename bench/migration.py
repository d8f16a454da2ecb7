#!/usr/bin/env python3
"""Live migration of a TCG guest dirtying memory at a steady rate: ours vs upstream.

The guest is tests/guest/mem-pattern.S with 1 GiB of RAM: it first writes
its whole pattern range once (unpaced, so every page holds data), then
rewrites pages at DIRTY_RATE (paced on the PIT).  Each run migrates it
over a local TCP socket to a fresh destination of the same binary
(ours -> ours, upstream -> upstream; machine pc-i440fx-10.0, TCG) with
max-bandwidth BANDWIDTH and the default 300 ms downtime limit, and reads
the source's query-migrate when it completes: total time, downtime, setup
time, RAM bytes transferred, dirty-bitmap syncs.  Runs alternate between
the two builds; the table shows the median of each figure.  The
destination's RAM is checked for pattern consistency after every run, so a
fast but wrong migration cannot pass.  Writes BUILD/bench/migration.{md,json}.

Under TCG neither build uses the KVM dirty log: this measures that our
migration-side changes cost nothing on the common path.  The KVM clear cost
per GiB is measured by bench/kvm_dirty_log.py, which adds its tables to
migration.{md,json}.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "migration"))
from report import write_report  # noqa: E402
import mempattern as mp  # noqa: E402
import guests  # noqa: E402

MACHINE = "pc-i440fx-10.0"
RAM_MIB = 1024
FIGURES = [  # key, label, unit, from the source's query-migrate
    ("total_ms", "total time", "ms"),
    ("downtime_ms", "downtime", "ms"),
    ("setup_ms", "setup time", "ms"),
    ("transferred_mib", "RAM bytes sent", "MiB"),
    ("syncs", "dirty bitmap syncs", ""),
]


def one_run(build, which, tmp, dirty_rate, bandwidth):
    image = mp.patch_image(build, os.path.join(tmp, "guest.bin"),
                           npages=mp.pattern_pages(RAM_MIB), flags=1,
                           **mp.pacing(dirty_rate, burst=64))
    exe = guests.qemu_binary(build, which)
    src = mp.start_vm(exe, image, MACHINE, f"{RAM_MIB}M")
    dst = None
    try:
        mp.wait_first_pass(src, tmp, timeout=300)
        time.sleep(1)                       # into the steady, paced phase
        dst = mp.start_vm(exe, image, MACHINE, f"{RAM_MIB}M", ["-S"], incoming="defer")
        dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
        port = next(a["port"] for a in dst.qmp.cmd("query-migrate")["socket-address"]
                    if a.get("type") == "inet")
        src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth})
        w0 = mp.read_status(src, tmp)
        t0 = time.monotonic()
        src.qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        info = mp.wait_done(src, timeout=600)
        wall = time.monotonic() - t0
        if info.get("status") != "completed":
            raise RuntimeError(f"{which}: migration {info.get('status')}: "
                               f"{info.get('error-desc')} {src.stderr()[-500:]}")
        dst.wait_migration(120)
        dump = mp.dump_ram(dst, os.path.join(tmp, "dst.ram"), RAM_MIB << 20)
        ok, msg, st = mp.check_pattern(dump)
        os.unlink(dump)
        if not ok:
            raise RuntimeError(f"{which}: destination RAM inconsistent: {msg}")
        ram = info["ram"]
        return {"total_ms": info["total-time"], "downtime_ms": info["downtime"],
                "setup_ms": info.get("setup-time", 0),
                "transferred_mib": ram["transferred"] / (1 << 20),
                "syncs": ram["dirty-sync-count"],
                "pages_dirtied": st.written - w0.written,
                "dirty_mib_per_s": (st.written - w0.written) * mp.PAGE / (1 << 20) / wall,
                "wall_s": wall}
    finally:
        for vm in (src, dst):
            if vm is not None:
                vm.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--dirty-mib", type=int, default=64, help="guest dirty rate, MiB/s")
    ap.add_argument("--bandwidth-mib", type=int, default=512, help="max-bandwidth, MiB/s")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out_dir = os.path.join(build, "bench")
    os.makedirs(out_dir, exist_ok=True)
    dirty, bw = args.dirty_mib << 20, args.bandwidth_mib << 20

    runs = {"ours": [], "upstream": []}
    for rep in range(args.reps):
        for which in ("upstream", "ours"):
            print(f"bench: migration, {which}, run {rep + 1} of {args.reps}", flush=True)
            with tempfile.TemporaryDirectory(prefix="migbench-") as tmp:
                r = one_run(build, which, tmp, dirty, bw)
            print("bench:   " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()), flush=True)
            runs[which].append(r)

    med = {w: {k: statistics.median(r[k] for r in runs[w]) for k in runs[w][0]} for w in runs}
    data = {"machine": MACHINE, "ram_mib": RAM_MIB, "dirty_mib_per_s": args.dirty_mib,
            "max_bandwidth_mib_per_s": args.bandwidth_mib, "reps": args.reps,
            "ours": med["ours"], "upstream": med["upstream"],
            "runs": runs, "ratio": {}}
    lines = [
        f"# migration: TCG guest, {RAM_MIB} MiB RAM rewriting {args.dirty_mib} MiB/s, "
        f"max-bandwidth {args.bandwidth_mib} MiB/s, downtime limit 300 ms, local TCP; "
        f"median of {args.reps} alternating runs",
        "",
        "| figure | ours | upstream | ours/upstream | ours min-max | upstream min-max |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, unit in FIGURES:
        o, u = med["ours"][key], med["upstream"][key]
        ratio = o / u if u else float("nan")
        data["ratio"][key] = ratio
        spread = {w: (min(r[key] for r in runs[w]), max(r[key] for r in runs[w]))
                  for w in runs}
        lines.append(f"| {label}{f' ({unit})' if unit else ''} | {o:.0f} | {u:.0f} | "
                     f"{ratio:.2f}x | {spread['ours'][0]:.0f}-{spread['ours'][1]:.0f} | "
                     f"{spread['upstream'][0]:.0f}-{spread['upstream'][1]:.0f} |")
    lines += ["", f"Guest dirty rate measured during migration: ours "
              f"{med['ours']['dirty_mib_per_s']:.1f} MiB/s, upstream "
              f"{med['upstream']['dirty_mib_per_s']:.1f} MiB/s. Every destination's RAM "
              "was checked against the guest's pattern. QEMU reports times in whole ms (setup time "
              "is a few ms, so its ratio is noise). Under TCG neither build uses the "
              "KVM dirty log; its clear cost per GiB follows (bench/kvm_dirty_log.py)."]
    write_report(out_dir, "migration", lines, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
