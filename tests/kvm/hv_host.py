"""What the host's KVM can give a guest of Hyper-V, asked of /dev/kvm
directly (not through QEMU), and what a guest's CPUID shows of it.

The hyperv tests compare QEMU against this: a host that provides direct
synthetic timers must get them to the guest; one that does not must get
QEMU's specific refusal.  Bit numbers are the Hyper-V TLFS's, written out
here independently of QEMU's tables.
"""
import errno
import fcntl
import os
import struct

KVMIO = 0xAE
KVM_CREATE_VM = (KVMIO << 8) | 0x01
KVM_CHECK_EXTENSION = (KVMIO << 8) | 0x03
KVM_CREATE_VCPU = (KVMIO << 8) | 0x41
KVM_CPUID2_HEADER = 8                # struct kvm_cpuid2: u32 nent, u32 padding
KVM_CPUID_ENTRY2 = 40                # function, index, flags, eax..edx, padding[3]
# _IOWR(KVMIO, 0xc1, struct kvm_cpuid2)
KVM_GET_SUPPORTED_HV_CPUID = (3 << 30) | (KVM_CPUID2_HEADER << 16) | (KVMIO << 8) | 0xc1

CAPS = {
    "KVM_CAP_HYPERV": 44,
    "KVM_CAP_HYPERV_TIME": 96,
    "KVM_CAP_HYPERV_SYNIC": 123,
    "KVM_CAP_HYPERV_SYNIC2": 148,
    "KVM_CAP_HYPERV_VP_INDEX": 149,
    "KVM_CAP_HYPERV_CPUID": 167,
    "KVM_CAP_SYS_HYPERV_CPUID": 191,
}

HV_INTERFACE = 0x31237648            # "Hv#1" in 0x40000001 EAX
FEATURES, RECOMMENDATIONS, NESTED = 0x40000003, 0x40000004, 0x4000000a


def bit(n):
    return 1 << n


# hv-* flag -> (leaf, EAX bits, EDX bits) a guest needs to see for it
FLAG_BITS = {
    "hv-relaxed": (RECOMMENDATIONS, bit(5), 0),
    "hv-vapic": (FEATURES, bit(4), 0),
    "hv-time": (FEATURES, bit(1) | bit(9), 0),
    "hv-crash": (FEATURES, 0, bit(10)),
    "hv-reset": (FEATURES, bit(7), 0),
    "hv-vpindex": (FEATURES, bit(6), 0),
    "hv-runtime": (FEATURES, bit(0), 0),
    "hv-synic": (FEATURES, bit(2), 0),
    "hv-stimer": (FEATURES, bit(3), 0),
    "hv-frequencies": (FEATURES, bit(11), bit(8)),
    "hv-reenlightenment": (FEATURES, bit(13), 0),
    "hv-tlbflush": (RECOMMENDATIONS, bit(2) | bit(11), 0),
    "hv-evmcs": (RECOMMENDATIONS, bit(14), 0),
    "hv-ipi": (RECOMMENDATIONS, bit(10) | bit(11), 0),
    "hv-stimer-direct": (FEATURES, 0, bit(19)),
    "hv-avic": (RECOMMENDATIONS, bit(9), 0),
    "hv-emsr-bitmap": (NESTED, bit(19), 0),
    "hv-xmm-input": (FEATURES, 0, bit(4)),
    "hv-tlbflush-ext": (FEATURES, 0, bit(14)),
    "hv-tlbflush-direct": (NESTED, bit(17), 0),
    "hv-syndbg": (FEATURES, 0, bit(11)),
}

# The timer flags HV_TIMER_CPU asks for, in the order QEMU's KVM code
# checks them against the host's leaves, with the names it gives them.
TIMER_FLAGS = [
    ("hv-time", "clocksources (hv-time)"),
    ("hv-vpindex", "VP_INDEX MSR (hv-vpindex)"),
    ("hv-synic", "synthetic interrupt controller (hv-synic)"),
    ("hv-stimer", "synthetic timers (hv-stimer)"),
    ("hv-stimer-direct", "direct mode synthetic timers (hv-stimer-direct)"),
]


