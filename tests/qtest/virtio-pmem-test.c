/*
 * virtio-pmem through its virtqueue: configuration, flush durability, group
 * commit, error answers, malformed and random requests, hot-unplug with a
 * flush in flight, and migration with a flush in flight.
 *
 * The device sits at 00:04.0 and is driven with libqos' virtio-pci code.
 * Durability is judged from outside the device: the backing files of the
 * flush tests live on syncfs (tests/fuse/syncfs.c), which logs every sync
 * of a file with its start and end time and can delay or fail it.
 *
 * "virtio-pmem-test --bench ..." is the benchmark harness of
 * bench/virtio_pmem.py (see pmem_bench()), only on that flag.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include <sys/mman.h>
#include <sys/vfs.h>
#include "qemu/bswap.h"
#include "qemu/memalign.h"
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
#define PMEM_ADDR       0x140000000ull  /* in pc's device memory area */
#define RESP_OK         0
#define RESP_EIO        1
#define RESP_SENTINEL   0xdeadbeef
#define QOM_VDEV        "/machine/peripheral/nv1/virtio-backend"
#define TIMEOUT_US      (30 * G_USEC_PER_SEC)
#define FUSE_ENV        "PMEM_TEST_FUSE_DIR"
#define FUSE_MAGIC      0x65735546      /* FUSE_SUPER_MAGIC */
#define MS              (1000 * 1000)   /* in ns */

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
    char *real;         /* on syncfs: the same file in the real directory */
    char *fuse_name;    /* on syncfs: the file as the log names it */
} PMem;

/* One flush as the test saw it (CLOCK_MONOTONIC, as syncfs logs). */
typedef struct Flush {
    uint32_t head;
    int64_t avail_ns;   /* after it was made available, before the kick */
    int64_t seen_ns;    /* after its answer was seen in the used ring */
} Flush;

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * syncfs as the runner mounted it: PMEM_TEST_FUSE_DIR is a directory with
 * the mount in mnt/, the real directory in real/, the log in sync.log and
 * the control file in control (tests/fuse/syncfs-mount lays it out).
 */
typedef struct SyncFS {
    char *mnt;
    char *real;
    char *log;
    char *control;
} SyncFS;

static SyncFS syncfs_dir;

/* syncfs, or NULL after failing the test: without it nothing is observed. */
static SyncFS *syncfs_get(void)
{
    const char *dir = g_getenv(FUSE_ENV);
    struct statfs st;

    if (!dir) {
        g_test_message("%s is not set: this test observes the device's "
                       "syncs through syncfs; mount it with "
                       "tests/fuse/syncfs-mount build/fuse/syncfs DIR and "
                       "set %s=DIR", FUSE_ENV, FUSE_ENV);
        g_test_fail();
        return NULL;
    }
    if (!syncfs_dir.mnt) {
        syncfs_dir.mnt = g_build_filename(dir, "mnt", NULL);
        syncfs_dir.real = g_build_filename(dir, "real", NULL);
        syncfs_dir.log = g_build_filename(dir, "sync.log", NULL);
        syncfs_dir.control = g_build_filename(dir, "control", NULL);
    }
    if (statfs(syncfs_dir.mnt, &st) < 0 || st.f_type != FUSE_MAGIC) {
        g_test_message("%s (from %s) is not a FUSE mount: mount syncfs "
                       "there with tests/fuse/syncfs-mount",
                       syncfs_dir.mnt, FUSE_ENV);
        g_test_fail();
        return NULL;
    }
    return &syncfs_dir;
}

/* What syncfs does at its next syncs (it reads this at each one). */
static void syncfs_control(unsigned delay_us, bool fail)
{
    g_autofree char *text = g_strdup_printf("delay_us=%u\nfail=%d\n",
                                            delay_us, fail);
    g_autoptr(GError) err = NULL;

    g_file_set_contents(syncfs_dir.control, text, -1, &err);
    g_assert_no_error(err);
}

typedef struct SyncRec {
    uint64_t seq;
    char kind[16];
    int64_t start_ns;
    int64_t end_ns;     /* 0 while it runs */
    int result;
} SyncRec;

/* The fsync/fdatasync records of @name (as logged), in start order. */
static GArray *sync_records_of(const char *name)
{
    GArray *recs = g_array_new(false, true, sizeof(SyncRec));
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    char *last;

    g_assert_true(g_file_get_contents(syncfs_dir.log, &text, NULL, NULL));
    /* a line being appended right now is not whole yet */
    last = strrchr(text, '\n');
    *(last ? last + 1 : text) = 0;
    lines = g_strsplit(text, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", -1);
        guint n = g_strv_length(f);
        uint64_t seq;

        if (n < 5 || strcmp(f[n - 1], name) ||
            (strcmp(f[2], "fsync") && strcmp(f[2], "fdatasync"))) {
            continue;
        }
        seq = g_ascii_strtoull(f[1], NULL, 10);
        if (!strcmp(f[0], "B")) {
            SyncRec r = { .seq = seq };

            g_strlcpy(r.kind, f[2], sizeof(r.kind));
            r.start_ns = g_ascii_strtoll(f[3], NULL, 10);
            g_array_append_val(recs, r);
        } else if (!strcmp(f[0], "E") && n == 7) {
            for (guint k = 0; k < recs->len; k++) {
                SyncRec *r = &g_array_index(recs, SyncRec, k);

                if (r->seq == seq) {
                    r->end_ns = g_ascii_strtoll(f[4], NULL, 10);
                    r->result = g_ascii_strtoll(f[5], NULL, 10);
                }
            }
        }
    }
    return recs;
}

static GArray *sync_records(PMem *t)
{
    return sync_records_of(t->fuse_name);
}

static SyncRec *rec(GArray *recs, guint i)
{
    g_assert_cmpuint(i, <, recs->len);
    return &g_array_index(recs, SyncRec, i);
}

/*
 * The sync that answered @f: one that returned @result, began after @f was
 * made available and returned before its answer was seen.  Returns its
 * index in @recs; fails the test when there is none.
 */
static int covering_sync(GArray *recs, const Flush *f, int result)
{
    for (guint i = 0; i < recs->len; i++) {
        SyncRec *r = rec(recs, i);

        if (r->result == result && r->start_ns > f->avail_ns &&
            r->end_ns && r->end_ns < f->seen_ns) {
            return i;
        }
    }
    g_test_message("no sync returning %d in [%" PRId64 ", %" PRId64 "] ns; "
                   "%u records:", result, f->avail_ns, f->seen_ns, recs->len);
    for (guint i = 0; i < recs->len; i++) {
        SyncRec *r = rec(recs, i);

        g_test_message("  %s %" PRId64 " .. %" PRId64 " -> %d", r->kind,
                       r->start_ns, r->end_ns, r->result);
    }
    g_assert_not_reached();
}

