/*
 * virtio-pmem fuzz target: descriptor chains built from the fuzz input
 *
 * The input is a sequence of operations, each an opcode byte followed by
 * the bytes it uses (missing bytes read as 0):
 *
 *   REQ      one request chain: FLUSH or another type, out/in lengths
 *            (exact, short, long, zero, huge), split over several
 *            descriptors, direct or indirect, readable/writable swapped,
 *            in before out, a bad address; placed in the avail ring, kicked
 *            or not.  Chains take consecutive descriptors modulo the queue
 *            size, so they run across the end of the table; the queue size
 *            (1 to 128) comes from the input, so the rings wrap quickly.
 *   RAW      one raw descriptor (flags, next and length from the input),
 *            optionally made available: loops, bad next, nested indirect.
 *   AVAIL    the avail index or a ring slot set to a raw value.
 *   MEMWRITE bytes of a request buffer changed (after its kick, say).
 *   KICK, DRAIN, RESET (mid-batch, then a new driver setup), STATUS (raw
 *   status byte), UNPLUG (device_del and ACPI eject with requests in
 *   flight; the device comes back on the next operation that needs it),
 *   STOP, CONT.
 *
 * The device answers FLUSH from the thread pool, in a completion that the
 * main loop runs.  The target runs the main loop only at DRAIN and at the
 * end of the input, until every completion has run (fuzz_drain_async()):
 * between two drains a sync stays in flight whatever the worker thread
 * did, so a reset, an unplug or a stop meets it, the same way in every
 * run of an input, and what an input starts ends inside it.  After a
 * drain the target checks what must hold whatever the guest did: with the
 * VM running nothing is left waiting, every used element is a valid head
 * with length 4; after an unplug the backend takes a new device.  A failed
 * check aborts, which libFuzzer reports as a crash.
 *
 * Downstream addition of this tree; not in upstream QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/rcu.h"
#include "qapi/qapi-commands-misc.h"
#include "qapi/qapi-commands-qdev.h"
#include "qobject/qdict.h"
#include "monitor/qdev.h"
#include "system/runstate.h"
#include "hw/virtio/virtio-pmem.h"
#include "tests/qtest/libqtest.h"
#include "tests/qtest/libqos/pci-pc.h"
#include "tests/qtest/libqos/virtio.h"
#include "tests/qtest/libqos/virtio-pci.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_pci.h"
#include "standard-headers/linux/virtio_ring.h"
#include "standard-headers/linux/virtio_pmem.h"
#include "fuzz.h"
#include "dm_fuzz.h"

#define PMEM_SLOT       4
#define PMEM_ID         "nv1"
#define PMEM_VDEV_PATH  "/machine/peripheral/" PMEM_ID "/virtio-backend"
#define PMEM_SIZE       (2 * MiB)
#define RAM_SIZE        (256 * MiB)
#define ACPI_PCIHP_SEL  0xae10          /* PIIX4 PCI hotplug: select bus */
#define ACPI_PCIHP_EJ   0xae08          /* and eject its slots */

/* Guest-physical layout of the driver's structures (in low RAM) */
#define RING_BASE       0x100000ull     /* descriptor table */
#define AVAIL_BASE      (RING_BASE + 0x800)
#define USED_BASE       (RING_BASE + 0x1000)
#define RING_AREA       0x2000
#define IND_BASE        0x110000ull     /* indirect tables, reused in turn */
#define IND_AREA        0x10000
#define BUF_BASE        0x1000000ull    /* request buffers, reused in turn */
#define BUF_AREA        0x100000
#define MAX_SEGS        4               /* per part of a request */
#define MAX_UNPLUGS     4               /* per input */
#define RESP_SENTINEL   0xa5

enum {
    OP_REQ,
    OP_RAW,
    OP_AVAIL,
    OP_MEMWRITE,
    OP_KICK,
    OP_DRAIN,
    OP_RESET,
    OP_STATUS,
    OP_UNPLUG,
    OP_STOP,
    OP_CONT,
    OP_MAX,
};

