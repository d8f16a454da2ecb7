/*
 * Write a counter to the RTC index port 0x70, forever: 1, 2, ... 255, 0,
 * 1, ... (a byte, one more each write).  Prints "R" first.
 *
 * 0x70 is a coalesced zone, so KVM queues these writes in its ring.  The
 * harness meanwhile maps a PCI serial port's I/O BAR over 0x70 and unmaps
 * it again (tests/kvm/kvm_tests.py): while it is mapped the writes reach
 * its transmit register, so the bytes on its chardev show in which order
 * the writes reached it.
 */
#include "debugcon.inc"

start:
    real_mode_setup
    print msg_run
    xor %al, %al
1:  inc %al
    out %al, $0x70
    jmp 1b

msg_run:    .asciz "R\n"

#include "reset.inc"
