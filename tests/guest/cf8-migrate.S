/*
 * Leave a 32-bit CONFIG_ADDRESS write queued while the VM is stopped (with
 * a sized zone at 0xcf8, KVM queues it in its coalesced ring).
 *
 * Selects device 0's register 0 and reads it through 0xcfc, waits 2^31
 * TSC cycles (QEMU's start-up work is over by then), selects its register
 * 8 (class code and revision), prints "W", and spins for 2^32 TSC cycles;
 * nothing in the loop flushes the ring.  Meanwhile the harness stops the
 * VM, migrates it and resumes it on the destination, where the loop ends
 * and 0xcfc is read again.  Prints "first XXXXXXXX" (vendor and device)
 * and "then XXXXXXXX" (class code and revision: what the destination has
 * when the queued write reached CONFIG_ADDRESS before its state was
 * saved, register 0 again when it was lost), then "done", and parks.
 */
#include "debugcon.inc"

start:
    real_mode_setup
    mov $0xcf8, %dx
    mov $0x80000000, %eax
    out %eax, %dx
    mov $0xcfc, %dx
    in %dx, %eax
    mov %eax, %ebx

    mov $0x80000000, %ecx
    call wait_tsc

    mov $0xcf8, %dx
    mov $0x80000008, %eax
    out %eax, %dx
    print msg_wait
    mov $0, %ecx                /* 0 means 2^32 */
    call wait_tsc
    mov $0xcfc, %dx
    in %dx, %eax
    mov %eax, %edi

    print msg_first
    mov %ebx, %eax
    call puthex32
    print msg_then
    mov %edi, %eax
    call puthex32
    print msg_done
    park

#include "wait-tsc.inc"

#include "puthex32.inc"

msg_wait:   .asciz "W\n"
msg_first:  .asciz "first "
msg_then:   .asciz "\nthen "
msg_done:   .asciz "\ndone\n"

#include "reset.inc"
