/*
 * virtio-pmem through its virtqueue: configuration, flush durability, group
 * commit, error answers, malformed and random requests, hot-unplug with a
 * flush in flight, and migration with a flush in flight.
 *
 * The device sits at 00:04.0 and is driven with libqos' virtio-pci code.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/units.h"
#include "libqtest.h"
#include "libqos/malloc-pc.h"
#include "libqos/pci-pc.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_pci.h"
#include "standard-headers/linux/virtio_ring.h"
#include "standard-headers/linux/virtio_pmem.h"

#define PMEM_SIZE       (16 * MiB)
#define PMEM_SLOT       4
#define RESP_OK         0
#define RESP_EIO        1
#define QOM_VDEV        "/machine/peripheral/nv1/virtio-backend"
#define TIMEOUT_US      (30 * G_USEC_PER_SEC)

typedef struct PMem {
    QTestState *qts;
    QGuestAllocator alloc;
    QPCIBus *bus;
    QVirtioPCIDevice *dev;
    QVirtQueue *vq;
    uint64_t req;       /* guest buffer of the request header */
    uint64_t resp;      /* guest buffer of the response */
    uint64_t scratch;   /* 4 KiB for random descriptors */
    char *path;         /* backing file */
} PMem;

static char *make_backing_file(void)
{
    g_autoptr(GError) err = NULL;
    char *path = NULL;
    int fd;

    /* on tmpfs where there is one: postcopy of shared memory needs it */
    if (g_file_test("/dev/shm", G_FILE_TEST_IS_DIR)) {
        path = g_strdup("/dev/shm/virtio-pmem-XXXXXX");
        fd = g_mkstemp(path);
    } else {
        fd = g_file_open_tmp("virtio-pmem-XXXXXX", &path, &err);
        g_assert_no_error(err);
    }
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, PMEM_SIZE), ==, 0);
    close(fd);
    return path;
}

static void pmem_driver_init(PMem *t)
{
    QVirtioDevice *vdev = &t->dev->vdev;

    qvirtio_start_device(vdev);
    qvirtio_set_features(vdev, qvirtio_get_features(vdev) &
                         (1ull << VIRTIO_F_VERSION_1));
    t->vq = qvirtqueue_setup(vdev, &t->alloc, 0);
    qvirtio_set_driver_ok(vdev);
}

/* Find the device; with @init, also reset it and set up the driver. */
static void pmem_attach(PMem *t, bool init)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(PMEM_SLOT, 0) };

    pc_alloc_init(&t->alloc, t->qts, ALLOC_NO_FLAGS);
    t->bus = qpci_new_pc(t->qts, &t->alloc);
    t->dev = virtio_pci_new(t->bus, &addr);
    g_assert_nonnull(t->dev);
    g_assert_cmpint(t->dev->vdev.device_type, ==, VIRTIO_ID_PMEM);
    qvirtio_pci_device_enable(t->dev);
    if (!init) {
        return;
    }
    pmem_driver_init(t);
    t->req = guest_alloc(&t->alloc, 16);
    t->resp = guest_alloc(&t->alloc, 16);
    t->scratch = guest_alloc(&t->alloc, 4096);
}

static PMem *pmem_start_with(const char *path, const char *extra)
{
    PMem *t = g_new0(PMem, 1);

    t->path = g_strdup(path);
    t->qts = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G "
                         "-object memory-backend-file,id=mem1,share=on,"
                         "mem-path=%s,size=%u "
                         "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0%s",
                         path, (unsigned)PMEM_SIZE, PMEM_SLOT, extra ?: "");
    pmem_attach(t, true);
    return t;
}

static PMem *pmem_start(const char *extra)
{
    g_autofree char *path = make_backing_file();

    return pmem_start_with(path, extra);
}

static void pmem_stop(PMem *t)
{
    if (t->vq) {
        qvirtqueue_cleanup(t->dev->vdev.bus, t->vq, &t->alloc);
    }
    qvirtio_pci_device_disable(t->dev);
    g_free(t->dev);
    qpci_free_pc(t->bus);
    alloc_destroy(&t->alloc);
    qtest_quit(t->qts);
    unlink(t->path);
    g_free(t->path);
    g_free(t);
}

/* Queue one well-formed request (type, 4-byte response); returns its head. */
static uint32_t pmem_queue(PMem *t, uint32_t type)
{
    uint32_t head;

    qtest_writel(t->qts, t->req, cpu_to_le32(type));
    qtest_writel(t->qts, t->resp, 0xdeadbeef);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
    qvirtqueue_add(t->qts, t->vq, t->resp, 4, true, false);
    return head;
}

/*
 * Wait for the next used element, which must be @head.  (Not through the
 * ISR: one interrupt may announce several answers of one sync.)
 */
