#!/usr/bin/env python3
"""virtio-pmem flushes from a real Linux guest: ours vs upstream, one run.

Our Linux test guest (Debian's 6.1 kernel under TCG, scripts/guest-linux)
runs pmem-writers (tests/guest-linux/pmem-writers.c, in its initramfs): N
threads for a fixed time, each pwrite(4 KiB) + fdatasync() on

- raw:  its own 64 KiB-aligned offset of /dev/pmem0 (past the file system);
- file: its own file on an ext4 mounted with -o dax from /dev/pmem0;

for N = 1, 4, 16, 64, on two backends for the device's file:

- disk:     a file on this machine's disk under BUILD/bench;
- slow-2ms: a file on syncfs (tests/fuse/syncfs.c), mounted under BUILD,
            whose every fsync/fdatasync sleeps 2 ms and then syncs the real
            file: a host sync that is slow beside the guest (network
            storage, an SSD without power-loss protection);
- slow-20ms: the same with 20 ms (only with --backends ...,slow-20ms):
            far slower than the guest needs to issue a flush, so that any
            overlap of its flushes would show.

Each guest boots once per (implementation, backend, repetition) and runs
every mode and N in that boot; ours and upstream (BUILD/upstream, the base)
alternate.  Per phase: the guest's ops/s and latency percentiles; our
requests, syncs and largest batch from QMP x-query-virtio-pmem; host syncs
counted from outside too: each device's per-sync trace event, and on the
slow backend syncfs's own log.  For reference the host's fdatasync rate on
the same file (bench/fsync-rate.c, 4 KiB written before each sync).
Figures are the median with min-max over the repetitions.  Writes
BUILD/bench/virtio-pmem-guest.{md,json}.
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

LEVELS = [1, 4, 16, 64]
MODES = ["raw", "file"]
# syncfs delay_us (0: a plain file, no syncfs)
BACKENDS = {"disk": 0, "slow-2ms": 2000, "slow-20ms": 20000}
IMPLS = ["upstream", "ours"]
PMEM_SIZE = 256 << 20
FS_SIZE = 128 << 20                 # the ext4 of file mode: the first 128 MiB
RAW_BASE_MIB = 160                  # raw mode writes past it
# the trace event each implementation fires once per host sync
SYNC_EVENT = {"ours": "virtio_pmem_sync_done", "upstream": "virtio_pmem_flush_done"}

GUEST_SCRIPT = "#!/bin/sh\n" + guests.LOAD_PMEM + """modprobe ext4
mount -t ext4 -o dax /dev/pmem0 /mnt || echo "@@ error mount"
grep -q 'pmem0 /mnt ext4 .*dax' /proc/mounts || echo "@@ error no-dax"
echo "@@ cpus $(grep -c ^processor /proc/cpuinfo)"
phase() {
    echo "@@ start $1 $3"
    sleep 0.5
    s0=$(head -n 1 /proc/stat)
    pmem-writers "$@" || echo "@@ error writers $1 $3"
    echo "@@ cpu $1 $3 $s0 / $(head -n 1 /proc/stat)"
    sleep 0.2
}
for n in LEVELS; do phase file /mnt $n SECONDS; done
umount /mnt
for n in LEVELS; do phase raw /dev/pmem0 $n SECONDS RAW_BASE; done
echo "@@ end"
"""


class LineCounter:
    """Counts, incrementally, the lines of a growing file that match."""

    def __init__(self, path, match):
        self.path, self.match, self.pos, self.count = path, match, 0, 0

    def read(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return self.count
        end = data.rfind("\n") + 1          # whole lines only
        self.pos += len(data[:end].encode())
        self.count += sum(1 for line in data[:end].splitlines() if self.match(line))
        return self.count


def allocated_file(path, size):
    with open(path, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)


def make_image(path):
    """A fully allocated file with an ext4 (DAX: 4 KiB blocks) in its first
    FS_SIZE bytes; the rest is for raw mode."""
    allocated_file(path, PMEM_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", path, f"{FS_SIZE >> 10}k"],
                   check=True)


def console_lines(proc, timeout):
    """Yield the guest console's lines until it ends or `timeout` s pass."""
    buf = ""
    for chunk in guests.console_chunks(proc, time.monotonic() + timeout):
        buf += chunk
        *lines, buf = buf.split("\n")
        for line in lines:
            yield line.strip()
    if buf:
        yield buf.strip()


