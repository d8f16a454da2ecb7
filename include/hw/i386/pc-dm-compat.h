/*
 * What the base's PC machine types need to keep the base's behaviour
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_I386_PC_DM_COMPAT_H
#define HW_I386_PC_DM_COMPAT_H

#include "hw/qdev-core.h"

/*
 * Set on pc-i440fx-10.0, pc-q35-10.0 and every older PC machine type:
 * each entry turns one behaviour of this tree back into the base's, so
 * those machine types keep the base's guest ABI and migration stream.
 */
extern GlobalProperty pc_dm_compat_10_0[];
extern const size_t pc_dm_compat_10_0_len;

#endif