def flags_shown(leaves):
    """The hv-* flags that CPUID leaves {leaf: (eax, ebx, ecx, edx)} show a
    guest: a Hyper-V interface, and each flag's bits within the max leaf."""
    if leaves.get(0x40000001, (0,))[0] != HV_INTERFACE:
        return set()
    top = leaves.get(0x40000000, (0,))[0]
    shown = set()
    for name, (leaf, eax, edx) in FLAG_BITS.items():
        regs = leaves.get(leaf, (0, 0, 0, 0))
        if leaf <= top and regs[0] & eax == eax and regs[3] & edx == edx:
            shown.add(name)
    return shown


def _hv_cpuid(fd):
    """KVM_GET_SUPPORTED_HV_CPUID on fd: {leaf: (eax, ebx, ecx, edx)}."""
    nent = 16
    while True:
        buf = bytearray(KVM_CPUID2_HEADER + nent * KVM_CPUID_ENTRY2)
        struct.pack_into("=I", buf, 0, nent)
        try:
            fcntl.ioctl(fd, KVM_GET_SUPPORTED_HV_CPUID, buf, True)
            break
        except OSError as e:
            if e.errno != errno.E2BIG or nent >= 1024:
                raise
            nent *= 2
    leaves = {}
    for i in range(struct.unpack_from("=I", buf, 0)[0]):
        off = KVM_CPUID2_HEADER + i * KVM_CPUID_ENTRY2
        func, _index, _flags, eax, ebx, ecx, edx = struct.unpack_from("=7I", buf, off)
        leaves[func] = (eax, ebx, ecx, edx)
    return leaves


class Host:
    """caps: {name: KVM_CHECK_EXTENSION value}; leaves: the host's Hyper-V
    CPUID leaves ({} when it cannot report them); source: how we got them."""

    def __init__(self, path="/dev/kvm"):
        self.leaves, self.source, self.error = {}, "none", None
        kvm = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.caps = {n: fcntl.ioctl(kvm, KVM_CHECK_EXTENSION, c) for n, c in CAPS.items()}
            try:
                if self.caps["KVM_CAP_SYS_HYPERV_CPUID"] > 0:
                    self.leaves, self.source = _hv_cpuid(kvm), "system ioctl"
                elif self.caps["KVM_CAP_HYPERV_CPUID"] > 0:
                    self.leaves, self.source = self._vcpu_hv_cpuid(kvm), "vCPU ioctl"
            except OSError as e:
                self.error = f"KVM_GET_SUPPORTED_HV_CPUID ({self.source}): {e.strerror}"
        finally:
            os.close(kvm)

    @staticmethod
    def _vcpu_hv_cpuid(kvm):
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        try:
            vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
            try:
                return _hv_cpuid(vcpu)
            finally:
                os.close(vcpu)
        finally:
            os.close(vm)

    def cap(self, name):
        return self.caps[name] > 0

    def describe(self):
        caps = " ".join(f"{n[8:]}={v}" for n, v in self.caps.items())
        feat = self.leaves.get(FEATURES)
        leaf = (f"0x40000003 EAX={feat[0]:#x} EDX={feat[3]:#x}" if feat
                else "no 0x40000003 leaf")
        return f"host KVM: {caps}; HV CPUID by {self.source}: {leaf}" + \
            (f"; {self.error}" if self.error else "")

    def timer_refusal(self):
        """None when the host gives hv-stimer-direct and all it needs to a
        guest; else (what QEMU must say, why: one line), in the order of
        QEMU's checks (ours at CPU pre-plug, then the base's)."""
        if not self.cap("KVM_CAP_HYPERV"):
            return ("the host kernel's KVM cannot provide Hyper-V enlightenments "
                    "(hv-time, hv-vpindex, hv-synic, hv-stimer, hv-stimer-direct): "
                    "it lacks KVM_CAP_HYPERV",
                    "host KVM has no Hyper-V at all (KVM_CAP_HYPERV is 0)")
        if not self.cap("KVM_CAP_HYPERV_CPUID") and not self.cap("KVM_CAP_SYS_HYPERV_CPUID"):
            return ("hv-stimer-direct: the host kernel's KVM cannot offer direct-mode "
                    "synthetic timers (no KVM_CAP_HYPERV_CPUID)",
                    "host KVM cannot report Hyper-V CPUID (no KVM_CAP_HYPERV_CPUID)")
        if self.error:
            return ("KVM_GET_SUPPORTED_HV_CPUID failed", self.error)
        feat = self.leaves.get(FEATURES, (0, 0, 0, 0))
        if self.source == "system ioctl" and not feat[3] & bit(19):
            return ("hv-stimer-direct: the host kernel's KVM does not offer "
                    "direct-mode synthetic timers",
                    "host KVM lacks Hyper-V direct stimers "
                    "(KVM_GET_SUPPORTED_HV_CPUID 0x40000003 EDX bit 19 clear)")
        if not self.cap("KVM_CAP_HYPERV_VP_INDEX"):
            return ("kernel doesn't allow setting HyperV VP_INDEX",
                    "host KVM cannot set VP_INDEX (KVM_CAP_HYPERV_VP_INDEX is 0)")
        for name, desc in TIMER_FLAGS:
            _, eax, edx = FLAG_BITS[name]
            if feat[0] & eax != eax or feat[3] & edx != edx:
                return (f"Hyper-V {desc} is not supported by kernel",
                        f"host KVM lacks {name} (KVM_GET_SUPPORTED_HV_CPUID "
                        f"0x40000003 EAX={feat[0]:#x} EDX={feat[3]:#x})")
        if not self.cap("KVM_CAP_HYPERV_SYNIC2"):
            return ("failed to turn on HyperV SynIC in KVM",
                    "host KVM lacks SynIC (KVM_CAP_HYPERV_SYNIC2 is 0)")
        return None


