#!/usr/bin/env python3
"""Mutation check (make check-mutations): break the code on purpose, one
way at a time, and show that the tests notice.

For each mutation: copy the committed tree to BUILD/mutant/tree,
change exactly one snippet in it, build that copy into BUILD/mutant (its
own ours/ build, with ccache; the base, guests, upstream, lab and kernel
caches are the main build's), run the layer that should catch it, and
record which tests failed.  A mutation that no test catches is a hole in
the suite and makes this script exit non-zero.  Writes
BUILD/mutations.{md,json}.

Usage: tests/mutations.py [--build DIR] [NAME...]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, what it breaks, file, snippet, replacement, runner layers
MUTATIONS = [
    ("sync-skipped", "virtio-pmem answers flushes without syncing the backing file",
     "hw/virtio/virtio-pmem.c",
     "return qemu_fdatasync(job->fd) < 0 ? -errno : 0;", "return 0;", ["qtest"]),
    ("response-not-written", "virtio-pmem pushes the request without writing its response",
     "hw/virtio/virtio-pmem.c",
     "    iov_from_buf(req->elem.in_sg, req->elem.in_num, 0, &resp, sizeof(resp));\n",
     "", ["qtest"]),
    ("first-waiter-only", "virtio-pmem answers only the first request a sync covered",
     "hw/virtio/virtio-pmem.c",
     "while ((req = QSIMPLEQ_FIRST(&job->reqs))) {",
     "if ((req = QSIMPLEQ_FIRST(&job->reqs))) {", ["qtest"]),
    ("latch-replay-dropped", "a queued 0x70 write is discarded instead of collapsed",
     "accel/kvm/kvm-coalesced-io.c",
     "            if (!z->pending) {\n                z->pending = true;",
     "            if (false) {\n                z->pending = true;", ["lab:kvm"]),
    ("no-drain-at-stop", "the coalesced ring is not drained when the VM stops",
     "accel/kvm/kvm-coalesced-io.c",
     "        cio.stop_drains++;\n        drain();", "        cio.stop_drains++;",
     ["lab:kvm"]),
    ("clear-wrong-page", "KVM_CLEAR_DIRTY_LOG is sent for the wrong first page",
     "accel/kvm/kvm-dirty-log.c",
     "            .first_page = w.first_page,\n",
     "            .first_page = w.first_page + 64,\n", ["lab:kvm-migration,lab-kvm"]),
    ("diag318-kept-on-reset", "the DIAG 318 code survives a machine reset",
     "patches/0012-target-s390x-move-the-DIAG-318-handling-into-diag318.c.patch",
     "+    s390_diag318_set_all(0);\n", "+    /* mutant: code kept */\n", ["s390x"]),
    ("base-machine-not-strict-free", "pc-*-10.0 keep this tree's x-hv-strict=on",
     "hw/i386/pc-dm-compat.c",
     '{ TYPE_X86_CPU, "x-hv-strict", "off" },', '{ TYPE_X86_CPU, "x-hv-strict", "on" },',
     ["compat"]),
    ("base-machine-pmem-stream", "pc-*-10.0 write our virtio-pmem section and RAM block",
     "hw/i386/pc-dm-compat.c",
     '    { TYPE_VIRTIO_PMEM, "x-dm-migration", "off" },\n', "", ["compat"]),
    ("s390-10.0-gets-diag318", "s390-ccw-virtio-10.0's qemu CPU model gains DIAG 318",
     "patches/0014-target-s390x-offer-DIAG-318-in-the-TCG-CPU-models.patch",
     "+    s390_set_qemu_cpu_model(0x8561, 15, 1, qemu_cpu_feat);\n",
     "+    /* mutant: the base's model not restored */\n", ["compat"]),
    # mbochs keeps its own count (the mdev core's counter is only used by
    # mdpy and mtty, which do not aggregate): charge one instance's memory
    ("aggregate-charges-one", "an aggregate=N mdev charges 1 instance instead of N",
     "kernel-patches/6.12/0004-samples-vfio-mdev-mbochs-Support-aggregated-devices.patch",
     "+\t\t\t\t     avail_mbytes - mbytes));",
     "+\t\t\t\t     avail_mbytes - type->mbytes));", ["kernel"]),
]


def sh(cmd, log, **kw):
    with open(log, "a") as f:
        f.write(f"$ {cmd}\n")
        f.flush()
        return subprocess.run(cmd, shell=True, stdout=f, stderr=subprocess.STDOUT, **kw)


def copy_tree(dest):
    """The committed tree (HEAD), so work in progress does not leak in."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    subprocess.run(f"git -C {TOP} archive HEAD | tar -x -C {dest}", shell=True, check=True)


