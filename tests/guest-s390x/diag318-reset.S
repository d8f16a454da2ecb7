/*
 * Tiny s390x guest: DIAG 318, then a "load normal" reset (DIAG 308
 * subcode 1), which resets the CPUs without clearing memory and starts the
 * guest again at _start (from the short IPL PSW it stores at absolute 0).  The boot count lives at BOOTS, outside the
 * loaded image, so the second boot knows it is one: it issues no DIAG 318
 * and stops in a disabled wait (a guest shutdown) after storing DONE.
 * The machine must have cleared the code on the reset; a CPU normal or
 * initial reset alone keeps it (only a clear reset zeroes the field).
 *   BOOTS +0 boots so far   +8 DONE once the second boot ran
 */
#define BOOTS       0x30000
#define CODE        0x04123456789abcde
#define DONE        0x444941473331384f      /* "DIAG318O" */

        .text
        .globl _start
_start:
        lgfi    %r10, BOOTS
        lg      %r2, 0(%r10)
        aghi    %r2, 1
        stg     %r2, 0(%r10)
        cghi    %r2, 1
        jne     second

        lgrl    %r2, code
        diag    %r2, %r0, 0x318
        /* load normal starts the CPU with the short PSW at absolute 0 */
        larl    %r1, ipl_psw
        mvc     0(8, %r0), 0(%r1)
        lghi    %r3, 1                          /* load normal */
        diag    %r0, %r3, 0x308
        /* not reached unless the reset was refused: stop without DONE */
        larl    %r1, wait_psw
        lpswe   0(%r1)

second:
        lgrl    %r4, done
        stg     %r4, 8(%r10)
        larl    %r1, wait_psw
        lpswe   0(%r1)

        .balign 8
wait_psw:       .quad 0x0002000180000000, 0xfff
ipl_psw:        .quad 0x0008000080000000 + _start    /* short format, 31-bit */
code:           .quad CODE
done:           .quad DONE
