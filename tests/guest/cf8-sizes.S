/*
 * Accesses of every size around PCI CONFIG_ADDRESS (0xcf8-0xcfb), for the
 * sized zone tests: only 32-bit writes at 0xcf8 set the config address
 * (byte and word writes are ignored by the PCI host), a byte at 0xcf9 is
 * the reset control register.  Prints, on isa-debugcon:
 *   "addr XXXXXXXX" CONFIG_ADDRESS after one dword write and BYTE_WRITES
 *                   byte and word writes to 0xcf8, 0xcfa and 0xcfb
 *   "rcr XX XX"     the reset control register read back at once after
 *                   writing 0x02, then 0x00 (no reset: bit 2 stays clear)
 *   "addr XXXXXXXX" CONFIG_ADDRESS after DWORD_WRITES dword writes, the
 *                   last of 0x80001008
 *   "done", then parks.
 */
#include "debugcon.inc"

#define BYTE_WRITES 400         /* 4 accesses a round, 100 rounds */
#define DWORD_WRITES 400

start:
    real_mode_setup
    mov $0xcf8, %dx
    mov $0x80000800, %eax
    out %eax, %dx

    mov $(BYTE_WRITES / 4), %cx
1:  mov $0xcf8, %dx
    mov $0x5a, %al
    out %al, %dx                /* byte at 0xcf8 */
    mov $0x1234, %ax
    out %ax, %dx                /* word at 0xcf8 */
    mov $0xcfa, %dx
    out %ax, %dx                /* word at 0xcfa */
    mov $0xcfb, %dx
    out %al, %dx                /* byte at 0xcfb */
    loop 1b

    print msg_addr
    mov $0xcf8, %dx
    in %dx, %eax
    call puthex32
    print msg_nl

    print msg_rcr
    mov $0xcf9, %dx
    mov $0x02, %al
    out %al, %dx
    in %dx, %al
    call puthex8
    mov $' ', %al
    out %al, $0xe9
    mov $0xcf9, %dx
    xor %al, %al
    out %al, %dx
    in %dx, %al
    call puthex8
    print msg_nl

    mov $DWORD_WRITES, %cx
    mov $0xcf8, %dx
    mov $(0x80001008 - DWORD_WRITES + 1), %eax
2:  out %eax, %dx
    inc %eax
    loop 2b
    print msg_addr
    in %dx, %eax
    call puthex32
    print msg_nl

    print msg_done
    park

#include "puthex32.inc"

msg_addr:   .asciz "addr "
msg_rcr:    .asciz "rcr "
msg_nl:     .asciz "\n"
msg_done:   .asciz "done\n"

#include "reset.inc"
