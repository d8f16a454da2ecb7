/*
 * The host's own sync rate on a file: N threads calling fsync() or
 * fdatasync() on it for SECONDS; prints syncs per second.  The bound under
 * any virtio-pmem figure that syncs once per request.
 *
 *   fsync-rate FILE fsync|fdatasync THREADS SECONDS [write]
 *
 * With `write', each thread first writes 4 KiB to its own place, as the
 * benchmark's guest does before each flush.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fd;
static int use_fsync;
/* set by the main thread, polled by the workers: no ordering needed */
static volatile int stop;
static atomic_ulong count;

static int do_write;

static void *worker(void *arg)
{
    char buf[4096];
    off_t where = (uintptr_t)arg * 65536;

    memset(buf, 0x5a, sizeof(buf));
    while (!stop) {
        if (do_write && pwrite(fd, buf, sizeof(buf), where) != sizeof(buf)) {
            perror("pwrite");
            exit(1);
        }
        if ((use_fsync ? fsync(fd) : fdatasync(fd)) < 0) {
            perror("sync");
            exit(1);
        }
        atomic_fetch_add(&count, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr,
                "usage: %s FILE fsync|fdatasync THREADS SECONDS [write]\n",
                argv[0]);
        return 2;
    }
    fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    use_fsync = !strcmp(argv[2], "fsync");
    do_write = argc > 5 && !strcmp(argv[5], "write");
    int n = atoi(argv[3]);
    pthread_t th[n];
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
    }
    usleep(atof(argv[4]) * 1e6);
    stop = 1;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.0f\n", count / el);
    return 0;
}