/* Wait until syncfs logged the start of the @n-th sync of @t's file. */
static SyncRec wait_sync_started(PMem *t, guint n)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    for (;;) {
        g_autoptr(GArray) recs = sync_records(t);

        if (recs->len >= n) {
            return *rec(recs, n - 1);
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

/* @len bytes at @off of @t's real file, read past the page cache. */
static void read_real(PMem *t, uint64_t off, void *buf, size_t len)
{
    size_t size = ROUND_UP(len, 4096);
    void *p = qemu_memalign(4096, size);
    int fd = open(t->real, O_RDONLY | O_DIRECT);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(off % 4096, ==, 0);
    g_assert_cmpint(pread(fd, p, size, off), ==, size);
    close(fd);
    memcpy(buf, p, len);
    qemu_vfree(p);
}

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

/* A backing file on syncfs, allocated (the device warns about holes). */
static char *make_fuse_file(SyncFS *fs)
{
    char *path = g_build_filename(fs->mnt, "virtio-pmem-XXXXXX", NULL);
    int fd = g_mkstemp(path);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fallocate(fd, 0, 0, PMEM_SIZE), ==, 0);
    close(fd);
    return path;
}

static void pmem_driver_init(PMem *t, uint64_t features)
{
    QVirtioDevice *vdev = &t->dev->vdev;

    qvirtio_start_device(vdev);
    qvirtio_set_features(vdev, qvirtio_get_features(vdev) & features);
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
    pmem_driver_init(t, 1ull << VIRTIO_F_VERSION_1);
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

/*
 * A device whose backing file is on syncfs, which delays each sync by
 * @delay_us; NULL (and the test failed) without syncfs.
 */
static PMem *pmem_start_fuse(const char *extra, unsigned delay_us)
{
    SyncFS *fs = syncfs_get();
    g_autofree char *path = NULL;
    g_autofree char *name = NULL;
    PMem *t;

    if (!fs) {
        return NULL;
    }
    syncfs_control(delay_us, false);
    path = make_fuse_file(fs);
    name = g_path_get_basename(path);
    t = pmem_start_with(path, extra);
    t->real = g_build_filename(fs->real, name, NULL);
    t->fuse_name = g_strconcat("/", name, NULL);
    return t;
}

static void pmem_free(PMem *t)
{
    unlink(t->path);
    if (t->real) {
        syncfs_control(0, false);
    }
    g_free(t->path);
    g_free(t->real);
    g_free(t->fuse_name);
    g_free(t);
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
    pmem_free(t);
}

/*
 * Queue one well-formed request (type, 4-byte response at @resp, which
 * gets a sentinel first); returns its head.
 */
static uint32_t pmem_queue_at(PMem *t, uint32_t type, uint64_t resp)
{
    uint32_t head;

    qtest_writel(t->qts, t->req, cpu_to_le32(type));
    qtest_writel(t->qts, resp, RESP_SENTINEL);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
    qvirtqueue_add(t->qts, t->vq, resp, 4, true, false);
    return head;
}

static uint32_t pmem_queue(PMem *t, uint32_t type)
{
    return pmem_queue_at(t, type, t->resp);
}

/* Make @head available, note the time, then notify the device. */
static int64_t pmem_kick(PMem *t, uint32_t head)
{
    QVirtQueue *vq = t->vq;
    uint16_t idx = qtest_readw(t->qts, vq->avail + 2);
    int64_t now;

    qtest_writew(t->qts, vq->avail + 4 + 2 * (idx % vq->size), head);
    qtest_writew(t->qts, vq->avail + 2, idx + 1);
    now = mono_ns();
    t->dev->vdev.bus->virtqueue_kick(&t->dev->vdev, vq);
    return now;
}

/*
 * Wait for the next used element, which must be @head; returns when it was
 * seen.  (Not through the ISR: one interrupt may announce several answers
 * of one sync.)
 */
static int64_t wait_used(PMem *t, uint32_t head, uint32_t *len)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint32_t got;

    while (!qvirtqueue_get_buf(t->qts, t->vq, &got, len)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        qtest_clock_step(t->qts, 100);
    }
    g_assert_cmpuint(got, ==, head);
    return mono_ns();
}

/* One request alone on the queue, answered; returns the response. */
static uint32_t pmem_flush(PMem *t, uint32_t type, Flush *f)
{
    uint32_t len = 0;

    qvirtqueue_reset_pool(t->vq);
    f->head = pmem_queue(t, type);
    f->avail_ns = pmem_kick(t, f->head);
    f->seen_ns = wait_used(t, f->head, &len);
    g_assert_cmpuint(len, ==, 4);
    return le32_to_cpu(qtest_readl(t->qts, t->resp));
}

static uint32_t pmem_request(PMem *t, uint32_t type)
{
    Flush f;

    return pmem_flush(t, type, &f);
}

/*
 * One flush queued and kicked; returns once syncfs saw its sync begin
 * (held there for the delay the test's syncfs was given).
 */
static Flush flush_in_flight(PMem *t)
{
    Flush f;

    qvirtqueue_reset_pool(t->vq);
    f.head = pmem_queue(t, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    f.avail_ns = pmem_kick(t, f.head);
    wait_sync_started(t, 1);
    return f;
}

/* @n flushes, each with a response slot of its own, queued and kicked. */
static void queue_flushes(PMem *t, Flush *f, uint64_t *resp, int n)
{
    for (int i = 0; i < n; i++) {
        resp[i] = guest_alloc(&t->alloc, 4);
        f[i].head = pmem_queue_at(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, resp[i]);
        f[i].avail_ns = pmem_kick(t, f[i].head);
    }
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

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = i * seed + 11;
    }
}

/*
 * The instrument first: a shared mapping written through syncfs reaches
 * the real file only when the file is synced, and that sync is one record
 * with its times.  Without this the tests below could not tell a sync from
 * writeback, nor trust the log.
 */
static void test_syncfs(void)
{
    SyncFS *fs = syncfs_get();
    g_autofree char *path = NULL;
    g_autofree char *name = NULL;
    g_autoptr(GArray) recs = NULL;
    uint8_t pattern[4096], back[4096];
    int64_t before, after;
    PMem file = { 0 };
    uint8_t *map;
    int fd;

    if (!fs) {
        return;
    }
    syncfs_control(0, false);
    path = make_fuse_file(fs);
    name = g_path_get_basename(path);
    file.real = g_build_filename(fs->real, name, NULL);
    file.fuse_name = g_strconcat("/", name, NULL);
    fd = open(path, O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    map = mmap(NULL, PMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert_true(map != MAP_FAILED);

    fill_pattern(pattern, sizeof(pattern), 29);
    memcpy(map + 8192, pattern, sizeof(pattern));
    read_real(&file, 8192, back, sizeof(back));
    g_assert_true(memcmp(back, pattern, sizeof(back)));    /* not yet */

    before = mono_ns();
    g_assert_cmpint(fdatasync(fd), ==, 0);
    after = mono_ns();
    read_real(&file, 8192, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    recs = sync_records(&file);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpstr(rec(recs, 0)->kind, ==, "fdatasync");
    g_assert_cmpint(rec(recs, 0)->start_ns, >, before);
    g_assert_cmpint(rec(recs, 0)->end_ns, <, after);
    g_assert_cmpint(rec(recs, 0)->result, ==, 0);

    munmap(map, PMEM_SIZE);
    close(fd);
    unlink(path);
    g_free(file.real);
    g_free(file.fuse_name);
}

/*
 * The guest sees the range at the address given with memaddr=, with the
 * memory backend's size (from QOM), and a store at that address lands in
 * the backing file: the configuration describes the mapping, checked
 * against sources other than the device's own field.
 */
static void test_config(void)
{
    g_autofree char *extra = g_strdup_printf(",memaddr=0x%" PRIx64,
                                             (uint64_t)PMEM_ADDR);
    PMem *t = pmem_start(extra);
    uint64_t start = qvirtio_config_readq(&t->dev->vdev, 0);
    uint64_t size = qvirtio_config_readq(&t->dev->vdev, 8);
    uint8_t pattern[4096], back[4096];
    QDict *rsp, *dev, *data;
    int fd;

    g_assert_cmphex(start, ==, PMEM_ADDR);
    g_assert_cmpuint(size, ==, PMEM_SIZE);
    rsp = qtest_qmp(t->qts, "{'execute': 'qom-get', 'arguments':"
                    " {'path': '/objects/mem1', 'property': 'size'}}");
    g_assert_cmpuint(qdict_get_int(rsp, "return"), ==, size);
    qobject_unref(rsp);

    fill_pattern(pattern, sizeof(pattern), 41);
    qtest_memwrite(t->qts, start + size - sizeof(pattern), pattern,
                   sizeof(pattern));
    fd = open(t->path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, back, sizeof(back), size - sizeof(back)), ==,
                    sizeof(back));
    close(fd);
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    /* QMP's view agrees */
    rsp = qtest_qmp(t->qts, "{'execute': 'query-memory-devices'}");
    dev = qobject_to(QDict, qlist_peek(qdict_get_qlist(rsp, "return")));
    data = qdict_get_qdict(dev, "data");
    g_assert_cmpstr(qdict_get_str(dev, "type"), ==, "virtio-pmem");
    g_assert_cmpstr(qdict_get_str(data, "id"), ==, "nv1");
    g_assert_cmphex(qdict_get_int(data, "memaddr"), ==, PMEM_ADDR);
    g_assert_cmpuint(qdict_get_int(data, "size"), ==, PMEM_SIZE);
    qobject_unref(rsp);
    pmem_stop(t);
}

/*
 * A guest store, then FLUSH: the answer must follow a real fdatasync of the
 * backing file that began after the request was made available, and the
 * stored bytes must then be in the real file (read with O_DIRECT, not
 * through the mount).  syncfs holds each sync for 200 ms, so an answer
 * given before the sync returned would be seen.
 */
static void test_flush_reaches_file(void)
{
    PMem *t = pmem_start_fuse(NULL, 200000);
    g_autoptr(GArray) recs = NULL;
    uint8_t pattern[4096], back[4096];
    uint64_t base;
    Flush f;

    if (!t) {
        return;
    }
    base = qvirtio_config_readq(&t->dev->vdev, 0);
    fill_pattern(pattern, sizeof(pattern), 37);
    qtest_memwrite(t->qts, base + 8192, pattern, sizeof(pattern));
    /* only a sync can put it there (test_syncfs shows writeback waits) */
    read_real(t, 8192, back, sizeof(back));
    g_assert_true(memcmp(back, pattern, sizeof(back)));

    g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &f), ==,
                     RESP_OK);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(covering_sync(recs, &f, 0), ==, 0);
    g_assert_cmpstr(rec(recs, 0)->kind, ==, "fdatasync");
    read_real(t, 8192, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    /* the device's own counters agree with the file system */
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, recs->len);
    g_assert_cmpint(pmem_stat(t, "requests"), ==, 1);
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 0);
    g_assert_cmpint(pmem_stat(t, "in-flight"), ==, 0);
    pmem_stop(t);
}

/* How many syncfs records of @kind for @name began in [@from, @to] ns. */
static guint count_records_of(const char *name, const char *kind,
                              int64_t from, int64_t to)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    guint count = 0;

    g_assert_true(g_file_get_contents(syncfs_dir.log, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", -1);
        guint n = g_strv_length(f);
        int64_t start;

        if (n != 5 || strcmp(f[0], "B") || strcmp(f[2], kind) ||
            strcmp(f[4], name)) {
            continue;
        }
        start = g_ascii_strtoll(f[3], NULL, 10);
        count += start >= from && start <= to;
    }
    return count;
}

/*
 * A sync is only a sync: the device does not open or close descriptors of
 * the file per sync.  On FUSE (and NFS) every close() writes back the
 * file's dirty pages and waits, on QEMU's main loop; syncfs logs each as
 * a "flush".  Eight flushes one after the other: eight syncs, no close.
 */
static void test_sync_does_not_close(void)
{
    PMem *t = pmem_start_fuse(NULL, 0);
    g_autoptr(GArray) recs = NULL;
    int64_t from;
    Flush f;

    if (!t) {
        return;
    }
    from = mono_ns();
    for (int i = 0; i < 8; i++) {
        g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &f), ==,
                         RESP_OK);
    }
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 8);
    g_assert_cmpint(covering_sync(recs, &f, 0), ==, 7);
    g_assert_cmpuint(count_records_of(t->fuse_name, "flush", from,
                                      mono_ns()), ==, 0);
    pmem_stop(t);
}

/*
 * While one sync runs (held 300 ms by syncfs), eight requests arrive: none
 * of them may be answered by that sync; one more sync, begun after the
 * first returned, answers all eight.  Counted in the file system's log.
 */
