/*
 * virtio-pmem: a file-backed memory range given to the guest as persistent
 * memory (virtio device ID 27)
 *
 * The guest maps the range directly (DAX, bypassing its page cache); its
 * stores land in the host's page cache of the backing file.  To make them
 * durable it sends FLUSH requests on the single request queue; we answer
 * each with OK once a host sync that began after the request arrived has
 * completed, or with EIO if that sync failed.
 *
 * Syncs run on the thread pool with group commit: while one runs, new
 * requests wait; when it completes, one new sync covers all of them.  We use
 * fdatasync(): the guest's data lives in the file's existing blocks (the
 * backend sized the file when it mapped it), and fdatasync writes those and
 * any metadata needed to read them back, which is what fsync would add for
 * this file apart from timestamps.
 *
 * Nothing waits for a sync: not a reset (on the vCPU thread that wrote the
 * status register), not a VM stop, not an unplug.  A reset or unplug drops
 * the requests and leaves the running sync to finish on its own (it has its
 * own fd); while the VM is stopped answers are held back, and a migration
 * carries the requests not answered yet to the destination, which syncs
 * them there.  The model for the backing file in migration is in
 * docs/virtio-pmem.md ("Migration").
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-virtio-pmem.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/madvise.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "block/thread-pool.h"
#include "exec/ramblock.h"
#include "hw/qdev-properties.h"
#include "hw/virtio/virtio-access.h"
#include "hw/virtio/virtio-pmem.h"
#include "migration/misc.h"
#include "migration/qemu-file-types.h"
#include "migration/vmstate.h"
#include "system/hostmem.h"
#include "system/runstate.h"
#include "standard-headers/linux/virtio_ids.h"
#include "standard-headers/linux/virtio_pmem.h"
#include "trace.h"

/* Response codes of the virtio specification (5.19.6) */
#define PMEM_RESP_OK    0
#define PMEM_RESP_EIO   1

#define PMEM_QUEUE_SIZE 128

struct VirtIOPMEMRequest {
    VirtQueueElement elem;      /* first: virtqueue_pop() allocates it all */
    int64_t arrived_ns;
    uint32_t status;            /* the answer, while it is held back */
    QSIMPLEQ_ENTRY(VirtIOPMEMRequest) next;
};

/*
 * One sync and the requests it covers.  The worker touches only @fd, the
 * device's own duplicate of the backend's (VirtIOPMEM.sync_fd): a reset or
 * unplug may drop the requests (@orphaned) or the device (@pmem NULL)
 * while the sync runs; an unplug hands the descriptor to the job
 * (@owns_fd), which closes it when the sync is done.
 */
struct PMEMSyncJob {
    VirtIOPMEM *pmem;
    int fd;
    bool owns_fd;
    bool orphaned;
    int64_t started_ns;
    VirtIOPMEMRequestQueue reqs;
    unsigned nr;
};

static int64_t now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

static int pmem_sync_worker(void *opaque)
{
    PMEMSyncJob *job = opaque;

    return qemu_fdatasync(job->fd) < 0 ? -errno : 0;
}

static void pmem_answer(VirtIOPMEM *pmem, VirtIOPMEMRequest *req,
                        uint32_t status, int64_t now)
{
    uint32_t resp = cpu_to_le32(status);
    uint64_t latency = now - req->arrived_ns;

    iov_from_buf(req->elem.in_sg, req->elem.in_num, 0, &resp, sizeof(resp));
    virtqueue_push(pmem->vq, &req->elem, sizeof(resp));
    pmem->stats.requests++;
    pmem->stats.errors += status != PMEM_RESP_OK;
    pmem->stats.latency_total_ns += latency;
    pmem->stats.latency_max_ns = MAX(pmem->stats.latency_max_ns, latency);
    g_free(req);
}

/* An answer while the VM is stopped waits for it to run again. */
static void pmem_answer_or_hold(VirtIOPMEM *pmem, VirtIOPMEMRequest *req,
                                uint32_t status, int64_t now)
{
    if (pmem->running) {
        pmem_answer(pmem, req, status, now);
        return;
    }
    req->status = status;
    QSIMPLEQ_INSERT_TAIL(&pmem->held, req, next);
    pmem->nr_held++;
}

