#!/usr/bin/env python3
"""`make demo`: what the tree does, in two minutes.

1. Boots the Linux guest under TCG with a virtio-pmem device backed by a
   host file holding an ext4 filesystem made on the host; the guest mounts
   it with -o dax, writes and fsyncs a file, and powers off; the demo then
   reads the file's bytes from the host file.
2. Where /dev/kvm works: the tiny guest's port-write loop, per-write cost
   of the coalesced RTC index port against an uncoalesced port.
"""
import argparse
import os
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
sys.path.insert(0, os.path.join(TOP, "bench"))
import guests  # noqa: E402
import e2e_tests  # noqa: E402
import coalesced_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    build = os.path.abspath(ap.parse_args().build)
    demo = os.path.join(build, "demo")
    os.makedirs(demo, exist_ok=True)

    image = os.path.join(demo, "pmem.img")
    print(f"demo: making an ext4 filesystem in {image} on the host")
    e2e_tests.make_ext4(image)
    text = f"hello from the guest, written through DAX at {time.strftime('%H:%M:%S')}"
    args = e2e_tests.pmem_args(image)
    print("demo: booting the Linux guest under TCG with:")
    print("        " + " ".join(args))
    print("      the guest mounts /dev/pmem0 with -o dax, writes /hello.txt and fsyncs it")
    t0 = time.monotonic()
    rc, console = guests.linux_guest(build, e2e_tests.dax_write_script("hello.txt", text), args)
    vals = guests.guest_values(console)
    print(f"demo: guest finished in {time.monotonic() - t0:.0f}s; it reported: "
          + ", ".join(f"{k} {v}" for k, v in vals.items()))
    with open(os.path.join(demo, "console.log"), "w") as f:
        f.write(console)
    data = e2e_tests.host_read_ext4(image, "hello.txt")
    print(f"demo: /hello.txt read on the host from {image}:")
    subprocess.run(["od", "-A", "d", "-c"], input=data.encode())
    print(f"      \"{data.rstrip()}\"")
    ok = data == text + "\n"
    if not ok:
        print(f"demo: the host file does not hold what the guest wrote "
              f"(console in {demo}/console.log)")

    why = guests.kvm_unavailable()
    if why:
        print(f"demo: skipping the port-write loop: {why}")
    else:
        print("demo: port-write loop under KVM (tiny guest, 100000 writes, median of 3)")
        for port, width, what in coalesced_io.PORTS:
            us = coalesced_io.qemu_per_write(build, "ours", port, width, 100000, 3)
            print(f"      port {port:#06x} {what:40s} {us:6.2f} us per write")
    print(f"demo: done. The guest wrote, and the host file {image} holds:")
    print(f"      \"{data.rstrip()}\"")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
