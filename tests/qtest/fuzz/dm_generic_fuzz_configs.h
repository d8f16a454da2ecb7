/*
 * generic-fuzz configurations of this tree's devices
 *
 Included by the base's generic_fuzz_configs.h (patches/0026) before its
 * table of configurations, whose end includes our entries
 * (dm_generic_fuzz_configs.c.inc): each becomes a "generic-fuzz-NAME"
 * target of qemu-fuzz-x86_64.  What each can and cannot reach:
 * docs/testing.md ("Fuzzing").
 *
 * Downstream addition of this tree; not in upstream QEMU.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef DM_GENERIC_FUZZ_CONFIGS_H
#define DM_GENERIC_FUZZ_CONFIGS_H

/*
 * virtio-pmem-pci with a file-backed range.  The backend gets a directory
 * as mem-path: it creates its file there and unlinks it at once, so each
 * run has a file of its own and none outlives the run, even a crashing
 * one.  prealloc=on allocates the file's blocks (the device warns about a
 * sparse file otherwise).  maxmem gives pc's device-memory area room for
 * the range.
 */
static inline gchar *dm_generic_fuzzer_virtio_pmem_args(void)
{
    return g_strdup_printf("-machine pc -nodefaults "
                           "-m 512M,slots=2,maxmem=1G "
                           "-object memory-backend-file,id=pmem0,share=on,"
                           "mem-path=%s,size=2M,prealloc=on "
                           "-device virtio-pmem-pci,memdev=pmem0,id=nv1",
                           g_get_tmp_dir());
}

#endif