static void test_group_commit(void)
{
    PMem *t = pmem_start_fuse(NULL, 300000);
    g_autoptr(GArray) recs = NULL;
    Flush first, f[8];
    uint64_t resp[8];
    uint32_t len;

    if (!t) {
        return;
    }
    first = flush_in_flight(t);

    queue_flushes(t, f, resp, 8);
    wait_stat(t, "in-flight", 9);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(rec(recs, 0)->end_ns, ==, 0);      /* still running */
    g_array_unref(recs);

    first.seen_ns = wait_used(t, first.head, &len);
    g_assert_cmpuint(qtest_readl(t->qts, t->resp), ==, RESP_OK);
    for (int i = 0; i < 8; i++) {
        f[i].seen_ns = wait_used(t, f[i].head, &len);
        g_assert_cmpuint(qtest_readl(t->qts, resp[i]), ==, RESP_OK);
    }
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 2);
    g_assert_cmpint(covering_sync(recs, &first, 0), ==, 0);
    for (int i = 0; i < 8; i++) {
        g_assert_cmpint(covering_sync(recs, &f[i], 0), ==, 1);
    }
    /* one at a time */
    g_assert_cmpint(rec(recs, 1)->start_ns, >, rec(recs, 0)->end_ns);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, recs->len);
    g_assert_cmpint(pmem_stat(t, "requests"), ==, 9);
    pmem_stop(t);
}

/*
 * A failed sync answers EIO to every request it covered, and only to
 * them: while a sync runs (and succeeds), eight requests arrive and the
 * file system starts failing; the sync for the eight fails, each of them
 * gets EIO, the first gets OK, and the device goes on.
 */
static void test_group_eio(void)
{
    PMem *t = pmem_start_fuse(NULL, 300000);
    g_autoptr(GArray) recs = NULL;
    Flush first, f[8], after;
    uint64_t resp[8];
    uint32_t len;

    if (!t) {
        return;
    }
    first = flush_in_flight(t);
    syncfs_control(300000, true);       /* from the next sync on */
    queue_flushes(t, f, resp, 8);
    first.seen_ns = wait_used(t, first.head, &len);
    g_assert_cmphex(qtest_readl(t->qts, t->resp), ==, RESP_OK);
    for (int i = 0; i < 8; i++) {
        f[i].seen_ns = wait_used(t, f[i].head, &len);
        g_assert_cmphex(qtest_readl(t->qts, resp[i]), ==, RESP_EIO);
    }
    g_assert_false(device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET);

    syncfs_control(0, false);
    g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &after), ==,
                     RESP_OK);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 3);
    g_assert_cmpint(covering_sync(recs, &first, 0), ==, 0);
    for (int i = 0; i < 8; i++) {
        g_assert_cmpint(covering_sync(recs, &f[i], -EIO), ==, 1);
    }
    g_assert_cmpint(covering_sync(recs, &after, 0), ==, 2);
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 8);
    pmem_stop(t);
}

/*
 * 64 requests made available before one kick: each is answered exactly
 * once and OK (each response slot held a sentinel), and the file system
 * saw one sync for them all, begun after they were queued and returned
 * before the first answer was seen.
 */
static void test_one_sync_for_a_queue(void)
{
    enum { N = 64 };
    PMem *t = pmem_start_fuse(NULL, 100000);
    g_autoptr(GArray) recs = NULL;
    bool answered[N] = { false };
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint16_t idx, got = 0;
    uint64_t resp;
    Flush all = { 0 };

    if (!t) {
        return;
    }
    resp = guest_alloc(&t->alloc, 4 * N);
    qvirtqueue_reset_pool(t->vq);
    idx = qtest_readw(t->qts, t->vq->avail + 2);
    for (int i = 0; i < N; i++) {
        uint32_t head = pmem_queue_at(t, VIRTIO_PMEM_REQ_TYPE_FLUSH,
                                      resp + 4 * i);

        g_assert_cmpuint(head, ==, 2 * i);
        qtest_writew(t->qts, t->vq->avail + 4 + 2 * ((idx + i) % t->vq->size),
                     head);
    }
    qtest_writew(t->qts, t->vq->avail + 2, idx + N);
    all.avail_ns = mono_ns();
    t->dev->vdev.bus->virtqueue_kick(&t->dev->vdev, t->vq);

    while (got < N) {
        got = qtest_readw(t->qts, t->vq->used + 2) - t->vq->last_used_idx;
        if (got && !all.seen_ns) {
            all.seen_ns = mono_ns();        /* the first answer */
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        qtest_clock_step(t->qts, 100);
    }
    g_assert_cmpuint(got, ==, N);
    for (int k = 0; k < N; k++) {
        uint64_t elem = t->vq->used + 4 +
            8 * ((t->vq->last_used_idx + k) % t->vq->size);
        uint32_t id = qtest_readl(t->qts, elem);

        g_assert_cmpuint(id % 2, ==, 0);
        g_assert_cmpuint(id / 2, <, N);
        g_assert_false(answered[id / 2]);
        answered[id / 2] = true;
        g_assert_cmpuint(qtest_readl(t->qts, elem + 4), ==, 4);
        g_assert_cmphex(qtest_readl(t->qts, resp + 4 * (id / 2)), ==, RESP_OK);
    }
    t->vq->last_used_idx += N;

    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(covering_sync(recs, &all, 0), ==, 0);
    g_assert_cmpint(pmem_stat(t, "syncs"), ==, recs->len);
    g_assert_cmpint(pmem_stat(t, "batch-max"), ==, N);
    pmem_stop(t);
}

/*
 * The file system fails the sync with EIO (a failing disk, not the
 * device's injection knob): that flush is answered EIO, the device stays
 * usable, and once the disk works again the next flush is answered OK
 * after a sync that succeeded, with the store in the real file.
 */
static void test_eio_then_recovers(void)
{
    PMem *t = pmem_start_fuse(NULL, 0);
    g_autoptr(GArray) recs = NULL;
    uint8_t pattern[4096], back[4096];
    Flush bad, good;

    if (!t) {
        return;
    }
    fill_pattern(pattern, sizeof(pattern), 53);
    qtest_memwrite(t->qts, qvirtio_config_readq(&t->dev->vdev, 0), pattern,
                   sizeof(pattern));
    syncfs_control(0, true);
    g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &bad), ==,
                     RESP_EIO);
    g_assert_false(device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET);
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 1);

    syncfs_control(0, false);
    g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &good), ==,
                     RESP_OK);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 2);
    g_assert_cmpint(covering_sync(recs, &bad, -EIO), ==, 0);
    g_assert_cmpint(covering_sync(recs, &good, 0), ==, 1);
    read_real(t, 0, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));
    g_assert_cmpint(pmem_stat(t, "errors"), ==, 1);
    g_assert_cmpint(pmem_stat(t, "requests"), ==, 2);
    pmem_stop(t);
}

/* An unknown type gets EIO and costs no sync; the device goes on. */
static void test_unknown_type(void)
{
    PMem *t = pmem_start_fuse(NULL, 0);
    g_autoptr(GArray) none = NULL;
    g_autoptr(GArray) recs = NULL;
    Flush f;

    if (!t) {
        return;
    }
    g_assert_cmpuint(pmem_request(t, 0x1234), ==, RESP_EIO);
    g_assert_false(device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET);
    none = sync_records(t);
    g_assert_cmpuint(none->len, ==, 0);
    g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &f), ==,
                     RESP_OK);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(covering_sync(recs, &f, 0), ==, 0);
    pmem_stop(t);
}

