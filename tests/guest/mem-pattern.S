/*
 * A guest for migration tests and the migration benchmark (TCG): it keeps
 * rewriting a verifiable pattern over a range of RAM, at a steady rate if
 * asked, and mirrors a few CMOS NVRAM bytes into RAM.
 *
 * From the reset vector (real mode, f000:0000) it switches to 32-bit
 * protected mode with flat 4 GiB segments, then:
 *   - writes the 8 bytes at `cmos_bytes' to NVRAM 0x48..0x4f (once);
 *   - programs PIT channel 0 as a free-running counter (mode 2, 65536);
 *   - forever: writes page W % NPAGES of the range with generation
 *     W / NPAGES + 1, then stores W + 1 (W: pages written since boot, the
 *     one word the harness derives everything from); after every BURST
 *     pages it re-reads NVRAM 0x48..0x4f into the mirror and, when paced,
 *     waits until BURST_TICKS PIT ticks (1.193182 MHz, QEMU's virtual
 *     clock, which stands still while the VM is stopped) have passed since
 *     the previous burst's deadline.  A guest that fell behind (a busy host)
 *     catches up by at most 100 ms of writes; beyond that the deadline
 *     restarts from now.
 *
 * Page p of generation g (g >= 1), 1024 little-endian words, written in
 * ascending order: PAGE_MAGIC, p, g, then 1021 x ((p * 0x9e3779b1) ^
 * (g * 0x85ebca77)).  Generation 0 is the untouched (zero) page.
 *
 * Status page at physical 0x1000 (tests/migration/mempattern.py reads it):
 *   +0  STATUS_MAGIC        +4  W (pages written)  +8  NPAGES
 *   +12 mirror refreshes   +16 PIT ticks elapsed  +20 first pass done (1)
 *   +32 mirror of NVRAM 0x48..0x4f (8 bytes)   +40.. the guest's variables
 *
 * Parameters (the harness patches a copy of the image), at 0xff00:
 *   base u32 (physical address of page 0, 4 KiB aligned), npages u32,
 *   burst u32 (pages per burst, >= 1), burst_ticks u32 (0: unpaced),
 *   flags u32 (bit 0: first pass unpaced), cmos_bytes[8].
 */
#define STATUS          0x1000
#define PAGE_MAGIC      0x4d505447
#define STATUS_MAGIC    0x5453504d
#define PREV_PIT        40      /* the guest's own variables, in the status page */
#define DEADLINE        44
#define BURST_LEFT      48
#define PIT_HZ          1193182
#define MAX_LAG         (PIT_HZ / 10)   /* catch up at most 100 ms */
#define PHYS(x)         (0xf0000 + (x))

    .code16
    .text
start:
    cli
    cld
    in $0x92, %al               /* fast A20 on */
    or $2, %al
    and $0xfe, %al
    out %al, $0x92
    mov %cs, %ax
    mov %ax, %ds
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $PHYS(pm32)

    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $0x7000, %esp

    /* status page: clear, then fill in what is known */
    mov $STATUS, %edi
    xor %eax, %eax
    mov $1024, %ecx
    rep stosl
    mov $STATUS, %ebx
    movl $STATUS_MAGIC, 0(%ebx)
    mov PHYS(npages), %eax
    mov %eax, 8(%ebx)

    /* NVRAM 0x48..0x4f = cmos_bytes */
    xor %ecx, %ecx
1:  lea 0x48(%ecx), %eax
    out %al, $0x70
    movb PHYS(cmos_bytes)(%ecx), %al
    out %al, $0x71
    inc %ecx
    cmp $8, %ecx
    jb 1b

    /* PIT channel 0: lobyte/hibyte, mode 2, binary, reload 0 (65536) */
    mov $0x34, %al
    out %al, $0x43
    xor %al, %al
    out %al, $0x40
    out %al, $0x40
    call read_pit
    mov %eax, PREV_PIT(%ebx)
    movl $0, DEADLINE(%ebx)

    xor %esi, %esi              /* ESI: cursor (page index) */
    movl $1, %ebp               /* EBP: generation */
    mov PHYS(burst), %eax
    mov %eax, BURST_LEFT(%ebx)

page_loop:
    /* EDI = base + cursor * 4096 */
    mov %esi, %edi
    shl $12, %edi
    add PHYS(base), %edi
    movl $PAGE_MAGIC, %eax
    stosl
    mov %esi, %eax
    stosl
    mov %ebp, %eax
    stosl
    mov %esi, %eax
    imul $0x9e3779b1, %eax, %eax
    mov %ebp, %edx
    imul $0x85ebca77, %edx, %edx
    xor %edx, %eax
    mov $1021, %ecx
    rep stosl
    incl 4(%ebx)                /* W += 1: the page is complete */

    inc %esi
    cmp PHYS(npages), %esi
    jb 2f
    xor %esi, %esi
    inc %ebp
    movl $1, 20(%ebx)           /* the first pass is done */
2:  decl BURST_LEFT(%ebx)
    jnz page_loop
    mov PHYS(burst), %eax
    mov %eax, BURST_LEFT(%ebx)
    call mirror_cmos
    call pace
    jmp page_loop

/* NVRAM 0x48..0x4f -> status +32, then count the refresh */
mirror_cmos:
    xor %ecx, %ecx
1:  lea 0x48(%ecx), %eax
    out %al, $0x70
    in $0x71, %al
    mov %al, 32(%ebx, %ecx)
    inc %ecx
    cmp $8, %ecx
    jb 1b
    incl 12(%ebx)
    ret

/* wait for the next burst's deadline (see the header) */
pace:
    mov PHYS(burst_ticks), %eax
    test %eax, %eax
    jz 9f
    testl $1, PHYS(flags)       /* first pass unpaced? */
    jz 1f
    cmpl $0, 20(%ebx)
    je 9f
1:  add %eax, DEADLINE(%ebx)
2:  call elapsed_now            /* EAX: ticks since boot */
    mov %eax, %edx
    sub DEADLINE(%ebx), %edx    /* EDX: how far past the deadline */
    jns 3f
    mov $200, %ecx              /* not yet: do not hammer the PIT */
4:  dec %ecx
    jnz 4b
    jmp 2b
3:  cmp $MAX_LAG, %edx
    jbe 9f
    mov %eax, DEADLINE(%ebx)    /* far behind: no burst to catch up */
9:  ret

/* EAX = PIT ticks since boot (accumulated; read often enough: a wrap is 55 ms) */
elapsed_now:
    call read_pit
    mov PREV_PIT(%ebx), %edx
    mov %eax, PREV_PIT(%ebx)
    sub %eax, %edx              /* the counter counts down */
    and $0xffff, %edx
    add %edx, 16(%ebx)
    mov 16(%ebx), %eax
    ret

read_pit:                       /* EAX = PIT channel 0 count */
    xor %al, %al
    out %al, $0x43              /* latch channel 0 */
    in $0x40, %al
    mov %al, %dl
    in $0x40, %al
    mov %al, %ah
    mov %dl, %al
    movzwl %ax, %eax
    ret

    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: code, flat 4 GiB, 32-bit */
    .quad 0x00cf93000000ffff    /* 0x10: data, flat 4 GiB */
gdt_end:
gdtr:
    .word gdt_end - gdt - 1
    .long PHYS(gdt)

    .org 0xff00                 /* parameters: tests/migration/mempattern.py */
base:        .long 0x100000
npages:      .long 256
burst:       .long 16
burst_ticks: .long 0
flags:       .long 1
cmos_bytes:  .byte 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88

    .code16                     /* the reset vector runs in real mode */
#include "reset.inc"
