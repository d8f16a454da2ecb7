/*
 * Leave a write to the RTC index port queued while the VM is stopped.
 *
 * Writes NVRAM 0x45 = 0x5a and 0x46 = 0x21, waits 2^31 TSC cycles (about a
 * second: QEMU's start-up work, which may replay the ring, is over by then),
 * selects 0x45 through 0x70 (a write KVM queues in its coalesced ring),
 * prints "W", and spins for 2^32 TSC cycles (about two seconds of guest
 * time; nothing in the loop flushes the ring).  Meanwhile the harness stops the VM, migrates it and
 * resumes it on the destination, where the loop ends, 0x71 is read, and
 * the guest exits through isa-debug-exit with what it read: 0x5a when the
 * queued index write reached the RTC before its state was saved.
 */
#include "debugcon.inc"
#include "exit.inc"

start:
    real_mode_setup
    mov $0x45, %al
    out %al, $0x70
    mov $0x5a, %al
    out %al, $0x71
    mov $0x46, %al
    out %al, $0x70
    mov $0x21, %al
    out %al, $0x71

    mov $0x80000000, %ecx
    call wait_tsc

    mov $0x45, %al
    out %al, $0x70
    print msg_wait
    mov $0, %ecx                /* 0 means 2^32 */
    call wait_tsc
    in $0x71, %al
    exit_with_al

#include "wait-tsc.inc"

msg_wait:   .asciz "W\n"

#include "reset.inc"