static void pmem_reset_driver(PMem *t)
{
    qvirtqueue_cleanup(t->dev->vdev.bus, t->vq, &t->alloc);
    pmem_driver_init(t, 1ull << VIRTIO_F_VERSION_1);
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

/*
 * Kick a chain and wait until the device either answers it or breaks;
 * @f gets the times.
 */
static bool kick_and_settle(PMem *t, uint32_t head, Flush *f)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;
    uint32_t got, len;

    f->head = head;
    f->avail_ns = pmem_kick(t, head);
    for (;;) {
        if (device_status(t) & VIRTIO_CONFIG_S_NEEDS_RESET) {
            return false;
        }
        if (qvirtqueue_get_buf(t->qts, t->vq, &got, &len)) {
            f->seen_ns = mono_ns();
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
    Flush f;

    /* no response buffer */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, false);
    g_assert_false(kick_and_settle(t, head, &f));
    pmem_reset_driver(t);

    /* a 2-byte response buffer */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
    qvirtqueue_add(t->qts, t->vq, t->resp, 2, true, false);
    g_assert_false(kick_and_settle(t, head, &f));
    pmem_reset_driver(t);

    /* the request header in a device-writable buffer: nothing to read */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, true, true);
    qvirtqueue_add(t->qts, t->vq, t->resp, 4, true, false);
    g_assert_false(kick_and_settle(t, head, &f));
    pmem_reset_driver(t);

    /* a descriptor chain that loops onto itself */
    qvirtqueue_reset_pool(t->vq);
    head = qvirtqueue_add(t->qts, t->vq, t->req, 4, false, true);
    qtest_writew(t->qts, t->vq->desc + 16 * head + 14, head);
    g_assert_false(kick_and_settle(t, head, &f));
    pmem_reset_driver(t);

    /* three: the loop is the virtio core's to catch */
    g_assert_cmpint(pmem_stat(t, "bad-requests"), ==, 3);
    g_assert_cmpuint(pmem_request(t, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    pmem_stop(t);
}

/*
 * Random chains of one to four descriptors with random lengths, directions
 * and types.  The spec's rules decide what must happen: a chain with at
 * least 4 readable bytes first and 4 writable bytes is answered (OK for
 * FLUSH, EIO otherwise); anything else breaks the device, which the driver
 * then resets.  QEMU must survive all of it and keep working.  Every
 * response slot holds a sentinel first: an answer must overwrite it, a
 * broken chain must leave it.  The syncs are real (on syncfs): each FLUSH
 * answered OK had its own, in its window, and no other chain caused one.
 */
static void test_random_requests(void)
{
    PMem *t = pmem_start_fuse(NULL, 0);
    g_autoptr(GArray) flushes = g_array_new(false, false, sizeof(Flush));
    g_autoptr(GArray) recs = NULL;
    GRand *rnd = g_rand_new_with_seed(27);
    int answered = 0, broken = 0;

    if (!t) {
        g_rand_free(rnd);
        return;
    }
    while (broken < 10000 || answered < 1000) {
        int n = g_rand_int_range(rnd, 1, 5);
        uint32_t rd = 0, wr = 0, head = 0;
        bool write_seen = false, valid = true;
        uint32_t type = g_rand_int_range(rnd, 0, 4) ? 0 : g_rand_int(rnd);
        Flush f;

        qvirtqueue_reset_pool(t->vq);
        qtest_writel(t->qts, t->scratch, cpu_to_le32(type));
        qtest_writel(t->qts, t->scratch + 2048, RESP_SENTINEL);
        for (int d = 0; d < n; d++) {
            bool w = g_rand_boolean(rnd);
            uint32_t len = g_rand_int_range(rnd, 0, 9);
            /* consecutive buffers, so a split header reads back whole */
            uint64_t addr = w ? t->scratch + 2048 + wr : t->scratch + rd;
            uint32_t idx = qvirtqueue_add(t->qts, t->vq, addr, len, w,
                                          d + 1 < n);

            if (d == 0) {
                head = idx;
            }
            /* zero-sized buffers, and readable after writable, are errors */
            valid &= len > 0 && !(write_seen && !w);
            write_seen |= w;
            *(w ? &wr : &rd) += len;
        }
        valid &= rd >= 4 && wr >= 4;
        if (kick_and_settle(t, head, &f)) {
            bool flush = type == VIRTIO_PMEM_REQ_TYPE_FLUSH;

            g_assert_true(valid);
            g_assert_cmphex(qtest_readl(t->qts, t->scratch + 2048), ==,
                            flush ? RESP_OK : RESP_EIO);
            if (flush) {
                g_array_append_val(flushes, f);
            }
            answered++;
        } else {
            g_assert_false(valid);
            g_assert_cmphex(qtest_readl(t->qts, t->scratch + 2048), ==,
                            RESP_SENTINEL);
            pmem_quick_reset(t);
            broken++;
        }
    }
    g_test_message("%d answered (%u flushes), %d broke the device", answered,
                   flushes->len, broken);
    /* one request at a time: the i-th sync answered the i-th flush */
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, flushes->len);
    for (guint i = 0; i < flushes->len; i++) {
        g_autoptr(GArray) one = g_array_new(false, false, sizeof(SyncRec));

        g_array_append_val(one, *rec(recs, i));
        covering_sync(one, &g_array_index(flushes, Flush, i), 0);
    }
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

/* Wait until syncfs logged the end of the @n-th sync of @t's file. */
static SyncRec wait_sync_ended(PMem *t, guint n)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    for (;;) {
        g_autoptr(GArray) recs = sync_records(t);

        if (recs->len >= n && rec(recs, n - 1)->end_ns) {
            return *rec(recs, n - 1);
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

/* Neither an answer in the used ring nor in the response slot. */
static void assert_unanswered(PMem *t)
{
    g_assert_cmpuint(qtest_readw(t->qts, t->vq->used + 2), ==,
                     t->vq->last_used_idx);
    g_assert_cmphex(qtest_readl(t->qts, t->resp), ==, RESP_SENTINEL);
}

/*
 * Unplug with a flush in flight: syncfs holds the sync 2 s; the unplug
 * is accepted while it runs and carried out (DEVICE_DELETED) while it
 * still runs: nothing waits for it.  The system reset that carried the
 * unplug out also reset the device, so the request is not answered;
 * the sync still ends (on its own fd), and the backend is free for a
 * new device at once.
 */
static void test_unplug_with_flush_in_flight(void)
{
    PMem *t = pmem_start_fuse(NULL, 2000000);
    g_autoptr(GArray) recs = NULL;
    int64_t deleted_ns;
    SyncRec r;
    Flush f;

    if (!t) {
        return;
    }
    f = flush_in_flight(t);
    g_assert_cmpint(pmem_stat(t, "in-flight"), ==, 1);

    qtest_qmp_assert_success(t->qts, "{'execute': 'device_del',"
                             " 'arguments': {'id': 'nv1'}}");
    /* the guest is not running: the request is carried out at reset */
    qtest_system_reset_nowait(t->qts);
    wait_device_deleted(t->qts, "nv1");
    deleted_ns = mono_ns();
    assert_unanswered(t);

    /* the backend is free again for a new device */
    qtest_qmp_device_add(t->qts, "virtio-pmem-pci", "nv2",
                         "{'memdev': 'mem1', 'addr': '5.0'}");
    r = wait_sync_ended(t, 1);
    g_assert_cmpint(r.end_ns, >, deleted_ns);     /* it did not wait */
    g_assert_cmpint(r.result, ==, 0);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    qtest_quit(t->qts);
    pmem_free(t);
}

/* @what, begun at @before_ns, returned at once: no wait for the sync. */
static void assert_did_not_wait(PMem *t, const char *what, int64_t before_ns)
{
    int64_t took = mono_ns() - before_ns;
    g_autoptr(GArray) recs = sync_records(t);

    g_test_message("%s took %" PRId64 " us with a sync in flight", what,
                   took / 1000);
    g_assert_cmpint(took, <, 500 * MS);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(rec(recs, 0)->end_ns, ==, 0);      /* still running */
}

/*
 * A guest resets the device (status 0, on its vCPU thread in a real VM)
 * while a sync runs, held 2 s by syncfs: the reset returns at once, the
 * sync goes on and its end answers nothing into the discarded ring; the
 * driver sets the device up again and its next flush is answered after a
 * sync of its own, begun after the old one ended (one at a time).
 */
static void test_reset_does_not_wait(void)
{
    PMem *t = pmem_start_fuse(NULL, 2000000);
    g_autoptr(GArray) recs = NULL;
    int64_t before;
    SyncRec first;
    Flush next;

    if (!t) {
        return;
    }
    flush_in_flight(t);

    before = mono_ns();
    qvirtio_reset(&t->dev->vdev);
    assert_did_not_wait(t, "reset", before);
    g_assert_cmpint(pmem_stat(t, "in-flight"), ==, 0);

    first = wait_sync_ended(t, 1);
    g_usleep(100000);
    assert_unanswered(t);

    pmem_reset_driver(t);
    syncfs_control(0, false);
    g_assert_cmpuint(pmem_flush(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, &next), ==,
                     RESP_OK);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 2);
    g_assert_cmpint(covering_sync(recs, &next, 0), ==, 1);
    g_assert_cmpint(rec(recs, 1)->start_ns, >, first.end_ns);
    pmem_stop(t);
}

/*
 * The VM stops (QMP stop) while a sync runs, held 1 s by syncfs: stop
 * returns at once; the sync ends while the VM is stopped but its answer
 * is held (guest memory does not change while the VM is stopped); cont
 * gives it, OK.
 */
static void test_stop_does_not_wait(void)
{
    PMem *t = pmem_start_fuse(NULL, 1000000);
    g_autoptr(GArray) recs = NULL;
    int64_t before;
    uint32_t len;
    Flush f;

    if (!t) {
        return;
    }
    f = flush_in_flight(t);

    before = mono_ns();
    qtest_qmp_assert_success(t->qts, "{'execute': 'stop'}");
    assert_did_not_wait(t, "stop", before);

    wait_sync_ended(t, 1);
    g_usleep(100000);
    assert_unanswered(t);
    g_assert_cmpint(pmem_stat(t, "in-flight"), ==, 1);

    qtest_qmp_assert_success(t->qts, "{'execute': 'cont'}");
    f.seen_ns = wait_used(t, f.head, &len);
    g_assert_cmphex(qtest_readl(t->qts, t->resp), ==, RESP_OK);
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(covering_sync(recs, &f, 0), ==, 0);
    pmem_stop(t);
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
        QTestState *qts = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G %s",
                                      obj);
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

/* Wait until the next used element is there, in @qts's guest memory. */
static int64_t wait_used_on(QTestState *qts, QVirtQueue *vq, uint16_t idx)
{
    gint64 deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (qtest_readw(qts, vq->used + 2) != idx) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        qtest_clock_step(qts, 100);
        g_usleep(1000);
    }
    return mono_ns();
}

static QTestState *pmem_dest(const char *path, const char *extra,
                             const char *uri)
{
    return qtest_initf("-M pc -m 256M,slots=2,maxmem=1G "
                       "-object memory-backend-file,id=mem1,share=on,"
                       "mem-path=%s,size=%u "
                       "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0%s "
                       "-incoming %s", path, (unsigned)PMEM_SIZE, PMEM_SLOT,
                       extra ?: "", uri);
}

static void set_postcopy(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{'execute': 'migrate-set-capabilities',"
        " 'arguments': {'capabilities': [{'capability': 'postcopy-ram',"
        " 'state': true}]}}");
}

/*
 * Migrate to a QEMU with a file of its own (x-migrate-contents=on), with
 * a flush in flight: syncfs holds the source's sync 2 s (long enough for
 * the migrate command to arrive under a sanitizer build on a loaded
 * machine) and the migration starts while it runs (begun, not returned).
 * Nothing waits for it: the request goes to the destination as not
 * answered, and the destination answers it OK after a sync of its own
 * file (on syncfs in
 * precopy: the log shows it, begun after the migration started and
 * returned before the answer was seen; postcopy needs tmpfs, where only
 * the answer shows).  The destination's file has the contents, and its
 * device serves flushes.
 */
static void test_migrate(const void *data)
{
    bool postcopy = GPOINTER_TO_INT(data);
    const char *opts = ",x-migrate-contents=on";
    g_autofree char *sock = g_strdup_printf("%s/pmem-mig-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    PMem *src = pmem_start_fuse(opts, 2000000);
    g_autofree char *dst_path = NULL;
    g_autofree char *dst_name = NULL;
    g_autoptr(GArray) recs = NULL;
    uint8_t pattern[8192], back[8192];
    uint64_t base;
    int64_t migrate_ns;
    QTestState *dst;
    PMem *d;
    Flush f;
    int fd;

    if (!src) {
        return;
    }
    if (postcopy) {
        dst_path = make_backing_file();
    } else {
        dst_path = make_fuse_file(syncfs_get());
        dst_name = g_strconcat("/", strrchr(dst_path, '/') + 1, NULL);
    }
    base = qvirtio_config_readq(&src->dev->vdev, 0);
    fill_pattern(pattern, sizeof(pattern), 13);
    qtest_memwrite(src->qts, base + PMEM_SIZE - sizeof(pattern), pattern,
                   sizeof(pattern));
    dst = pmem_dest(dst_path, opts, uri);
    if (postcopy) {
        set_postcopy(src->qts);
        set_postcopy(dst);
    }
    /* the destination is up first: the sync's 2 s are for the start */
    f = flush_in_flight(src);
    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    migrate_ns = mono_ns();
    if (postcopy) {
        qtest_qmp_assert_success(src->qts,
                                 "{'execute': 'migrate-start-postcopy'}");
    }
    wait_migration(src->qts, "completed");
    qtest_qmp_eventwait(dst, "RESUME");
    recs = sync_records(src);
    /* it was still running when the migration started */
    g_assert_cmpuint(recs->len, >=, 1);
    g_assert_true(!rec(recs, 0)->end_ns || rec(recs, 0)->end_ns > migrate_ns);

    /* the destination answers it */
    f.seen_ns = wait_used_on(dst, src->vq, 1);
    g_assert_cmpuint(qtest_readl(dst, src->vq->used + 4), ==, f.head);
    g_assert_cmphex(qtest_readl(dst, src->resp), ==, RESP_OK);
    if (dst_name) {
        g_autoptr(GArray) dst_recs = sync_records_of(dst_name);
        Flush late = f;

        late.avail_ns = migrate_ns;
        covering_sync(dst_recs, &late, 0);
    }

    /* the guest's data reached the destination's own file */
    fd = open(dst_path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, back, sizeof(back), PMEM_SIZE - sizeof(back)), ==,
                    sizeof(back));
    close(fd);
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    /* and the device serves flushes (after a driver reset, with new rings) */
    d = g_new0(PMem, 1);
    d->qts = dst;
    d->path = g_strdup(dst_path);
    pmem_attach(d, true);
    g_assert_cmpuint(pmem_request(d, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==, RESP_OK);
    pmem_stop(d);
    pmem_stop(src);
}

/*
 * The same file on both sides (our default) with a flush in flight (its
 * sync held 2 s, so that it still runs at switchover under a sanitizer
 * build on a loaded machine): the source syncs the file at switchover
 * (a sync begun after the migration started, returned before it
 * completed), the request goes to the destination unanswered, and the
 * destination answers it OK after a sync of the file begun after that.
 */
static void test_shared_file_flush_in_flight(void)
{
    g_autofree char *sock = g_strdup_printf("%s/pmem-mig-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    PMem *src = pmem_start_fuse(NULL, 2000000);
    g_autoptr(GArray) recs = NULL;
    int64_t migrate_ns, done_ns;
    QTestState *dst;
    Flush f;
    int sw = -1;

    if (!src) {
        return;
    }
    dst = pmem_dest(src->path, NULL, uri);
    f = flush_in_flight(src);
    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    migrate_ns = mono_ns();
    wait_migration(src->qts, "completed");
    done_ns = mono_ns();
    qtest_qmp_eventwait(dst, "RESUME");
    f.seen_ns = wait_used_on(dst, src->vq, 1);
    g_assert_cmphex(qtest_readl(dst, src->resp), ==, RESP_OK);

    recs = sync_records(src);
    for (guint i = 1; i < recs->len; i++) {
        if (rec(recs, i)->start_ns > migrate_ns && rec(recs, i)->end_ns &&
            rec(recs, i)->end_ns < done_ns) {
            sw = i;
            break;
        }
    }
    g_assert_cmpint(sw, >, 0);          /* the switchover sync */
    {
        Flush late = f;

        late.avail_ns = rec(recs, sw)->end_ns;
        g_assert_cmpint(covering_sync(recs, &late, 0), >, sw);
    }
    qtest_quit(dst);
    pmem_stop(src);
}

#define SHARED_SIZE     (64 * MiB)      /* first of the RAM blocks: > RAM */
#define SHARED_RAM      "32M"
#define SHARED_HOT      1024            /* pages the "guest" keeps writing */

typedef struct SharedRun {
    QTestState *src;
    QTestState *dst;
    uint64_t *want;                     /* per page: the last value written */
    uint64_t gen;
    uint64_t reads, writes;
} SharedRun;

static QTestState *shared_vm(const char *path, const char *extra,
                             const char *incoming)
{
    return qtest_initf("-M pc -m " SHARED_RAM ",slots=2,maxmem=1G "
                       "-object memory-backend-file,id=mem1,share=on,"
                       "mem-path=%s,size=%u "
                       "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0,"
                       "memaddr=0x%" PRIx64 "%s%s%s",
                       path, (unsigned)SHARED_SIZE, PMEM_SLOT,
                       (uint64_t)PMEM_ADDR, extra ?: "",
                       incoming ? " -incoming " : "", incoming ?: "");
}

static uint64_t shared_word(uint64_t gen, unsigned page)
{
    return gen << 32 | page;
}

/* The "guest" writes page @p and reads back page @q: never older data. */
static void shared_step(SharedRun *r, unsigned p, unsigned q)
{
    uint64_t got;

    r->want[p] = shared_word(++r->gen, p);
    qtest_writeq(r->src, PMEM_ADDR + (uint64_t)p * 4096, r->want[p]);
    got = qtest_readq(r->src, PMEM_ADDR + (uint64_t)q * 4096);
    r->writes++;
    r->reads++;
    if (got != r->want[q]) {
        g_test_message("page %u read back 0x%" PRIx64 ", last written 0x%"
                       PRIx64 " (after %" PRIu64 " writes)", q, got,
                       r->want[q], r->writes);
    }
    g_assert_cmphex(got, ==, r->want[q]);
}

static char *migrate_status(QTestState *qts, uint64_t *transferred)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
    QDict *ret = qdict_get_qdict(rsp, "return");
    QDict *ram = qdict_get_qdict(ret, "ram");
    char *st = g_strdup(qdict_get_try_str(ret, "status") ?: "none");

    if (transferred) {
        *transferred = ram ? qdict_get_try_int(ram, "transferred", 0) : 0;
    }
    qobject_unref(rsp);
    return st;
}

/* Every page: in the file (read past QEMU) as last written. */
static void shared_check_file(SharedRun *r, const char *path)
{
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    for (unsigned p = 0; p < SHARED_HOT; p++) {
        uint64_t got;

        g_assert_cmpint(pread(fd, &got, 8, (uint64_t)p * 4096), ==, 8);
        g_assert_cmphex(got, ==, r->want[p]);
    }
    close(fd);
}

/*
 * Same-host migration with the same file on both sides (our default:
 * contents not sent), while the source's "guest" (qtest) keeps writing
 * pages of the range and reading others back: no read may ever return
 * older data than was last written.  To make a destination that writes
 * pages into the file show, it is stopped (SIGSTOP) until the source has
 * filled the socket, the guest then rewrites the first pages, and the
 * destination goes on (a destination that received the range would now
 * store the older copies in flight).  @cancel: the migration is cancelled
 * half-way and the source goes on; else it completes, and the destination
 * reads every page as last written.  The file, read past QEMU, agrees.
 */
static void test_shared_file(const void *data)
{
    bool cancel = GPOINTER_TO_INT(data);
    g_autofree char *path = make_backing_file();
    g_autofree char *sock = g_strdup_printf("%s/pmem-shared-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    g_autofree uint64_t *want = g_new0(uint64_t, SHARED_HOT);
    SharedRun r = { .want = want };
    uint64_t sent = 0, last = 0;
    unsigned i = 0;
    int stalled = 0;

    g_assert_cmpint(truncate(path, SHARED_SIZE), ==, 0);
    r.src = shared_vm(path, NULL, NULL);
    /* every page of the range, and RAM, non-zero: both are sent in full */
    qtest_memset(r.src, PMEM_ADDR, 0x11, SHARED_SIZE);
    for (unsigned p = 0; p < SHARED_HOT; p++) {
        want[p] = 0x1111111111111111ull;
    }
    qtest_memset(r.src, 1 * MiB, 0x5a, 24 * MiB);
    r.dst = shared_vm(path, NULL, uri);
    if (cancel) {
        qtest_set_expected_status(r.dst, 1);     /* its load fails */
    }
    qtest_qmp_assert_success(r.src, "{'execute': 'migrate-set-parameters',"
                             " 'arguments': {'max-bandwidth': %d}}", 8 << 20);

    g_assert_cmpint(kill(qtest_pid(r.dst), SIGSTOP), ==, 0);
    qtest_qmp_assert_success(r.src, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    /* until the stopped destination's socket is full */
    while (stalled < 20) {
        g_free(migrate_status(r.src, &sent));
        stalled = sent && sent == last ? stalled + 1 : 0;
        last = sent;
        g_usleep(10000);
    }
    g_test_message("%" PRIu64 " bytes in flight to the stopped destination",
                   sent);
    for (unsigned p = 0; p < SHARED_HOT; p++) {
        shared_step(&r, p, p);
    }
    g_assert_cmpint(kill(qtest_pid(r.dst), SIGCONT), ==, 0);

    for (;;) {
        g_autofree char *st = NULL;

        shared_step(&r, i % SHARED_HOT, (i * 7 + 3) % SHARED_HOT);
        if (++i % 32) {
            continue;
        }
        st = migrate_status(r.src, &sent);
        if (cancel && !strcmp(st, "active") && sent > last + (4 << 20)) {
            qtest_qmp_assert_success(r.src, "{'execute': 'migrate_cancel'}");
            g_test_message("cancelled after %" PRIu64 " bytes", sent);
            cancel = false;             /* once */
            last = UINT64_MAX;
            continue;
        }
        if (!strcmp(st, "cancelled") || !strcmp(st, "completed")) {
            g_assert_cmpstr(st, ==, last == UINT64_MAX ? "cancelled"
                                                       : "completed");
            break;
        }
        g_assert_cmpstr(st, !=, "failed");
        g_assert_cmpint(i, <, 2000000);
    }
    g_test_message("%" PRIu64 " writes, %" PRIu64 " reads, none older",
                   r.writes, r.reads);
    if (last == UINT64_MAX) {
        /* the source goes on; the file holds every last write */
        for (unsigned k = 0; k < 4 * SHARED_HOT; k++) {
            shared_step(&r, k % SHARED_HOT, (k * 13 + 5) % SHARED_HOT);
        }
        for (unsigned p = 0; p < SHARED_HOT; p++) {
            g_assert_cmphex(qtest_readq(r.src, PMEM_ADDR + p * 4096ull), ==,
                            want[p]);
        }
        shared_check_file(&r, path);
        qtest_quit(r.dst);
    } else {
        qtest_qmp_eventwait(r.dst, "RESUME");
        for (unsigned p = 0; p < SHARED_HOT; p++) {
            g_assert_cmphex(qtest_readq(r.dst, PMEM_ADDR + p * 4096ull), ==,
                            want[p]);
        }
        shared_check_file(&r, path);
        qtest_quit(r.dst);
    }
    qtest_quit(r.src);
    unlink(path);
    unlink(sock);
}

/*
 * Separate files (x-migrate-contents=on): the contents are sent while the
 * source's guest keeps writing, and the destination's file ends equal to
 * the source's, byte for byte.
 */
static void test_separate_files(void)
{
    g_autofree char *src_path = make_backing_file();
    g_autofree char *dst_path = make_backing_file();
    g_autofree char *sock = g_strdup_printf("%s/pmem-sep-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    g_autofree uint64_t *want = g_new0(uint64_t, SHARED_HOT);
    g_autofree uint8_t *a = NULL;
    g_autofree uint8_t *b = NULL;
    const char *opts = ",x-migrate-contents=on";
    SharedRun r = { .want = want };
    unsigned i = 0;
    gsize la, lb;

    g_assert_cmpint(truncate(src_path, SHARED_SIZE), ==, 0);
    g_assert_cmpint(truncate(dst_path, SHARED_SIZE), ==, 0);
    r.src = shared_vm(src_path, opts, NULL);
    qtest_memset(r.src, PMEM_ADDR, 0x11, SHARED_SIZE);
    for (unsigned p = 0; p < SHARED_HOT; p++) {
        want[p] = 0x1111111111111111ull;
    }
    r.dst = shared_vm(dst_path, opts, uri);
    qtest_qmp_assert_success(r.src, "{'execute': 'migrate-set-parameters',"
                             " 'arguments': {'max-bandwidth': %d}}", 32 << 20);
    qtest_qmp_assert_success(r.src, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    /*
     * The guest writes during the first half of the stream (pages it
     * rewrites must be sent again), then stops writing, as a guest does
     * once its vCPUs stop: qtest could go on writing past the switchover.
     */
    for (;;) {
        uint64_t sent = 0;

        if (++i % 32 == 0) {
            g_autofree char *st = migrate_status(r.src, &sent);

            g_assert_cmpstr(st, !=, "failed");
            if (strcmp(st, "active") || sent > SHARED_SIZE / 2) {
                break;
            }
        }
        shared_step(&r, i % SHARED_HOT, (i * 7 + 3) % SHARED_HOT);
    }
    wait_migration(r.src, "completed");
    qtest_qmp_eventwait(r.dst, "RESUME");
    g_assert_true(g_file_get_contents(src_path, (char **)&a, &la, NULL));
    g_assert_true(g_file_get_contents(dst_path, (char **)&b, &lb, NULL));
    g_assert_cmpuint(la, ==, SHARED_SIZE);
    g_assert_cmpmem(a, la, b, lb);
    shared_check_file(&r, dst_path);
    g_test_message("%" PRIu64 " writes during migration", r.writes);
    g_assert_cmpuint(r.writes, >, SHARED_HOT);
    qtest_quit(r.dst);
    qtest_quit(r.src);
    unlink(src_path);
    unlink(dst_path);
    unlink(sock);
}

/*
 * Closed-loop load: @n requests always outstanding, each resubmitted as soon
 * as it is answered, for @seconds.  Two ways to drive the queue:
 *
 * batch (pmem_load_batch): descriptors laid out once (slot i: descriptors
 * 2i and 2i+1); each round writes the avail entries of every free slot in
 * one go, kicks once, and reads the used ring in one go, so the qtest
 * protocol costs a few round trips per round; each round first dirties a
 * page of the range.  It kicks again after 1 ms without progress.
 *
 * driver (pmem_load_driver): what Linux's virtio_pmem does, see there.
 */
typedef struct LoadResult {
    uint64_t requests;
    uint64_t kicks;
    uint64_t stalls;
    double rps;
    uint32_t p50_us, p99_us;
} LoadResult;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/*
 * The @got used-ring entries from @used_idx on, into @used (indexed like
 * the ring): one read, or two where they wrap.
 */
static void read_used(QTestState *qts, QVirtQueue *vq,
                      struct vring_used_elem *used, uint16_t used_idx,
                      uint16_t got)
{
    for (uint16_t k = 0; k < got; k++) {
        uint16_t pos = (used_idx + k) % vq->size;

        if (k == 0 || pos == 0) {
            uint16_t run = MIN(got - k, vq->size - pos);

            qtest_memread(qts, vq->used + 4 + 8 * pos, &used[pos], 8 * run);
        }
    }
}

static void load_finish(LoadResult *res, GArray *lat, gint64 start)
{
    res->rps = res->requests / ((g_get_monotonic_time() - start) / 1e6);
    g_array_sort(lat, cmp_u32);
    res->p50_us = g_array_index(lat, uint32_t, lat->len / 2);
    res->p99_us = g_array_index(lat, uint32_t, lat->len * 99 / 100);
    g_array_free(lat, true);
}

static void pmem_load_batch(PMem *t, int n, double seconds, LoadResult *res)
{
    QTestState *qts = t->qts;
    QVirtQueue *vq = t->vq;
    uint64_t base = qvirtio_config_readq(&t->dev->vdev, 0);
    uint64_t resp = guest_alloc(&t->alloc, 4 * n);
    g_autofree struct vring_desc *desc = g_new0(struct vring_desc, 2 * n);
    g_autofree gint64 *sent = g_new0(gint64, n);
    g_autofree uint16_t *pending = g_new0(uint16_t, n);
    g_autofree struct vring_used_elem *used = g_new0(struct vring_used_elem,
                                                     vq->size);
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
    res->requests = res->kicks = res->stalls = 0;
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

            qtest_memwrite(qts,
                           vq->avail + 4 + 2 * ((avail_idx + k) % vq->size),
                           &head, 2);
            sent[slot] = now;
        }
        if (npending && submit) {
            avail_idx += npending;
            qtest_writew(qts, vq->avail + 2, avail_idx);
            t->dev->vdev.bus->virtqueue_kick(&t->dev->vdev, vq);
            res->kicks++;
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
                res->kicks++;
                idle = g_get_monotonic_time();
            }
        }
        read_used(qts, vq, used, used_idx, got);
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
    load_finish(res, lat, start);
}


/*
 * The Linux driver's pattern (drivers/nvdimm/nd_virtio.c and the split
 * ring code it calls): each of @n waiters, as a guest thread would, stores
 * to its own page, adds one request (one indirect descriptor, as Linux
 * uses with VIRTIO_RING_F_INDIRECT_DESC), publishes it and calls
 * virtqueue_kick() for it, which notifies only when the device's
 * avail_event asks for it (VIRTIO_RING_F_EVENT_IDX); then it waits.  The
 * interrupt handler takes every used entry, waking their waiters, and
 * moves used_event past them.  A Linux waiter whose request the device
 * never takes waits forever; we count that as a stall after a second and
 * kick, so the run can end.
 */
#define STALL_US    G_USEC_PER_SEC

static void pmem_load_driver(PMem *t, int n, double seconds, LoadResult *res)
{
    QTestState *qts = t->qts;
    QVirtQueue *vq = t->vq;
    QVirtioDevice *vdev = &t->dev->vdev;
    uint64_t base = qvirtio_config_readq(vdev, 0);
    uint64_t resp = guest_alloc(&t->alloc, 4 * n);
    uint64_t tables = guest_alloc(&t->alloc, 32 * n);
    uint64_t avail_event = vq->used + 4 + 8 * vq->size;
    uint64_t used_event = vq->avail + 4 + 2 * vq->size;
    g_autofree struct vring_desc *top = g_new0(struct vring_desc, n);
    g_autofree struct vring_desc *ind = g_new0(struct vring_desc, 2 * n);
    g_autofree gint64 *sent = g_new0(gint64, n);
    g_autofree bool *busy = g_new0(bool, n);
    g_autofree struct vring_used_elem *used = g_new0(struct vring_used_elem,
                                                     vq->size);
    GArray *lat = g_array_new(false, false, sizeof(uint32_t));
    uint16_t avail_idx = qtest_readw(qts, vq->avail + 2);
    uint16_t used_idx = vq->last_used_idx;
    int outstanding = 0;
    gint64 start, end, progress;

    g_assert_true(vq->event && vq->indirect);
    g_assert_cmpint(n, <=, vq->size);
    qtest_writel(qts, t->req, cpu_to_le32(VIRTIO_PMEM_REQ_TYPE_FLUSH));
    for (int i = 0; i < n; i++) {
        ind[2 * i].addr = cpu_to_le64(t->req);
        ind[2 * i].len = cpu_to_le32(4);
        ind[2 * i].flags = cpu_to_le16(VRING_DESC_F_NEXT);
        ind[2 * i].next = cpu_to_le16(1);
        ind[2 * i + 1].addr = cpu_to_le64(resp + 4 * i);
        ind[2 * i + 1].len = cpu_to_le32(4);
        ind[2 * i + 1].flags = cpu_to_le16(VRING_DESC_F_WRITE);
        top[i].addr = cpu_to_le64(tables + 32 * i);
        top[i].len = cpu_to_le32(32);
        top[i].flags = cpu_to_le16(VRING_DESC_F_INDIRECT);
    }
    qtest_memwrite(qts, tables, ind, sizeof(*ind) * 2 * n);
    qtest_memwrite(qts, vq->desc, top, sizeof(*top) * n);

    res->requests = res->kicks = res->stalls = 0;
    start = progress = g_get_monotonic_time();
    end = start + seconds * G_USEC_PER_SEC;
    for (;;) {
        gint64 now = g_get_monotonic_time();
        uint16_t got;

        for (int i = 0; i < n && now < end; i++) {
            uint16_t old = avail_idx, ev;

            if (busy[i]) {
                continue;
            }
            qtest_writeq(qts, base + 4096 * i, now);
            qtest_writew(qts, vq->avail + 4 + 2 * (avail_idx % vq->size), i);
            qtest_writew(qts, vq->avail + 2, ++avail_idx);
            sent[i] = g_get_monotonic_time();
            busy[i] = true;
            outstanding++;
            /* virtqueue_kick_prepare(): vring_need_event() */
            ev = qtest_readw(qts, avail_event);
            if ((uint16_t)(avail_idx - ev - 1) < (uint16_t)(avail_idx - old)) {
                vdev->bus->virtqueue_kick(vdev, vq);
                res->kicks++;
            }
        }
        if (!outstanding) {
            break;                      /* time is up and all are answered */
        }

        got = qtest_readw(qts, vq->used + 2) - used_idx;
        if (!got) {
            if (g_get_monotonic_time() - progress > STALL_US) {
                res->stalls++;
                vdev->bus->virtqueue_kick(vdev, vq);
                progress = g_get_monotonic_time();
            }
            continue;
        }
        read_used(qts, vq, used, used_idx, got);
        now = g_get_monotonic_time();
        for (uint16_t k = 0; k < got; k++) {
            uint16_t slot = le32_to_cpu(used[(used_idx + k) % vq->size].id);
            uint32_t us = now - sent[slot];

            g_assert_cmpuint(slot, <, n);
            g_assert_true(busy[slot]);
            g_array_append_val(lat, us);
            busy[slot] = false;
            outstanding--;
        }
        used_idx += got;
        res->requests += got;
        /* virtqueue_get_buf(): interrupt me at the next answer */
        qtest_writew(qts, used_event, used_idx);
        progress = now;
    }
    vq->last_used_idx = used_idx;
    for (int i = 0; i < n; i++) {
        g_assert_cmpuint(qtest_readl(qts, resp + 4 * i), ==, RESP_OK);
    }
    load_finish(res, lat, start);
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
 * Benchmark mode, only with --bench (bench/virtio_pmem.py):
 *
 *   virtio-pmem-test --bench kick=driver|batch levels=1,4,16,64 seconds=S
 *       dir=DIR trace-log=FILE trace-event=EVENT [device-opts=,OPTS]
 *
 * For each level prints "@@ level N requests rps p50 p99 syncs kicks
 * stalls".  Host syncs are counted from a trace event in the trace log, so
 * the same harness measures QEMUs without our statistics.
 */
static const char *bench_arg(int argc, char **argv, const char *key,
                             const char *dflt)
{
    size_t len = strlen(key);

    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], key, len) && argv[i][len] == '=') {
            return argv[i] + len + 1;
        }
    }
    if (!dflt) {
        fprintf(stderr, "virtio-pmem-test --bench: %s= is missing\n", key);
        exit(1);
    }
    return dflt;
}

static int pmem_bench(int argc, char **argv)
{
    const char *kick = bench_arg(argc, argv, "kick", NULL);
    const char *log = bench_arg(argc, argv, "trace-log", NULL);
    const char *event = bench_arg(argc, argv, "trace-event", NULL);
    double seconds = g_ascii_strtod(bench_arg(argc, argv, "seconds", "2"),
                                    NULL);
    g_auto(GStrv) levels = g_strsplit(bench_arg(argc, argv, "levels", NULL),
                                      ",", -1);
    g_autofree char *extra = g_strdup_printf("%s -D %s -trace %s",
                                             bench_arg(argc, argv,
                                                       "device-opts", ""),
                                             log, event);
    g_autofree char *path = NULL;
    bool driver = !strcmp(kick, "driver");
    PMem *t;
    int fd;

    if (!driver && strcmp(kick, "batch")) {
        fprintf(stderr, "virtio-pmem-test --bench: kick=driver or batch\n");
        return 1;
    }
    /* on the disk, not tmpfs: the syncs must be real */
    path = g_build_filename(bench_arg(argc, argv, "dir", NULL),
                            "pmem-bench.img", NULL);
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
    if (driver) {
        /* the features a Linux guest takes for this ring */
        qvirtqueue_cleanup(t->dev->vdev.bus, t->vq, &t->alloc);
        pmem_driver_init(t, (1ull << VIRTIO_F_VERSION_1) |
                         (1ull << VIRTIO_RING_F_EVENT_IDX) |
                         (1ull << VIRTIO_RING_F_INDIRECT_DESC));
    }
    for (int i = 0; levels[i]; i++) {
        int n = atoi(levels[i]);
        uint64_t syncs = count_lines(log, event);
        LoadResult r;

        if (driver) {
            pmem_load_driver(t, n, seconds, &r);
        } else {
            pmem_load_batch(t, n, seconds, &r);
        }
        printf("@@ level %d %" PRIu64 " %.0f %u %u %" PRIu64 " %" PRIu64
               " %" PRIu64 "\n", n, r.requests, r.rps, r.p50_us, r.p99_us,
               count_lines(log, event) - syncs, r.kicks, r.stalls);
        fflush(stdout);
    }
    pmem_stop(t);
    return 0;
}


/*
 * Against the unmodified base (its binary in QTEST_QEMU_BINARY_UPSTREAM),
 * on the base's machine type pc-i440fx-10.0: there our device must
 * produce and accept the base's stream (x-dm-migration=off, from the
 * machine type's compat properties, or by hand where the tree's own
 * machine types have not landed).  The base's stream has no state of the
 * device nor its contents: both sides map the same file, and the device
 * comes up in reset state, as from base to base.  What the guest sees
 * must be intact: the range's address and size, the data it wrote (and
 * flushed, or not) before the migration, and a flush after it, which
 * completes after a sync of the file and puts the data in it.
 */
#define COMPAT_MACHINE  "pc-i440fx-10.0"

static bool have_upstream(void)
{
    if (!g_getenv("QTEST_QEMU_BINARY_UPSTREAM")) {
        g_test_skip("no unmodified base binary (QTEST_QEMU_BINARY_UPSTREAM); "
                    "make upstream builds it");
        return false;
    }
    return true;
}

static bool qom_get_bool(QTestState *qts, const char *path, const char *prop)
{
    QDict *rsp = qtest_qmp(qts, "{'execute': 'qom-get', 'arguments':"
                           " {'path': %s, 'property': %s}}", path, prop);
    bool v;

    g_assert_true(qdict_haskey(rsp, "return"));
    v = qdict_get_bool(rsp, "return");
    qobject_unref(rsp);
    return v;
}

/* x-dm-migration of our device on @machine, without -global */
static bool dm_migration_on(const char *machine)
{
    g_autofree char *path = make_backing_file();
    QTestState *qts = qtest_initf("-M %s -m 256M,slots=2,maxmem=1G "
                                  "-object memory-backend-file,id=mem1,"
                                  "share=on,mem-path=%s,size=%u "
                                  "-device virtio-pmem-pci,memdev=mem1,id=nv1",
                                  machine, path, (unsigned)PMEM_SIZE);
    bool on = qom_get_bool(qts, QOM_VDEV, "x-dm-migration");

    qtest_quit(qts);
    unlink(path);
    return on;
}

/* What ours needs on the command line for the base's stream. */
static const char *compat_args(void)
{
    static const char *args;

    if (!args) {
        args = dm_migration_on(COMPAT_MACHINE) ?
            " -global virtio-pmem.x-dm-migration=off" : "";
    }
    return args;
}

static PMem *compat_vm(bool upstream, const char *path, const char *incoming)
{
    PMem *t = g_new0(PMem, 1);
    g_autofree char *args =
        g_strdup_printf("-M " COMPAT_MACHINE " -m 256M,slots=2,maxmem=1G "
                        "-object memory-backend-file,id=mem1,share=on,"
                        "mem-path=%s,size=%u "
                        "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0,"
                        "memaddr=0x%" PRIx64 "%s%s%s", path,
                        (unsigned)PMEM_SIZE, PMEM_SLOT, (uint64_t)PMEM_ADDR,
                        upstream ? "" : compat_args(),
                        incoming ? " -incoming " : "", incoming ?: "");

    t->path = g_strdup(path);
    t->qts = upstream ?
        qtest_init_with_env("QTEST_QEMU_BINARY_UPSTREAM", args, true) :
        qtest_init(args);
    return t;
}

static void test_compat(const void *data)
{
    bool from_upstream = GPOINTER_TO_INT(data);
    g_autofree char *sock = NULL;
    g_autofree char *uri = NULL;
    g_autofree char *name = NULL;
    g_autofree char *path = NULL;
    uint8_t flushed[4096], unflushed[4096], back[4096];
    g_autoptr(GArray) recs = NULL;
    SyncFS *fs;
    PMem *src, *dst;
    QDict *rsp, *data_src, *data_dst;
    Flush f;

    if (!have_upstream()) {
        return;
    }
    fs = syncfs_get();
    if (!fs) {
        return;
    }
    syncfs_control(0, false);
    sock = g_strdup_printf("%s/pmem-compat-%d.sock", g_get_tmp_dir(),
                           getpid());
    uri = g_strdup_printf("unix:%s", sock);
    path = make_fuse_file(fs);
    src = compat_vm(from_upstream, path, NULL);
    name = g_path_get_basename(src->path);
    src->real = g_build_filename(fs->real, name, NULL);
    src->fuse_name = g_strconcat("/", name, NULL);
    pmem_attach(src, true);
    if (!from_upstream) {
        g_assert_false(qom_get_bool(src->qts, QOM_VDEV, "x-dm-migration"));
    }

    /* the guest writes, flushes, writes again */
    fill_pattern(flushed, sizeof(flushed), 17);
    fill_pattern(unflushed, sizeof(unflushed), 19);
    qtest_memwrite(src->qts, PMEM_ADDR + 8192, flushed, sizeof(flushed));
    g_assert_cmpuint(pmem_request(src, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==,
                     RESP_OK);
    qtest_memwrite(src->qts, PMEM_ADDR + 16384, unflushed, sizeof(unflushed));

    dst = compat_vm(!from_upstream, src->path, uri);
    dst->real = g_strdup(src->real);
    dst->fuse_name = g_strdup(src->fuse_name);
    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    wait_migration(src->qts, "completed");
    qtest_qmp_eventwait(dst->qts, "RESUME");

    /* the memory device: same address and size */
    rsp = qtest_qmp(src->qts, "{'execute': 'query-memory-devices'}");
    data_src = qdict_get_qdict(qobject_to(QDict, qlist_peek(
        qdict_get_qlist(rsp, "return"))), "data");
    g_assert_cmphex(qdict_get_int(data_src, "memaddr"), ==, PMEM_ADDR);
    qobject_unref(rsp);
    rsp = qtest_qmp(dst->qts, "{'execute': 'query-memory-devices'}");
    data_dst = qdict_get_qdict(qobject_to(QDict, qlist_peek(
        qdict_get_qlist(rsp, "return"))), "data");
    g_assert_cmphex(qdict_get_int(data_dst, "memaddr"), ==, PMEM_ADDR);
    g_assert_cmpuint(qdict_get_int(data_dst, "size"), ==, PMEM_SIZE);
    qobject_unref(rsp);

    /* the base's stream: the device in reset state, as base to base */
    pmem_attach(dst, false);
    g_assert_cmphex(device_status(dst), ==, 0);
    qvirtio_pci_device_disable(dst->dev);
    g_free(dst->dev);
    qpci_free_pc(dst->bus);
    alloc_destroy(&dst->alloc);
    pmem_attach(dst, true);
    g_assert_cmphex(qvirtio_config_readq(&dst->dev->vdev, 0), ==, PMEM_ADDR);
    g_assert_cmpuint(qvirtio_config_readq(&dst->dev->vdev, 8), ==, PMEM_SIZE);

    /* the guest's data, flushed or not, is there */
    qtest_memread(dst->qts, PMEM_ADDR + 8192, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), flushed, sizeof(flushed));
    qtest_memread(dst->qts, PMEM_ADDR + 16384, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), unflushed, sizeof(unflushed));

    /* a flush now is answered after a sync, and the data is in the file */
    g_assert_cmpuint(pmem_flush(dst, VIRTIO_PMEM_REQ_TYPE_FLUSH, &f), ==,
                     RESP_OK);
    recs = sync_records(dst);
    covering_sync(recs, &f, 0);
    read_real(dst, 16384, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), unflushed, sizeof(unflushed));
    read_real(dst, 8192, back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), flushed, sizeof(flushed));

    unlink(sock);
    g_free(dst->path);
    dst->path = g_strdup("");  /* one file, unlinked with the source */
    pmem_stop(dst);
    pmem_stop(src);
}

