/*
 * QMP x-query-virtio-pmem and HMP `info virtio-pmem'
 *
 * Built for every target: the devices are found through QOM and their
 * statistics read from their x-stats property, so this file only needs the
 * device's names, not its code.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "hw/qdev-core.h"
#include "hw/virtio/virtio-pmem.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-virtio-pmem.h"
#include "qapi/qapi-visit-virtio-pmem.h"
#include "qapi/qobject-input-visitor.h"
#include "qapi/visitor.h"
#include "qobject/qobject.h"
#include "qom/qom-qobject.h"

typedef struct CollectPMEM {
    VirtioPMEMStatusList **tail;
    Error **errp;
} CollectPMEM;

static bool fill_status(Object *obj, VirtioPMEMStatus *st, Error **errp)
{
    ERRP_GUARD();
    Object *memdev, *parent = obj->parent;
    QObject *qstats;
    Visitor *v;
    bool ok;

    if (parent && object_dynamic_cast(parent, TYPE_DEVICE) &&
        DEVICE(parent)->id) {
        st->id = g_strdup(DEVICE(parent)->id);
    }
    st->qom_path = object_get_canonical_path(obj);
    memdev = object_property_get_link(obj, VIRTIO_PMEM_MEMDEV_PROP, errp);
    if (*errp) {
        return false;
    }
    /* not set yet: a device being created */
    st->memdev = memdev ? object_get_canonical_path(memdev) : g_strdup("");
    if (memdev) {
        st->size = object_property_get_uint(memdev, "size", errp);
        if (*errp) {
            return false;
        }
    }
    st->memaddr = object_property_get_uint(obj, VIRTIO_PMEM_ADDR_PROP, errp);
    if (*errp) {
        return false;
    }
    qstats = object_property_get_qobject(obj, VIRTIO_PMEM_STATS_PROP, errp);
    if (!qstats) {
        return false;
    }
    v = qobject_input_visitor_new(qstats);
    ok = visit_type_VirtioPMEMStats(v, NULL, &st->stats, errp);
    visit_free(v);
    qobject_unref(qstats);
    return ok;
}

static int collect_pmem(Object *obj, void *opaque)
{
    CollectPMEM *c = opaque;
    VirtioPMEMStatus *st;

    if (!object_dynamic_cast(obj, TYPE_VIRTIO_PMEM)) {
        return 0;
    }
    st = g_new0(VirtioPMEMStatus, 1);
    if (!fill_status(obj, st, c->errp)) {
        qapi_free_VirtioPMEMStatus(st);
        return -1;              /* stops the walk */
    }
    QAPI_LIST_APPEND(c->tail, st);
    return 0;
}

VirtioPMEMStatusList *qmp_x_query_virtio_pmem(Error **errp)
{
    VirtioPMEMStatusList *list = NULL;
    CollectPMEM c = { .tail = &list, .errp = errp };

    if (object_child_foreach_recursive(object_get_root(), collect_pmem, &c)) {
        qapi_free_VirtioPMEMStatusList(list);
        return NULL;
    }
    return list;
}

void hmp_info_virtio_pmem(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    VirtioPMEMStatusList *list = qmp_x_query_virtio_pmem(&err);

    if (err) {
        hmp_handle_error(mon, err);
        return;
    }
    if (!list) {
        monitor_printf(mon, "no virtio-pmem devices\n");
    }
    for (VirtioPMEMStatusList *l = list; l; l = l->next) {
        VirtioPMEMStatus *st = l->value;
        VirtioPMEMStats *s = st->stats;

        monitor_printf(mon, "%s: %s at 0x%" PRIx64 ", %" PRIu64 " bytes\n",
                       st->id ?: st->qom_path, st->memdev, st->memaddr,
                       st->size);
        monitor_printf(mon, "  requests %" PRIu64 ", syncs %" PRIu64
                       " (%.3f per request), errors %" PRIu64
                       ", malformed %" PRIu64 "\n",
                       s->requests, s->syncs,
                       s->requests ? (double)s->syncs / s->requests : 0.0,
                       s->errors, s->bad_requests);
        monitor_printf(mon, "  in flight %u, largest batch %u, latency avg %"
                       PRIu64 " us, max %" PRIu64 " us\n",
                       s->in_flight, s->batch_max, s->latency_avg_ns / 1000,
                       s->latency_max_ns / 1000);
    }
    qapi_free_VirtioPMEMStatusList(list);
}
