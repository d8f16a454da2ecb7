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
    qvirtqueue_reset_pool(t->vq);
    first.head = pmem_queue(t, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    first.avail_ns = pmem_kick(t, first.head);
    wait_sync_started(t, 1);

    for (int i = 0; i < 8; i++) {
        resp[i] = guest_alloc(&t->alloc, 4);
        f[i].head = pmem_queue_at(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, resp[i]);
        f[i].avail_ns = pmem_kick(t, f[i].head);
    }
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
    qvirtqueue_reset_pool(t->vq);
    first.head = pmem_queue(t, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    first.avail_ns = pmem_kick(t, first.head);
    wait_sync_started(t, 1);
    syncfs_control(300000, true);       /* from the next sync on */
    for (int i = 0; i < 8; i++) {
        resp[i] = guest_alloc(&t->alloc, 4);
        f[i].head = pmem_queue_at(t, VIRTIO_PMEM_REQ_TYPE_FLUSH, resp[i]);
        f[i].avail_ns = pmem_kick(t, f[i].head);
    }
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

/*
 * Unplug with a flush in flight: syncfs holds the sync 500 ms; the unplug
 * is accepted while it runs (the log shows it begun and not returned, the
 * device counts it in flight), and the flush is still answered OK, in the
 * guest's used ring, before the device goes.
 */
static void test_unplug_with_flush_in_flight(void)
{
    PMem *t = pmem_start_fuse(NULL, 500000);
    g_autoptr(GArray) recs = NULL;
    int64_t unplug_ns;
    Flush f;

    if (!t) {
        return;
    }
    qvirtqueue_reset_pool(t->vq);
    f.head = pmem_queue(t, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    f.avail_ns = pmem_kick(t, f.head);
    wait_sync_started(t, 1);
    g_assert_cmpint(pmem_stat(t, "in-flight"), ==, 1);

    qtest_qmp_assert_success(t->qts, "{'execute': 'device_del',"
                             " 'arguments': {'id': 'nv1'}}");
    unplug_ns = mono_ns();
    /* the guest is not running: the request is carried out at reset */
    qtest_system_reset_nowait(t->qts);
    wait_device_deleted(t->qts, "nv1");

    /* the answer, in guest memory: used->idx, used->ring[0], the response */
    g_assert_cmpuint(qtest_readw(t->qts, t->vq->used + 2), ==, 1);
    g_assert_cmpuint(qtest_readl(t->qts, t->vq->used + 4), ==, f.head);
    g_assert_cmpuint(qtest_readl(t->qts, t->vq->used + 8), ==, 4);
    g_assert_cmphex(qtest_readl(t->qts, t->resp), ==, RESP_OK);
    f.seen_ns = mono_ns();
    recs = sync_records(t);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(covering_sync(recs, &f, 0), ==, 0);
    /* it was still running when the unplug was accepted */
    g_assert_cmpint(rec(recs, 0)->end_ns, >, unplug_ns);

    /* the backend is free again for a new device */
    qtest_qmp_device_add(t->qts, "virtio-pmem-pci", "nv2",
                         "{'memdev': 'mem1', 'addr': '5.0'}");
    qtest_quit(t->qts);
    pmem_free(t);
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

/*
 * Migrate to a QEMU with another backing file, with a flush in flight:
 * syncfs holds the source's sync 500 ms and the migration starts while it
 * runs (begun, not returned).  The flush is answered before the state is
 * saved: the destination's guest memory holds the used entry and OK, the
 * source's real file the data, the destination's file the contents, and
 * the destination's device serves flushes.
 */
static void test_migrate(const void *data)
{
    bool postcopy = GPOINTER_TO_INT(data);
    g_autofree char *dst_path = make_backing_file();
    g_autofree char *sock = g_strdup_printf("%s/pmem-mig-%d.sock",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    PMem *src = pmem_start_fuse(NULL, 500000);
    g_autoptr(GArray) recs = NULL;
    uint8_t pattern[8192], back[8192];
    uint64_t base;
    int64_t migrate_ns;
    QTestState *dst;
    PMem *d;
    Flush f;
    int fd;

    if (!src) {
        unlink(dst_path);
        return;
    }
    base = qvirtio_config_readq(&src->dev->vdev, 0);
    fill_pattern(pattern, sizeof(pattern), 13);
    qtest_memwrite(src->qts, base + PMEM_SIZE - sizeof(pattern), pattern,
                   sizeof(pattern));
    dst = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G "
                      "-object memory-backend-file,id=mem1,share=on,"
                      "mem-path=%s,size=%u "
                      "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0 "
                      "-incoming %s", dst_path, (unsigned)PMEM_SIZE, PMEM_SLOT,
                      uri);
    if (postcopy) {
        qtest_qmp_assert_success(src->qts,
            "{'execute': 'migrate-set-capabilities',"
            " 'arguments': {'capabilities': [{'capability': 'postcopy-ram',"
            " 'state': true}]}}");
        qtest_qmp_assert_success(dst, "{'execute': 'migrate-set-capabilities',"
            " 'arguments': {'capabilities': [{'capability': 'postcopy-ram',"
            " 'state': true}]}}");
    }
    /* the destination is up first: the sync's 500 ms are for the start */
    qvirtqueue_reset_pool(src->vq);
    f.head = pmem_queue(src, VIRTIO_PMEM_REQ_TYPE_FLUSH);
    f.avail_ns = pmem_kick(src, f.head);
    wait_sync_started(src, 1);
    qtest_qmp_assert_success(src->qts, "{'execute': 'migrate', 'arguments':"
                             " {'uri': %s}}", uri);
    migrate_ns = mono_ns();
    if (postcopy) {
        qtest_qmp_assert_success(src->qts,
                                 "{'execute': 'migrate-start-postcopy'}");
    }
    wait_migration(src->qts, "completed");
    qtest_qmp_eventwait(dst, "RESUME");

    /* the in-flight flush was answered on the source, before the save */
    g_assert_cmpuint(qtest_readw(dst, src->vq->used + 2), ==, 1);
    g_assert_cmpuint(qtest_readl(dst, src->vq->used + 4), ==, f.head);
    g_assert_cmphex(qtest_readl(dst, src->resp), ==, RESP_OK);
    f.seen_ns = mono_ns();
    recs = sync_records(src);
    g_assert_cmpuint(recs->len, ==, 1);
    g_assert_cmpint(covering_sync(recs, &f, 0), ==, 0);
    /* it was still running when the migration started */
    g_assert_cmpint(rec(recs, 0)->end_ns, >, migrate_ns);
    read_real(src, PMEM_SIZE - sizeof(back), back, sizeof(back));
    g_assert_cmpmem(back, sizeof(back), pattern, sizeof(pattern));

    /* the virtio state came along: the driver's status is still live */
    d = g_new0(PMem, 1);
    d->qts = dst;
    d->path = g_strdup(dst_path);
    pmem_attach(d, false);
    g_assert_cmphex(device_status(d) & VIRTIO_CONFIG_S_DRIVER_OK, ==,
                    VIRTIO_CONFIG_S_DRIVER_OK);
    /* and the device serves flushes (after a driver reset, with new rings) */
    pmem_driver_init(d, 1ull << VIRTIO_F_VERSION_1);
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
                           "-incoming %s", path, (unsigned)PMEM_SIZE, PMEM_SLOT,
                           uri);
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
        const char *st = qdict_get_try_str(qdict_get_qdict(rsp, "return"),
                                           "status");
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
    g_assert_cmpuint(pmem_request(src, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==,
                     RESP_OK);
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
    src->qts = qtest_init_with_env("QTEST_QEMU_BINARY_UPSTREAM", src_args,
                                   true);
    pmem_attach(src, true);
    g_assert_cmpuint(pmem_request(src, VIRTIO_PMEM_REQ_TYPE_FLUSH), ==,
                     RESP_OK);

    dst = g_new0(PMem, 1);
    dst->path = g_strdup(dst_path);
    dst->qts = qtest_initf("-M pc -m 256M,slots=2,maxmem=1G "
                           "-object memory-backend-file,id=mem1,share=on,"
                           "mem-path=%s,size=%u "
                           "-device virtio-pmem-pci,memdev=mem1,id=nv1,addr=%d.0 "
                           "-incoming %s", dst_path, (unsigned)PMEM_SIZE,
                           PMEM_SLOT, uri);
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
    qtest_add_func("/virtio-pmem/q35-hotplug-unplug", test_q35_hotplug_unplug);
    qtest_add_func("/virtio-pmem/bad-backends-refused", test_bad_backends);
    qtest_add_data_func("/virtio-pmem/migrate-precopy-flush-in-flight",
                        GINT_TO_POINTER(false), test_migrate);
    qtest_add_data_func("/virtio-pmem/migrate-postcopy-flush-in-flight",
                        GINT_TO_POINTER(true), test_migrate);
    qtest_add_func("/virtio-pmem/migrate-to-unmodified-base-is-refused",
                   test_migrate_to_upstream);
    qtest_add_func("/virtio-pmem/"
                   "migrate-from-unmodified-base-loses-device-state",
                   test_migrate_from_upstream);
    return g_test_run();
}