typedef struct Input {
    const uint8_t *p;
    size_t n;
} Input;

typedef struct Seg {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
} Seg;

typedef struct PMemFuzz {
    QTestState *qts;
    QPCIBus *bus;
    QVirtioPCIDevice *dev;
    bool plugged;               /* the device exists */
    bool ready;                 /* the driver set it up */
    uint8_t setup;              /* queue size and features of the setup */
    uint16_t qsize;
    uint16_t avail_idx;
    uint16_t used_seen;
    uint16_t next_desc;
    uint32_t notify_off;
    uint32_t buf_off;
    uint32_t ind_off;
    uint64_t pmem_start;
    unsigned unplugs;
    bool unplugged_since_drain;
} PMemFuzz;

static PMemFuzz F;
static const uint8_t zeroes[RING_AREA];

static uint8_t get8(Input *in)
{
    uint8_t v = 0;

    if (in->n) {
        v = *in->p++;
        in->n--;
    }
    return v;
}

static uint16_t get16(Input *in)
{
    return get8(in) | (uint16_t)get8(in) << 8;
}

static uint32_t get32(Input *in)
{
    return get16(in) | (uint32_t)get16(in) << 16;
}

static G_NORETURN void check_failed(const char *what)
{
    fprintf(stderr, "virtio-pmem-fuzz: check failed: %s\n", what);
    abort();
}

static VirtIOPMEM *pmem_device(void)
{
    Object *o = object_resolve_path(PMEM_VDEV_PATH, NULL);

    return o ? VIRTIO_PMEM(o) : NULL;
}

static void common_writew(unsigned off, uint16_t v)
{
    qpci_io_writew(F.dev->pdev, F.dev->bar, F.dev->common_cfg_offset + off, v);
}

static void common_writel(unsigned off, uint32_t v)
{
    qpci_io_writel(F.dev->pdev, F.dev->bar, F.dev->common_cfg_offset + off, v);
}

static void common_write64(unsigned off, uint64_t v)
{
    common_writel(off, v);
    common_writel(off + 4, v >> 32);
}

#define CFG(field) offsetof(struct virtio_pci_common_cfg, field)

/* A driver's setup: reset, features, one queue of the chosen size. */
static void driver_setup(uint8_t setup)
{
    QVirtioDevice *vdev = &F.dev->vdev;
    uint64_t want = 1ull << VIRTIO_F_VERSION_1;
    uint8_t status;

    F.setup = setup;
    F.qsize = 1 << (setup & 7);
    if (setup & 0x08) {
        want |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    }
    if (setup & 0x10) {
        want |= 1ull << VIRTIO_RING_F_EVENT_IDX;
    }
    vdev->bus->set_status(vdev, 0);
    /* not qtest_memset(): the base's fuzzer wrapper of it leaks its buffer */
    qtest_memwrite(F.qts, RING_BASE, zeroes, RING_AREA);
    F.avail_idx = F.used_seen = F.next_desc = 0;
    status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    vdev->bus->set_status(vdev, status);
    vdev->bus->set_features(vdev, vdev->bus->get_features(vdev) & want);
    status |= VIRTIO_CONFIG_S_FEATURES_OK;
    vdev->bus->set_status(vdev, status);
    F.ready = vdev->bus->get_status(vdev) & VIRTIO_CONFIG_S_FEATURES_OK;
    if (!F.ready) {
        return;
    }
    common_writew(CFG(queue_select), 0);
    common_writew(CFG(queue_size), F.qsize);
    common_write64(CFG(queue_desc_lo), RING_BASE);
    common_write64(CFG(queue_avail_lo), AVAIL_BASE);
    common_write64(CFG(queue_used_lo), USED_BASE);
    F.notify_off = F.dev->notify_cfg_offset +
        qpci_io_readw(F.dev->pdev, F.dev->bar,
                      F.dev->common_cfg_offset + CFG(queue_notify_off)) *
        F.dev->notify_off_multiplier;
    common_writew(CFG(queue_enable), 1);
    vdev->bus->set_status(vdev, status | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void device_attach(void)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(PMEM_SLOT, 0) };

    F.dev = virtio_pci_new(F.bus, &addr);
    if (!F.dev) {
        check_failed("no virtio-pmem-pci in its slot");
    }
    qvirtio_pci_device_enable(F.dev);
    F.pmem_start = pmem_device()->start;
    F.plugged = true;
    F.ready = false;
}

