/*
 * What the base's PC machine types need to keep the base's behaviour
 *
 * Our own machine types (pc-i440fx-10.0-dm1, pc-q35-10.0-dm1) have every
 * behaviour of this tree; the base's 10.0 and older ones get these
 * properties so that a VM started on them sees what the base gives it and
 * migrates to and from the base.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "hw/i386/pc-dm-compat.h"
#include "cpu.h"
#include "hw/virtio/virtio-pmem.h"

GlobalProperty pc_dm_compat_10_0[] = {
    /* the base accepts any combination of hv-* flags */
    { TYPE_X86_CPU, "x-hv-strict", "off" },
    /* no state section, no migratable RAM: the base's stream */
    { TYPE_VIRTIO_PMEM, "x-dm-migration", "off" },
};
const size_t pc_dm_compat_10_0_len = G_N_ELEMENTS(pc_dm_compat_10_0);
