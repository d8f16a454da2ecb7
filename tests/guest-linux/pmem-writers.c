/*
 * pmem-writers: N threads, each writing 4 KiB and then syncing, for a
 * fixed time; in the Linux test guest (static, in its initramfs) to load
 * a virtio-pmem device with flushes the way an application would.
 *
 *   pmem-writers raw  DEVICE THREADS SECONDS [BASE_MIB]
 *       each thread pwrite()s 4 KiB at its own 64 KiB-aligned offset of
 *       the block device (e.g. /dev/pmem0), from BASE_MIB MiB on (default
 *       0: a file system in front of it stays intact), and fdatasync()s it
 *   pmem-writers file DIR THREADS SECONDS
 *       each thread has its own file DIR/wN (created, 64 KiB written and
 *       fsynced before the clock starts, so the timed writes allocate
 *       nothing), pwrite()s 4 KiB at offset 0 and fdatasync()s it
 *
 * Prints one line:
 *
 *   @@ writers MODE THREADS OPS SECONDS OPS_PER_S P50_US P90_US P99_US MAX_US
 *
 * latencies are of one pwrite + fdatasync, in microseconds, over all
 * threads.  Exit status 1 on any error (with a message on stderr).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096
#define STRIDE 65536
#define MAX_THREADS 256
/* latencies kept per thread; ops past this still count, unsampled */
#define MAX_SAMPLES 65536

typedef struct Writer {
    pthread_t tid;
    int fd;
    off_t off;
    uint64_t ops;
    unsigned nr_samples;
    uint32_t *samples;
} Writer;

/* set by the main thread, polled by the writers: no ordering needed */
static volatile int go, stop;
static Writer writers[MAX_THREADS];

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
    fprintf(stderr, "pmem-writers: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *writer(void *opaque)
{
    Writer *w = opaque;
    char buf[BLOCK];
    uint64_t seq = 0;

    while (!go) {
        sched_yield();
    }
    while (!stop) {
        uint64_t t0 = now_us(), dt;

        memset(buf, (int)(seq++ & 0xff), sizeof(buf));
        if (pwrite(w->fd, buf, sizeof(buf), w->off) != sizeof(buf)) {
            die("pwrite");
        }
        if (fdatasync(w->fd) < 0) {
            die("fdatasync");
        }
        dt = now_us() - t0;
        if (w->nr_samples < MAX_SAMPLES) {
            w->samples[w->nr_samples++] = dt > UINT32_MAX ? UINT32_MAX : dt;
        }
        w->ops++;
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static void prepare_file(Writer *w, const char *dir, int i)
{
    char path[4096], buf[STRIDE];

    snprintf(path, sizeof(path), "%s/w%d", dir, i);
    w->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
        die(path);
    }
    memset(buf, 0, sizeof(buf));
    if (pwrite(w->fd, buf, sizeof(buf), 0) != sizeof(buf) || fsync(w->fd) < 0) {
        die(path);
    }
    w->off = 0;
}

int main(int argc, char **argv)
{
    int threads, raw, i;
    off_t base;
    double seconds, elapsed;
    uint64_t t0, ops = 0, total = 0;
    uint32_t *all;

    if (argc < 5 || argc > 6 ||
        (strcmp(argv[1], "raw") && strcmp(argv[1], "file"))) {
        fprintf(stderr, "usage: %s raw DEVICE THREADS SECONDS [BASE_MIB]\n"
                "       %s file DIR THREADS SECONDS\n", argv[0], argv[0]);
        return 2;
    }
    raw = !strcmp(argv[1], "raw");
    threads = atoi(argv[3]);
    seconds = atof(argv[4]);
    base = argc > 5 ? (off_t)atoi(argv[5]) << 20 : 0;
    if (threads < 1 || threads > MAX_THREADS || seconds <= 0) {
        fprintf(stderr, "pmem-writers: 1-%d threads, seconds > 0\n",
                MAX_THREADS);
        return 2;
    }
    for (i = 0; i < threads; i++) {
        Writer *w = &writers[i];

        w->samples = malloc(MAX_SAMPLES * sizeof(*w->samples));
        if (!w->samples) {
            die("malloc");
        }
        if (raw) {
            w->fd = open(argv[2], O_RDWR);
            if (w->fd < 0) {
                die(argv[2]);
            }
            w->off = base + (off_t)i * STRIDE;
        } else {
            prepare_file(w, argv[2], i);
        }
        errno = pthread_create(&w->tid, NULL, writer, w);
        if (errno) {
            die("pthread_create");
        }
    }
    t0 = now_us();
    go = 1;
    while (now_us() - t0 < seconds * 1e6) {
        usleep(10000);
    }
    stop = 1;
    for (i = 0; i < threads; i++) {
        pthread_join(writers[i].tid, NULL);
    }
    elapsed = (now_us() - t0) / 1e6;
    for (i = 0; i < threads; i++) {
        ops += writers[i].ops;
        total += writers[i].nr_samples;
    }
    all = malloc((total ? total : 1) * sizeof(*all));
    if (!all) {
        die("malloc");
    }
    total = 0;
    for (i = 0; i < threads; i++) {
        memcpy(all + total, writers[i].samples,
               writers[i].nr_samples * sizeof(*all));
        total += writers[i].nr_samples;
        close(writers[i].fd);
    }
    qsort(all, total, sizeof(*all), cmp_u32);
#define PCT(p) (total ? all[(uint64_t)((total - 1) * (p))] : 0)
    printf("@@ writers %s %d %llu %.3f %.1f %u %u %u %u\n", argv[1], threads,
           (unsigned long long)ops, elapsed, ops / elapsed, PCT(0.5),
           PCT(0.9), PCT(0.99), total ? all[total - 1] : 0);
    return 0;
}
