/*
 * More index writes than KVM's coalesced ring holds before one data read.
 *
 * Fills CMOS NVRAM 0x40..0x4f with reg * 3 + 1, writes the index port 0x70
 * COUNT times (cycling through 0x40..0x4f) and then 0x47, reads 0x71, and
 * reads all sixteen bytes back in reverse order.  Prints on isa-debugcon:
 *   storm XX            the byte read after the storm (want 0xd6)
 *   nvram XX..XX        registers 0x4f down to 0x40
 *   done
 * and parks, so the harness can read QMP statistics before quitting.
 */
#include "debugcon.inc"

start:
    real_mode_setup

    mov $0x40, %bl
fill:
    mov %bl, %al
    out %al, $0x70
    add %bl, %al
    add %bl, %al
    inc %al
    out %al, $0x71
    inc %bl
    cmp $0x50, %bl
    jb fill

    mov %cs:count, %cx
storm:
    mov %cl, %al
    and $0x0f, %al
    or $0x40, %al
    out %al, $0x70
    loop storm
    mov $0x47, %al
    out %al, $0x70
    in $0x71, %al
    print msg_storm
    call puthex8

    print msg_nvram
    mov $0x4f, %bl
readback:
    mov %bl, %al
    out %al, $0x70
    in $0x71, %al
    call puthex8
    dec %bl
    cmp $0x40, %bl
    jae readback
    print msg_done
    park

msg_storm:  .asciz "storm "
msg_nvram:  .asciz "\nnvram "
msg_done:   .asciz "\ndone\n"

    .org 0xff00
count:  .word 1000

#include "reset.inc"
