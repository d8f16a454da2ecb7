"""Where the KVM benchmarks run: on the host's /dev/kvm when it can be
opened, and always in the KVM lab (nested KVM in a TCG L1 guest,
tests/lab/lab.py).  A benchmark script runs itself inside the lab with
`--where here --accel lab --out DIR` and its JSON comes back through the
lab's results directory."""
import argparse
import json
import os
import shlex
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
sys.path.insert(0, os.path.join(TOP, "tests", "lab"))
import guests  # noqa: E402
import lab  # noqa: E402

ACCEL_NAMES = {"host": "host KVM", "lab": "nested KVM (lab)"}


def parser(reps=7):
    """The options every KVM benchmark takes: --build, --reps, --where, --out."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--where", choices=("auto", "here", "lab"), default="auto",
                    help="auto: the host's KVM when usable, and the lab; here: this "
                    "machine; lab: the lab only")
    ap.add_argument("--out", help="directory for the report (default BUILD/bench)")
    return ap


def out_dir(args):
    out = args.out or os.path.join(os.path.abspath(args.build), "bench")
    os.makedirs(out, exist_ok=True)
    return out


def places(where):
    """[(accel, None)] to run here, or with the lab: ("lab", reason or None)."""
    if where == "here":
        return ["lab" if os.environ.get("DM_LAB") else "host"]
    if where == "lab":
        return ["lab"]
    out = []
    why = guests.kvm_unavailable()
    if why is None:
        out.append("host")
    else:
        print(f"bench: no usable /dev/kvm on the host ({why}): lab only", flush=True)
    out.append("lab")
    return out


def run_in_lab(build, script, name, args=()):
    """Run bench/SCRIPT inside the lab; returns the JSON it wrote as NAME."""
    why = lab.unavailable(build)
    if why:
        raise RuntimeError(f"the lab cannot run: {why}")
    res = lab.results_dir(build)
    cmd = (f"/usr/bin/python3 bench/{script} --build {shlex.quote(build)} --where here "
           f"--out {shlex.quote(res)} " + " ".join(shlex.quote(a) for a in args))
    status, console = lab.run_in_lab(build, cmd, on_line=lambda line: print(f"  lab| {line}",
                                                                             flush=True))
    if status != 0:
        raise RuntimeError(f"{script} in the lab exited {status}:\n{console[-3000:]}")
    with open(os.path.join(res, f"{name}.json")) as f:
        return json.load(f)