static void device_detach(void)
{
    if (F.dev) {
        qvirtio_pci_destructor(&F.dev->obj);
        g_free(F.dev);
        F.dev = NULL;
    }
}

/* Hot-plug the device again; the unplugged one must have let go of it. */
static void device_replug(void)
{
    QDict *opts = qdict_new();
    Error *err = NULL;

    qdict_put_str(opts, "driver", "virtio-pmem-pci");
    qdict_put_str(opts, "memdev", "pmem0");
    qdict_put_str(opts, "id", PMEM_ID);
    qdict_put_str(opts, "addr", stringify(PMEM_SLOT) ".0");
    qmp_device_add(opts, NULL, &err);
    qobject_unref(opts);
    if (err) {
        fprintf(stderr, "virtio-pmem-fuzz: %s\n", error_get_pretty(err));
        check_failed("the backend does not take a new device after unplug");
    }
    device_attach();
}

/* The device, set up by a driver, for the operations that need one. */
static bool device_ready(void)
{
    if (!F.plugged) {
        device_replug();
    }
    if (!F.ready) {
        driver_setup(F.setup);
    }
    return F.ready;
}

static void kick(void)
{
    qpci_io_writew(F.dev->pdev, F.dev->bar, F.notify_off, 0);
}

static void write_desc(uint64_t table, uint16_t idx, uint64_t addr,
                       uint32_t len, uint16_t flags, uint16_t next)
{
    struct vring_desc d = {
        .addr = cpu_to_le64(addr),
        .len = cpu_to_le32(len),
        .flags = cpu_to_le16(flags),
        .next = cpu_to_le16(next),
    };

    qtest_memwrite(F.qts, table + idx * sizeof(d), &d, sizeof(d));
}

static void make_available(uint16_t head)
{
    uint16_t v = cpu_to_le16(head);

    qtest_memwrite(F.qts, AVAIL_BASE + 4 + (F.avail_idx % F.qsize) * 2,
                   &v, 2);
    F.avail_idx++;
    v = cpu_to_le16(F.avail_idx);
    qtest_memwrite(F.qts, AVAIL_BASE + 2, &v, 2);
}

/* Room in the buffer area, taken in turn; lengths past it stay in RAM. */
static uint64_t buf_take(uint32_t len)
{
    uint64_t addr;

    len = MIN(len, 4096);
    if (F.buf_off + len > BUF_AREA) {
        F.buf_off = 0;
    }
    addr = BUF_BASE + F.buf_off;
    F.buf_off = QEMU_ALIGN_UP(F.buf_off + len, 16);
    return addr;
}

/* Addresses no driver should use, and the pmem range itself. */
static uint64_t bad_addr(uint8_t sel)
{
    switch (sel % 6) {
    case 0:
        return RAM_SIZE - 2;            /* straddles the end of low RAM */
    case 1:
        return 0xfffffffffffff000ull;   /* nothing there */
    case 2:
        return 0xfee00000;              /* the local APIC: MMIO */
    case 3:
        return F.pmem_start;            /* the pmem range: RAM too */
    case 4:
        return F.pmem_start + PMEM_SIZE - 2;
    default:
        return AVAIL_BASE;              /* the avail ring */
    }
}

static uint32_t length_of(uint8_t sel)
{
    static const uint32_t odd[16] = {
        0, 1, 2, 3, 5, 7, 8, 16, 64, 512, 4096, 65536, MiB, 16 * MiB,
        0x80000000u, 0xffffffffu,
    };

    return sel < 0x80 ? sizeof(uint32_t) : odd[sel & 15];
}

