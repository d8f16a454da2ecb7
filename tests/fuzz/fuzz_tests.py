"""fuzz layer: our libFuzzer targets (qemu-fuzz-x86_64 of the sanitizer
build, ASan + UBSan) run for a bounded time each from their corpus, and
every kept crash input replayed (docs/testing.md, "Fuzzing").

Each target has a directory here, tests/fuzz/TARGET/: seed inputs, and
regress-* inputs that once crashed it (kept with their fix).  A run fails
on any crash, timeout, leak or sanitizer report.  Inputs that crash the
base's code, not ours, are listed in known-base-bugs.txt: they are
replayed and reported, and do not fail the layer.

DM_FUZZ_SECONDS=N overrides each target's time (a longer run by hand);
DM_FUZZ_KEEP=DIR keeps the grown corpora and the libFuzzer logs there.
"""
import os
import re
import shutil
import subprocess
import tempfile

import guests

HERE = os.path.dirname(os.path.abspath(__file__))
# target, seconds in make check
TARGETS = [
    ("virtio-pmem-fuzz", 60),
    ("generic-fuzz-virtio-pmem-pci", 60),
    ("generic-fuzz-coalesced-ports-pc", 30),
    ("generic-fuzz-coalesced-ports-q35", 30),
]
# One input's limit (libFuzzer -timeout): an input that runs longer hangs.
INPUT_TIMEOUT = 30
REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                    r"libFuzzer)|runtime error:|SUMMARY: |==\d+==ERROR|"
                    r"virtio-pmem-fuzz: check failed|Bail out!|assertion failed")
STATS = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+).*?exec/s: (\d+)",
                   re.M)


def fuzz_binary(build):
    return os.path.join(build, "sanitized", "qemu", "qemu-fuzz-x86_64")


def sanitizer_env():
    """halt_on_error everywhere; leaks are reported at each input's end
    and at exit, less the base's own (lsan.supp says which and why)."""
    env = guests_env()
    env["ASAN_OPTIONS"] = ":".join([
        "halt_on_error=1", "abort_on_error=1", "detect_leaks=1",
        "detect_stack_use_after_return=0", "handle_abort=1", "symbolize=1",
        "allocator_may_return_null=1"])
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1:symbolize=1"
    env["LSAN_OPTIONS"] = f"suppressions={os.path.join(HERE, 'lsan.supp')}:print_suppressions=0"
    sym = shutil.which("llvm-symbolizer") or shutil.which(
        "llvm-symbolizer", path="/usr/lib/llvm-14/bin")
    if sym:
        env["ASAN_SYMBOLIZER_PATH"] = sym
    return env


def guests_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("PMEM_BENCH", "QEMU_FUZZ_", "QTEST_LOG", "FUZZ_SERIALIZE")):
            del env[k]
    return env


