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


# The coalesced ports' regions in address order: rtc-index 0x70, rtc 0x71,
# pci-conf-idx 0xcf8, pci-conf-data 0xcfc (bases 0..3).
BYTE, WORD, LONG = 0, 1, 2
PORTS = {
    "rtc-index-data": generic(out(BYTE, 0, 0, 0x0e), out(BYTE, 1, 0, 0x5a),
                              out(BYTE, 0, 0, 0x0e), inp(BYTE, 1, 0)),
    "rtc-index-repeated": generic(*[out(BYTE, 0, 0, r) for r in (0x0a, 0x0b, 0x0c, 0x8e)],
                                  inp(BYTE, 1, 0), out(BYTE, 1, 0, 0x26)),
    "pci-config": generic(out(LONG, 2, 0, 0x80000000), inp(LONG, 3, 0),
                          out(LONG, 2, 0, 0x80000008), inp(BYTE, 3, 2),
                          out(WORD, 2, 0, 0x8000), inp(LONG, 3, 0)),
    "pci-config-bytes": generic(out(BYTE, 2, 0, 0x04), out(BYTE, 2, 1, 0x00),
                                out(BYTE, 2, 3, 0x80), inp(WORD, 3, 0),
                                out(BYTE, 3, 1, 0x01)),
}


def write(target, seeds):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, f"seed-{name}"), "wb") as f:
            f.write(data)


def main():
    write("virtio-pmem-fuzz", PMEM)
    write("generic-fuzz-coalesced-ports-pc", PORTS)
    write("generic-fuzz-coalesced-ports-q35", PORTS)


if __name__ == "__main__":
    main()
