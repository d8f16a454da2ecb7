"""KVM layer: tiny real-mode guests under /dev/kvm.

Skipped, with the reason, where /dev/kvm cannot be opened.
"""
import guests

# tests/guest/cmos-nvram.S: the value it writes to NVRAM register 0x40 and
# reports back through isa-debug-exit.
CMOS_NVRAM_VALUE = 0x2b


def test_cmos_nvram(build, machine):
    status, err = guests.run_tiny(build, "cmos-nvram.bin", machine=machine)
    want = guests.debug_exit_status(CMOS_NVRAM_VALUE)
    return status == want, f"exit status {status}, want {want}\n{err}"


TESTS = [
    (f"cmos-nvram/{m}: NVRAM byte written through 0x70/0x71 reads back",
     lambda b, m=m: test_cmos_nvram(b, m))
    for m in ("pc", "q35")
]


def run(tap, build):
    why = guests.kvm_unavailable()
    for name, fn in TESTS:
        if why:
            tap.result(True, f"kvm: {name}", skip=why)
            continue
        try:
            ok, diag = fn(build)
        except Exception as e:
            ok, diag = False, repr(e)
        tap.result(ok, f"kvm: {name}", diag=diag)
