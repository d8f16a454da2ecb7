#!/usr/bin/env python3
"""Port-write cost: raw /dev/kvm loop vs upstream QEMU vs ours, in one run.

Columns: the raw loop without and with the port as a coalesced zone (the
limit), upstream QEMU 10.0, ours, and ours with -M coalesced-pio=off.

For each port, the tiny guest tests/guest/port-loop.S writes it COUNT times.
QEMU's cost per write is (t(COUNT) - t(0)) / COUNT over whole QEMU runs, so
start-up cost cancels out; the raw loop (bench/kvm-port-loop.c) times KVM_RUN
itself, plain and with the port as a coalesced PIO zone (the limit for any
VMM).  Medians of REPS runs each.  Writes BUILD/bench/coalesced-io.{md,json}.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import guests  # noqa: E402
from report import write_report  # noqa: E402

# port, access width, what it is
PORTS = [
    (0x70, 1, "RTC index (coalesced by upstream)"),
    (0xcf8, 4, "PCI config address"),
    (0x3e8, 1, "unassigned port (never coalesced)"),
]


def raw_loop(build, port, width, count, mode, reps):
    exe = os.path.join(build, "bench", "kvm-port-loop")
    img = os.path.join(build, "guest", "port-loop.bin")
    p = subprocess.run([exe, img, hex(port), str(width), str(count), mode, str(reps)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"kvm-port-loop: {p.stderr.strip()}")
    ns = [float(line.split()[0]) for line in p.stdout.splitlines()]
    return statistics.median(ns) / 1000.0


def qemu_per_write(build, which, port, width, count, reps, extra=()):
    """Median over reps of (t(count) - t(0)) / count, in microseconds."""
    with tempfile.TemporaryDirectory() as d:
        imgs = {n: guests.patched_image(build, "port-loop.bin", os.path.join(d, f"l{n}.bin"),
                                        count=n, port=port, width=width)
                for n in (0, count)}
        times = {0: [], count: []}
        for _ in range(reps):
            for n in (0, count):          # interleaved, so drift hits both
                cmd = guests.tiny_cmd(build, imgs[n], which=which, extra=extra)
                t0 = time.monotonic()
                p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
                times[n].append(time.monotonic() - t0)
                if p.returncode != guests.debug_exit_status(0):
                    raise RuntimeError(f"{which} QEMU exit {p.returncode}: {p.stderr.strip()}")
    return (statistics.median(times[count]) - statistics.median(times[0])) / count * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--count", type=int, default=200000)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out_dir = os.path.join(build, "bench")
    os.makedirs(out_dir, exist_ok=True)

    why = guests.kvm_unavailable()
    if why:
        print(f"bench: coalesced I/O needs KVM: {why}")
        return 0

    results = {}
    for port, width, what in PORTS:
        print(f"bench: port {port:#x} ({what})", flush=True)
        r = {
            "width": width,
            "raw_us": raw_loop(build, port, width, args.count, "plain", args.reps),
            "raw_coalesced_us": raw_loop(build, port, width, args.count, "coalesced", args.reps),
            "upstream_us": qemu_per_write(build, "upstream", port, width, args.count, args.reps),
            "ours_us": qemu_per_write(build, "ours", port, width, args.count, args.reps),
            "ours_pio_off_us": qemu_per_write(build, "ours", port, width, args.count,
                                              args.reps, extra=["-M", "coalesced-pio=off"]),
        }
        results[f"{port:#x}"] = r

    lines = [
        f"# Coalesced I/O: cost per port write (us), median of {args.reps} runs, "
        f"{args.count} writes per run",
        "",
        "| port | raw KVM | raw KVM coalesced (limit) | upstream | ours | ours, coalesced-pio=off "
        "| upstream/ours | ours/limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (port, width, what), (key, r) in zip(PORTS, results.items()):
        lines.append(
            f"| {key} {what} | {r['raw_us']:.2f} | {r['raw_coalesced_us']:.2f} | "
            f"{r['upstream_us']:.2f} | {r['ours_us']:.2f} | {r['ours_pio_off_us']:.2f} | "
            f"{r['upstream_us'] / r['ours_us']:.2f}x | "
            f"{r['ours_us'] / r['raw_coalesced_us']:.2f}x |")
    lines += ["", "QEMU figures: (t(N) - t(0)) / N over whole runs of the tiny guest "
              "(tests/guest/port-loop.S) with -M pc -accel kvm; raw: bench/kvm-port-loop.c."]
    write_report(out_dir, "coalesced-io", lines, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