def boot(build, which, backend, seconds, smp, fs):
    """One guest boot: every mode and N.  Returns {(mode, n): figures}."""
    work = os.path.join(build, "bench")
    with tempfile.TemporaryDirectory(dir=work) as d:
        if fs:
            image = os.path.join(fs.mnt, "pmem.img")
            make_image(os.path.join(fs.real, "pmem.img"))
            outside = LineCounter(fs.log, lambda line: line.startswith("E ")
                                  and line.split()[2] in ("fsync", "fdatasync")
                                  and line.endswith("/pmem.img"))
            outside.read()
        else:
            image = os.path.join(d, "pmem.img")
            make_image(image)
            outside = None
        trace = os.path.join(d, "trace.log")
        traced = LineCounter(trace, lambda line: SYNC_EVENT[which] in line)
        qmp_path = os.path.join(d, "qmp.sock")
        script = (GUEST_SCRIPT.replace("LEVELS", " ".join(map(str, LEVELS)))
                  .replace("SECONDS", str(seconds)).replace("RAW_BASE", str(RAW_BASE_MIB)))
        args = ["-object", f"memory-backend-file,id=mem1,share=on,mem-path={image},"
                f"size={PMEM_SIZE}",
                "-device", "virtio-pmem-pci,memdev=mem1,id=nv1",
                "-smp", str(smp), "-no-shutdown",
                "-trace", f"enable={SYNC_EVENT[which]},file={trace}"]
        p, initrd = guests.linux_guest_start(build, script, args, which=which, qmp=qmp_path)
        qmp = None
        results, console, errors = {}, [], []
        try:
            qmp = guests.QMP(qmp_path)

            def sample():
                s = {"traced": traced.read(), "outside": outside.read() if outside else None}
                if which == "ours":
                    s.update(qmp.cmd("x-query-virtio-pmem")[0]["stats"])
                return s

            before = None
            for line in console_lines(p, 120 + 16 * len(LEVELS) * (seconds + 3)):
                console.append(line)
                if not line.startswith("@@ "):
                    continue
                f = line.split()
                if f[1] == "start":
                    before = sample()
                elif f[1] == "writers":
                    after = sample()
                    mode, n = f[2], int(f[3])
                    r = {"ops": int(f[4]), "seconds": float(f[5]), "ops_per_s": float(f[6]),
                         "p50_us": int(f[7]), "p90_us": int(f[8]), "p99_us": int(f[9]),
                         "max_us": int(f[10]),
                         "traced_syncs": after["traced"] - before["traced"]}
                    if outside:
                        r["outside_syncs"] = after["outside"] - before["outside"]
                    if which == "ours":
                        reqs = after["requests"] - before["requests"]
                        lat_ns = (after["latency-avg-ns"] * after["requests"]
                                  - before["latency-avg-ns"] * before["requests"])
                        r.update(requests=reqs, syncs=after["syncs"] - before["syncs"],
                                 batch_max=after["batch-max"],
                                 # Little's law: requests in the device on average
                                 in_flight=lat_ns / (r["seconds"] * 1e9))
                        r["syncs_per_req"] = r["syncs"] / max(reqs, 1)
                    results[(mode, n)] = r
                elif f[1] == "cpu":
                    # /proc/stat's cpu line before and after: user nice system
                    # idle iowait irq softirq steal, in USER_HZ (100) ticks
                    a, b = line.split("/")
                    t0 = [int(x) for x in a.split()[5:13]]
                    t1 = [int(x) for x in b.split()[1:9]]
                    d = [y - x for x, y in zip(t0, t1)]
                    busy = sum(d) - d[3] - d[4]
                    r = results[(f[2], int(f[3]))]
                    r["guest_busy"] = busy / max(sum(d), 1)
                    r["guest_cpu_ms_per_op"] = busy * 10 / max(r["ops"], 1)
                elif f[1] == "error":
                    errors.append(line)
                elif f[1] == "end":
                    break
        finally:
            if qmp:
                guests.stop_qemu(p, qmp)
            if p.poll() is None:
                p.kill()
                p.wait()
            os.unlink(initrd)
    want = {(m, n) for m in MODES for n in LEVELS}
    if errors or set(results) != want:
        raise RuntimeError(f"{which} {backend}: guest reported {sorted(results)}, "
                           f"errors {errors}:\n" + "\n".join(console[-60:]))
    return results


def host_rates(build, path, seconds):
    """The host's fdatasync/s on PATH, 4 KiB written before each sync."""
    exe = os.path.join(build, "bench", "fsync-rate")
    out = {}
    for n in LEVELS:
        p = subprocess.run([exe, path, "fdatasync", str(n), str(seconds), "write"],
                           stdout=subprocess.PIPE, text=True, check=True)
        out[n] = float(p.stdout)
    return out


def med(vals):
    return statistics.median(vals), min(vals), max(vals)