/* Split @len bytes at @addr over up to @n segments (some may be empty). */
static unsigned split(Seg *segs, uint64_t addr, uint32_t len, unsigned n,
                      uint16_t flags)
{
    uint32_t part = len / n;

    for (unsigned i = 0; i < n; i++) {
        segs[i].addr = addr;
        segs[i].len = i == n - 1 ? len - part * i : part;
        segs[i].flags = flags;
        addr += segs[i].len;
    }
    return n;
}

static void op_req(Input *in)
{
    uint8_t mode = get8(in);
    uint8_t out_sel = get8(in);
    uint8_t in_sel = get8(in);
    uint8_t shape = get8(in);
    uint32_t type, out_len, in_len;
    uint8_t out_buf[64] = { 0 };
    uint8_t in_buf[8];
    uint64_t out_addr, in_addr;
    uint16_t out_flags = 0, in_flags = VRING_DESC_F_WRITE;
    Seg segs[2 * MAX_SEGS], *s;
    unsigned n = 0, nout, nin;
    uint16_t head;

    switch (mode & 3) {
    case 2:
        type = get32(in) | 1;           /* never FLUSH (0) */
        break;
    case 3:
        type = get32(in);
        break;
    default:
        type = VIRTIO_PMEM_REQ_TYPE_FLUSH;
    }
    out_len = length_of(out_sel);
    in_len = length_of(in_sel);
    nout = 1 + (shape & 3);
    nin = 1 + ((shape >> 2) & 3);

    stl_le_p(out_buf, type);
    out_addr = buf_take(out_len);
    qtest_memwrite(F.qts, out_addr, out_buf, MIN(out_len, sizeof(out_buf)));
    memset(in_buf, RESP_SENTINEL, sizeof(in_buf));
    in_addr = buf_take(in_len);
    qtest_memwrite(F.qts, in_addr, in_buf, MIN(in_len, sizeof(in_buf)));

    if (mode & 0x08) {                  /* writable and readable swapped */
        out_flags = VRING_DESC_F_WRITE;
        in_flags = 0;
    }
    if (mode & 0x10) {                  /* device-writable part first */
        n += split(segs + n, in_addr, in_len, nin, in_flags);
        n += split(segs + n, out_addr, out_len, nout, out_flags);
    } else {
        n += split(segs + n, out_addr, out_len, nout, out_flags);
        n += split(segs + n, in_addr, in_len, nin, in_flags);
    }
    if (mode & 0x40) {                  /* one segment at a bad address */
        segs[(shape >> 4) % n].addr = bad_addr(get8(in));
    }

    head = F.next_desc;
    if (mode & 0x20) {                  /* an indirect table */
        uint64_t table;

        if (F.ind_off + n * sizeof(struct vring_desc) > IND_AREA) {
            F.ind_off = 0;
        }
        table = IND_BASE + F.ind_off;
        F.ind_off += n * sizeof(struct vring_desc);
        for (unsigned i = 0; i < n; i++) {
            s = &segs[i];
            write_desc(table, i, s->addr, s->len,
                       s->flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0), i + 1);
        }
        write_desc(RING_BASE, head, table, n * sizeof(struct vring_desc),
                   VRING_DESC_F_INDIRECT, 0);
        F.next_desc = (head + 1) % F.qsize;
    } else {                            /* consecutive, modulo the size */
        uint16_t idx = head;

        for (unsigned i = 0; i < n; i++) {
            uint16_t next = (idx + 1) % F.qsize;

            s = &segs[i];
            write_desc(RING_BASE, idx, s->addr, s->len,
                       s->flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0), next);
            idx = next;
        }
        F.next_desc = idx;
    }
    make_available(head);
    if (mode & 0x80) {
        kick();
    }
}

static void op_raw(Input *in)
{
    uint16_t idx = get8(in) % F.qsize;
    uint8_t where = get8(in);
    uint32_t len = get32(in);
    uint16_t flags = get16(in);
    uint16_t next = get16(in);
    uint8_t avail = get8(in);
    uint64_t addr;

    if (where < 0xc0) {
        addr = BUF_BASE + where * 64;
    } else if (where < 0xe0) {
        addr = IND_BASE + (where & 0x1f) * 64;
    } else if (where < 0xf0) {
        addr = RING_BASE + (where & 0xf) * sizeof(struct vring_desc);
    } else {
        addr = bad_addr(where);
    }
    write_desc(RING_BASE, idx, addr, len, flags, next);
    if (avail & 1) {
        make_available(idx);
    }
    if (avail & 2) {
        kick();
    }
}

