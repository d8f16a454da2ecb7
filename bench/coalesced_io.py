#!/usr/bin/env python3
"""Port-write cost: raw /dev/kvm loop vs upstream QEMU vs ours, in one run.

Columns: the raw loop without and with the port as a coalesced zone (the
limit), upstream QEMU 10.0, ours, and ours with -accel kvm,coalesced-pio=off.

For each port, the tiny guest tests/guest/port-loop.S writes it COUNT times.
QEMU's cost per write is (t(COUNT) - t(0)) / COUNT over whole QEMU runs, so
start-up cost cancels out; the raw loop (bench/kvm-port-loop.c) times KVM_RUN
itself, plain and with the port as a coalesced PIO zone (the limit for any
VMM; for 0xcf8 a zone of 32-bit accesses only where KVM has
KVM_CAP_COALESCED_ZONE_LEN, as ours registers it).  Medians and ranges of REPS runs each, on the host's KVM when it is
usable and in the KVM lab always; every figure says which (`accel`).
Writes BUILD/bench/coalesced-io.{md,json}.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402
import lab_run  # noqa: E402
from report import write_report  # noqa: E402

# port, access width, what it is, whether ours asks for a sized zone
PORTS = [
    (0x70, 1, "RTC index (coalesced by upstream)", False),
    (0xcf8, 4, "PCI config address", True),
    (0x3e8, 1, "unassigned port (never coalesced)", False),
]


def kvm_zone_len():
    """Whether this /dev/kvm restricts zones to one access length."""
    return guests.kvm_check_extension(guests.KVM_CAP_COALESCED_ZONE_LEN) > 0


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def raw_loop(build, port, width, count, mode, reps):
    """ns per write of KVM_RUN itself (bench/kvm-port-loop.c), per repetition."""
    exe = os.path.join(build, "bench", "kvm-port-loop")
    img = os.path.join(build, "guest", "port-loop.bin")
    p = subprocess.run([exe, img, hex(port), str(width), str(count), mode, str(reps)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"kvm-port-loop: {p.stderr.strip()}")
    return spread([float(line.split()[0]) / 1000.0 for line in p.stdout.splitlines()])


def qemu_runs(build, which, port, width, count, reps, accel):
    """Wall times of whole QEMU runs of the port-loop guest with 0 and
    `count` writes, interleaved so drift hits both."""
    with tempfile.TemporaryDirectory() as d:
        imgs = {n: guests.patched_image(build, "port-loop.bin", os.path.join(d, f"l{n}.bin"),
                                        count=n, port=port, width=width)
                for n in (0, count)}
        times = {0: [], count: []}
        for _ in range(reps):
            for n in (0, count):
                cmd = guests.tiny_cmd(build, imgs[n], which=which, accel=accel)
                t0 = time.monotonic()
                p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
                times[n].append(time.monotonic() - t0)
                if p.returncode != guests.debug_exit_status(0):
                    raise RuntimeError(f"{which} QEMU exit {p.returncode}: {p.stderr.strip()}")
    return times[0], times[count]


def qemu_per_write(build, which, port, width, count, reps, max_count, accel="kvm"):
    """us per write: (t(count) - t(0)) / count for each interleaved pair,
    median and range.  The count doubles until the spread of t(0) (start-up
    jitter) is under 1% of t(count) - t(0), up to max_count."""
    while True:
        t_zero, t_n = qemu_runs(build, which, port, width, count, reps, accel)
        diff = statistics.median(t_n) - statistics.median(t_zero)
        jitter = max(t_zero) - min(t_zero)
        if (diff > 0 and jitter < 0.01 * diff) or count * 2 > max_count:
            break
        count *= 2
    r = spread([(n - z) / count * 1e6 for n, z in zip(t_n, t_zero)])
    r.update(count=count, startup_jitter_ms=jitter * 1e3, difference_ms=diff * 1e3,
             jitter_below_1pct=diff > 0 and jitter < 0.01 * diff)
    return r


def figures_here(build, accel, reps, count, max_count, ports=None):
    rows = []
    zone_len = kvm_zone_len()
    for port, width, what, sized in PORTS:
        if ports and port not in ports:
            continue
        print(f"bench: {accel}: port {port:#x} ({what})", flush=True)
        mode = "sized" if sized and zone_len else "coalesced"
        row = {"port": f"{port:#x}", "what": what, "width": width, "accel": accel,
               "kvm_zone_len": zone_len, "raw_coalesced_mode": mode,
               "l1_kernel": os.environ.get("DM_LAB_KERNEL", "debian") if accel == "lab" else None,
               "raw_us": raw_loop(build, port, width, count, "plain", reps),
               "raw_coalesced_us": raw_loop(build, port, width, count, mode, reps)}
        for key, which, opts in (("upstream_us", "upstream", "kvm"), ("ours_us", "ours", "kvm"),
                                 ("ours_pio_off_us", "ours", "kvm,coalesced-pio=off")):
            row[key] = qemu_per_write(build, which, port, width, count, reps, max_count,
                                      opts)
        rows.append(row)
    return rows


COLUMNS = ("raw_us", "raw_coalesced_us", "upstream_us", "ours_us", "ours_pio_off_us")


def ratio(a, b):
    """a / b of two medians, or None when either cost is not positive
    (a difference of run times lost in noise has no ratio)."""
    if a["median"] <= 0 or b["median"] <= 0:
        return None
    return a["median"] / b["median"]


def cell(r):
    flag = "" if r.get("jitter_below_1pct", True) else " (jitter)"
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]{flag}"


def main():
    ap = lab_run.parser()
    ap.add_argument("--count", type=int, default=50000, help="writes per run to start with")
    ap.add_argument("--max-count", type=int, default=800000)
    ap.add_argument("--ports", help="comma-separated ports to measure (default: all)")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out_dir = lab_run.out_dir(args)

    rows = []
    for accel in lab_run.places(args.where):
        if args.where == "here" or accel == "host":
            rows += figures_here(build, accel, args.reps, args.count, args.max_count,
                                 [int(p, 0) for p in args.ports.split(",")] if args.ports else None)
        else:
            # a nested exit costs 10-50x the host's: an eighth of the cap
            # keeps a lab run of one port within minutes
            cap = max(args.count, args.max_count // 8)
            rows += lab_run.run_in_lab(build, "coalesced_io.py", "coalesced-io",
                                       ["--reps", str(args.reps), "--count", str(args.count),
                                        "--max-count", str(cap)]
                                       + (["--ports", args.ports] if args.ports else []))["figures"]
    for r in rows:
        up_ours = ratio(r["upstream_us"], r["ours_us"])
        ours_limit = ratio(r["ours_us"], r["raw_coalesced_us"])
        r["upstream_over_ours"], r["ours_over_limit"] = up_ours, ours_limit

    lines = [
        f"# Coalesced I/O: cost per port write (us), median [min-max] of {args.reps} runs",
        "",
        "| KVM | port | raw KVM | raw KVM coalesced (limit) | upstream | ours "
        "| ours, coalesced-pio=off | upstream/ours | ours/limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fmt = (lambda x: "n/a" if x is None else f"{x:.2f}x")
        kvm = lab_run.ACCEL_NAMES[r['accel']] + (", sized zones" if r.get("kvm_zone_len") else "")
        lines.append(f"| {kvm} | {r['port']} {r['what']} | "
                     + " | ".join(cell(r[c]) for c in COLUMNS)
                     + f" | {fmt(r['upstream_over_ours'])} | {fmt(r['ours_over_limit'])} |")
    lines += ["", "QEMU figures: (t(N) - t(0)) / N for each interleaved pair of whole runs of "
              "the tiny guest (tests/guest/port-loop.S) with -M pc -accel kvm; N doubles until "
              "the start-up jitter (range of t(0)) is under 1% of t(N) - t(0), \"(jitter)\" "
              "where the cap stopped it first; raw: bench/kvm-port-loop.c (0xcf8's limit with a zone of "
              "32-bit accesses only on a KVM with sized zones).  Nested-KVM (lab) "
              "timings are not hardware timings: compare the ratios within one KVM."]
    write_report(out_dir, "coalesced-io", lines,
                 {"reps": args.reps, "figures": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