# A flat 64 KiB -bios image that reads CPUID 0x40000000..0x4000000a (ECX 0)
# into 0x500 and writes them to isa-debugcon (0xe9) as raw little-endian
# EAX, EBX, ECX, EDX, 16 bytes per leaf, then exits through isa-debug-exit
# with CPUID_GUEST_EXIT.  Hand-assembled real-mode code, so that the test
# needs no build step of its own.
CPUID_LEAVES = range(0x40000000, 0x4000000b)
CPUID_GUEST_EXIT = 0x10
_CPUID_GUEST = bytes([
    0x31, 0xc0,                             # xor %ax,%ax
    0x8e, 0xd8,                             # mov %ax,%ds
    0x8e, 0xc0,                             # mov %ax,%es
    0xbf, 0x00, 0x05,                       # mov $0x500,%di
    0x66, 0xbe, 0x00, 0x00, 0x00, 0x40,     # mov $0x40000000,%esi
    # 0x0f: next leaf
    0x66, 0x89, 0xf0,                       # mov %esi,%eax
    0x66, 0x31, 0xc9,                       # xor %ecx,%ecx
    0x0f, 0xa2,                             # cpuid
    0x66, 0xab,                             # stosl (EAX)
    0x66, 0x89, 0xd8, 0x66, 0xab,           # mov %ebx,%eax; stosl
    0x66, 0x89, 0xc8, 0x66, 0xab,           # mov %ecx,%eax; stosl
    0x66, 0x89, 0xd0, 0x66, 0xab,           # mov %edx,%eax; stosl
    0x66, 0x46,                             # inc %esi
    0x66, 0x81, 0xfe, 0x0b, 0x00, 0x00, 0x40,   # cmp $0x4000000b,%esi
    0x75, 0xdc,                             # jne 0x0f
    0xbe, 0x00, 0x05,                       # mov $0x500,%si
    0xb9, len(CPUID_LEAVES) * 16, 0x00,     # mov $176,%cx
    0xba, 0xe9, 0x00,                       # mov $0xe9,%dx
    0xf3, 0x6e,                             # rep outsb
    0xb0, CPUID_GUEST_EXIT,                 # mov $CPUID_GUEST_EXIT,%al
    0xe6, 0xf4,                             # out %al,$0xf4
    0xf4, 0xeb, 0xfd,                       # 1: hlt; jmp 1b
])


def write_cpuid_guest(path):
    image = bytearray(64 * 1024)
    image[:len(_CPUID_GUEST)] = _CPUID_GUEST
    image[0xfff0:0xfff5] = b"\xea\x00\x00\x00\xf0"     # ljmp $0xf000,$0
    with open(path, "wb") as f:
        f.write(image)
    return path


def cpuid_guest_leaves(raw):
    """{leaf: (eax, ebx, ecx, edx)} from what the CPUID guest wrote, or
    None when it did not write all of them."""
    if len(raw) != len(CPUID_LEAVES) * 16:
        return None
    return {leaf: struct.unpack_from("=4I", raw, i * 16)
            for i, leaf in enumerate(CPUID_LEAVES)}