/*
 * The machine types pick the stream: the base's (pc-i440fx-10.0,
 * pc-q35-10.0) x-dm-migration=off, ours (what -M pc and -M q35 pick)
 * on.  Skipped until the tree has machine types of its own.
 */
static void test_compat_machine_types(void)
{
    QDict *rsp;
    bool ours = false;

    {
        QTestState *qts = qtest_init("-M none");

        rsp = qtest_qmp(qts, "{'execute': 'query-machines'}");
        for (const QListEntry *e = qlist_first(qdict_get_qlist(rsp, "return"));
             e; e = qlist_next(e)) {
            QDict *m = qobject_to(QDict, qlist_entry_obj(e));

            ours |= !strcmp(qdict_get_str(m, "name"), "pc-i440fx-10.0-dm1");
        }
        qobject_unref(rsp);
        qtest_quit(qts);
    }
    if (!ours) {
        g_test_skip("no machine type pc-i440fx-10.0-dm1 in this tree yet");
        return;
    }
    g_assert_false(dm_migration_on("pc-i440fx-10.0"));
    g_assert_false(dm_migration_on("pc-q35-10.0"));
    g_assert_false(dm_migration_on("pc-i440fx-9.2"));
    g_assert_true(dm_migration_on("pc"));
    g_assert_true(dm_migration_on("q35"));
}