static void wait_used(PMem *t, uint32_t head, uint32_t *len)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint32_t got;

    while (!qvirtqueue_get_buf(t->qts, t->vq, &got, len)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        qtest_clock_step(t->qts, 100);
    }
    g_assert_cmpuint(got, ==, head);
}

static uint32_t pmem_request(PMem *t, uint32_t type)
{
    uint32_t head, len = 0;

    qvirtqueue_reset_pool(t->vq);
    head = pmem_queue(t, type);
    qvirtqueue_kick(t->qts, &t->dev->vdev, t->vq, head);
    wait_used(t, head, &len);
    g_assert_cmpuint(len, ==, 4);
    return le32_to_cpu(qtest_readl(t->qts, t->resp));
}

static QDict *pmem_stats(QTestState *qts, const char *id)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'x-query-virtio-pmem'}");
    QList *list = qdict_get_qlist(rsp, "return");
    QDict *stats = NULL;

    for (const QListEntry *e = qlist_first(list); e; e = qlist_next(e)) {
        QDict *dev = qobject_to(QDict, qlist_entry_obj(e));

        if (!g_strcmp0(qdict_get_try_str(dev, "id"), id)) {
            stats = qdict_get_qdict(dev, "stats");
            qobject_ref(stats);
        }
    }
    qobject_unref(rsp);
    g_assert_nonnull(stats);
    return stats;
}

static int64_t pmem_stat(PMem *t, const char *name)
{
    QDict *stats = pmem_stats(t->qts, "nv1");
    int64_t v = qdict_get_int(stats, name);

    qobject_unref(stats);
    return v;
}

/* Stats change in QEMU's main loop, after the kick that causes them. */
static void wait_stat(PMem *t, const char *name, int64_t want)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (pmem_stat(t, name) != want) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

static uint8_t device_status(PMem *t)
{
    return t->dev->vdev.bus->get_status(&t->dev->vdev);
}

static void test_config(void)
{
    PMem *t = pmem_start(NULL);
    QDict *rsp = qtest_qmp(t->qts, "{'execute': 'query-memory-devices'}");
    QDict *dev = qobject_to(QDict, qlist_peek(qdict_get_qlist(rsp, "return")));
    QDict *data = qdict_get_qdict(dev, "data");

    g_assert_cmpstr(qdict_get_str(dev, "type"), ==, "virtio-pmem");
    g_assert_cmpstr(qdict_get_str(data, "id"), ==, "nv1");
    g_assert_cmpuint(qdict_get_int(data, "size"), ==, PMEM_SIZE);
    g_assert_cmpuint(qvirtio_config_readq(&t->dev->vdev, 0), ==,
                     qdict_get_int(data, "memaddr"));
    g_assert_cmpuint(qvirtio_config_readq(&t->dev->vdev, 8), ==, PMEM_SIZE);
    qobject_unref(rsp);
    pmem_stop(t);
}

static void test_flush_reaches_file(void)
{
    PMem *t = pmem_start(NULL);
    uint64_t base = qvirtio_config_readq(&t->dev->vdev, 0);
    uint8_t pattern[4096], back[4096];
    int fd;

    for (int i = 0; i < sizeof(pattern); i++) {
        pattern[i] = i * 37 + 11;
    }
    /* guest stores into the pmem range, then asks for durability */
    qtest_memwrite(t->qts, base + 8192, pattern, sizeof(pattern));
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);

    fd = open(t->path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, back, sizeof(back), 8192), ==, sizeof(back));
    close(fd);
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    g_assert_cmpint(pmem_stat(t, "requests"), ==, 1);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, 1);
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 0);
    g_assert_cmpint(pmem_stat(t, "in-flight"), ==, 0);
    pmem_stop(t);
}

/*
 * While one sync runs, eight requests arrive: none of them may be answered
 * by that sync; one more sync answers all eight.
 */
static void test_group_commit(void)
{
    PMem *t = pmem_start(",x-sync-delay-us=300000");
    uint32_t first, heads[8], len;
    uint64_t resp[8];

    qvirtqueue_reset_pool(t->vq);
    first = pmem_queue(t, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    qvirtqueue_kick(t->qts, &t->dev->vdev, t->vq, first);
    wait_stat(t, "syncs", 1);                           /* running, 300 ms */

    for (int i = 0; i < 8; i++) {
        resp[i] = guest_alloc(&t->alloc, 4);
        qtest_writel(t->qts, resp[i], 0xdeadbeef);
        heads[i] = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
        qvirtqueue_add(t->qts, t->vq, resp[i], 4, true, false);
        qvirtqueue_kick(t->qts, &t->dev->vdev, t->vq, heads[i]);
    }
    wait_stat(t, "in-flight", 9);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, 1);

    wait_used(t, first, &len);
    for (int i = 0; i < 8; i++) {
        wait_used(t, heads[i], &len);
        g_assert_cmpuint(qtest_readl(t->qts, resp[i]), ==, RESP_OK);
    }
    g_assert_cmpint(pmem_stat(t, "requests"), ==, 9);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, 2);
    g_assert_cmpint(pmem_stat(t, "batch-max"), ==, 8);
    pmem_stop(t);
}

