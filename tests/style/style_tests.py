"""style layer: QEMU's checkpatch.pl on our C files and patches, the
kernel's checkpatch.pl --strict on the Linux side (docs/testing.md)."""
import os
import subprocess

import guests

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Kernel style, not QEMU's: checked by the kernel's checkpatch below.
KERNEL_STYLE = ("tests/kernel/",)
# Guest payloads and FUSE helpers are not C (or not QEMU's).
NOT_QEMU_C = ("tests/guest/", "tests/guest-s390x/", "tests/fuse/")
# Linux's uAPI headers, as scripts/update-linux-headers makes them from the
# base's copies and our kernel series: Linux's text, not ours to restyle.
IMPORTED = ("linux-headers/",)


def tracked(*patterns):
    out = subprocess.run(["git", "-C", TOP, "ls-files", *patterns],
                         stdout=subprocess.PIPE, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.split()
    # a tree without git metadata (an archive): walk it
    found = []
    for root, _, files in os.walk(TOP):
        rel = os.path.relpath(root, TOP)
        if rel.split(os.sep)[0] in ("build", ".git"):
            continue
        for f in files:
            path = os.path.normpath(os.path.join(rel, f))
            if any(path.endswith(p.lstrip("*")) for p in patterns):
                found.append(path)
    return sorted(found)


def checkpatch(script, args, paths, absolute=False):
    """Paths with anything to say, and what it said (first lines).  QEMU's
    script wants paths relative to the top (its rules for tests/ match
    them); the kernel's misreads some relative ones, so it gets absolute."""
    bad = []
    for path in paths:
        arg = os.path.join(TOP, path) if absolute else path
        p = subprocess.run(["perl", script, "--no-tree", "-q", *args, arg], cwd=TOP,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode or p.stdout.strip():
            lines = [x for x in p.stdout.splitlines() if x.startswith(("ERROR", "WARNING", "#"))]
            bad.append(f"{path}: " + " | ".join(lines[:4]))
    return bad


def qemu_checkpatch(build):
    return os.path.join(build, "base", "scripts", "checkpatch.pl")


def test_c_files(build):
    files = [f for f in tracked("*.c", "*.h", "*.c.inc")
             if not f.startswith(KERNEL_STYLE + NOT_QEMU_C + IMPORTED)]
    bad = checkpatch(qemu_checkpatch(build), ["-f"], files)
    return not bad, "\n".join(bad) or f"{len(files)} files clean"


def test_patches(build):
    files = [f for f in tracked("patches/*.patch")]
    bad = checkpatch(qemu_checkpatch(build), [], files)
    return not bad, "\n".join(bad) or f"{len(files)} patches clean"


def test_kernel_side(build):
    script = os.path.join(build, "kernel", "pristine", "scripts", "checkpatch.pl")
    if not os.path.exists(script):
        return False, f"{script} missing (make kernel)"
    patches = tracked("kernel-patches/*.patch")
    sources = [f for f in tracked("*.c") if f.startswith(KERNEL_STYLE)]
    bad = checkpatch(script, ["--strict"], patches, absolute=True)
    bad += checkpatch(script, ["--strict", "-f"], sources, absolute=True)
    return not bad, "\n".join(bad) or f"{len(patches)} patches, {len(sources)} files clean"


TESTS = [
    ("QEMU checkpatch: our C files, 0 errors 0 warnings", test_c_files),
    ("QEMU checkpatch: patches/, 0 errors 0 warnings", test_patches),
    ("kernel checkpatch --strict: kernel-patches/ and tests/kernel", test_kernel_side),
]


def run(tap, build):
    why = None
    if not os.path.exists(qemu_checkpatch(build)):
        why = f"{qemu_checkpatch(build)} missing (make base)"
    guests.run_tests(tap, "style", TESTS, build, fail=why)
