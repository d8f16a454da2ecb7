/*
 * virtio-pmem: a file-backed memory range given to the guest as persistent
 * memory, with guest flush requests made durable on the host
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_VIRTIO_PMEM_H
#define HW_VIRTIO_PMEM_H

#include "hw/virtio/virtio.h"
#include "qapi/qapi-types-machine.h"
#include "qemu/queue.h"
#include "qom/object.h"
#include "system/runstate.h"

#define TYPE_VIRTIO_PMEM "virtio-pmem"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOPMEM, VIRTIO_PMEM)

/* property names shared with the PCI proxy (the memory-device interface) */
#define VIRTIO_PMEM_ADDR_PROP   "memaddr"
#define VIRTIO_PMEM_MEMDEV_PROP "memdev"
/* flush statistics, a VirtioPMEMStats, read by x-query-virtio-pmem */
#define VIRTIO_PMEM_STATS_PROP  "x-stats"

typedef struct VirtIOPMEMRequest VirtIOPMEMRequest;
typedef QSIMPLEQ_HEAD(, VirtIOPMEMRequest) VirtIOPMEMRequestQueue;
typedef struct PMEMSyncJob PMEMSyncJob;

typedef struct VirtIOPMEMStats {
    uint64_t requests;          /* flush requests answered */
    uint64_t syncs;             /* host syncs done for them */
    uint64_t errors;            /* requests answered with EIO */
    uint64_t bad_requests;      /* malformed requests (device needs reset) */
    uint64_t latency_total_ns;  /* arrival to answer, summed */
    uint64_t latency_max_ns;
    uint32_t batch_max;         /* most requests one sync covered */
} VirtIOPMEMStats;

struct VirtIOPMEM {
    VirtIODevice parent_obj;

    VirtQueue *vq;
    HostMemoryBackend *memdev;
    uint64_t start;             /* guest-physical address of the range */
    int fd;                     /* the backend's file */
    int sync_fd;                /* our duplicate of @fd, for the syncs */
    VMChangeStateEntry *vmstate_entry;
    QEMUBH *resume_bh;
    QEMUTimer *postcopy_timer;  /* a sync waits for postcopy's end */

    /*
     * Group commit: requests that arrive while a sync runs wait in
     * @waiting and are all answered by the next sync, which starts only
     * once the running one (@job, with the requests it covers) is done.
     * A sync never answers a request that arrived after it began.  While
     * the VM is stopped finished requests wait in @held for it to run.
     */
    VirtIOPMEMRequestQueue waiting;
    VirtIOPMEMRequestQueue held;
    unsigned nr_waiting;
    unsigned nr_held;
    PMEMSyncJob *job;

    bool running;               /* the VM runs: answers may be given */
    bool incoming;              /* started for an incoming migration */
    int switchover_ret;         /* the shared file's sync at switchover */

    /* migration (properties; docs/virtio-pmem.md) */
    bool dm_migration;          /* off: the base's stream, no state */
    bool migrate_contents;      /* send the range: each side has its file */

    VirtIOPMEMStats stats;
};

/* for the PCI proxy's memory-device interface */
MemoryRegion *virtio_pmem_memory_region(VirtIOPMEM *pmem, Error **errp);
void virtio_pmem_fill_device_info(VirtIOPMEM *pmem, VirtioPMEMDeviceInfo *vi);

#endif