static void test_eio_then_recovers(void)
{
    PMem *t = pmem_start(NULL);

    qtest_qmp_assert_success(t->qts, "{'execute': 'qom-set', 'arguments':"
                             " {'path': %s, 'property': 'x-inject-flush-errno',"
                             "  'value': 5}}", QOM_VDEV);
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_EIO);
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 1);
    g_assert_false(device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET);

    qtest_qmp_assert_success(t->qts, "{'execute': 'qom-set', 'arguments':"
                             " {'path': %s, 'property': 'x-inject-flush-errno',"
                             "  'value': 0}}", QOM_VDEV);
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 1);
    g_assert_cmpint(pmem_stat(t, "requests"), ==, 2);
    pmem_stop(t);
}

static void test_unknown_type(void)
{
    PMem *t = pmem_start(NULL);

    g_assert_cmpuint(pmem_request(t, 0x1234), ==, RESP_EIO);
    g_assert_false(device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET);
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, 1);   /* the unknown one cost none */
    pmem_stop(t);
}

static void pmem_reset_driver(PMem *t)
{
    qvirtqueue_cleanup(t->dev->vdev.bus, t->vq, &t->alloc);
    pmem_driver_init(t);
}

/*
 * Reset the device and bring the driver back with the rings it had: what a
 * driver does after NEEDS_RESET, without rebuilding the rings (which costs
 * hundreds of qtest round trips).
 */
static void pmem_quick_reset(PMem *t)
{
    QVirtioDevice *vdev = &t->dev->vdev;
    QVirtQueue *vq = t->vq;

    qvirtio_start_device(vdev);
    qvirtio_set_features(vdev, 1ull << VIRTIO_F_VERSION_1);
    qtest_writew(t->qts, vq->avail + 2, 0);     /* avail->idx */
    qtest_writew(t->qts, vq->used + 2, 0);      /* used->idx */
    vq->last_used_idx = 0;
    vdev->bus->queue_select(vdev, 0);
    vdev->bus->set_queue_address(vdev, vq);
    qpci_io_writew(t->dev->pdev, t->dev->bar, t->dev->common_cfg_offset +
                   offsetof(struct virtio_pci_common_cfg, queue_enable), 1);
    qvirtio_set_driver_ok(vdev);
}

/* Kick a chain and wait until the device either answers it or breaks. */
static bool kick_and_settle(PMem *t, uint32_t head)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint32_t got, len;

    qvirtqueue_kick(t->qts, &t->dev->vdev, t->vq, head);
    for (;;) {
        if (device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET) {
            return false;
        }
        if (qvirtqueue_get_buf(t->qts, t->vq, &got, &len)) {
            g_assert_cmpuint(got, ==, head);
            g_assert_cmpuint(len, ==, 4);
            return true;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        qtest_clock_step(t->qts, 100);
    }
}

static void test_malformed(void)
{
    PMem *t = pmem_start(NULL);
    uint32_t head;

    /* no response buffer */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, false);
    g_assert_false(kick_and_settle(t, head));
    pmem_reset_driver(t);

    /* a 2-byte response buffer */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
    qvirtqueue_add(t->qts, t->vq, t->resp, 2, true, false);
    g_assert_false(kick_and_settle(t, head));
    pmem_reset_driver(t);

    /* the request header in a device-writable buffer: nothing to read */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, true, true);
    qvirtqueue_add(t->qts, t->vq, t->resp, 4, true, false);
    g_assert_false(kick_and_settle(t, head));
    pmem_reset_driver(t);

    /* a descriptor chain that loops onto itself */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
    qtest_writew(t->qts, t->vq->desc + 16 * head + 14, head);
    g_assert_false(kick_and_settle(t, head));
    pmem_reset_driver(t);

    g_assert_cmpint(pmem_stat(t, "bad-requests"), ==, 3);    /* the loop: virtio core */
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    pmem_stop(t);
}

/*
 * Random chains of one to four descriptors with random lengths, directions
 * and types.  The spec's rules decide what must happen: a chain with at
 * least 4 readable bytes first and 4 writable bytes is answered (OK for
 * FLUSH, EIO otherwise); anything else breaks the device, which the driver
 * then resets.  QEMU must survive all of it and keep working.
 */
