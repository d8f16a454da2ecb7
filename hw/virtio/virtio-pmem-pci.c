/*
 * virtio-pmem-pci: virtio-pmem on PCI, as a memory device
 *
 * The memory-device interface lets the machine place the backend's range in
 * its device-memory area (or at memaddr=), account it against maxmem, and
 * report it in query-memory-devices; hot-unplug is allowed, and a flush in
 * flight completes before the device goes (see pmem_unrealize()).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "hw/mem/memory-device.h"
#include "virtio-pmem-pci.h"

static void pmem_pci_realize(VirtIOPCIProxy *proxy, Error **errp)
{
    VirtIOPMEMPCI *dev = VIRTIO_PMEM_PCI(proxy);

    virtio_pci_force_virtio_1(proxy);
    qdev_realize(DEVICE(&dev->vdev), BUS(&proxy->bus), errp);
}

static VirtIOPMEM *md_pmem(const MemoryDeviceState *md)
{
    return &VIRTIO_PMEM_PCI(md)->vdev;
}

static uint64_t pmem_pci_get_addr(const MemoryDeviceState *md)
{
    return md_pmem(md)->start;
}

static void pmem_pci_set_addr(MemoryDeviceState *md, uint64_t addr,
                              Error **errp)
{
    object_property_set_uint(OBJECT(md), VIRTIO_PMEM_ADDR_PROP, addr, errp);
}

static MemoryRegion *pmem_pci_get_memory_region(MemoryDeviceState *md,
                                                Error **errp)
{
    return virtio_pmem_memory_region(md_pmem(md), errp);
}

static uint64_t pmem_pci_get_plugged_size(const MemoryDeviceState *md,
                                          Error **errp)
{
    MemoryRegion *mr = virtio_pmem_memory_region(md_pmem(md), errp);

    return mr ? memory_region_size(mr) : 0;
}

static void pmem_pci_fill_device_info(const MemoryDeviceState *md,
                                      MemoryDeviceInfo *info)
{
    VirtioPMEMDeviceInfo *vi = g_new0(VirtioPMEMDeviceInfo, 1);
    DeviceState *dev = DEVICE(md);

    vi->id = g_strdup(dev->id);
    virtio_pmem_fill_device_info(md_pmem(md), vi);
    info->type = MEMORY_DEVICE_INFO_KIND_VIRTIO_PMEM;
    info->u.virtio_pmem.data = vi;
}

static void pmem_pci_unplug_request_check(VirtIOMDPCI *vmd, Error **errp)
{
    /* Nothing to refuse: unrealize finishes in-flight flushes. */
}

static void pmem_pci_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioPCIClass *vpc = VIRTIO_PCI_CLASS(klass);
    PCIDeviceClass *pcic = PCI_DEVICE_CLASS(klass);
    MemoryDeviceClass *mdc = MEMORY_DEVICE_CLASS(klass);
    VirtIOMDPCIClass *vmdc = VIRTIO_MD_PCI_CLASS(klass);

    set_bit(DEVICE_CATEGORY_STORAGE, dc->categories);
    vpc->realize = pmem_pci_realize;
    pcic->class_id = PCI_CLASS_OTHERS;   /* as the base has it: guest-visible */
    pcic->revision = VIRTIO_PCI_ABI_VERSION;

    mdc->get_addr = pmem_pci_get_addr;
    mdc->set_addr = pmem_pci_set_addr;
    mdc->get_plugged_size = pmem_pci_get_plugged_size;
    mdc->get_memory_region = pmem_pci_get_memory_region;
    mdc->fill_device_info = pmem_pci_fill_device_info;
    vmdc->unplug_request_check = pmem_pci_unplug_request_check;
}

static void pmem_pci_instance_init(Object *obj)
{
    VirtIOPMEMPCI *dev = VIRTIO_PMEM_PCI(obj);

    virtio_instance_init_common(obj, &dev->vdev, sizeof(dev->vdev),
                                TYPE_VIRTIO_PMEM);
}

static const VirtioPCIDeviceTypeInfo pmem_pci_info = {
    .base_name = TYPE_VIRTIO_PMEM_PCI,
    .generic_name = "virtio-pmem-pci",
    .parent = TYPE_VIRTIO_MD_PCI,
    .instance_size = sizeof(VirtIOPMEMPCI),
    .instance_init = pmem_pci_instance_init,
    .class_init = pmem_pci_class_init,
};

static void pmem_pci_register_types(void)
{
    virtio_pci_types_register(&pmem_pci_info);
}

type_init(pmem_pci_register_types)