static void pmem_start_sync(VirtIOPMEM *pmem);

/* Answer every request the finished sync covered, then start the next. */
static void pmem_sync_done(void *opaque, int ret)
{
    PMEMSyncJob *job = opaque;
    VirtIOPMEM *pmem = job->pmem;
    uint32_t status = ret < 0 ? PMEM_RESP_EIO : PMEM_RESP_OK;
    int64_t now = now_ns();
    VirtIOPMEMRequest *req;

    if (job->owns_fd) {
        close(job->fd);
    }
    if (!pmem) {                /* unplugged while it ran */
        g_free(job);
        return;
    }
    trace_virtio_pmem_sync_done(pmem, ret, job->nr, now - job->started_ns);
    if (ret < 0) {
        /* The guest gets EIO; the host admin deserves the reason. */
        error_report_once("virtio-pmem: syncing the backing file failed: %s",
                          strerror(-ret));
    }
    while ((req = QSIMPLEQ_FIRST(&job->reqs))) {
        QSIMPLEQ_REMOVE_HEAD(&job->reqs, next);
        pmem_answer_or_hold(pmem, req, status, now);
    }
    pmem->job = NULL;
    if (pmem->running && job->nr && !job->orphaned) {
        virtio_notify(VIRTIO_DEVICE(pmem), pmem->vq);
    }
    g_free(job);
    pmem_start_sync(pmem);
}

/* Start a sync covering every waiting request, unless one is running. */
static void pmem_start_sync(VirtIOPMEM *pmem)
{
    PMEMSyncJob *job;

    if (pmem->job || !pmem->running || QSIMPLEQ_EMPTY(&pmem->waiting)) {
        return;
    }
    /*
     * Postcopy with the contents: pages the guest wrote on the source may
     * still be on their way into our file; a sync now would not cover
     * them.  Look again once they are all here.
     */
    if (pmem->migrate_contents && migration_in_incoming_postcopy()) {
        timer_mod(pmem->postcopy_timer,
                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 10);
        return;
    }
    job = g_new0(PMEMSyncJob, 1);
    job->pmem = pmem;
    /*
     * Not a duplicate per sync: on file systems with a flush method (NFS,
     * FUSE) every close() writes back the file's dirty pages and waits,
     * here on the main loop, once per sync.
     */
    job->fd = pmem->sync_fd;
    job->started_ns = now_ns();
    QSIMPLEQ_INIT(&job->reqs);
    QSIMPLEQ_CONCAT(&job->reqs, &pmem->waiting);
    job->nr = pmem->nr_waiting;
    pmem->nr_waiting = 0;
    pmem->job = job;
    pmem->stats.syncs++;
    pmem->stats.batch_max = MAX(pmem->stats.batch_max, job->nr);
    trace_virtio_pmem_sync_start(pmem, job->nr);
    thread_pool_submit_aio(pmem_sync_worker, job, pmem_sync_done, job);
}

static void pmem_postcopy_timer(void *opaque)
{
    pmem_start_sync(opaque);
}

/* A malformed request: the spec's way out is to mark the device broken. */
static void pmem_bad_request(VirtIOPMEM *pmem, VirtIOPMEMRequest *req,
                             const char *why)
{
    pmem->stats.bad_requests++;
    trace_virtio_pmem_bad_request(pmem, why);
    virtqueue_detach_element(pmem->vq, &req->elem, 0);
    g_free(req);
    virtio_error(VIRTIO_DEVICE(pmem), "virtio-pmem: %s", why);
}

/*
 * Take every available request (not one per kick), then sync.  While the
 * VM is stopped requests stay in the ring: they go with it to a migration
 * destination, or are taken when the VM runs again.
 */
