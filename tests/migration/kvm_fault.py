#!/usr/bin/env python3
"""Make QEMU's KVM_CLEAR_DIRTY_LOG calls fail from outside QEMU.

    python3 kvm_fault.py --errno 5 --gpa 0x1000000 [--count 1] [--log FILE] \\
        -- qemu-system-x86_64 ARGS...

installs a seccomp filter that hands QEMU's KVM_CLEAR_DIRTY_LOG and
KVM_SET_USER_MEMORY_REGION(2) ioctls to a supervisor process
(SECCOMP_RET_USER_NOTIF), then execs QEMU (same PID).  The supervisor
reads the ioctl's argument from /proc/PID/mem: memory-slot changes are
noted (slot -> guest-physical range) and let through; the first --count
clears of a window that holds guest-physical --gpa are answered with
-errno, as a kernel refusing them would; everything else goes on to the
kernel (SECCOMP_USER_NOTIF_FLAG_CONTINUE).  --log gets one line per
failure made.  The supervisor ends when QEMU does.

This is how the tests make a clear fail (docs/dirty-log.md, "Errors"):
QEMU itself has no fault-injection knob.  x86_64 only; needs Linux 5.5+
and the right to read QEMU's memory (root, or the same user without Yama
restrictions).
"""
import argparse
import ctypes
import errno
import os
import select
import socket
import struct
import sys

AUDIT_ARCH_X86_64 = 0xc000003e
NR_IOCTL = 16
NR_SECCOMP = 317

KVM_CLEAR_DIRTY_LOG = 0xc018aec0            # _IOWR(KVMIO, 0xc0, 24 bytes)
KVM_SET_USER_MEMORY_REGION = 0x4020ae46     # _IOW(KVMIO, 0x46, 32 bytes)
KVM_SET_USER_MEMORY_REGION2 = 0x40a0ae49    # _IOW(KVMIO, 0x49, 160 bytes)

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_RET_USER_NOTIF = 0x7fc00000
SECCOMP_RET_ALLOW = 0x7fff0000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
NOTIF_SIZE = 80                 # struct seccomp_notif
RESP_SIZE = 24                  # struct seccomp_notif_resp
SECCOMP_IOCTL_NOTIF_RECV = 0xc0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xc0182101

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


def filter_program():
    """seccomp_data: nr at 0, arch at 4, args[1] (the ioctl request) at 24."""
    prog = [
        (BPF_LD_W_ABS, 0, 0, 4),
        (BPF_JEQ_K, 0, 7, AUDIT_ARCH_X86_64),           # else allow
        (BPF_LD_W_ABS, 0, 0, 0),
        (BPF_JEQ_K, 0, 5, NR_IOCTL),                    # else allow
        (BPF_LD_W_ABS, 0, 0, 24),
        (BPF_JEQ_K, 2, 0, KVM_CLEAR_DIRTY_LOG),         # notify
        (BPF_JEQ_K, 1, 0, KVM_SET_USER_MEMORY_REGION),  # notify
        (BPF_JEQ_K, 0, 1, KVM_SET_USER_MEMORY_REGION2),
        (BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return (SockFilter * len(prog))(*[SockFilter(*i) for i in prog])


libc = ctypes.CDLL(None, use_errno=True)


def install_filter():
    """Install the filter on this process; returns the listener fd."""
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    insns = filter_program()
    fprog = SockFprog(len(insns), insns)
    fd = libc.syscall(NR_SECCOMP, SECCOMP_SET_MODE_FILTER,
                      SECCOMP_FILTER_FLAG_NEW_LISTENER, ctypes.byref(fprog))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")
    return fd


def ioctl(fd, req, buf):
    cbuf = ctypes.create_string_buffer(bytes(buf), len(buf))
    if libc.ioctl(fd, ctypes.c_ulong(req), cbuf) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return cbuf.raw


def supervise(fd, args):
    """Answer QEMU's notified ioctls until QEMU is gone."""
    slots = {}                  # slot | as_id << 16 -> (gpa, size)
    left = args.count
    page = os.sysconf("SC_PAGE_SIZE")
    log = open(args.log, "a", buffering=1) if args.log else None
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    while True:
        events = poll.poll()
        if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
            return
        try:
            notif = ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, bytes(NOTIF_SIZE))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINTR):
                continue
            raise
        nid, pid = struct.unpack_from("<QI", notif, 0)
        req, argp = struct.unpack_from("<QQ", notif, 16 + 16 + 8)
        req &= 0xffffffff
        fail = 0
        try:
            with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
                mem.seek(argp)
                data = mem.read(32)
        except OSError:
            data = None
        if data and req in (KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2):
            slot, _flags, gpa, size = struct.unpack_from("<IIQQ", data)
            if size:
                slots[slot] = (gpa, size)
            else:
                slots.pop(slot, None)
        elif data and req == KVM_CLEAR_DIRTY_LOG and left:
            slot, num_pages, first_page = struct.unpack_from("<IIQ", data)
            base = slots.get(slot, (None,))[0]
            if base is not None:
                first = base + first_page * page
                if first <= args.gpa < first + num_pages * page:
                    left -= 1
                    fail = args.errno
                    if log:
                        log.write(f"failed slot 0x{slot:x} pages 0x{first_page:x}"
                                  f"+0x{num_pages:x} gpa 0x{first:x} errno {fail}\n")
        if fail:
            resp = struct.pack("<QqiI", nid, 0, -fail, 0)
        else:
            resp = struct.pack("<QqiI", nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        try:
            ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp)
        except OSError as e:
            if e.errno != errno.ENOENT:     # the thread went away meanwhile
                raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--errno", type=int, required=True)
    ap.add_argument("--gpa", type=lambda s: int(s, 0), required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--log")
    ap.add_argument("cmd", nargs="+")
    args = ap.parse_args()
    if not 0 < args.errno < 4096:
        ap.error("--errno must be an errno value")

    parent_end, child_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        # the supervisor, a grandchild, so that QEMU need not reap it
        parent_end.close()
        if os.fork():
            os._exit(0)
        _, fds, _, _ = socket.recv_fds(child_end, 1, 1)
        child_end.send(b"r")
        child_end.close()
        try:
            supervise(fds[0], args)
        except Exception as e:      # QEMU's ioctls then fail: say why
            print(f"kvm_fault.py: supervisor: {e!r}", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)
    child_end.close()
    fd = install_filter()
    socket.send_fds(parent_end, [b"f"], [fd])
    os.close(fd)
    if parent_end.recv(1) != b"r":
        sys.exit("kvm_fault.py: the supervisor did not start")
    parent_end.close()
    os.execv(args.cmd[0], args.cmd)


if __name__ == "__main__":
    main()
