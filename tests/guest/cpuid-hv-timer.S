/*
 * Read the Hyper-V CPUID leaves as a Hyper-V aware guest does
 * (0x40000000 first) and print each on isa-debugcon (iobase 0xe9, where
 * the harness adds one) as "hv LEAF EAX EBX ECX EDX" in hex, then "done".
 * Then exit through isa-debug-exit with 0x20 | CPUID 0x40000003 EDX bit 19
 * (direct-mode synthetic timers available).
 */
#include "debugcon.inc"
#include "exit.inc"

start:
    real_mode_setup
    mov $leaves, %bx
next:
    mov (%bx), %eax
    test %eax, %eax
    jz report
    push %bx
    print tag
    call puthex32
    xor %ecx, %ecx
    cpuid
    call space_hex32
    mov %ebx, %eax
    call space_hex32
    mov %ecx, %eax
    call space_hex32
    mov %edx, %eax
    call space_hex32
    mov $'\n', %al
    out %al, $0xe9
    pop %bx
    add $4, %bx
    jmp next

report:
    print done
    mov $0x40000003, %eax
    cpuid
    shr $19, %edx
    and $1, %dl
    mov %dl, %al
    or $0x20, %al
    exit_with_al

space_hex32:            /* " " then EAX */
    push %ax
    mov $' ', %al
    out %al, $0xe9
    pop %ax
    /* falls through into puthex32 */
#include "puthex32.inc"

leaves:
    .long 0x40000000, 0x40000001, 0x40000003, 0x40000004, 0x4000000a, 0
tag:
    .asciz "hv "
done:
    .asciz "done\n"

#include "reset.inc"