static void pmem_handle_queue(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(vdev);
    VirtIOPMEMRequest *req;
    bool answered = false;

    while (pmem->running && !vdev->broken &&
           (req = virtqueue_pop(vq, sizeof(VirtIOPMEMRequest)))) {
        uint32_t type;

        req->arrived_ns = now_ns();
        /*
         * The device is broken from here on, but what it took before is
         * well formed: answer and sync it below, as for a good batch.
         */
        if (iov_size(req->elem.out_sg, req->elem.out_num) < sizeof(type)) {
            pmem_bad_request(pmem, req, "request without a 4-byte type");
            break;
        }
        if (iov_size(req->elem.in_sg, req->elem.in_num) < sizeof(uint32_t)) {
            pmem_bad_request(pmem, req,
                             "request without room for the response");
            break;
        }
        iov_to_buf(req->elem.out_sg, req->elem.out_num, 0, &type, sizeof(type));
        type = le32_to_cpu(type);
        trace_virtio_pmem_request(pmem, type);
        if (type != VIRTIO_PMEM_REQ_TYPE_FLUSH) {
            /* Well formed but unknown: an error answer, the device goes on. */
            pmem_answer(pmem, req, PMEM_RESP_EIO, req->arrived_ns);
            answered = true;
            continue;
        }
        QSIMPLEQ_INSERT_TAIL(&pmem->waiting, req, next);
        pmem->nr_waiting++;
    }
    if (answered) {
        virtio_notify(vdev, vq);
    }
    pmem_start_sync(pmem);
}

/* The VM runs again: give the held answers, take what the ring holds. */
static void pmem_resume_bh(void *opaque)
{
    VirtIOPMEM *pmem = opaque;
    VirtIODevice *vdev = VIRTIO_DEVICE(pmem);
    int64_t now = now_ns();
    VirtIOPMEMRequest *req;
    bool answered = false;

    if (!pmem->running) {
        return;
    }
    while ((req = QSIMPLEQ_FIRST(&pmem->held))) {
        QSIMPLEQ_REMOVE_HEAD(&pmem->held, next);
        pmem->nr_held--;
        pmem_answer(pmem, req, req->status, now);
        answered = true;
    }
    if (answered) {
        virtio_notify(vdev, pmem->vq);
    }
    if (virtio_queue_get_desc_addr(vdev, 0) && !vdev->broken) {
        pmem_handle_queue(vdev, pmem->vq);
    }
    pmem_start_sync(pmem);
}

static void pmem_drop_queue(VirtIOPMEM *pmem, VirtIOPMEMRequestQueue *q,
                            unsigned *nr)
{
    VirtIOPMEMRequest *req;

    while ((req = QSIMPLEQ_FIRST(q))) {
        QSIMPLEQ_REMOVE_HEAD(q, next);
        virtqueue_detach_element(pmem->vq, &req->elem, 0);
        g_free(req);
    }
    *nr = 0;
}

/*
 * Forget every request (reset, unplug): the ring they came from is gone.
 * A running sync goes on; its end answers nothing.  Returns how many.
 */
static unsigned pmem_drop_requests(VirtIOPMEM *pmem)
{
    unsigned n = pmem->nr_waiting + pmem->nr_held;

    pmem_drop_queue(pmem, &pmem->waiting, &pmem->nr_waiting);
    pmem_drop_queue(pmem, &pmem->held, &pmem->nr_held);
    if (pmem->job) {
        n += pmem->job->nr;
        pmem_drop_queue(pmem, &pmem->job->reqs, &pmem->job->nr);
        pmem->job->orphaned = true;
    }
    return n;
}

/*
 * Both sides map the same file: make what the source's guest wrote reach
 * the file (so a destination on another host reads it from shared
 * storage).  The vCPUs are stopped: nothing writes the range any more.
 */
static void pmem_switchover_sync(VirtIOPMEM *pmem)
{
    int64_t start = now_ns();
    int ret = qemu_fdatasync(pmem->fd) < 0 ? -errno : 0;

    trace_virtio_pmem_switchover_sync(pmem, ret, now_ns() - start);
    pmem->switchover_ret = ret;
    if (ret < 0) {
        error_report("virtio-pmem: syncing the shared backing file at "
                     "switchover failed: %s", strerror(-ret));
    }
}

/*
 * The destination of a migration over a shared file, before its guest
 * runs: drop the pages it may have cached before the source's last writes
 * reached the file (shared storage: another host's page cache).  Our own
 * mapping first (on a shared mapping MADV_DONTNEED only unmaps; nothing
 * of the file is lost), then the file's clean cached pages.
 */
