"""e2e layer: the Linux guest under TCG (Debian's kernel, busybox)."""
import os
import subprocess
import tempfile
import time

import guests

PMEM_SIZE = 128 << 20

def pmem_args(path, size=PMEM_SIZE):
    return ["-object", f"memory-backend-file,id=mem1,share=on,mem-path={path},size={size}",
            "-device", "virtio-pmem-pci,memdev=mem1,id=nv1"]


def test_pmem_size(build):
    with tempfile.TemporaryDirectory() as d:
        backing = os.path.join(d, "pmem.img")
        allocated_file(backing)
        script = "#!/bin/sh\n" + guests.LOAD_PMEM + """
if [ -b /dev/pmem0 ]; then
    echo "@@ pmem0_bytes $(( $(cat /sys/block/pmem0/size) * 512 ))"
fi
"""
        rc, out = guests.linux_guest(build, script, pmem_args(backing))
    got = guests.guest_values(out).get("pmem0_bytes")
    return got == str(PMEM_SIZE), f"/dev/pmem0 bytes {got}, want {PMEM_SIZE}\n{out}"


def dax_write_script(path, text):
    """Guest: mount the pmem's ext4 with -o dax, write and fsync a file
    (busybox `sync FILE` is fsync(2) on it)."""
    return "#!/bin/sh\n" + guests.LOAD_PMEM + f"""
modprobe ext4
mount -t ext4 -o dax /dev/pmem0 /mnt && echo "@@ mounted dax"
grep -q 'pmem0 /mnt ext4 .*dax' /proc/mounts && echo "@@ dax_in_mounts yes"
printf '%s\\n' '{text}' > /mnt/{path}
sync /mnt/{path} && echo "@@ fsync ok"
umount /mnt && echo "@@ unmounted"
"""


def host_read_ext4(image, path):
    p = subprocess.run(["debugfs", "-R", f"cat /{path}", image],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return p.stdout.decode(errors="replace")


def allocated_file(path, size=PMEM_SIZE):
    """A fully allocated file: virtio-pmem warns about sparse ones."""
    with open(path, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)


def make_ext4(image, size=PMEM_SIZE):
    allocated_file(image, size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", image], check=True)


def test_dax_write_reaches_host(build, **boot):
    """The guest's DAX write and fsync reach the host file: the backing file
    is on syncfs, the file's real copy underneath (read by debugfs, not
    through the mount's page cache) holds the bytes, and syncfs recorded a
    successful sync of it after the guest's write began.  The device's
    counters are reported beside.  `boot` picks the accelerator (the lab
    runs this under KVM, on a plain file)."""
    text = "written by the guest through DAX"
    script = dax_write_script("hello.txt", text)
    if boot.get("accel", "tcg") != "tcg":
        with tempfile.TemporaryDirectory() as d:
            backing = os.path.join(d, "pmem.img")
            make_ext4(backing)
            out, stats = guests.linux_guest_session(build, script, pmem_args(backing),
                                                    query=pmem_stats, **boot)
            host = host_read_ext4(backing, "hello.txt")
        return dax_verdict(out, stats, host, text)
    with guests.Syncfs(build, "e2e") as fs:
        if not fs.mounted:
            return False, "syncfs could not be mounted (make fuse-tools)"
        name = "pmem.img"
        make_ext4(os.path.join(fs.real, name))
        t0 = time.monotonic_ns()
        out, stats = guests.linux_guest_session(build, script,
                                                pmem_args(os.path.join(fs.mnt, name)),
                                                query=pmem_stats, **boot)
        syncs = [r for r in fs.records() if r[0] == "E" and r[2] in ("fsync", "fdatasync")
                 and r[-1].endswith(name) and int(r[3]) >= t0 and r[5] == "0"]
        host = host_read_ext4(os.path.join(fs.real, name), "hello.txt")
    ok, diag = dax_verdict(out, stats, host, text)
    return ok and len(syncs) > 0, f"{len(syncs)} syncs of the file recorded by syncfs; {diag}"


def pmem_stats(qmp):
    return qmp.cmd("x-query-virtio-pmem")[0]["stats"]


def dax_verdict(out, stats, host, text):
    vals = guests.guest_values(out)
    ok = (vals.get("mounted") == "dax" and vals.get("dax_in_mounts") == "yes"
          and vals.get("fsync") == "ok" and host == text + "\n"
          and stats["requests"] > 0 and stats["errors"] == 0)
    return ok, f"guest said {vals}; host file has {host!r}; device stats {stats}\n{out}"


TESTS = [
    ("virtio-pmem-pci: guest sees /dev/pmem0 of the backend's size", test_pmem_size),
    ("virtio-pmem-pci: ext4 -o dax file written and fsynced in the guest is in the host "
     "file, synced (syncfs's record)",
     test_dax_write_reaches_host),
]


def run(tap, build):
    guests.run_tests(tap, "e2e", TESTS, build)
