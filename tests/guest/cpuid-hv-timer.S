/*
 * Read CPUID 0x40000003 and report EDX bit 19 (direct-mode synthetic
 * timers available): exits through isa-debug-exit with 0x20 | bit19.
 * (0x40000000 first, as a Hyper-V aware guest does.)
 */
#include "exit.inc"

    .code16
    .text
start:
    mov $0x40000000, %eax
    cpuid
    mov $0x40000003, %eax
    cpuid
    shr $19, %edx
    and $1, %dl
    mov %dl, %al
    or $0x20, %al
    exit_with_al

#include "reset.inc"
