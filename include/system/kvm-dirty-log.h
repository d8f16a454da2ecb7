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

/* Accelerator property dirty-log-manual-protect. */
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
 * For the statistics: the fetch of @slot reported @dirty pages (the count
 * its caller's sync into QEMU's bitmaps makes anyway, so none is made here
 * under the slots lock).
 */
void kvm_dirty_log_fetched(KVMSlot *slot, uint64_t dirty);

/*
 * Re-protect the pages of @section that the last fetch reported dirty
 * (KVM_CLEAR_DIRTY_LOG per slot, in 64-page aligned windows).  A failed
 * clear is recorded for kvm_dirty_log_migration_check(), never fatal: its
 * pages stay dirty in the kernel, so they are reported and sent again.
 * Called with the slots lock held.
 */
void kvm_dirty_log_clear(KVMMemoryListener *kml, MemoryRegionSection *section);

/* @kml's slots were added or removed (the slot lookup is rebuilt). */
void kvm_dirty_log_slots_changed(KVMMemoryListener *kml);

/*
 * For migration, which calls these in every build (a stub without KVM).
 *
 * kvm_dirty_log_migration_start(): a migration starts; a clear failure
 * recorded before (a dirty-rate measurement's) is not its own.  Call it
 * before the migration's first dirty-bitmap sync: clears made from then on
 * (virtio-mem's discarded pages at setup included) are the migration's.
 *
 * kvm_dirty_log_migration_check(): after each step of sending RAM.  If a
 * clear failed since the last call and vCPUs may still run before the
 * migration ends (@live), the dirty log cannot be trusted to converge:
 * false, with the first failure in @errp.  Otherwise (after switchover, in
 * postcopy, with the VM stopped) a failure is reported and true returned:
 * the failed window's pages stay dirty, nothing is lost.
 */
void kvm_dirty_log_migration_start(void);
bool kvm_dirty_log_migration_check(bool live, Error **errp);

#endif
