/*
 * Write one I/O port COUNT times, then leave through isa-debug-exit (status 1).
 * COUNT, PORT and WIDTH (1 or 4 bytes) are data at fixed offsets, so one
 * image serves every benchmark: the runner patches them into a copy, and the
 * raw /dev/kvm loop (bench/kvm-port-loop.c) pokes them into guest memory.
 * The value written is 0x80000000 (AL = 0): on 0xcf8 a valid config address
 * (bus 0, device 0, register 0), on 0x70 the seconds register.
 */
#include "exit.inc"

    .code16
    .text
start:
    mov %cs:port, %dx
    mov %cs:count, %ecx
    mov $0x80000000, %eax
    test %ecx, %ecx
    jz done
    cmpb $4, %cs:width
    je loop4
loop1:
    out %al, %dx
    dec %ecx
    jnz loop1
    jmp done
loop4:
    out %eax, %dx
    dec %ecx
    jnz loop4
done:
    mov $0, %al
    exit_with_al

    .org 0xff00         /* PORT_LOOP_PARAMS in bench/port-loop-image.h */
count:  .long 0
port:   .word 0x70
width:  .byte 1

#include "reset.inc"
