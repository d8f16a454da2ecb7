/*
 * virtio-pmem-pci: virtio-pmem on PCI, as a memory device
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_VIRTIO_PMEM_PCI_H
#define HW_VIRTIO_PMEM_PCI_H

#include "hw/virtio/virtio-md-pci.h"
#include "hw/virtio/virtio-pmem.h"
#include "qom/object.h"

#define TYPE_VIRTIO_PMEM_PCI "virtio-pmem-pci-base"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOPMEMPCI, VIRTIO_PMEM_PCI)

struct VirtIOPMEMPCI {
    VirtIOMDPCI parent_obj;
    VirtIOPMEM vdev;
};

#endif
