/*
 * KVM dirty logging with manual reprotect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)
 *
 * With the capability enabled, KVM_GET_DIRTY_LOG only reports dirty pages;
 * it no longer write-protects them.  Migration re-protects small ranges
 * with KVM_CLEAR_DIRTY_LOG just before it sends their contents: mmu_lock is
 * held for a chunk instead of a whole slot, and a page written between the
 * fetch and the send is not reported again for nothing.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_KVM_DIRTY_LOG_H
#define SYSTEM_KVM_DIRTY_LOG_H

#include "exec/memory.h"

typedef struct KVMState KVMState;
typedef struct KVMSlot KVMSlot;
typedef struct KVMMemoryListener KVMMemoryListener;

/* Accelerator properties: dirty-log-manual-protect and the test knobs. */
void kvm_dirty_log_class_init(ObjectClass *oc);

/*
 * Enable manual protect with the flags the kernel offers, unless the user
 * switched it off or the dirty ring is used.  Returns 0, or a negative
 * errno after reporting why (dirty-log-manual-protect=on not honoured).
 */
int kvm_dirty_log_init(KVMState *s, bool dirty_ring);

/*
 * Fetch @slot's dirty bitmap into slot->dirty_bmap (KVM_GET_DIRTY_LOG).
 * Returns false if the kernel refused.  Called with the slots lock held.
 */
bool kvm_dirty_log_fetch(KVMState *s, KVMSlot *slot);

/*
 * Re-protect the pages of @section that the last fetch reported dirty
 * (KVM_CLEAR_DIRTY_LOG per slot, in 64-page aligned windows).  A failed
 * clear is recorded for kvm_dirty_log_take_error(), never fatal: its pages
 * stay dirty in the kernel, so they are reported and sent again.
 * Called with the slots lock held.
 */
void kvm_dirty_log_clear(KVMMemoryListener *kml, MemoryRegionSection *section);

/* @kml's slots were added or removed (the slot lookup is rebuilt). */
void kvm_dirty_log_slots_changed(KVMMemoryListener *kml);

/*
 * For migration: false, with the first failure since the last call in
 * @errp, if a clear failed.  Available in every build (a stub without KVM).
 */
bool kvm_dirty_log_take_error(Error **errp);

#endif
