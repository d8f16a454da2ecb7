/*
 * A reset requested through the reset control register (byte write 0x06
 * to 0xcf9) while 32-bit writes to CONFIG_ADDRESS (0xcf8) may be queued
 * in KVM's coalesced ring.  First boot: marks CMOS NVRAM register 0x50,
 * prints "first", writes 0xcf8 QUEUED times, requests the reset, and would
 * print "late" if the guest ran on after the request (which must not
 * happen: the reset is immediate), then accesses 0xcfc, which flushes the
 * ring, and prints "flushed".  After the reset (CMOS survives it) the
 * guest sees the mark, clears it, prints "second" and parks.
 */
#include "debugcon.inc"

#define MARK_REG 0x50
#define MARK 0xa5
#define QUEUED 100

start:
    real_mode_setup
    mov $MARK_REG, %al
    out %al, $0x70
    in $0x71, %al
    cmp $MARK, %al
    je second

    mov $MARK_REG, %al
    out %al, $0x70
    mov $MARK, %al
    out %al, $0x71
    print msg_first

    mov $QUEUED, %cx
    mov $0xcf8, %dx
    mov $0x80000000, %eax
1:  out %eax, %dx
    add $4, %eax
    loop 1b

    mov $0xcf9, %dx
    mov $0x06, %al              /* reset CPU, hard reset */
    out %al, %dx
    print msg_late
    mov $0xcfc, %dx
    in %dx, %eax
    print msg_flushed
    park

second:
    mov $MARK_REG, %al
    out %al, $0x70
    xor %al, %al
    out %al, $0x71
    print msg_second
    park

msg_first:      .asciz "first\n"
msg_late:       .asciz "late\n"
msg_flushed:    .asciz "flushed\n"
msg_second:     .asciz "second\n"

#include "reset.inc"