static void pmem_drop_cache(VirtIOPMEM *pmem)
{
    MemoryRegion *mr = host_memory_backend_get_memory(pmem->memdev);
    uint64_t size = memory_region_size(mr);
    int ret = 0;

    if (qemu_madvise(memory_region_get_ram_ptr(mr), size,
                     QEMU_MADV_DONTNEED) < 0) {
        ret = -errno;
    } else {
        ret = -posix_fadvise(pmem->fd, mr->ram_block->fd_offset, size,
                             POSIX_FADV_DONTNEED);
    }
    trace_virtio_pmem_drop_cache(pmem, ret);
    if (ret < 0) {
        warn_report("virtio-pmem: could not drop the cached pages of the "
                    "shared backing file: %s", strerror(-ret));
    }
}

static void pmem_vm_state_change(void *opaque, bool running, RunState state)
{
    VirtIOPMEM *pmem = opaque;

    pmem->running = running;
    if (!running) {
        /* answers are held from now on: the device's state stays put */
        pmem->switchover_ret = 0;
        if (state == RUN_STATE_FINISH_MIGRATE && !pmem->migrate_contents) {
            pmem_switchover_sync(pmem);
        }
        return;
    }
    if (pmem->incoming) {
        pmem->incoming = false;
        if (!pmem->migrate_contents) {
            pmem_drop_cache(pmem);
        }
    }
    qemu_bh_schedule(pmem->resume_bh);
}

static void pmem_get_config(VirtIODevice *vdev, uint8_t *config)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(vdev);
    struct virtio_pmem_config cfg;

    virtio_stq_p(vdev, &cfg.start, pmem->start);
    virtio_stq_p(vdev, &cfg.size, memory_region_size(&pmem->memdev->mr));
    memcpy(config, &cfg, sizeof(cfg));
}

static uint64_t pmem_get_features(VirtIODevice *vdev, uint64_t features,
                                  Error **errp)
{
    return features;
}

/* Never waits: a guest resets from its vCPU thread, holding the BQL. */
static void pmem_reset(VirtIODevice *vdev)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(vdev);
    unsigned dropped = pmem_drop_requests(pmem);

    trace_virtio_pmem_reset(pmem, dropped, pmem->job != NULL);
}

/*
 * Whether every block of the file is allocated.  A store into a hole needs
 * a new block: on a full disk the host kernel answers that page fault with
 * SIGBUS, which stops QEMU long before a flush could report EIO.
 */
static bool pmem_file_allocated(int fd, uint64_t size)
{
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        return true;            /* a device, or nothing we can tell */
    }
    return (uint64_t)st.st_blocks * 512 >= MIN(size, (uint64_t)st.st_size);
}

static bool pmem_backend_usable(VirtIOPMEM *pmem, Error **errp)
{
    HostMemoryBackend *be = pmem->memdev;
    const char *name = object_get_canonical_path_component(OBJECT(be));

    if (host_memory_backend_is_mapped(be)) {
        error_setg(errp, "memdev '%s' is already in use by another device",
                   name);
        return false;
    }
    pmem->fd = memory_region_get_fd(host_memory_backend_get_memory(be));
    if (pmem->fd < 0) {
        error_setg(errp, "memdev '%s' has no backing file: virtio-pmem makes "
                   "the guest's writes durable by syncing a file", name);
        error_append_hint(errp, "Use memory-backend-file with share=on.\n");
        return false;
    }
    if (!be->share) {
        error_setg(errp, "memdev '%s' has share=off: the guest's writes would "
                   "stay in private copies and never reach the file", name);
        error_append_hint(errp, "Use share=on.\n");
        return false;
    }
    if (!pmem_file_allocated(pmem->fd, memory_region_size(&be->mr))) {
        warn_report("virtio-pmem: the file behind memdev '%s' is sparse: a "
                    "full disk would stop QEMU when the guest writes to it; "
                    "allocate it first (fallocate, or the backend's "
                    "prealloc=on)", name);
    }
    if (object_dynamic_cast(OBJECT(be), "memory-backend-memfd")) {
        warn_report("virtio-pmem: memdev '%s' is a memfd: flushes succeed but "
                    "nothing outlives QEMU", name);
    }
    return true;
}

