#!/usr/bin/env python3
"""Write the seed inputs of our fuzz targets into tests/fuzz/TARGET/.

The seeds are checked in; this script says what each one is and rewrites
them (`python3 tests/fuzz/make_seeds.py`).  Crash reproducers
(regress-*) are never written here: they are the fuzzer's own inputs.

virtio-pmem-fuzz's input format is described at the top of
tests/qtest/fuzz/virtio_pmem_fuzz.c; generic-fuzz's in the base's
tests/qtest/fuzz/generic_fuzz.c (operations separated by "FUZZ").
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# virtio-pmem-fuzz operations
REQ, RAW, AVAIL, MEMWRITE, KICK, DRAIN, RESET, STATUS, UNPLUG, STOP, CONT = range(11)
# REQ mode bits
M_UNKNOWN, M_RAWTYPE = 2, 3
M_SWAP, M_INFIRST, M_INDIRECT, M_BAD, M_KICK = 0x08, 0x10, 0x20, 0x40, 0x80
# setup byte: log2 of the queue size, features
F_INDIRECT, F_EVENT_IDX = 0x08, 0x10
# length selectors: < 0x80 the right length, else a table entry
L_OK, L_ZERO, L_TWO, L_SIXTEEN, L_64K, L_HUGE = 0, 0x80, 0x82, 0x87, 0x8b, 0x8f
VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT = 1, 2, 4


def req(mode=M_KICK, out=L_OK, inn=L_OK, shape=0, type_=None, bad=None):
    b = bytes([REQ, mode, out, inn, shape])
    if mode & 3 >= 2:
        b += struct.pack("<I", type_ or 0)
    if mode & M_BAD:
        b += bytes([bad or 0])
    return b


def raw(idx, where, length, flags, nxt, avail=3):
    return bytes([RAW, idx, where]) + struct.pack("<IHH", length, flags, nxt) + bytes([avail])


PMEM = {
    "flush-one": bytes([7]) + req() + bytes([DRAIN]),
    # queue of 4: ten 4-descriptor chains run across the table's end and
    # the avail ring wraps twice
    "flush-wrap": bytes([2]) + (req(shape=0x05) + bytes([DRAIN])) * 10,
    "unknown-type": bytes([3]) + req(M_KICK | M_UNKNOWN, type_=0x1234) +
    req(M_KICK | M_RAWTYPE, type_=0) + bytes([DRAIN]),
    "bad-lengths": bytes([5]) + req(out=L_TWO) + bytes([RESET, 5]) +
    req(inn=L_ZERO) + bytes([RESET, 5]) + req(out=L_64K, inn=L_SIXTEEN) +
    req(out=L_HUGE) + bytes([DRAIN]),
    "indirect": bytes([3 | F_INDIRECT]) + req(M_KICK | M_INDIRECT, shape=0x0f) +
    req(M_KICK | M_INDIRECT) + bytes([DRAIN]),
    "swapped": bytes([4]) + req(M_KICK | M_SWAP) + bytes([RESET, 4]) +
    req(M_KICK | M_INFIRST) + bytes([DRAIN]),
    "bad-address": bytes([4]) + req(M_KICK | M_BAD, bad=3) + bytes([RESET, 4]) +
    req(M_KICK | M_BAD, shape=0x10, bad=2) + bytes([DRAIN]),
    "reset-mid-batch": bytes([4]) + req() * 3 + bytes([RESET, 4]) + req() + bytes([DRAIN]),
    "unplug-mid-batch": bytes([4]) + req() * 3 + bytes([UNPLUG]) + req() + bytes([DRAIN]),
    "stop-cont": bytes([4 | F_EVENT_IDX]) + req() + bytes([STOP]) + req() +
    bytes([DRAIN, CONT, DRAIN]),
    "raw-loop": bytes([3]) + raw(0, 0, 4, VRING_DESC_F_NEXT, 0) + bytes([DRAIN]),
    "avail-jump": bytes([3]) + req(0) + bytes([AVAIL, 0]) + struct.pack("<H", 0x100) +
    bytes([KICK, DRAIN]),
}


def generic(*ops):
    return b"FUZZ".join(ops)


def out(size, base, offset, value):
    """generic-fuzz OP_OUT: port I/O to the BASE-th fuzzable region."""
    return bytes([1, size, base]) + struct.pack("<HI", offset, value)


def inp(size, base, offset):
    return bytes([0, size, base]) + struct.pack("<H", offset)


def pci_write(size, offset, value):
    """generic-fuzz OP_PCI_WRITE to the host bridge (the only PCI device
    listed): a 32-bit CONFIG_ADDRESS write to 0xcf8, then 0xcfc."""
    return bytes([5, size, 0, offset, 0]) + struct.pack("<I", value)


def pci_read(size, offset):
    return bytes([4, size, 0, offset])


# The coalesced ports' flat ranges in address order (generic-fuzz's
# "base"): rtc-index 0x70, rtc 0x71, pci-conf-idx 0xcf8 and 0xcfa-0xcfb
# (0xcf9 is the reset control register), pci-conf-data 0xcfc.
BYTE, WORD, LONG = 0, 1, 2
RTC_INDEX, RTC_DATA, CONF_IDX, CONF_IDX_HI, CONF_DATA = range(5)
PORTS = {
    "rtc-index-data": generic(out(BYTE, RTC_INDEX, 0, 0x0e), out(BYTE, RTC_DATA, 0, 0x5a),
                              out(BYTE, RTC_INDEX, 0, 0x0e), inp(BYTE, RTC_DATA, 0)),
    "rtc-index-repeated": generic(*[out(BYTE, RTC_INDEX, 0, r) for r in (0x0a, 0x0b, 0x0c, 0x8e)],
                                  inp(BYTE, RTC_DATA, 0), out(BYTE, RTC_DATA, 0, 0x26)),
    # the host bridge's ID, then its data port again with the address kept
    "pci-config-read": generic(pci_read(LONG, 0x00), inp(LONG, CONF_DATA, 0),
                               inp(WORD, CONF_DATA, 2), inp(BYTE, CONF_IDX_HI, 0)),
    # byte writes to CONFIG_ADDRESS (ignored) between config accesses
    "pci-config-bytes": generic(pci_read(LONG, 0x08), out(BYTE, CONF_IDX, 0, 0x04),
                                out(WORD, CONF_IDX_HI, 0, 0x8000), inp(LONG, CONF_DATA, 0),
                                out(BYTE, CONF_DATA, 1, 0x01)),
}
# PAM and SMRAM: i440fx 0x59-0x5f and 0x72, mch 0x90-0x96 and 0x9d
PORTS_PC = dict(PORTS, **{
    "pam-smram": generic(pci_write(BYTE, 0x59, 0x30), pci_write(LONG, 0x5c, 0x33333333),
                         pci_write(BYTE, 0x72, 0x4a), out(BYTE, CONF_DATA, 0, 0x0a),
                         pci_read(BYTE, 0x72)),
})
PORTS_Q35 = dict(PORTS, **{
    "pam-smram": generic(pci_write(BYTE, 0x90, 0x30), pci_write(LONG, 0x94, 0x33333333),
                         pci_write(BYTE, 0x9d, 0x4a), out(BYTE, CONF_DATA, 1, 0x0a),
                         pci_read(BYTE, 0x9e)),
})


def mmio_write(size, base, offset, value):
    """generic-fuzz OP_WRITE: MMIO to the BASE-th fuzzable region."""
    return bytes([3, size, base, 0, 0]) + struct.pack("<IQ", offset, value)


def mmio_read(size, base, offset):
    return bytes([2, size, base, 0, 0]) + struct.pack("<I", offset)


def dma_pattern(index, stride, data):
    """generic-fuzz OP_ADD_DMA_PATTERN: what the device's next reads of
    guest memory find there."""
    return bytes([7, index, stride]) + data


# virtio-pmem-pci's regions in address order: the modern BAR's common
# config, ISR, device config and notify regions.
COMMON, ISR, DEVICE, NOTIFY = range(4)
QUAD = 3
STATUS, GF_SELECT, GF, Q_SELECT, Q_SIZE, Q_ENABLE = 0x14, 0x08, 0x0c, 0x16, 0x18, 0x1c
Q_DESC, Q_AVAIL, Q_USED = 0x20, 0x28, 0x30


def virtio_setup(qsize=4):
    return [mmio_write(BYTE, COMMON, STATUS, 0), mmio_write(BYTE, COMMON, STATUS, 3),
            mmio_write(LONG, COMMON, GF_SELECT, 1), mmio_write(LONG, COMMON, GF, 1),
            mmio_write(BYTE, COMMON, STATUS, 0xb), mmio_write(WORD, COMMON, Q_SELECT, 0),
            mmio_write(WORD, COMMON, Q_SIZE, qsize),
            mmio_write(QUAD, COMMON, Q_DESC, 0x100000),
            mmio_write(QUAD, COMMON, Q_AVAIL, 0x100800),
            mmio_write(QUAD, COMMON, Q_USED, 0x101000),
            mmio_write(WORD, COMMON, Q_ENABLE, 1), mmio_write(BYTE, COMMON, STATUS, 0xf)]


# a descriptor-shaped pattern: 16 bytes at 0x200000, length 4, NEXT, next 1
DESC_LIKE = struct.pack("<QIHH", 0x200000, 4, 1, 1)
PMEM_PCI = {
    "setup-notify": generic(*virtio_setup(), dma_pattern(0, 0, b"\x01\x00\x00\x00"),
                            mmio_write(WORD, NOTIFY, 0, 0)),
    "setup-desc-pattern": generic(*virtio_setup(8), dma_pattern(0, 0, b"\x01\x00" + DESC_LIKE),
                                  mmio_write(WORD, NOTIFY, 0, 0),
                                  mmio_write(WORD, NOTIFY, 0, 0)),
    "config-isr": generic(mmio_read(QUAD, DEVICE, 0), mmio_read(QUAD, DEVICE, 8),
                          mmio_read(BYTE, ISR, 0), mmio_read(LONG, COMMON, 0x04)),
    "reset-after-notify": generic(*virtio_setup(), dma_pattern(0, 0, b"\x00"),
                                  mmio_write(WORD, NOTIFY, 0, 0),
                                  mmio_write(BYTE, COMMON, STATUS, 0),
                                  mmio_write(WORD, NOTIFY, 0, 0)),
}


def write(target, seeds):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, f"seed-{name}"), "wb") as f:
            f.write(data)


def main():
    write("virtio-pmem-fuzz", PMEM)
    write("generic-fuzz-virtio-pmem-pci", PMEM_PCI)
    write("generic-fuzz-coalesced-ports-pc", PORTS_PC)
    write("generic-fuzz-coalesced-ports-q35", PORTS_Q35)


if __name__ == "__main__":
    main()
