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
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-virtio-pmem.h"
#include "qapi/visitor.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "block/aio-wait.h"
#include "block/thread-pool.h"
#include "hw/qdev-properties.h"
#include "hw/virtio/virtio-access.h"
#include "hw/virtio/virtio-pmem.h"
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
    QSIMPLEQ_ENTRY(VirtIOPMEMRequest) next;
};

/* What a sync job needs, copied so the worker touches no device state. */
typedef struct PMEMSyncJob {
    VirtIOPMEM *pmem;
    int fd;
    int inject_errno;
    bool skip;
    uint32_t delay_us;
    int64_t started_ns;
} PMEMSyncJob;

static int64_t now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

static int pmem_sync_worker(void *opaque)
{
    PMEMSyncJob *job = opaque;

    if (job->delay_us) {
        g_usleep(job->delay_us);
    }
    if (job->inject_errno) {
        return -job->inject_errno;
    }
    if (job->skip) {
        return 0;
    }
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

static void pmem_start_sync(VirtIOPMEM *pmem);

/* The sync about to start covers every request waiting now. */
static void pmem_take_waiting(VirtIOPMEM *pmem)
{
    QSIMPLEQ_CONCAT(&pmem->syncing, &pmem->waiting);
    pmem->nr_syncing = pmem->nr_waiting;
    pmem->nr_waiting = 0;
    pmem->stats.syncs++;
    pmem->stats.batch_max = MAX(pmem->stats.batch_max, pmem->nr_syncing);
    pmem->sync_running = true;
}

static PMEMSyncJob *pmem_new_job(VirtIOPMEM *pmem)
{
    PMEMSyncJob *job = g_new0(PMEMSyncJob, 1);

    job->pmem = pmem;
    job->fd = pmem->fd;
    job->inject_errno = pmem->inject_errno;
    job->skip = pmem->skip_sync;
    job->delay_us = pmem->sync_delay_us;
    job->started_ns = now_ns();
    return job;
}

/* Answer every request the finished sync covered, then start the next. */
static void pmem_sync_done(void *opaque, int ret)
{
    PMEMSyncJob *job = opaque;
    VirtIOPMEM *pmem = job->pmem;
    uint32_t status = ret < 0 ? PMEM_RESP_EIO : PMEM_RESP_OK;
    int64_t now = now_ns();
    VirtIOPMEMRequest *req;

    trace_virtio_pmem_sync_done(pmem, ret, pmem->nr_syncing,
                                now - job->started_ns);
    if (ret < 0) {
        /* The guest gets EIO; the host admin deserves the reason. */
        error_report_once("virtio-pmem: syncing the backing file failed: %s",
                          strerror(-ret));
    }
    while ((req = QSIMPLEQ_FIRST(&pmem->syncing))) {
        QSIMPLEQ_REMOVE_HEAD(&pmem->syncing, next);
        pmem_answer(pmem, req, status, now);
    }
    pmem->nr_syncing = 0;
    pmem->sync_running = false;
    g_free(job);
    virtio_notify(VIRTIO_DEVICE(pmem), pmem->vq);
    pmem_start_sync(pmem);
}

/* Start a sync covering every waiting request, unless one is running. */
static void pmem_start_sync(VirtIOPMEM *pmem)
{
    PMEMSyncJob *job;

    if (pmem->sync_running || QSIMPLEQ_EMPTY(&pmem->waiting)) {
        return;
    }
    pmem_take_waiting(pmem);
    job = pmem_new_job(pmem);
    trace_virtio_pmem_sync_start(pmem, pmem->nr_syncing);
    thread_pool_submit_aio(pmem_sync_worker, job, pmem_sync_done, job);
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

/* Take every available request (not one per kick), then sync. */
static void pmem_handle_queue(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(vdev);
    VirtIOPMEMRequest *req;
    bool answered = false;

    while (!vdev->broken &&
           (req = virtqueue_pop(vq, sizeof(VirtIOPMEMRequest)))) {
        uint32_t type;

        req->arrived_ns = now_ns();
        if (iov_size(req->elem.out_sg, req->elem.out_num) < sizeof(type)) {
            pmem_bad_request(pmem, req, "request without a 4-byte type");
            return;
        }
        if (iov_size(req->elem.in_sg, req->elem.in_num) < sizeof(uint32_t)) {
            pmem_bad_request(pmem, req, "request without room for the response");
            return;
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

/*
 * Finish every request the guest has made: take what is in the ring, wait
 * for the running sync, and sync the rest here.  Used before the VM's state
 * is saved, on reset and on unplug, so no request is lost or half done.
 */
static void pmem_settle(VirtIOPMEM *pmem)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(pmem);

    if (vdev->vq && virtio_queue_get_desc_addr(vdev, 0) && !vdev->broken) {
        pmem_handle_queue(vdev, pmem->vq);
    }
    AIO_WAIT_WHILE(NULL, pmem->sync_running);
    if (!QSIMPLEQ_EMPTY(&pmem->waiting)) {
        PMEMSyncJob *job;

        pmem_take_waiting(pmem);
        job = pmem_new_job(pmem);
        pmem_sync_done(job, pmem_sync_worker(job));
    }
}

static void pmem_vm_state_change(void *opaque, bool running, RunState state)
{
    if (!running) {
        pmem_settle(opaque);
    }
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

static void pmem_reset(VirtIODevice *vdev)
{
    VirtIOPMEM *pmem = VIRTIO_PMEM(vdev);

    /* Answers pushed now go with the ring the reset discards. */
    AIO_WAIT_WHILE(NULL, pmem->sync_running);
    while (!QSIMPLEQ_EMPTY(&pmem->waiting)) {
        VirtIOPMEMRequest *req = QSIMPLEQ_FIRST(&pmem->waiting);

        QSIMPLEQ_REMOVE_HEAD(&pmem->waiting, next);
        virtqueue_detach_element(pmem->vq, &req->elem, 0);
        g_free(req);
    }
    pmem->nr_waiting = 0;
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
        error_setg(errp, "memdev '%s' is already in use by another device", name);
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

static void pmem_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOPMEM *pmem = VIRTIO_PMEM(dev);

    if (!pmem->memdev) {
        error_setg(errp, "'%s' property is not set", VIRTIO_PMEM_MEMDEV_PROP);
        return;
    }
    if (!pmem_backend_usable(pmem, errp)) {
        return;
    }
    QSIMPLEQ_INIT(&pmem->waiting);
    QSIMPLEQ_INIT(&pmem->syncing);
    host_memory_backend_set_mapped(pmem->memdev, true);
    /*
     * The range is guest memory like any other: migrate its contents (the
     * destination has its own file).  With the x-ignore-shared capability,
     * a file both sides share is left alone.
     */
    vmstate_register_ram(&pmem->memdev->mr, dev);
    virtio_init(vdev, VIRTIO_ID_PMEM, sizeof(struct virtio_pmem_config));
    pmem->vq = virtio_add_queue(vdev, PMEM_QUEUE_SIZE, pmem_handle_queue);
    pmem->vmstate_entry = qdev_add_vm_change_state_handler(dev,
                                                           pmem_vm_state_change,
                                                           pmem);
}

static void pmem_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOPMEM *pmem = VIRTIO_PMEM(dev);

    /* A flush in flight completes (and is answered) before the device goes. */
    pmem_settle(pmem);
    qemu_del_vm_change_state_handler(pmem->vmstate_entry);
    vmstate_unregister_ram(&pmem->memdev->mr, dev);
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

static int pmem_pre_save(void *opaque)
{
    /* The VM is stopped: pmem_vm_state_change() already settled; be sure. */
    pmem_settle(opaque);
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
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_virtio_pmem = {
    .name = "virtio-pmem",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_VIRTIO_DEVICE,
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
        .in_flight = pmem->nr_waiting + pmem->nr_syncing,
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
    /* test knob, settable at run time: syncs fail with this errno */
    object_property_add_uint32_ptr(obj, "x-inject-flush-errno",
                                   &pmem->inject_errno, OBJ_PROP_FLAG_READWRITE);
}

static const Property pmem_properties[] = {
    DEFINE_PROP_UINT64(VIRTIO_PMEM_ADDR_PROP, VirtIOPMEM, start, 0),
    DEFINE_PROP_LINK(VIRTIO_PMEM_MEMDEV_PROP, VirtIOPMEM, memdev,
                     TYPE_MEMORY_BACKEND, HostMemoryBackend *),
    DEFINE_PROP_BOOL("x-skip-sync", VirtIOPMEM, skip_sync, false),
    DEFINE_PROP_UINT32("x-sync-delay-us", VirtIOPMEM, sync_delay_us, 0),
};

static void pmem_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioDeviceClass *vdc = VIRTIO_DEVICE_CLASS(klass);

    device_class_set_props(dc, pmem_properties);
    dc->vmsd = &vmstate_virtio_pmem;
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