static void op_avail(Input *in)
{
    uint8_t what = get8(in);
    uint16_t v = get16(in);
    uint16_t le = cpu_to_le16(v);

    switch (what % 3) {
    case 0:                             /* the index jumps */
        F.avail_idx = v;
        qtest_memwrite(F.qts, AVAIL_BASE + 2, &le, 2);
        break;
    case 1: {                           /* a slot gets a raw head */
        uint16_t head = cpu_to_le16(get16(in));

        qtest_memwrite(F.qts, AVAIL_BASE + 4 + (v % F.qsize) * 2, &head, 2);
        break;
    }
    default:                            /* flags, or used_event */
        qtest_memwrite(F.qts, v & 1 ? AVAIL_BASE : AVAIL_BASE + 4 + F.qsize * 2,
                       &le, 2);
    }
}

static void op_memwrite(Input *in)
{
    uint32_t off = (get16(in) * 16) % BUF_AREA;
    uint8_t len = get8(in) % 32;
    uint8_t data[32];

    for (unsigned i = 0; i < len; i++) {
        data[i] = get8(in);
    }
    qtest_memwrite(F.qts, BUF_BASE + off, data, len);
}

static void op_status(Input *in)
{
    uint8_t status = get8(in);

    F.dev->vdev.bus->set_status(&F.dev->vdev, status);
    if (!status) {
        F.ready = false;
    }
}

/* device_del, and the guest's ACPI eject of the slot, requests or not. */
static void op_unplug(Input *in)
{
    Error *err = NULL;

    if (F.unplugs >= MAX_UNPLUGS) {
        return;
    }
    F.unplugs++;
    qmp_device_del(PMEM_ID, &err);
    if (err) {
        error_free(err);
        return;
    }
    qtest_outl(F.qts, ACPI_PCIHP_SEL, 0);
    qtest_outl(F.qts, ACPI_PCIHP_EJ, 1u << PMEM_SLOT);
    /*
     * The memory regions' references are dropped in RCU callbacks: run
     * them, so that the device is freed now and not at some later moment
     * of the fuzzer (what uses it after that is then a use after free).
     */
    drain_call_rcu();
    if (object_resolve_path("/machine/peripheral/" PMEM_ID, NULL)) {
        check_failed("device_del and eject left the device in place");
    }
    device_detach();
    F.plugged = F.ready = false;
    F.unplugged_since_drain = true;
}

/*
 * Run every completion the input started, then check what holds whatever
 * the guest sent.
 */
static void drain_and_check(void)
{
    VirtIOPMEM *pmem;
    uint16_t used_idx, n;

    if (F.unplugged_since_drain) {
        /* what an unplug freed is freed before anything can use it */
        drain_call_rcu();
        F.unplugged_since_drain = false;
    }
    if (!fuzz_drain_async()) {
        check_failed("a sync's completion did not come within 10 s");
    }
    pmem = pmem_device();
    if (!F.plugged) {
        if (pmem) {
            check_failed("the unplugged device is still there");
        }
        return;
    }
    if (!pmem) {
        check_failed("the device is gone");
    }
    if (pmem->job) {
        check_failed("a sync is still running after the drain");
    }
    if (runstate_is_running() && (pmem->nr_waiting || pmem->nr_held)) {
        check_failed("requests left unanswered while the VM runs");
    }
    if (!F.ready) {
        return;
    }
    used_idx = qtest_readw(F.qts, USED_BASE + 2);
    n = MIN((uint16_t)(used_idx - F.used_seen), F.qsize);
    for (uint16_t i = used_idx - n; i != used_idx; i++) {
        uint64_t e = USED_BASE + 4 + (i % F.qsize) * 8;

        if (qtest_readl(F.qts, e) >= F.qsize) {
            check_failed("a used element names no descriptor of the table");
        }
        if (qtest_readl(F.qts, e + 4) != sizeof(uint32_t)) {
            check_failed("a used element's length is not the response's");
        }
    }
    F.used_seen = used_idx;
}

