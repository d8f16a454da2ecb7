"""kernel layer: Linux 6.12 with kernel-patches/6.12 booted under our QEMU.

tests/kernel/build (make kernel) leaves BUILD/kernel/bzImage and
initramfs.cpio.gz; the guest runs tests/kernel/test.sh, which prints one
TAP line per check.  Each is relayed as a result here; a check that the
guest did not report is a failure, and so is a guest that does not finish.
"""
import os
import re
import time

import guests

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 300

# What test.sh reports, in order: the start of each line's name (some end
# with a value the guest measured, in parentheses).
CHECKS = [
    "mbochs-small shows aggregation",
    "mtty types do not show aggregation",
    "mbochs-small <uuid>,aggregate=4: aggregated_instances is 4",
    "aggregate=4: device memory is 4x the type's",
    "aggregate=4: VFIO region 0 size read through VFIO is 4x the type's",
    "aggregate=4: available_instances of every mbochs type dropped by 4 small instances' memory",
    "remove of the aggregated device restores all counts",
    "plain <uuid> creates an unaggregated device",
    "mtty-2 plain create and remove still work",
    "mdpy (core counter):",
    "rejected with EINVAL, nothing leaked: aggregate=0",
    "rejected with EINVAL, nothing leaked: N above aggregation",
    "rejected with EINVAL, nothing leaked: N not allowed by the driver",
    "rejected with EINVAL, nothing leaked: aggregate= empty",
    "rejected with EINVAL, nothing leaked: aggregate=4x and other junk",
    "rejected with EINVAL, nothing leaked: a huge number",
    "rejected with EINVAL, nothing leaked: an unknown key",
    "rejected with EINVAL, nothing leaked: a second comma",
    "rejected with EINVAL, nothing leaked: aggregation on a type without support",
    "a duplicate UUID still fails with EEXIST",
    "remove of the plain device restores all counts",
    "create/remove",
    # Debian's mdevctl 1.2.0 in the guest (it cannot ask for aggregate=N)
    "mdevctl runs in the guest",
    "mdevctl start -u U -p",
    "mdevctl list shows a device created with <uuid>,aggregate=4 through sysfs",
    "mdevctl define -u of the running aggregated device saves only its type",
    "mdevctl stop removes the aggregated device and restores all counts",
    "mdevctl start cannot aggregate",
]

TAP = re.compile(r"^(ok|not ok) (\d+) - (.*)$")


def parse(console):
    """[(ok, name, diag lines)] for the guest's TAP lines, in order."""
    results = []
    for line in console.splitlines():
        line = line.rstrip("\r")
        m = TAP.match(line)
        if m:
            results.append((m.group(1) == "ok", m.group(3), []))
        elif line.startswith("# ") and results:
            results[-1][2].append(line[2:])
    return results


def run(tap, build):
    kdir = os.path.join(build, "kernel")
    kernel = os.path.join(kdir, "bzImage")
    initrd = os.path.join(kdir, "initramfs.cpio.gz")
    for path in (kernel, initrd, guests.qemu_binary(build)):
        if not os.path.exists(path):
            tap.result(False, f"kernel: {path} missing (make kernel; make build)")
            return
    with open(os.path.join(HERE, "test.sh")) as f:
        script = f.read()
    t0 = time.monotonic()
    rc, out = guests.linux_guest(build, script, timeout=TIMEOUT, memory="512M",
                                 kernel=kernel, initrd=initrd,
                                 append="console=ttyS0 panic=-1 quiet")
    took = time.monotonic() - t0
    print(f"# kernel: guest ran {took:.1f}s, QEMU exit status {rc}", flush=True)
    tail = "\n".join(out.splitlines()[-40:])

    results = parse(out)
    for want in CHECKS:
        got = [r for r in results if r[1].startswith(want)]
        if not got:
            tap.result(False, f"kernel: {want} (no result from the guest)", diag=tail)
            continue
        ok, name, diag = got[0]
        tap.result(ok, f"kernel: {name}", diag="\n".join(diag))
    extra = [r for r in results if not any(r[1].startswith(w) for w in CHECKS)]
    for ok, name, diag in extra:
        tap.result(False, f"kernel: unexpected guest result: {name}", diag="\n".join(diag))

    finished = "guest: test.sh exit" in out and "guest: done" in out
    tap.result(finished, f"kernel: guest boots the patched kernel and runs test.sh to its end "
               f"within {TIMEOUT}s", diag=tail)
