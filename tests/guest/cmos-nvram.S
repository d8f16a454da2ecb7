/*
 * Write two CMOS NVRAM bytes through the index/data ports 0x70/0x71 and read
 * them back.  Exit status: the byte read back from register 0x40, or 0x7f if
 * register 0x41 did not hold its value (so a stale index shows up either way).
 */
#include "exit.inc"

#define REG_A   0x40
#define VAL_A   0x2b
#define REG_B   0x41
#define VAL_B   0x35

    .code16
    .text
start:
    mov $REG_A, %al
    out %al, $0x70
    mov $VAL_A, %al
    out %al, $0x71
    mov $REG_B, %al
    out %al, $0x70
    mov $VAL_B, %al
    out %al, $0x71

    mov $REG_B, %al
    out %al, $0x70
    in $0x71, %al
    cmp $VAL_B, %al
    jne fail
    mov $REG_A, %al
    out %al, $0x70
    in $0x71, %al
    exit_with_al
fail:
    mov $0x7f, %al
    exit_with_al

#include "reset.inc"
