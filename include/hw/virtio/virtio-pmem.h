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
    VMChangeStateEntry *vmstate_entry;

    /*
     * Group commit: requests that arrive while a sync runs wait in
     * @waiting and are all answered by the next sync, which starts only
     * once the running one is done; @syncing holds those the running sync
     * covers.  A sync never answers a request that arrived after it began.
     */
    VirtIOPMEMRequestQueue waiting;
    VirtIOPMEMRequestQueue syncing;
    unsigned nr_waiting;
    unsigned nr_syncing;
    bool sync_running;

    VirtIOPMEMStats stats;

    /* test knobs (x- properties) */
    uint32_t inject_errno;      /* answer syncs with this error, unsynced */
    bool skip_sync;             /* answer OK without syncing: bench ceiling */
    uint32_t sync_delay_us;     /* sleep before each sync: widens races */
};

/* for the PCI proxy's memory-device interface */
MemoryRegion *virtio_pmem_memory_region(VirtIOPMEM *pmem, Error **errp);
void virtio_pmem_fill_device_info(VirtIOPMEM *pmem, VirtioPMEMDeviceInfo *vi);

#endif
