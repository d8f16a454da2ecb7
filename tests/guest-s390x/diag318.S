/*
 * Tiny s390x guest for DIAGNOSE 0x318 (loaded with -kernel, entered at
 * _start in 64-bit supervisor state with DAT off).
 *
 * It reads SCLP Read SCP Info byte 134, issues DIAG 318 with CODE in
 * supervisor state, then again in problem state, records what happened in
 * the result block at RESULTS, and ends in a disabled wait at address
 * 0xfff, which QEMU turns into a guest shutdown.  Result block (u64 each):
 *   +0   servc condition code        +8   SCLP response code
 *   +16  SCCB byte 134               +24  program interruption code of
 *   +32  ... of the problem-state         the supervisor-state DIAG (0: none)
 *        DIAG (2: privileged op)     +40  1 if the problem-state DIAG did
 *   +48  DONE once all ran                not interrupt
 */
#define RESULTS     0x11000
#define SCCB        0x12000
#define CODE        0x04123456789abcde
#define DONE        0x444941473331384f      /* "DIAG318O" */

#define LC_PGM_CODE     0x8e
#define LC_PGM_NEW_PSW  0x1d0

        .text
        .globl _start
_start:
        larl    %r1, pgm_new_psw
        mvc     LC_PGM_NEW_PSW(16, %r0), 0(%r1)
        larl    %r10, results

        /* SCLP Read SCP Info into a cleared 4k SCCB */
        larl    %r2, sccb
        lghi    %r3, 16
1:      xc      0(256, %r2), 0(%r2)
        la      %r2, 256(%r2)
        brctg   %r3, 1b
        larl    %r2, sccb
        mvhhi   0(%r2), 4096                    /* SCCB length */
        lgfi    %r3, 0x00020001                 /* read SCP info */
        .insn   rre, 0xb2200000, %r3, %r2       /* servc */
        ipm     %r4
        srl     %r4, 28
        stg     %r4, 0(%r10)
        llgh    %r4, 6(%r2)
        stg     %r4, 8(%r10)
        llgc    %r4, 134(%r2)
        stg     %r4, 16(%r10)

        /* DIAG 318 in supervisor state */
        la      %r1, 24(%r10)
        larl    %r3, after_supervisor
        bras    %r14, expect
        lgrl    %r2, code
        diag    %r2, %r0, 0x318
after_supervisor:

        /* DIAG 318 in problem state: privileged operation */
        la      %r1, 32(%r10)
        larl    %r3, finish
        bras    %r14, expect
        larl    %r1, problem_psw
        lpswe   0(%r1)
problem:
        lgrl    %r2, code
        diag    %r2, %r0, 0x318
        mvi     47(%r10), 1
        lpswe   0(%r1)          /* privileged: back to supervisor state */

finish:
        lgrl    %r4, done
        stg     %r4, 48(%r10)
        larl    %r1, wait_psw
        lpswe   0(%r1)

/* A program interrupt stores its code at (%r1) and resumes at (%r3). */
expect:
        larl    %r5, slot
        stg     %r1, 0(%r5)
        stg     %r3, 8(%r5)
        br      %r14

pgm_handler:
        llgh    %r0, LC_PGM_CODE(%r0)
        larl    %r5, slot
        lg      %r6, 0(%r5)
        stg     %r0, 0(%r6)
        lg      %r6, 8(%r5)
        br      %r6

        .balign 8
pgm_new_psw:    .quad 0x0000000180000000, pgm_handler
problem_psw:    .quad 0x0001000180000000, problem
wait_psw:       .quad 0x0002000180000000, 0xfff
code:           .quad CODE
done:           .quad DONE
slot:           .quad 0, 0

        .org    RESULTS - 0x10000
results:
        .fill   64, 1, 0
        .org    SCCB - 0x10000
sccb:
        .fill   4096, 1, 0
