/*
 * Scan PCI bus 0 through CONFIG_ADDRESS/CONFIG_DATA (0xcf8/0xcfc) as a BIOS
 * does: for every device, function 0 (and 1..7 when the header type says
 * multi-function), print "SS.F VVVV:DDDD" for each function present, then
 * "done", and park.
 */
#include "debugcon.inc"

start:
    real_mode_setup
    xor %bx, %bx                /* BH = device, BL = function */
next:
    /* CONFIG_ADDRESS = enable | device << 11 | function << 8 */
    xor %eax, %eax
    mov %bh, %al
    shl $11, %eax
    movzbl %bl, %edx
    shl $8, %edx
    or %edx, %eax
    or $0x80000000, %eax
    mov %eax, %esi
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfc, %dx
    in %dx, %eax
    cmp $0xffff, %ax
    je absent

    mov %eax, %edi              /* device:vendor */
    mov %bh, %al
    call puthex8
    mov $'.', %al
    out %al, $0xe9
    mov %bl, %al
    call puthex4
    mov $' ', %al
    out %al, $0xe9
    mov %di, %ax
    call puthex16
    mov $':', %al
    out %al, $0xe9
    mov %edi, %eax
    shr $16, %eax
    call puthex16
    mov $'\n', %al
    out %al, $0xe9

    test %bl, %bl
    jnz advance_fn
    /* function 0: header type (offset 0x0e) bit 7 = multi-function */
    mov %esi, %eax
    or $0x0c, %eax
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfc, %dx
    in %dx, %eax
    test $0x00800000, %eax
    jz advance_dev
advance_fn:
    inc %bl
    cmp $8, %bl
    jb next
    jmp advance_dev
absent:
    test %bl, %bl
    jnz advance_fn
advance_dev:
    xor %bl, %bl
    inc %bh
    cmp $32, %bh
    jb next
    print msg_done
    park

msg_done:   .asciz "done\n"

#include "reset.inc"