int main(int argc, char **argv)
{
    /* only on the flag: an inherited environment cannot switch modes */
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        char *args[] = { argv[0], NULL };
        char **pargs = args;
        int nargs = 1;

        g_test_init(&nargs, &pargs, NULL);
        return pmem_bench(argc - 2, argv + 2);
    }
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/virtio-pmem/syncfs-records-a-mapped-write", test_syncfs);
    qtest_add_func("/virtio-pmem/config-matches-memory-device", test_config);
    qtest_add_func("/virtio-pmem/flush-reaches-backing-file",
                   test_flush_reaches_file);
    qtest_add_func("/virtio-pmem/sync-does-not-close-the-file",
                   test_sync_does_not_close);
    qtest_add_func("/virtio-pmem/group-commit-never-answers-early",
                   test_group_commit);
    qtest_add_func("/virtio-pmem/failed-sync-answers-eio-to-its-requests",
                   test_group_eio);
    qtest_add_func("/virtio-pmem/64-queued-requests-one-sync",
                   test_one_sync_for_a_queue);
    qtest_add_func("/virtio-pmem/eio-then-recovers", test_eio_then_recovers);
    qtest_add_func("/virtio-pmem/unknown-type-gets-eio", test_unknown_type);
    qtest_add_func("/virtio-pmem/malformed-requests-need-reset",
                   test_malformed);
    qtest_add_func("/virtio-pmem/10000-random-malformed-requests",
                   test_random_requests);
    qtest_add_func("/virtio-pmem/unplug-with-flush-in-flight",
                   test_unplug_with_flush_in_flight);
    qtest_add_func("/virtio-pmem/reset-does-not-wait-for-a-sync",
                   test_reset_does_not_wait);
    qtest_add_func("/virtio-pmem/stop-does-not-wait-for-a-sync",
                   test_stop_does_not_wait);
    qtest_add_func("/virtio-pmem/q35-hotplug-unplug", test_q35_hotplug_unplug);
    qtest_add_func("/virtio-pmem/bad-backends-refused", test_bad_backends);
    qtest_add_data_func("/virtio-pmem/migrate-precopy-flush-in-flight",
                        GINT_TO_POINTER(false), test_migrate);
    qtest_add_data_func("/virtio-pmem/migrate-postcopy-flush-in-flight",
                        GINT_TO_POINTER(true), test_migrate);
    qtest_add_func("/virtio-pmem/shared file/flush in flight: synced at "
                   "switchover, answered on the destination",
                   test_shared_file_flush_in_flight);
    qtest_add_data_func("/virtio-pmem/shared file/same file, guest writing: "
                        "no read returns older data",
                        GINT_TO_POINTER(false), test_shared_file);
    qtest_add_data_func("/virtio-pmem/shared file/same file, cancelled "
                        "half-way: no read returns older data, nothing lost",
                        GINT_TO_POINTER(true), test_shared_file);
    qtest_add_func("/virtio-pmem/shared file/separate files with "
                   "x-migrate-contents: the destination's file matches",
                   test_separate_files);
    qtest_add_data_func("/virtio-pmem/compat/ours to upstream, "
                        COMPAT_MACHINE ": guest state intact",
                        GINT_TO_POINTER(false), test_compat);
    qtest_add_data_func("/virtio-pmem/compat/upstream to ours, "
                        COMPAT_MACHINE ": guest state intact",
                        GINT_TO_POINTER(true), test_compat);
    qtest_add_func("/virtio-pmem/compat/machine types pick the stream",
                   test_compat_machine_types);
    return g_test_run();
}
