#!/usr/bin/env python3
"""virtio-pmem flush throughput: ours vs upstream, same harness, one run.

The harness is the benchmark mode of tests/qtest/virtio-pmem-test.c: a
closed loop that keeps N flush requests outstanding on the virtqueue
(driving the device through the qtest protocol, a few round trips per
round of requests), dirtying a page of the pmem range each round so the
host syncs have data to write.  Host syncs are counted from each device's
per-sync trace event.  Beside them: the host's own fsync/fdatasync rates on
a file of the same disk (bench/fsync-rate.c, 4 KiB written before each),
and the harness ceiling (ours with x-skip-sync: answers without syncing).
Writes BUILD/bench/virtio-pmem.{md,json}.
"""
import argparse
import os
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from report import write_report  # noqa: E402

LEVELS = [1, 4, 16, 64]
# the trace event each implementation fires once per host sync
SYNC_EVENT = {"ours": "virtio_pmem_sync_done", "upstream": "virtio_pmem_flush_done"}


def run(build, which, seconds, device_opts=""):
    out_dir = os.path.join(build, "bench")
    with tempfile.TemporaryDirectory(dir=out_dir) as d:
        env = dict(os.environ,
                   QTEST_QEMU_BINARY=os.path.join(build, which, "qemu", "qemu-system-x86_64"),
                   PMEM_BENCH_LEVELS=",".join(map(str, LEVELS)),
                   PMEM_BENCH_SECONDS=str(seconds), PMEM_BENCH_DIR=d,
                   PMEM_BENCH_TRACE_LOG=os.path.join(d, "trace.log"),
                   PMEM_BENCH_TRACE_EVENT=SYNC_EVENT[which],
                   PMEM_BENCH_DEVICE_OPTS=device_opts)
        exe = os.path.join(build, "ours", "qemu", "tests", "qtest", "virtio-pmem-test")
        p = subprocess.run([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60 + 10 * seconds * len(LEVELS))
    results = {}
    for line in p.stdout.splitlines():
        if line.startswith("@@ level "):
            _, _, n, reqs, rps, p50, p99, syncs = line.split()
            results[int(n)] = {"requests": int(reqs), "rps": float(rps),
                               "p50_us": int(p50), "p99_us": int(p99),
                               "syncs_per_req": int(syncs) / max(int(reqs), 1)}
    if sorted(results) != LEVELS:
        raise RuntimeError(f"{which}: harness reported {sorted(results)}: {p.stderr[-2000:]}")
    return results


def median_runs(results):
    """Per level, the run with the median requests/s."""
    out = {}
    for n in LEVELS:
        by_rps = sorted((r[n] for r in results), key=lambda r: r["rps"])
        out[n] = by_rps[len(by_rps) // 2]
    return out


def host_rate(build, call, threads):
    exe = os.path.join(build, "bench", "fsync-rate")
    with tempfile.NamedTemporaryFile(dir=os.path.join(build, "bench")) as f:
        f.truncate(16 << 20)
        f.flush()
        out = subprocess.run([exe, f.name, call, str(threads), "1", "write"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    return float(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out_dir = os.path.join(build, "bench")
    os.makedirs(out_dir, exist_ok=True)

    print("bench: host fsync/fdatasync rates on this disk", flush=True)
    host = {(c, t): host_rate(build, c, t) for c in ("fsync", "fdatasync") for t in (1, 16, 64)}
    print("bench: virtio-pmem, harness ceiling (ours, x-skip-sync)", flush=True)
    ceiling = run(build, "ours", args.seconds, ",x-skip-sync=on")
    # upstream and ours alternate, so drift on the disk hits both alike
    runs = {"ours": [], "upstream": []}
    for rep in range(args.reps):
        for which in ("upstream", "ours"):
            print(f"bench: virtio-pmem, {which}, run {rep + 1} of {args.reps}", flush=True)
            runs[which].append(run(build, which, args.seconds))
    up, ours = median_runs(runs["upstream"]), median_runs(runs["ours"])

    data = {"host_fsync_per_s": host[("fsync", 1)],
            "host_fdatasync_per_s": host[("fdatasync", 1)],
            "host_rates": {f"{c}_{t}_threads": v for (c, t), v in host.items()},
            "harness_ceiling_rps": max(r["rps"] for r in ceiling.values())}
    rates = ", ".join(f"{c} {host[(c, 1)]:.0f}/{host[(c, 16)]:.0f}/{host[(c, 64)]:.0f}"
                      for c in ("fsync", "fdatasync"))
    lines = [
        f"# virtio-pmem flush: requests/s, latency (us), host syncs per request; "
        f"{args.seconds:g} s per level, median of {args.reps} alternating runs",
        "",
        f"Host syncs/s on this disk (4 KiB write first; 1/16/64 threads): {rates}. "
        f"Harness ceiling (ours answering without syncing): "
        f"{data['harness_ceiling_rps']:.0f} requests/s.",
        "",
        "| concurrency | ours rps | upstream rps | ours/upstream | ours syncs/req | "
        "upstream syncs/req | ours p50/p99 us | upstream p50/p99 us | ceiling rps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in LEVELS:
        o, u = ours[n], up[n]
        data[str(n)] = {
            "ours_rps": o["rps"], "upstream_rps": u["rps"],
            "ours_syncs_per_req": o["syncs_per_req"],
            "upstream_syncs_per_req": u["syncs_per_req"],
            "ours_p50_us": o["p50_us"], "ours_p99_us": o["p99_us"],
            "upstream_p50_us": u["p50_us"], "upstream_p99_us": u["p99_us"],
            "ceiling_rps": ceiling[n]["rps"],
        }
        lines.append(
            f"| {n} | {o['rps']:.0f} | {u['rps']:.0f} | {o['rps'] / u['rps']:.2f}x | "
            f"{o['syncs_per_req']:.3f} | {u['syncs_per_req']:.3f} | "
            f"{o['p50_us']}/{o['p99_us']} | {u['p50_us']}/{u['p99_us']} | "
            f"{ceiling[n]['rps']:.0f} |")
    lines += ["", "Harness: tests/qtest/virtio-pmem-test.c in benchmark mode (N requests "
              "kept outstanding; it kicks again after 1 ms without progress, which the "
              "base's device needs: it takes one request per kick)."]
    write_report(out_dir, "virtio-pmem", lines, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