def mutate(tree, path, old, new):
    full = os.path.join(tree, path)
    if not os.path.exists(full):
        # a kernel patch's name may change: match its number
        d, base = os.path.split(full)
        hits = [f for f in os.listdir(d) if f.startswith(base[:5])]
        if len(hits) != 1:
            raise RuntimeError(f"{path}: not found")
        full = os.path.join(d, hits[0])
    with open(full) as f:
        text = f.read()
    if text.count(old) != 1:
        raise RuntimeError(f"{path}: the snippet occurs {text.count(old)} times, not once")
    with open(full, "w") as f:
        f.write(text.replace(old, new))


def link_caches(build, mbuild):
    """The mutant build dir: its own ours/ and kernel/, the rest shared."""
    os.makedirs(mbuild, exist_ok=True)
    for name in ("base", "base-info", "tools", "guest", "upstream", "lab", "apt", "fuse"):
        src, dst = os.path.join(build, name), os.path.join(mbuild, name)
        if os.path.lexists(src) and not os.path.lexists(dst):
            os.symlink(src, dst)


FAILED = re.compile(r"^not ok \d+ - (.*)$")


def run_layers(tree, mbuild, layers, log):
    """Run each layer (lab:INNER runs only those inner layers in the lab);
    returns (names of failed tests, summary lines)."""
    failed, summaries = [], []
    for layer in layers:
        env = dict(os.environ)
        if layer.startswith("lab:"):
            env["DM_LAB_LAYERS"] = layer[4:]
            layer = "lab"
        p = subprocess.run([sys.executable, os.path.join(tree, "tests/runner.py"),
                            "--build", mbuild, layer], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        with open(log, "a") as f:
            f.write(p.stdout)
        failed += [m.group(1) for m in map(FAILED.match, p.stdout.splitlines()) if m]
        summaries += [line for line in p.stdout.splitlines() if " passed, " in line][-1:]
    return failed, summaries


def build_mutant(tree, build, mbuild, name, log):
    opts = open(os.path.join(build, "ours", "qemu", ".configure-opts")).read()
    targets = re.search(r"--target-list=(\S+)", opts).group(1)
    # the same make invocation as the tree's, pointed at the mutant dirs
    # one build at a time on this machine: wait for any other (flock)
    r = sh(f"flock /tmp/build.lock make -C {tree} B={mbuild} "
           f"TARGETS={targets.replace('-softmmu', '')} build", log)
    if r.returncode:
        return False
    if name == "aggregate-charges-one":
        kdir = os.path.join(mbuild, "kernel")
        if not os.path.exists(kdir):
            sh(f"cp -a {build}/kernel {kdir}", log, check=True)
        return sh(f"{tree}/tests/kernel/build {kdir}", log).returncode == 0
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    mbuild = os.path.join(build, "mutant")
    tree = os.path.join(mbuild, "tree")
    log = os.path.join(build, "mutations.log")
    open(log, "w").close()
    link_caches(build, mbuild)
    results = []
    for name, what, path, old, new, layers in MUTATIONS:
        if args.names and name not in args.names:
            continue
        t0 = time.monotonic()
        print(f"mutation {name}: {what}", flush=True)
        copy_tree(tree)
        mutate(tree, path, old, new)
        if not build_mutant(tree, build, mbuild, name, log):
            res = {"name": name, "what": what, "caught": False, "failed": [],
                   "note": "the mutant did not build (see mutations.log)"}
        else:
            failed, summaries = run_layers(tree, mbuild, layers, log)
            res = {"name": name, "what": what, "layers": layers, "caught": bool(failed),
                   "failed": failed, "summary": summaries}
        res["seconds"] = round(time.monotonic() - t0)
        results.append(res)
        print(f"  {'caught' if res['caught'] else 'NOT CAUGHT'} ({res['seconds']}s): "
              + "; ".join(res["failed"][:6]), flush=True)
    # a run of some mutations updates their rows and keeps the others'
    path = os.path.join(build, "mutations.json")
    if args.names and os.path.exists(path):
        with open(path) as f:
            old = {r["name"]: r for r in json.load(f)}
        old.update({r["name"]: r for r in results})
        order = [m[0] for m in MUTATIONS]
        results = sorted(old.values(), key=lambda r: order.index(r["name"])
                         if r["name"] in order else len(order))
    lines = ["| mutation | what it breaks | layers | caught by |", "|---|---|---|---|"]
    for r in results:
        caught = "; ".join(r["failed"]) if r["caught"] else "**not caught** " + r.get("note", "")
        lines.append(f"| {r['name']} | {r['what']} | {', '.join(r.get('layers', []))} "
                     f"| {caught} |")
    with open(os.path.join(build, "mutations.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print("\n".join(lines))
    missed = [r["name"] for r in results if not r["caught"]]
    print(f"{len(results) - len(missed)} of {len(results)} mutations caught"
          + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
