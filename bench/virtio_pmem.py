#!/usr/bin/env python3
"""virtio-pmem flush throughput: ours vs upstream, same harness, one run.

The harness is tests/qtest/virtio-pmem-test.c run with --bench: a closed
loop that keeps N flush requests outstanding on the virtqueue, driving the
device through the qtest protocol, in one of two kick patterns:

- driver: what Linux's virtio_pmem driver does (drivers/nvdimm/nd_virtio.c):
  each of N waiters stores to its own page, adds one request (an indirect
  descriptor) and calls virtqueue_kick() for it, which notifies only when
  the device's avail_event asks (event index negotiated); the interrupt
  side takes every answer and moves used_event.  A request the device never
  takes counts as a stall after 1 s (a Linux waiter would hang) and is
  kicked so the run ends.
- batch: the earlier harness: every free slot added at once, one kick per
  round, one page dirtied per round, a re-kick after 1 ms without progress
  (which the base's one-request-per-kick device needs to make progress).

Host syncs are counted from each device's per-sync trace event.  Beside
them: the host's own fdatasync/fsync rate on a file of the same kind (on
the same disk, written through once, 4 KiB written before each sync) and
the harness ceiling (ours with its backing file on tmpfs, where
fdatasync returns at once: what the harness can drive, with no test knob
in the device).
Upstream and ours alternate, REPS runs each per pattern; each figure is the
median with min-max.  Writes BUILD/bench/virtio-pmem.{md,json}.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from report import write_report  # noqa: E402

LEVELS = [1, 4, 16, 64]
PATTERNS = ["driver", "batch"]
# the trace event each implementation fires once per host sync
SYNC_EVENT = {"ours": "virtio_pmem_sync_done", "upstream": "virtio_pmem_flush_done"}
# the ceiling's backing file: tmpfs, where fdatasync has nothing to write
TMPFS = "/dev/shm"
FIELDS = ["rps", "syncs_per_req", "kicks_per_req", "p50_us", "p99_us", "stalls"]


def run(build, which, pattern, seconds, device_opts="", file_dir=None):
    """file_dir: where the backing file goes (default: beside the trace log,
    on the build's disk, so the syncs are real)."""
    out_dir = os.path.join(build, "bench")
    with tempfile.TemporaryDirectory(dir=out_dir) as d, \
            tempfile.TemporaryDirectory(dir=file_dir or out_dir) as fd_dir:
        log = os.path.join(d, "trace.log")
        env = dict(os.environ,
                   QTEST_QEMU_BINARY=os.path.join(build, which, "qemu", "qemu-system-x86_64"))
        exe = os.path.join(build, "ours", "qemu", "tests", "qtest", "virtio-pmem-test")
        cmd = [exe, "--bench", f"kick={pattern}", "levels=" + ",".join(map(str, LEVELS)),
               f"seconds={seconds}", f"dir={fd_dir}", f"trace-log={log}",
               f"trace-event={SYNC_EVENT[which]}", f"device-opts={device_opts}"]
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60 + 20 * seconds * len(LEVELS))
    results = {}
    for line in p.stdout.splitlines():
        if line.startswith("@@ level "):
            _, _, n, reqs, rps, p50, p99, syncs, kicks, stalls = line.split()
            reqs = max(int(reqs), 1)
            results[int(n)] = {"requests": int(reqs), "rps": float(rps),
                               "p50_us": int(p50), "p99_us": int(p99),
                               "syncs_per_req": int(syncs) / reqs,
                               "kicks_per_req": int(kicks) / reqs, "stalls": int(stalls)}
    if sorted(results) != LEVELS:
        raise RuntimeError(f"{which} {pattern}: harness reported {sorted(results)}: "
                           f"{p.stderr[-2000:]}")
    return results


def summary(runs, n):
    """Per field: the median over the runs, with min and max."""
    out = {}
    for f in FIELDS:
        vals = [r[n][f] for r in runs]
        out[f] = statistics.median(vals)
        out[f + "_min"], out[f + "_max"] = min(vals), max(vals)
    return out