def known_base_bugs():
    """{(target, file): why} from known-base-bugs.txt."""
    bugs = {}
    path = os.path.join(HERE, "known-base-bugs.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    where, why = (line.split(None, 1) + [""])[:2]
                    target, name = where.split("/", 1)
                    bugs[(target, name)] = why.strip() or "base bug"
    return bugs


def inputs(target):
    d = os.path.join(HERE, target)
    if not os.path.isdir(d):
        return [], []
    names = sorted(os.listdir(d))
    seeds = [os.path.join(d, n) for n in names if not n.startswith("regress-")]
    regress = [os.path.join(d, n) for n in names if n.startswith("regress-")]
    return seeds, regress


def run_fuzzer(build, target, args, timeout, cwd):
    cmd = [fuzz_binary(build), f"--fuzz-target={target}", f"-timeout={INPUT_TIMEOUT}",
           "-rss_limit_mb=4096", f"-artifact_prefix={cwd}/"] + args
    try:
        p = subprocess.run(cmd, cwd=cwd, env=sanitizer_env(), timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace")
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        return f"no end after {timeout}s", out


# what libFuzzer leaves behind for an input that failed
ARTIFACTS = ("crash-", "leak-", "timeout-", "oom-")


def verdict(rc, out, cwd):
    """(ok, why): a clean libFuzzer run exits 0 with no report and leaves
    no crash/leak/timeout artifact behind."""
    artifacts = [n for n in os.listdir(cwd) if n.startswith(ARTIFACTS)]
    m = REPORT.search(out)
    if rc == 0 and not m and not artifacts:
        return True, ""
    lines = out.splitlines()
    start = 0
    if m:
        start = max(0, out[:m.start()].count("\n") - 5)
    why = [f"exit status {rc}"] + ([f"artifacts: {artifacts}"] if artifacts else [])
    return False, "\n".join(why + lines[start:start + 60])


def stats(out):
    m = None
    for m in STATS.finditer(out):
        pass
    if not m:
        return "no final stats"
    runs, cov, ft, corp, size, eps = m.groups()
    return f"{runs} runs, cov {cov}, ft {ft}, corpus {corp} ({size}), {eps} exec/s"


def test_replay(target, files, what):
    """Each input run once (libFuzzer's file arguments)."""
    def fn(build):
        if not files:
            return False, f"no {what} in tests/fuzz/{target}/"
        with tempfile.TemporaryDirectory(prefix="dm-fuzz-") as cwd:
            rc, out = run_fuzzer(build, target, files, 60 + 10 * len(files), cwd)
            ok, why = verdict(rc, out, cwd)
            return ok, why or f"{len(files)} inputs"
    return fn


def test_regress(target, path, known):
    def fn(build):
        with tempfile.TemporaryDirectory(prefix="dm-fuzz-") as cwd:
            rc, out = run_fuzzer(build, target, [path], 120, cwd)
            ok, why = verdict(rc, out, cwd)
        if known:
            return guests.Skip(f"known base bug ({known}): "
                               f"{'no longer crashes' if ok else 'still crashes'}")
        return ok, why
    return fn


def test_fuzz(target, seconds, start):
    """libFuzzer for a bounded time from a scratch corpus holding the
    seeds and the fixed regression inputs (or DM_FUZZ_KEEP/TARGET, which
    keeps what it grows); nothing is written into the tree."""
    def fn(build):
        keep = os.environ.get("DM_FUZZ_KEEP")
        with tempfile.TemporaryDirectory(prefix="dm-fuzz-") as cwd:
            corpus = os.path.join(keep, target) if keep else os.path.join(cwd, "corpus")
            os.makedirs(corpus, exist_ok=True)
            for path in start:
                shutil.copy(path, corpus)
            args = [f"-max_total_time={seconds}", "-print_final_stats=1", corpus]
            rc, out = run_fuzzer(build, target, args, seconds + 300, cwd)
            ok, why = verdict(rc, out, cwd)
            if keep:
                with open(os.path.join(keep, f"{target}.log"), "w") as f:
                    f.write(out)
                for n in os.listdir(cwd):
                    if n.startswith(ARTIFACTS):
                        shutil.copy(os.path.join(cwd, n), keep)
            print(f"# fuzz: {target}: {stats(out)}", flush=True)
            return ok, (why + "\n" if why else "") + stats(out)
    return fn


def run(tap, build):
    exe = fuzz_binary(build)
    tests = []
    fail = None
    if not os.access(exe, os.X_OK):
        fail = f"{exe} not built (make sanitized)"
    bugs = known_base_bugs()
    seconds = os.environ.get("DM_FUZZ_SECONDS")
    for target, default in TARGETS:
        secs = int(seconds) if seconds else default
        seeds, regress = inputs(target)
        tests.append((f"{target}: seed corpus replays clean",
                      test_replay(target, seeds, "seed inputs")))
        for path in regress:
            name = os.path.basename(path)
            tests.append((f"{target}: {name} replays clean",
                          test_regress(target, path, bugs.get((target, name)))))
        fixed = [p for p in regress if (target, os.path.basename(p)) not in bugs]
        tests.append((f"{target}: {secs} s of fuzzing from the corpus, no crash, "
                       "leak or sanitizer report",
                      test_fuzz(target, secs, seeds + fixed)))
    guests.run_tests(tap, "fuzz", tests, build, fail=fail)