static void test_random_requests(void)
{
    PMem *t = pmem_start(",x-skip-sync=on");
    GRand *rnd = g_rand_new_with_seed(27);
    int answered = 0, broken = 0;

    while (broken < 10000 || answered < 1000) {
        int n = g_rand_int_range(rnd, 1, 5);
        uint32_t rd = 0, wr = 0, head = 0;
        bool write_seen = false, valid = true;
        uint32_t type = g_rand_int_range(rnd, 0, 4) ? 0 : g_rand_int(rnd);

        qvirtqueue_reset_pool(t->vq);
        qtest_writel(t->qts, t->scratch, cpu_to_le32(type));
        for (int d = 0; d < n; d++) {
            bool w = g_rand_boolean(rnd);
            uint32_t len = g_rand_int_range(rnd, 0, 9);
            /* consecutive buffers, so a split header reads back whole */
            uint64_t addr = w ? t->scratch + 2048 + wr : t->scratch + rd;
            uint32_t idx = qvirtqueue_add(t->qts, t->vq, addr, len, w, d + 1 < n);

            if (d == 0) {
                head = idx;
            }
            /* zero-sized buffers, and readable after writable, are errors */
            valid &= len > 0 && !(write_seen && !w);
            write_seen |= w;
            *(w ? &wr : &rd) += len;
        }
        valid &= rd >= 4 && wr >= 4;
        if (kick_and_settle(t, head)) {
            g_assert_true(valid);
            g_assert_cmpuint(qtest_readl(t->qts, t->scratch + 2048), ==,
                             type == VIRTIO_PMEM_REQ_TYPE_FLUSH ? RESP_OK : RESP_EIO);
            answered++;
        } else {
            g_assert_false(valid);
            pmem_quick_reset(t);
            broken++;
        }
    }
    g_test_message("%d answered, %d broke the device", answered, broken);
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    g_rand_free(rnd);
    pmem_stop(t);
}

static void wait_device_deleted(QTestState *qts, const char *id)
{
    for (;;) {
        QDict *ev = qtest_qmp_eventwait_ref(qts, "DEVICE_DELETED");
        QDict *data = qdict_get_qdict(ev, "data");
        bool done = data && !g_strcmp0(qdict_get_try_str(data, "device"), id);

        qobject_unref(ev);
        if (done) {
            return;
        }
    }
}