static const VMStateDescription vmstate_virtio_pmem;

static void pmem_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOPMEM *pmem = VIRTIO_PMEM(dev);

    if (!pmem->memdev) {
        error_setg(errp, "'%s' property is not set", VIRTIO_PMEM_MEMDEV_PROP);
        return;
    }
    if (pmem->migrate_contents && !pmem->dm_migration) {
        error_setg(errp, "x-migrate-contents=on needs x-dm-migration=on: "
                   "without it the device migrates as the base's does, "
                   "without its contents");
        return;
    }
    if (!pmem_backend_usable(pmem, errp)) {
        return;
    }
    /* the syncs' own descriptor: an unplug may outlive the backend's */
    pmem->sync_fd = qemu_dup(pmem->fd);
    if (pmem->sync_fd < 0) {
        error_setg_errno(errp, errno, "virtio-pmem: could not duplicate the "
                         "backing file's descriptor");
        return;
    }
    QSIMPLEQ_INIT(&pmem->waiting);
    QSIMPLEQ_INIT(&pmem->held);
    host_memory_backend_set_mapped(pmem->memdev, true);
    /*
     * x-dm-migration=off (the base's machine types): the base's stream,
     * which has neither the device's state nor its contents.  Otherwise
     * our state, and the contents only for a file of the destination's
     * own (x-migrate-contents=on): see docs/virtio-pmem.md.
     */
    if (pmem->dm_migration) {
        if (vmstate_register_any(VMSTATE_IF(dev), &vmstate_virtio_pmem,
                                 pmem) < 0) {
            error_setg(errp, "virtio-pmem: could not register its state");
            host_memory_backend_set_mapped(pmem->memdev, false);
            close(pmem->sync_fd);
            return;
        }
        if (pmem->migrate_contents) {
            vmstate_register_ram(&pmem->memdev->mr, dev);
        }
    }
    pmem->running = runstate_is_running();
    pmem->incoming = runstate_check(RUN_STATE_INMIGRATE);
    virtio_init(vdev, VIRTIO_ID_PMEM, sizeof(struct virtio_pmem_config));
    pmem->vq = virtio_add_queue(vdev, PMEM_QUEUE_SIZE, pmem_handle_queue);
    pmem->resume_bh = virtio_bh_new_guarded(dev, pmem_resume_bh, pmem);
    pmem->postcopy_timer = timer_new_ms(QEMU_CLOCK_REALTIME,
                                        pmem_postcopy_timer, pmem);
    pmem->vmstate_entry = qdev_add_vm_change_state_handler(dev,
                                                           pmem_vm_state_change,
                                                           pmem);
}

static void pmem_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOPMEM *pmem = VIRTIO_PMEM(dev);

    /* The guest let the device go: nothing is answered, nothing waits. */
    pmem_drop_requests(pmem);
    if (pmem->job) {
        /* the running sync keeps our descriptor and closes it at its end */
        pmem->job->pmem = NULL;
        pmem->job->owns_fd = true;
        pmem->job = NULL;
    } else {
        close(pmem->sync_fd);
    }
    qemu_del_vm_change_state_handler(pmem->vmstate_entry);
    qemu_bh_delete(pmem->resume_bh);
    timer_free(pmem->postcopy_timer);
    if (pmem->dm_migration) {
        if (pmem->migrate_contents) {
            vmstate_unregister_ram(&pmem->memdev->mr, dev);
        }
        vmstate_unregister(VMSTATE_IF(dev), &vmstate_virtio_pmem, pmem);
    }
    host_memory_backend_set_mapped(pmem->memdev, false);
    virtio_delete_queue(pmem->vq);
    virtio_cleanup(vdev);
}

MemoryRegion *virtio_pmem_memory_region(VirtIOPMEM *pmem, Error **errp)
{
    if (!pmem->memdev) {
        error_setg(errp, "'%s' property must be set", VIRTIO_PMEM_MEMDEV_PROP);
        return NULL;
    }
    return &pmem->memdev->mr;
}