static void vm_run(void)
{
    Error *err = NULL;

    if (!runstate_is_running()) {
        qmp_cont(&err);
        error_free(err);
    }
}

static void vm_pause(void)
{
    Error *err = NULL;

    if (runstate_is_running()) {
        qmp_stop(&err);
        error_free(err);
    }
}

static void virtio_pmem_fuzz(QTestState *s, const unsigned char *data,
                             size_t size)
{
    Input in = { data, size };

    F.qts = s;
    F.unplugs = 0;
    F.buf_off = F.ind_off = 0;
    F.bus = qpci_new_pc(s, NULL);
    device_attach();
    driver_setup(get8(&in));

    while (in.n) {
        uint8_t op = get8(&in) % OP_MAX;

        if (op == OP_STOP) {
            vm_pause();
            continue;
        }
        if (op == OP_CONT) {
            vm_run();
            continue;
        }
        if (op == OP_DRAIN) {
            drain_and_check();
            continue;
        }
        if (op == OP_UNPLUG) {
            if (F.plugged) {
                op_unplug(&in);
            }
            continue;
        }
        if (op == OP_RESET) {
            uint8_t setup = get8(&in);

            if (device_ready()) {
                driver_setup(setup);
            }
            continue;
        }
        if (!device_ready()) {
            continue;
        }
        switch (op) {
        case OP_REQ:
            op_req(&in);
            break;
        case OP_RAW:
            op_raw(&in);
            break;
        case OP_AVAIL:
            op_avail(&in);
            break;
        case OP_MEMWRITE:
            op_memwrite(&in);
            break;
        case OP_KICK:
            kick();
            break;
        case OP_STATUS:
            op_status(&in);
            break;
        }
    }

    /* the end of the input: everything it started ends here */
    if (F.ready) {
        kick();
    }
    vm_run();
    drain_and_check();
    if (!F.plugged) {
        device_replug();
    }
    device_detach();
    qpci_free_pc(F.bus);
    F.bus = NULL;
    fuzz_reset(s);
    drain_and_check();
}

/*
 * The VM's start scheduled the device's resume bottom half: run it before
 * the first input, so that it does not take that input's first requests
 * from the ring (without a kick), as it would not for any later input.
 */
static void virtio_pmem_pre_fuzz(QTestState *s)
{
    flush_events(s);
}

static GString *virtio_pmem_fuzz_cmdline(FuzzTarget *t)
{
    GString *cmd = g_string_new(TARGET_NAME);

    /* see dm_generic_fuzz_configs.h for the backend's directory */
    g_string_append_printf(cmd, " -display none -machine pc,accel=qtest "
                           "-nodefaults -m %uM,slots=2,maxmem=1G "
                           "-object memory-backend-file,id=pmem0,share=on,"
                           "mem-path=%s,size=%u,prealloc=on "
                           "-device virtio-pmem-pci,memdev=pmem0,id=" PMEM_ID
                           ",addr=%d.0 ", (unsigned)(RAM_SIZE / MiB),
                           g_get_tmp_dir(), (unsigned)PMEM_SIZE, PMEM_SLOT);
    return cmd;
}

static void register_virtio_pmem_fuzz_targets(void)
{
    fuzz_add_target(&(FuzzTarget){
        .name = "virtio-pmem-fuzz",
        .description = "Fuzz virtio-pmem's request queue with descriptor "
                       "chains built from the input, resets, unplugs and "
                       "VM stops in between",
        .get_init_cmdline = virtio_pmem_fuzz_cmdline,
        .pre_fuzz = virtio_pmem_pre_fuzz,
        .fuzz = virtio_pmem_fuzz,
    });
}

fuzz_target_init(register_virtio_pmem_fuzz_targets);
