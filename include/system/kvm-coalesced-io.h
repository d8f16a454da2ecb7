/*
 * KVM coalesced I/O: write-only MMIO and port ranges queued in KVM's ring
 *
 * A device marks a range as coalesced with memory_region_add_coalescing().
 * Under KVM, guest writes to it are appended to a ring shared with the
 * kernel instead of exiting to QEMU; QEMU replays the ring, in order, before
 * any access that could observe the queued writes (regions marked with
 * memory_region_set_flush_coalesced()), when the VM stops (before any
 * device's stop handler), after a memory topology update that removed a
 * zone, and whenever a write exits because the ring is full.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef SYSTEM_KVM_COALESCED_IO_H
#define SYSTEM_KVM_COALESCED_IO_H

#include "exec/memory.h"

typedef struct KVMState KVMState;
struct kvm_run;

/* The accelerator property coalesced-pio; called by kvm's class_init. */
void kvm_coalesced_io_class_init(ObjectClass *oc);

/* Probe the capabilities, register the listeners; called by kvm_init(). */
void kvm_coalesced_io_init(KVMState *s);

/* Find the ring in a vCPU's kvm_run mapping (one ring per VM). */
void kvm_coalesced_io_vcpu_init(KVMState *s, struct kvm_run *run);

/*
 * A write that exited to QEMU instead of going through the ring: count it
 * when it falls in a zone.  Called on every MMIO/PIO write exit, without
 * the BQL, and takes no lock.
 */
void kvm_coalesced_io_note_exit(bool pio, uint64_t addr, unsigned len);

#endif