def host_rate(build, call, threads):
    """The host's sync rate on a file like the harness's: written through."""
    exe = os.path.join(build, "bench", "fsync-rate")
    with tempfile.NamedTemporaryFile(dir=os.path.join(build, "bench")) as f:
        zeros = bytes(1 << 20)
        for _ in range(16):
            f.write(zeros)
        f.flush()
        os.fsync(f.fileno())
        out = subprocess.run([exe, f.name, call, str(threads), "1", "write"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    return float(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out_dir = os.path.join(build, "bench")
    os.makedirs(out_dir, exist_ok=True)

    print("bench: host fdatasync/fsync rates on this disk", flush=True)
    host = {(c, t): host_rate(build, c, t) for c in ("fdatasync", "fsync") for t in LEVELS}
    ceiling = {}
    for pattern in PATTERNS:
        print(f"bench: virtio-pmem, harness ceiling ({pattern}; ours, file on tmpfs)",
              flush=True)
        ceiling[pattern] = run(build, "ours", pattern, args.seconds, file_dir=TMPFS)
    # upstream and ours alternate, so drift on the disk hits both alike
    runs = {(w, p): [] for w in ("ours", "upstream") for p in PATTERNS}
    for rep in range(args.reps):
        for pattern in PATTERNS:
            for which in ("upstream", "ours"):
                print(f"bench: virtio-pmem, {pattern}, {which}, run {rep + 1} of {args.reps}",
                      flush=True)
                runs[(which, pattern)].append(run(build, which, pattern, args.seconds))

    data = {"seconds_per_level": args.seconds, "reps": args.reps,
            "host_fdatasync_per_s": host[("fdatasync", 1)],
            "host_fsync_per_s": host[("fsync", 1)],
            "host_rates": {f"{c}_{t}_threads": v for (c, t), v in host.items()},
            "rows": []}
    rates = "; ".join(f"{c} " + "/".join(f"{host[(c, t)]:.0f}" for t in LEVELS)
                      for c in ("fdatasync", "fsync"))
    lines = [
        f"# virtio-pmem flush: requests/s (median, min-max of {args.reps} alternating runs), "
        f"host syncs and kicks per request, latency (us); {args.seconds:g} s per level",
        "",
        f"Host syncs/s on a written-through file of this disk, 4 KiB written before each "
        f"(1/4/16/64 threads): {rates}.",
        "",
        "| kick pattern | concurrency | ours rps | upstream rps | ours/upstream | "
        "ours syncs/req | upstream syncs/req | ours kicks/req | upstream kicks/req | "
        "ours p50/p99 us | upstream p50/p99 us | stalls ours/upstream | ceiling rps | "
        "host fdatasync/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pattern in PATTERNS:
        for n in LEVELS:
            o = summary(runs[("ours", pattern)], n)
            u = summary(runs[("upstream", pattern)], n)
            for which, s in (("ours", o), ("upstream", u)):
                data["rows"].append(dict(kick_pattern=pattern, concurrency=n, device=which,
                                         ceiling_rps=ceiling[pattern][n]["rps"],
                                         host_fdatasync_per_s=host[("fdatasync", n)], **s))
            lines.append(
                f"| {pattern} | {n} | {o['rps']:.0f} ({o['rps_min']:.0f}-{o['rps_max']:.0f}) | "
                f"{u['rps']:.0f} ({u['rps_min']:.0f}-{u['rps_max']:.0f}) | "
                f"{o['rps'] / u['rps']:.2f}x | {o['syncs_per_req']:.3f} | "
                f"{u['syncs_per_req']:.3f} | {o['kicks_per_req']:.3f} | "
                f"{u['kicks_per_req']:.3f} | {o['p50_us']:.0f}/{o['p99_us']:.0f} | "
                f"{u['p50_us']:.0f}/{u['p99_us']:.0f} | {o['stalls']:.0f}/{u['stalls']:.0f} | "
                f"{ceiling[pattern][n]['rps']:.0f} | {host[('fdatasync', n)]:.0f} |")
    lines += ["", "Harness: tests/qtest/virtio-pmem-test.c --bench.  driver: one request "
              "and one virtqueue_kick() per flush with event-index suppression and indirect "
              "descriptors, as Linux's virtio_pmem; batch: all free requests per kick, "
              "re-kicked after 1 ms without progress.  Ceiling: ours with the backing file on tmpfs "
              "(fdatasync returns at once)."]
    write_report(out_dir, "virtio-pmem", lines, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