/* Unplug while a flush is in flight: it completes, and nothing breaks. */
static void test_unplug_with_flush_in_flight(void)
{
    PMem *t = pmem_start(",x-sync-delay-us=200000");
    uint32_t head;

    qvirtqueue_reset_pool(t->vq);
    head = pmem_queue(t, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    qvirtqueue_kick(t->qts, &t->dev->vdev, t->vq, head);

    /* the guest is not running: the request is carried out at reset */
    qtest_qmp_device_del_send(t->qts, "nv1");
    qtest_system_reset_nowait(t->qts);
    wait_device_deleted(t->qts, "nv1");

    /* the backend is free again for a new device */
    qtest_qmp_device_add(t->qts, "virtio-pmem-pci", "nv2",
                         "{'memdev': 'mem1', 'addr': '5.0'}");
    qtest_quit(t->qts);
    unlink(t->path);
    g_free(t->path);
    g_free(t);
}

static void test_q35_hotplug_unplug(void)
{
    g_autofree char *path = make_backing_file();
    QTestState *qts = qtest_initf("-M q35 -m 256M,slots=2,maxmem=1G "
                                  "-device pcie-root-port,id=rp1,chassis=1,slot=1");
    QDict *rsp;
    QList *devs;

    qtest_qmp_assert_success(qts, "{'execute': 'object-add', 'arguments':"
                             " {'qom-type': 'memory-backend-file', 'id': 'mem2',"
                             "  'mem-path': %s, 'size': %u, 'share': true}}",
                             path, (unsigned)PMEM_SIZE);
    qtest_qmp_device_add(qts, "virtio-pmem-pci", "nv2",
                         "{'memdev': 'mem2', 'bus': 'rp1'}");
    rsp = qtest_qmp(qts, "{'execute': 'query-memory-devices'}");
    devs = qdict_get_qlist(rsp, "return");
    g_assert_cmpint(qlist_size(devs), ==, 1);
    qobject_unref(rsp);

    qtest_qmp_device_del_send(qts, "nv2");
    qtest_system_reset_nowait(qts);
    wait_device_deleted(qts, "nv2");
    rsp = qtest_qmp(qts, "{'execute': 'query-memory-devices'}");
    g_assert_cmpint(qlist_size(qdict_get_qlist(rsp, "return")), ==, 0);
    qobject_unref(rsp);

    /* and again: the backend was released */
    qtest_qmp_device_add(qts, "virtio-pmem-pci", "nv3",
                         "{'memdev': 'mem2', 'bus': 'rp1'}");
    qtest_quit(qts);
    unlink(path);
}

static void test_bad_backends(void)
{
    static const char *cases[][2] = {
        { "-object memory-backend-ram,id=m,size=16M", "no backing file" },
        { "-object memory-backend-file,id=m,size=16M,mem-path=%s,share=off",
          "share=off" },
    };
    g_autofree char *path = make_backing_file();

    for (int i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *obj = g_strdup_printf(cases[i][0], path);
        QTestState *qts = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G %s", obj);
        QDict *rsp = qtest_qmp(qts, "{'execute': 'device_add', 'arguments':"
                               " {'driver': 'virtio-pmem-pci', 'id': 'x',"
                               "  'memdev': 'm'}}");
        QDict *err = qdict_get_qdict(rsp, "error");

        g_assert_nonnull(err);
        g_assert_nonnull(strstr(qdict_get_str(err, "desc"), cases[i][1]));
        qobject_unref(rsp);
        qtest_quit(qts);
    }
    unlink(path);
}

static void wait_migration(QTestState *qts, const char *want)
{
    for (;;) {
        QDict *rsp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
        QDict *ret = qdict_get_qdict(rsp, "return");
        const char *st = qdict_get_try_str(ret, "status");
        bool done = st && !strcmp(st, want);

        g_assert_false(st && !strcmp(st, "failed"));
        qobject_unref(rsp);
        if (done) {
            return;
        }
        g_usleep(20000);
    }
}

/*
 * Migrate to a QEMU with another backing file, with a flush in flight: the
 * flush is answered before the state is saved, the destination sees the
 * answer and the pmem contents, and its device keeps serving flushes.
 */
static void test_migrate(const void *data)
{
    bool postcopy = GPOINTER_TO_INT(data);
    g_autofree char *dst_path = make_backing_file();
    g_autofree char *sock = g_strdup_printf("%s/pmem-mig-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    PMem *src = pmem_start(",x-sync-delay-us=200000");
    uint64_t base = qvirtio_config_readq(&src->dev->vdev, 0);
    uint8_t pattern[8192], back[8192];
    uint32_t head;
    QTestState *dst;
    PMem *d;
    int fd;

    for (int i = 0; i < sizeof(pattern); i++) {
        pattern[i] = i * 13 + 5;
    }
    qtest_memwrite(src->qts, base + PMEM_SIZE - sizeof(pattern), pattern,
                   sizeof(pattern));
    qvirtqueue_reset_pool(src->vq);
    head = pmem_queue(src, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    qvirtqueue_kick(src->qts, &src->dev->vdev, src->vq, head);

    dst = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G "
                      "-object memory-backend-file,id=mem1,share=on,"
                      "mem-path=%s,size=%u "
                      "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0 "
                      "-incoming %s", dst_path, (unsigned)PMEM_SIZE, PMEM_SLOT, uri);
    if (postcopy) {
        qtest_qmp_assert_success(src->qts, "{'execute': 'migrate-set-capabilities',"
            " 'arguments': {'capabilities': [{'capability': 'postcopy-ram',"
            " 'state': true}]}}");
        qtest_qmp_assert_success(dst, "{'execute': 'migrate-set-capabilities',"
            " 'arguments': {'capabilities': [{'capability': 'postcopy-ram',"
            " 'state': true}]}}");
    }
    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    if (postcopy) {
        qtest_qmp_assert_success(src->qts, "{'execute': 'migrate-start-postcopy'}");
    }
    wait_migration(src->qts, "completed");
    qtest_qmp_eventwait(dst, "RESUME");

    /* the in-flight flush was answered on the source, before the save */
    g_assert_cmpuint(qtest_readl(dst, src->resp), ==, RESP_OK);

    /* the virtio state came along: the driver's status is still live */
    d = g_new0(PMem, 1);
    d->qts = dst;
    d->path = g_strdup(dst_path);
    pmem_attach(d, false);
    g_assert_cmphex(device_status(d) & VIRTIO_CONFIG_S_DRIVER_OK, ==,
                    VIRTIO_CONFIG_S_DRIVER_OK);
    /* and the device serves flushes (after a driver reset, with new rings) */
    pmem_driver_init(d);
    d->req = guest_alloc(&d->alloc, 16);
    d->resp = guest_alloc(&d->alloc, 16);
    g_assert_cmpuint(pmem_request(d, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    g_assert_cmpint(pmem_stat(d, "requests"), ==, 1);

    fd = open(dst_path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, back, sizeof(back), PMEM_SIZE - sizeof(back)), ==,
                    sizeof(back));
    close(fd);
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    pmem_stop(d);
    pmem_stop(src);
}

/*
 * Closed-loop load: @n requests always outstanding, each resubmitted as soon
 * as it is answered, for @seconds.  Descriptors are laid out once (slot i:
 * descriptors 2i and 2i+1); each round writes the avail entries in one go,
 * kicks once, and reads the used ring in one go, so the qtest protocol
 * costs a few round trips per round, not per request.  Each round first
 * dirties a page of the pmem range, so the host syncs have data to write.
 */
typedef struct LoadResult {
    uint64_t requests;
    double rps;
    uint32_t p50_us, p99_us;
} LoadResult;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static void pmem_load(PMem *t, int n, double seconds, LoadResult *res)
{
    QTestState *qts = t->qts;
    QVirtQueue *vq = t->vq;
    uint64_t base = qvirtio_config_readq(&t->dev->vdev, 0);
    uint64_t resp = guest_alloc(&t->alloc, 4 * n);
    g_autofree struct vring_desc *desc = g_new0(struct vring_desc, 2 * n);
    g_autofree gint64 *sent = g_new0(gint64, n);
    g_autofree uint16_t *pending = g_new0(uint16_t, n);
    g_autofree struct vring_used_elem *used = g_new0(struct vring_used_elem, vq->size);
    GArray *lat = g_array_new(false, false, sizeof(uint32_t));
    uint16_t avail_idx = qtest_readw(qts, vq->avail + 2);
    uint16_t used_idx = vq->last_used_idx;
    int npending = n;
    bool first = true;              /* the first round always submits */
    uint64_t rounds = 0;
    gint64 start, end;

    g_assert_cmpint(2 * n, <=, vq->size);
    qtest_writel(qts, t->req, cpu_to_le32(VIRTIO_PMEM_REQ_TYPE_FLUSH));
    for (int i = 0; i < n; i++) {
        desc[2 * i].addr = cpu_to_le64(t->req);
        desc[2 * i].len = cpu_to_le32(4);
        desc[2 * i].flags = cpu_to_le16(VRING_DESC_F_NEXT);
        desc[2 * i].next = cpu_to_le16(2 * i + 1);
        desc[2 * i + 1].addr = cpu_to_le64(resp + 4 * i);
        desc[2 * i + 1].len = cpu_to_le32(4);
        desc[2 * i + 1].flags = cpu_to_le16(VRING_DESC_F_WRITE);
        pending[i] = i;
    }
    qtest_memwrite(qts, vq->desc, desc, sizeof(*desc) * 2 * n);

    start = g_get_monotonic_time();
    end = start + seconds * G_USEC_PER_SEC;
    res->requests = 0;
    for (;;) {
        gint64 now = g_get_monotonic_time();
        uint16_t got;

        /* submit every slot that is free: dirty its page, publish, kick */
        bool submit = first || now < end;

        first = false;
        if (npending && submit) {
            /* one page dirtied per round: the syncs have data to write */
            qtest_writeq(qts, base + (rounds++ % 1024) * 4096, now);
        }
        for (int k = 0; k < npending && submit; k++) {
            uint16_t slot = pending[k];
            uint16_t head = cpu_to_le16(2 * slot);

            qtest_memwrite(qts, vq->avail + 4 + 2 * ((avail_idx + k) % vq->size),
                           &head, 2);
            sent[slot] = now;
        }
        if (npending && submit) {
            avail_idx += npending;
            qtest_writew(qts, vq->avail + 2, avail_idx);
            t->dev->vdev.bus->virtqueue_kick(&t->dev->vdev, vq);
            npending = 0;
        } else if (npending == n) {
            break;                      /* time is up and all are answered */
        }

        /*
         * Collect what was answered.  A device that takes one request per
         * kick (the base's) leaves the rest queued until the next kick, so
         * kick again when nothing moved for a millisecond.
         */
        for (gint64 idle = g_get_monotonic_time();;) {
            got = qtest_readw(qts, vq->used + 2) - used_idx;
            if (got) {
                break;
            }
            if (g_get_monotonic_time() - idle > 1000) {
                t->dev->vdev.bus->virtqueue_kick(&t->dev->vdev, vq);
                idle = g_get_monotonic_time();
            }
        }
        for (uint16_t k = 0; k < got; k++) {
            uint16_t pos = (used_idx + k) % vq->size;

            if (k == 0 || pos == 0) {
                uint16_t run = MIN(got - k, vq->size - pos);

                qtest_memread(qts, vq->used + 4 + 8 * pos, &used[pos], 8 * run);
            }
        }
        now = g_get_monotonic_time();
        for (uint16_t k = 0; k < got; k++) {
            uint16_t slot = le32_to_cpu(used[(used_idx + k) % vq->size].id) / 2;
            uint32_t us = now - sent[slot];

            g_array_append_val(lat, us);
            pending[npending++] = slot;
        }
        used_idx += got;
        res->requests += got;
    }
    vq->last_used_idx = used_idx;
    for (int i = 0; i < n; i++) {
        g_assert_cmpuint(qtest_readl(qts, resp + 4 * i), ==, RESP_OK);
    }
    res->rps = res->requests / ((g_get_monotonic_time() - start) / 1e6);
    g_array_sort(lat, cmp_u32);
    res->p50_us = g_array_index(lat, uint32_t, lat->len / 2);
    res->p99_us = g_array_index(lat, uint32_t, lat->len * 99 / 100);
    g_array_free(lat, true);
}

/* 64 requests queued before one kick are all answered by a single sync. */
static void test_one_sync_for_a_queue(void)
{
    PMem *t = pmem_start(NULL);
    LoadResult r;

    pmem_load(t, 64, 0, &r);
    g_assert_cmpuint(r.requests, ==, 64);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, 1);
    g_assert_cmpint(pmem_stat(t, "batch-max"), ==, 64);
    pmem_stop(t);
}

static uint64_t count_lines(const char *path, const char *word)
{
    g_autofree char *text = NULL;
    uint64_t n = 0;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return 0;
    }
    for (char *p = text; (p = strstr(p, word)); p += strlen(word)) {
        n++;
    }
    return n;
}

/*
 * Benchmark mode (bench/virtio_pmem.py), when PMEM_BENCH_LEVELS is set:
 * for each level print "@@ level N requests rps p50 p99 syncs".  Host syncs
 * are counted from a trace event in PMEM_BENCH_TRACE_LOG, so the same
 * harness measures QEMUs without our statistics.
 */
static int pmem_bench(void)
{
    const char *log = g_getenv("PMEM_BENCH_TRACE_LOG");
    const char *event = g_getenv("PMEM_BENCH_TRACE_EVENT");
    double seconds = g_ascii_strtod(g_getenv("PMEM_BENCH_SECONDS") ?: "2", NULL);
    g_auto(GStrv) levels = g_strsplit(g_getenv("PMEM_BENCH_LEVELS"), ",", -1);
    g_autofree char *extra = g_strdup_printf("%s -D %s -trace %s",
                                             g_getenv("PMEM_BENCH_DEVICE_OPTS") ?: "",
                                             log, event);
    g_autofree char *path = NULL;
    PMem *t;
    int fd;

    /* on the disk, not tmpfs: the syncs must be real */
    path = g_build_filename(g_getenv("PMEM_BENCH_DIR"), "pmem-bench.img", NULL);
    fd = open(path, O_CREAT | O_RDWR, 0600);
    g_assert_cmpint(fd, >=, 0);
    /*
     * Written through once: with a sparse file syncs also allocate blocks,
     * and fallocate()'s unwritten extents make every sync convert some.
     */
    {
        g_autofree char *zeros = g_malloc0(1 << 20);

        for (uint64_t off = 0; off < PMEM_SIZE; off += 1 << 20) {
            g_assert_cmpint(pwrite(fd, zeros, 1 << 20, off), ==, 1 << 20);
        }
        g_assert_cmpint(fsync(fd), ==, 0);
    }
    close(fd);
    t = pmem_start_with(path, extra);
    for (int i = 0; levels[i]; i++) {
        int n = atoi(levels[i]);
        uint64_t syncs = count_lines(log, event);
        LoadResult r;

        pmem_load(t, n, seconds, &r);
        printf("@@ level %d %" PRIu64 " %.0f %u %u %" PRIu64 "\n", n, r.requests,
               r.rps, r.p50_us, r.p99_us, count_lines(log, event) - syncs);
        fflush(stdout);
    }
    pmem_stop(t);
    return 0;
}

/*
 * Against the unmodified base (its binary in QTEST_QEMU_BINARY_UPSTREAM).
 * Ours to base: the base knows neither our device section nor the pmem
 * RAM block, so the destination refuses the stream; the source keeps
 * running with its device working.  Base to ours: the stream carries no
 * device state and no contents, so our device is left in reset state (the
 * documented loss: nothing on the destination can tell).
 */
static bool have_upstream(void)
{
    if (!g_getenv("QTEST_QEMU_BINARY_UPSTREAM")) {
        g_test_skip("no unmodified base binary (QTEST_QEMU_BINARY_UPSTREAM); "
                    "make upstream builds it");
        return false;
    }
    return true;
}

static char *pmem_dest_args(const char *path, const char *uri)
{
    return g_strdup_printf("-M pc -m 256M,slots=2,maxmem=1G "
                           "-object memory-backend-file,id=mem1,share=on,"
                           "mem-path=%s,size=%u "
                           "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0 "
                           "-incoming %s", path, (unsigned)PMEM_SIZE, PMEM_SLOT, uri);
}

static void test_migrate_to_upstream(void)
{
    g_autofree char *dst_path = NULL;
    g_autofree char *sock = NULL;
    g_autofree char *uri = NULL;
    g_autofree char *args = NULL;
    QTestState *dst;
    PMem *src;

    if (!have_upstream()) {
        return;
    }
    dst_path = make_backing_file();
    sock = g_strdup_printf("%s/pmem-up-%d.sock", g_get_tmp_dir(), getpid());
    uri = g_strdup_printf("unix:%s", sock);
    args = pmem_dest_args(dst_path, uri);
    src = pmem_start(NULL);
    dst = qtest_init_with_env("QTEST_QEMU_BINARY_UPSTREAM", args, true);
    qtest_set_expected_status(dst, 1);      /* it refuses and exits */

    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    for (;;) {
        QDict *rsp = qtest_qmp(src->qts, "{'execute': 'query-migrate'}");
        const char *st = qdict_get_try_str(qdict_get_qdict(rsp, "return"), "status");
        bool failed = st && !strcmp(st, "failed");

        g_assert_false(st && !strcmp(st, "completed"));
        qobject_unref(rsp);
        if (failed) {
            break;
        }
        g_usleep(20000);
    }
    qtest_quit(dst);
    /* the source goes on, and so does its device */
    g_assert_cmpuint(pmem_request(src, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    unlink(dst_path);
    unlink(sock);
    pmem_stop(src);
}

static void test_migrate_from_upstream(void)
{
    g_autofree char *src_path = NULL;
    g_autofree char *dst_path = NULL;
    g_autofree char *sock = NULL;
    g_autofree char *uri = NULL;
    g_autofree char *src_args = NULL;
    PMem *src, *dst;

    if (!have_upstream()) {
        return;
    }
    src_path = make_backing_file();
    dst_path = make_backing_file();
    sock = g_strdup_printf("%s/pmem-up-%d.sock", g_get_tmp_dir(), getpid());
    uri = g_strdup_printf("unix:%s", sock);
    src = g_new0(PMem, 1);
    src->path = g_strdup(src_path);
    src_args = g_strdup_printf("-M pc -m 256M,slots=2,maxmem=1G "
                               "-object memory-backend-file,id=mem1,share=on,"
                               "mem-path=%s,size=%u "
                               "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0",
                               src_path, (unsigned)PMEM_SIZE, PMEM_SLOT);
    src->qts = qtest_init_with_env("QTEST_QEMU_BINARY_UPSTREAM", src_args, true);
    pmem_attach(src, true);
    g_assert_cmpuint(pmem_request(src, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);

    dst = g_new0(PMem, 1);
    dst->path = g_strdup(dst_path);
    dst->qts = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G "
                           "-object memory-backend-file,id=mem1,share=on,"
                           "mem-path=%s,size=%u "
                           "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0 "
                           "-incoming %s", dst_path, (unsigned)PMEM_SIZE, PMEM_SLOT, uri);
    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    wait_migration(src->qts, "completed");
    qtest_qmp_eventwait(dst->qts, "RESUME");

    /* no device state came: the guest's driver is gone on this side */
    pmem_attach(dst, false);
    g_assert_cmphex(device_status(dst), ==, 0);
    unlink(sock);
    pmem_stop(dst);
    pmem_stop(src);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (g_getenv("PMEM_BENCH_LEVELS")) {
        return pmem_bench();
    }
    qtest_add_func("/virtio-pmem/config-matches-memory-device", test_config);
    qtest_add_func("/virtio-pmem/flush-reaches-backing-file", test_flush_reaches_file);
    qtest_add_func("/virtio-pmem/group-commit-never-answers-early", test_group_commit);
    qtest_add_func("/virtio-pmem/64-queued-requests-one-sync",
                   test_one_sync_for_a_queue);
    qtest_add_func("/virtio-pmem/eio-then-recovers", test_eio_then_recovers);
    qtest_add_func("/virtio-pmem/unknown-type-gets-eio", test_unknown_type);
    qtest_add_func("/virtio-pmem/malformed-requests-need-reset", test_malformed);
    qtest_add_func("/virtio-pmem/10000-random-malformed-requests",
                   test_random_requests);
    qtest_add_func("/virtio-pmem/unplug-with-flush-in-flight",
                   test_unplug_with_flush_in_flight);
    qtest_add_func("/virtio-pmem/q35-hotplug-unplug", test_q35_hotplug_unplug);
    qtest_add_func("/virtio-pmem/bad-backends-refused", test_bad_backends);
    qtest_add_data_func("/virtio-pmem/migrate-precopy-flush-in-flight",
                        GINT_TO_POINTER(false), test_migrate);
    qtest_add_data_func("/virtio-pmem/migrate-postcopy-flush-in-flight",
                        GINT_TO_POINTER(true), test_migrate);
    qtest_add_func("/virtio-pmem/migrate-to-unmodified-base-is-refused",
                   test_migrate_to_upstream);
    qtest_add_func("/virtio-pmem/migrate-from-unmodified-base-loses-device-state",
                   test_migrate_from_upstream);
    return g_test_run();
}