void virtio_pmem_fill_device_info(VirtIOPMEM *pmem, VirtioPMEMDeviceInfo *vi)
{
    vi->memaddr = pmem->start;
    vi->size = pmem->memdev ? memory_region_size(&pmem->memdev->mr) : 0;
    vi->memdev = pmem->memdev ?
        object_get_canonical_path(OBJECT(pmem->memdev)) : g_strdup("");
}

static void pmem_put_queue(VirtIODevice *vdev, QEMUFile *f,
                           VirtIOPMEMRequestQueue *q)
{
    VirtIOPMEMRequest *req;

    QSIMPLEQ_FOREACH(req, q, next) {
        qemu_put_virtqueue_element(vdev, f, &req->elem);
    }
}

/*
 * The requests taken from the ring and not answered yet, whatever their
 * sync on this side is doing: the destination syncs them again, on its
 * side, after the guest's data is there (contents sent, or the file
 * synced at switchover).
 */
static int pmem_put_pending(QEMUFile *f, void *pv, size_t size,
                            const VMStateField *field, JSONWriter *vmdesc)
{
    VirtIOPMEM *pmem = pv;
    VirtIODevice *vdev = VIRTIO_DEVICE(pmem);
    unsigned nr = pmem->nr_waiting + pmem->nr_held;

    if (pmem->job) {
        nr += pmem->job->nr;
    }
    qemu_put_be32(f, nr);
    if (pmem->job) {
        pmem_put_queue(vdev, f, &pmem->job->reqs);
    }
    pmem_put_queue(vdev, f, &pmem->waiting);
    pmem_put_queue(vdev, f, &pmem->held);
    return 0;
}

static int pmem_get_pending(QEMUFile *f, void *pv, size_t size,
                            const VMStateField *field)
{
    VirtIOPMEM *pmem = pv;
    VirtIODevice *vdev = VIRTIO_DEVICE(pmem);
    uint32_t nr = qemu_get_be32(f);

    if (nr > PMEM_QUEUE_SIZE) {
        error_report("virtio-pmem: %" PRIu32 " pending requests in the "
                     "stream, the queue holds %d", nr, PMEM_QUEUE_SIZE);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < nr; i++) {
        VirtIOPMEMRequest *req =
            qemu_get_virtqueue_element(vdev, f, sizeof(VirtIOPMEMRequest));

        if (!req) {
            return -EINVAL;
        }
        req->arrived_ns = now_ns();
        QSIMPLEQ_INSERT_TAIL(&pmem->waiting, req, next);
        pmem->nr_waiting++;
    }
    return 0;
}

static const VMStateInfo vmstate_info_pmem_pending = {
    .name = "virtio-pmem-pending",
    .get = pmem_get_pending,
    .put = pmem_put_pending,
};

static int pmem_pre_save(void *opaque)
{
    VirtIOPMEM *pmem = opaque;

    /*
     * Nothing is settled here (the ring is already saved): the stop
     * handler made the device hold its answers, so what is saved stays
     * true; a shared file was synced there, and its failure fails the
     * migration here, before the destination could use stale data.
     */
    assert(!pmem->running);
    if (pmem->switchover_ret < 0) {
        error_report("virtio-pmem: not migrating: the shared backing file "
                     "could not be synced");
        return pmem->switchover_ret;
    }
    return 0;
}

static const VMStateDescription vmstate_virtio_pmem_device = {
    .name = "virtio-pmem-device",
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = pmem_pre_save,
    .fields = (const VMStateField[]) {
        /* both sides must map the range at the same guest address */
        VMSTATE_UINT64_EQUAL(start, VirtIOPMEM,
                             "memaddr= must be the same on both sides"),
        {
            .name = "pending",
            .info = &vmstate_info_pmem_pending,
            .flags = VMS_SINGLE,
        },
        VMSTATE_END_OF_LIST()
    },
};

/*
 * VMSTATE_VIRTIO_DEVICE's load takes the version from dc->vmsd, which we
 * leave unset (pmem_realize() registers the section, or not): the same
 * wrappers around virtio_save() and virtio_load() with our version, which
 * virtio_load() also gives vmstate_virtio_pmem_device's fields.  (Only
 * our machine types carry the section: the base's have none, and the
 * tree's earlier stream on them was never compatible with anything.)
 */