def fmt(vals, spec=".0f"):
    if not vals:
        return "-"
    m, lo, hi = med(vals)
    return f"{m:{spec}} ({lo:{spec}}-{hi:{spec}})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--seconds", type=int, default=3, help="per mode and N")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--smp", default="1",
                    help="guest vCPU counts; counts past 1 run on the slow backend only")
    # slow-20ms too with --backends disk,slow-2ms,slow-20ms (6 more boots)
    ap.add_argument("--backends", default="disk,slow-2ms")
    ap.add_argument("--out", default="virtio-pmem-guest",
                    help="BUILD/bench/OUT.{md,json}")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    out_dir = os.path.join(build, "bench")
    os.makedirs(out_dir, exist_ok=True)
    smps = [int(s) for s in args.smp.split(",")]
    backends = args.backends.split(",")
    t_start = time.monotonic()
    load = [os.getloadavg()[0]]

    mounts = {}
    host = {}
    runs = {}       # (which, backend, smp) -> [results of each boot]
    try:
        for b in backends:
            if BACKENDS[b]:
                # one mount per backend: each has its own control file
                fs = guests.Syncfs(build, f"pmem-bench-{b}")
                if not fs.mounted:
                    raise RuntimeError("syncfs could not be mounted (make fuse-tools)")
                with open(os.path.join(fs.dir, "control"), "w") as f:
                    f.write(f"delay_us={BACKENDS[b]}\n")
                mounts[b] = fs
                path = os.path.join(fs.mnt, "rate.img")
                allocated_file(os.path.join(fs.real, "rate.img"), 16 << 20)
            else:
                path = os.path.join(out_dir, "rate.img")
                allocated_file(path, 16 << 20)
            print(f"bench: host fdatasync rate, {b}", flush=True)
            host[b] = host_rates(build, path, 2)
            os.unlink(path if not BACKENDS[b] else os.path.join(mounts[b].real, "rate.img"))
        for rep in range(args.reps):
            order = IMPLS if rep % 2 == 0 else IMPLS[::-1]
            for smp in smps:
                for b in backends:
                    if smp > 1 and not BACKENDS[b]:
                        continue
                    for which in order:
                        print(f"bench: virtio-pmem guest, {which}, {b}, smp {smp}, "
                              f"run {rep + 1} of {args.reps} "
                              f"(load {os.getloadavg()[0]:.2f})", flush=True)
                        load.append(os.getloadavg()[0])
                        runs.setdefault((which, b, smp), []).append(
                            boot(build, which, b, args.seconds, smp, mounts.get(b)))
    finally:
        for fs in mounts.values():
            fs.close()
    load.append(os.getloadavg()[0])
    elapsed = time.monotonic() - t_start

    rows = []
    lines = [
        f"# virtio-pmem from a Linux guest (TCG): pwrite 4 KiB + fdatasync per op, ops/s "
        f"(median, min-max of {args.reps} boots each, ours and upstream alternating); "
        f"{args.seconds} s per mode and N",
        "",
        "Host: " + "; ".join(f"{b} fdatasync/s (1/4/16/64 threads) "
                             + "/".join(f"{host[b][n]:.0f}" for n in LEVELS)
                             for b in backends) + ".",
        f"Load average (1 min) during the run: {min(load):.2f}-{max(load):.2f} on "
        f"{os.cpu_count()} CPUs; the run took {elapsed / 60:.1f} min.",
        "",
        "| backend | vCPUs | mode | N | ours ops/s | upstream ops/s | ours/upstream | "
        "ours syncs/req | ours mean batch | ours batch max | ours mean in flight | "
        "upstream syncs/req | "
        "ours p50/p99 us | upstream p50/p99 us | guest CPU busy ours/upstream | "
        "guest CPU ms/op ours/upstream | host fdatasync/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for smp in smps:
        for b in backends:
            if (("ours", b, smp)) not in runs:
                continue
            for mode in MODES:
                for n in LEVELS:
                    o = [r[(mode, n)] for r in runs[("ours", b, smp)]]
                    u = [r[(mode, n)] for r in runs[("upstream", b, smp)]]
                    src = "outside_syncs" if BACKENDS[b] else "traced_syncs"
                    row = {"backend": b, "smp": smp, "mode": mode, "n": n,
                           "host_fdatasync_per_s": host[b][n]}
                    for key, vals in (
                            ("ours_ops_per_s", [r["ops_per_s"] for r in o]),
                            ("upstream_ops_per_s", [r["ops_per_s"] for r in u]),
                            ("ours_syncs_per_req", [r["syncs_per_req"] for r in o]),
                            ("ours_mean_batch", [r["requests"] / max(r["syncs"], 1) for r in o]),
                            ("ours_batch_max", [r["batch_max"] for r in o]),
                            # syncs seen from outside per guest op: syncfs's log on
                            # the slow backend, the device's trace event on disk
                            ("ours_outside_syncs_per_op", [r[src] / max(r["ops"], 1) for r in o]),
                            ("upstream_outside_syncs_per_op",
                             [r[src] / max(r["ops"], 1) for r in u]),
                            ("ours_traced_syncs_per_req",
                             [r["traced_syncs"] / max(r["requests"], 1) for r in o]),
                            ("ours_requests_per_op", [r["requests"] / max(r["ops"], 1) for r in o]),
                            ("ours_in_flight", [r["in_flight"] for r in o]),
                            ("ours_p50_us", [r["p50_us"] for r in o]),
                            ("ours_p99_us", [r["p99_us"] for r in o]),
                            ("upstream_p50_us", [r["p50_us"] for r in u]),
                            ("upstream_p99_us", [r["p99_us"] for r in u]),
                            ("ours_guest_busy", [r["guest_busy"] for r in o]),
                            ("upstream_guest_busy", [r["guest_busy"] for r in u]),
                            ("ours_guest_cpu_ms_per_op", [r["guest_cpu_ms_per_op"] for r in o]),
                            ("upstream_guest_cpu_ms_per_op",
                             [r["guest_cpu_ms_per_op"] for r in u])):
                        row[key], row[key + "_min"], row[key + "_max"] = med(vals)
                        row[key + "_all"] = vals
                    row["ours_over_upstream"] = row["ours_ops_per_s"] / row["upstream_ops_per_s"]
                    rows.append(row)
                    lines.append(
                        f"| {b} | {smp} | {mode} | {n} | "
                        f"{fmt(row['ours_ops_per_s_all'])} | {fmt(row['upstream_ops_per_s_all'])} | "
                        f"{row['ours_over_upstream']:.2f}x | "
                        f"{fmt(row['ours_syncs_per_req_all'], '.3f')} | "
                        f"{row['ours_mean_batch']:.2f} | {row['ours_batch_max']:.0f} | "
                        f"{row['ours_in_flight']:.2f} | "
                        f"{row['upstream_outside_syncs_per_op']:.3f} | "
                        f"{row['ours_p50_us']:.0f}/{row['ours_p99_us']:.0f} | "
                        f"{row['upstream_p50_us']:.0f}/{row['upstream_p99_us']:.0f} | "
                        f"{row['ours_guest_busy'] * 100:.0f}%/"
                        f"{row['upstream_guest_busy'] * 100:.0f}% | "
                        f"{row['ours_guest_cpu_ms_per_op']:.2f}/"
                        f"{row['upstream_guest_cpu_ms_per_op']:.2f} | "
                        f"{host[b][n]:.0f} |")
    lines += ["", "ours syncs/req and batches: QMP x-query-virtio-pmem deltas over each phase "
              "(batch max: the largest so far in the boot; N runs in rising order; mean in "
              "flight: the requests' summed arrival-to-answer time over the phase's length).  "
              "upstream syncs/req: host syncs per guest op counted from outside (syncfs's log on the "
              "slow backends, upstream's virtio_pmem_flush_done trace event on disk).  "
              "Guest: Debian 6.1 under TCG (accel tcg), q35, 512 MiB; virtio-pmem 256 MiB."]
    lines += ["", "Goals (issue 17; a benchmark, not a test):", ""]
    byk = {(r["backend"], r["smp"], r["mode"], r["n"]): r for r in rows}

    def goal(text, key, test):
        r = byk.get(key)
        if r is None:
            return
        ok = test(r)
        lines.append(f"- {text}: {'met' if ok else 'NOT met'} "
                     f"(ours/upstream {r['ours_over_upstream']:.2f}x, ours syncs/req "
                     f"{r['ours_syncs_per_req']:.3f}, batch max {r['ours_batch_max']:.0f}, "
                     f"mean in flight {r['ours_in_flight']:.2f})")
    goal("slow-2ms raw N=16: ours/upstream >= 2, syncs/req <= 0.25", ("slow-2ms", 1, "raw", 16),
         lambda r: r["ours_over_upstream"] >= 2 and r["ours_syncs_per_req"] <= 0.25)
    goal("slow-2ms raw N=64: ours/upstream >= 2, syncs/req <= 0.1", ("slow-2ms", 1, "raw", 64),
         lambda r: r["ours_over_upstream"] >= 2 and r["ours_syncs_per_req"] <= 0.1)
    for b in ("disk", "slow-2ms"):
        for mode in MODES:
            goal(f"{b} {mode} N=1: ours/upstream >= 0.95", (b, 1, mode, 1),
                 lambda r: r["ours_over_upstream"] >= 0.95)
    data = {"accel": "tcg", "seconds_per_phase": args.seconds, "reps": args.reps,
            "load_avg_min": min(load), "load_avg_max": max(load), "cpus": os.cpu_count(),
            "elapsed_s": elapsed, "host_fdatasync_per_s": host, "rows": rows}
    write_report(out_dir, args.out, lines, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