#define PMEM_VMSTATE_VERSION 1

static int pmem_virtio_put(QEMUFile *f, void *opaque, size_t size,
                           const VMStateField *field, JSONWriter *vmdesc)
{
    return virtio_save(VIRTIO_DEVICE(opaque), f);
}

static int pmem_virtio_get(QEMUFile *f, void *opaque, size_t size,
                           const VMStateField *field)
{
    return virtio_load(VIRTIO_DEVICE(opaque), f, PMEM_VMSTATE_VERSION);
}

static const VMStateInfo vmstate_info_pmem_virtio = {
    .name = "virtio",
    .get = pmem_virtio_get,
    .put = pmem_virtio_put,
};

static const VMStateDescription vmstate_virtio_pmem = {
    .name = "virtio-pmem",
    .version_id = PMEM_VMSTATE_VERSION,
    .minimum_version_id = PMEM_VMSTATE_VERSION,
    .fields = (const VMStateField[]) {
        {
            .name = "virtio",
            .info = &vmstate_info_pmem_virtio,
            .flags = VMS_SINGLE,
        },
        VMSTATE_END_OF_LIST()
    },
};

/* Read by QMP x-query-virtio-pmem (hw/virtio/virtio-pmem-qmp.c). */
static void pmem_get_stats(Object *obj, Visitor *v, const char *name,
                           void *opaque, Error **errp)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(obj);
    VirtioPMEMStats stats = {
        .requests = pmem->stats.requests,
        .syncs = pmem->stats.syncs,
        .errors = pmem->stats.errors,
        .bad_requests = pmem->stats.bad_requests,
        .in_flight = pmem->nr_waiting + pmem->nr_held +
            (pmem->job ? pmem->job->nr : 0),
        .batch_max = pmem->stats.batch_max,
        .latency_avg_ns = pmem->stats.requests ?
            pmem->stats.latency_total_ns / pmem->stats.requests : 0,
        .latency_max_ns = pmem->stats.latency_max_ns,
    };
    VirtioPMEMStats *p = &stats;

    visit_type_VirtioPMEMStats(v, name, &p, errp);
}

static void pmem_instance_init(Object *obj)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(obj);

    object_property_add(obj, VIRTIO_PMEM_STATS_PROP, "VirtioPMEMStats",
                        pmem_get_stats, NULL, NULL, NULL);
}

static const Property pmem_properties[] = {
    DEFINE_PROP_UINT64(VIRTIO_PMEM_ADDR_PROP, VirtIOPMEM, start, 0),
    DEFINE_PROP_LINK(VIRTIO_PMEM_MEMDEV_PROP, VirtIOPMEM, memdev,
                     TYPE_MEMORY_BACKEND, HostMemoryBackend *),
    /* off on the base's machine types: the base's migration stream */
    DEFINE_PROP_BOOL("x-dm-migration", VirtIOPMEM, dm_migration, true),
    /* on: the destination has a file of its own, send the contents */
    DEFINE_PROP_BOOL("x-migrate-contents", VirtIOPMEM, migrate_contents,
                     false),
};

static void pmem_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioDeviceClass *vdc = VIRTIO_DEVICE_CLASS(klass);

    device_class_set_props(dc, pmem_properties);
    /* dc->vmsd stays unset: pmem_realize() registers it, or not */
    set_bit(DEVICE_CATEGORY_STORAGE, dc->categories);
    vdc->realize = pmem_realize;
    vdc->unrealize = pmem_unrealize;
    vdc->get_config = pmem_get_config;
    vdc->get_features = pmem_get_features;
    vdc->reset = pmem_reset;
    vdc->vmsd = &vmstate_virtio_pmem_device;
}

static const TypeInfo pmem_info = {
    .name = TYPE_VIRTIO_PMEM,
    .parent = TYPE_VIRTIO_DEVICE,
    .instance_size = sizeof(VirtIOPMEM),
    .instance_init = pmem_instance_init,
    .class_init = pmem_class_init,
};

static void pmem_register_types(void)
{
    type_register_static(&pmem_info);
}

type_init(pmem_register_types)
