/*
 * syncfs: a FUSE passthrough file system that records every sync
 *
 * Tests put a device's backing file here to see from outside QEMU whether,
 * and when, the file was really synced.  Every fsync/fdatasync of a file
 * under the mount (and every flush, at close) appends two lines to a log:
 *
 *   B <seq> <kind> <start_ns> <path>                   when it starts
 *   E <seq> <kind> <start_ns> <end_ns> <result> <path> when it returns
 *
 * kind is fsync, fdatasync or flush; times are CLOCK_MONOTONIC nanoseconds
 * (the clock of g_get_monotonic_time()); result is 0 or a negative errno.
 * The E line is written before the answer goes back to the kernel, so a
 * caller cannot see its sync return before end_ns.
 *
 * A control file, read at every fsync/fdatasync (before its B line), changes
 * it on the fly:
 *
 *   delay_us=N     sleep N microseconds before syncing (slow storage)
 *   fail=1         fail with EIO, without syncing (a failing disk)
 *
 * Usage: syncfs REALDIR MOUNTPOINT -o log=FILE[,control=FILE][,delay_us=N]
 *        (plus libfuse's own options, e.g. -f to stay in the foreground)
 *
 * No direct_io: reads, writes and shared mappings go through the kernel's
 * page cache of the mount and reach REALDIR by writeback, as on a local
 * file system; a sync through the mount writes back the file's dirty pages
 * (our write handler) before it reaches our fsync handler.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

typedef struct Options {
    char *log;
    char *control;
    unsigned delay_us;
    char *real;
} Options;

static Options opts;
static int root_fd = -1;
static int log_fd = -1;
static uint64_t next_seq;

#define OPT(t, f) { t, offsetof(Options, f), 0 }
static const struct fuse_opt option_spec[] = {
    OPT("log=%s", log),
    OPT("control=%s", control),
    OPT("delay_us=%u", delay_us),
    FUSE_OPT_END
};

/* Paths from FUSE start with '/'; we open them relative to REALDIR. */
static const char *rel(const char *path)
{
    return path[1] ? path + 1 : ".";
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One write() per line on an O_APPEND file: lines never interleave. */
static void log_line(const char *fmt, ...)
{
    char buf[PATH_MAX + 128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0 && write(log_fd, buf, MIN(n, (int)sizeof(buf) - 1)) < 0) {
        perror("syncfs: log");
    }
}

typedef struct Control {
    unsigned delay_us;
    bool fail;
} Control;

static void read_control(Control *c)
{
    char buf[256], *line, *save = NULL;
    ssize_t n;
    int fd;

    c->delay_us = opts.delay_us;
    c->fail = false;
    if (!opts.control) {
        return;
    }
    fd = open(opts.control, O_RDONLY);
    if (fd < 0) {
        return;                 /* no control file: the mount's defaults */
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[MAX(n, 0)] = 0;
    for (line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned v;

        /* a standalone program: no qemu_strtoul() here */
        if (sscanf(line, "delay_us=%u", &v) == 1) {
            c->delay_us = v;
        } else if (sscanf(line, "fail=%u", &v) == 1) {
            c->fail = v != 0;
        }
    }
}

static void sleep_us(unsigned us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        continue;
    }
}

static int sfs_sync(const char *path, const char *kind,
                    struct fuse_file_info *fi)
{
    int64_t start = now_ns();
    uint64_t seq = __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED);
    Control c = { 0 };
    int ret;

    /* read before the B line: a change seen after it is for later syncs */
    if (strcmp(kind, "flush")) {
        read_control(&c);
    }
    log_line("B %" PRIu64 " %s %" PRId64 " %s\n", seq, kind, start, path);
    if (!strcmp(kind, "flush")) {
        /* close() of a duplicate: what the real file system sees at close */
        ret = close(dup(fi->fh)) < 0 ? -errno : 0;
    } else {
        if (c.delay_us) {
            sleep_us(c.delay_us);
        }
        if (c.fail) {
            ret = -EIO;
        } else if (!strcmp(kind, "fdatasync")) {
            ret = fdatasync(fi->fh) < 0 ? -errno : 0;
        } else {
            ret = fsync(fi->fh) < 0 ? -errno : 0;
        }
    }
    log_line("E %" PRIu64 " %s %" PRId64 " %" PRId64 " %d %s\n",
             seq, kind, start, now_ns(), ret, path);
    return ret;
}

static int sfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    return sfs_sync(path, datasync ? "fdatasync" : "fsync", fi);
}

static int sfs_flush(const char *path, struct fuse_file_info *fi)
{
    return sfs_sync(path, "flush", fi);
}

static void *sfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    /* Our own inode numbers, so hard links and renames look as below. */
    cfg->use_ino = 1;
    return NULL;
}

static int sfs_getattr(const char *path, struct stat *st,
                       struct fuse_file_info *fi)
{
    int r = fi ? fstat(fi->fh, st) :
        fstatat(root_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);

    return r < 0 ? -errno : 0;
}

static int sfs_access(const char *path, int mask)
{
    return faccessat(root_fd, rel(path), mask, 0) < 0 ? -errno : 0;
}

static int sfs_readlink(const char *path, char *buf, size_t size)
{
    ssize_t n = readlinkat(root_fd, rel(path), buf, size - 1);

    if (n < 0) {
        return -errno;
    }
    buf[n] = 0;
    return 0;
}

static int sfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
                       off_t off, struct fuse_file_info *fi,
                       enum fuse_readdir_flags flags)
{
    int fd = openat(root_fd, rel(path), O_RDONLY | O_DIRECTORY);
    struct dirent *de;
    DIR *d;

    if (fd < 0) {
        return -errno;
    }
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d))) {
        struct stat st = { .st_ino = de->d_ino, .st_mode = de->d_type << 12 };

        if (fill(buf, de->d_name, &st, 0, 0)) {
            break;
        }
    }
    closedir(d);
    return 0;
}

static int sfs_mkdir(const char *path, mode_t mode)
{
    return mkdirat(root_fd, rel(path), mode) < 0 ? -errno : 0;
}

static int sfs_unlink(const char *path)
{
    return unlinkat(root_fd, rel(path), 0) < 0 ? -errno : 0;
}

static int sfs_rmdir(const char *path)
{
    return unlinkat(root_fd, rel(path), AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int sfs_symlink(const char *target, const char *path)
{
    return symlinkat(target, root_fd, rel(path)) < 0 ? -errno : 0;
}

static int sfs_rename(const char *from, const char *to, unsigned int flags)
{
    return renameat2(root_fd, rel(from), root_fd, rel(to), flags) < 0 ?
        -errno : 0;
}

static int sfs_link(const char *from, const char *to)
{
    return linkat(root_fd, rel(from), root_fd, rel(to), 0) < 0 ? -errno : 0;
}

static int sfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    int r = fi ? fchmod(fi->fh, mode) : fchmodat(root_fd, rel(path), mode, 0);

    return r < 0 ? -errno : 0;
}

static int sfs_chown(const char *path, uid_t uid, gid_t gid,
                     struct fuse_file_info *fi)
{
    int r = fi ? fchown(fi->fh, uid, gid) :
        fchownat(root_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);

    return r < 0 ? -errno : 0;
}

static int sfs_truncate(const char *path, off_t size,
                        struct fuse_file_info *fi)
{
    int r, fd;

    if (fi) {
        return ftruncate(fi->fh, size) < 0 ? -errno : 0;
    }
    fd = openat(root_fd, rel(path), O_WRONLY);
    if (fd < 0) {
        return -errno;
    }
    r = ftruncate(fd, size) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int sfs_utimens(const char *path, const struct timespec tv[2],
                       struct fuse_file_info *fi)
{
    int r = fi ? futimens(fi->fh, tv) :
        utimensat(root_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);

    return r < 0 ? -errno : 0;
}

/* O_DIRECT stays ours to ignore: the kernel's page cache is the point. */
static int sfs_open(const char *path, struct fuse_file_info *fi)
{
    int fd = openat(root_fd, rel(path), fi->flags & ~O_DIRECT);

    if (fd < 0) {
        return -errno;
    }
    fi->fh = fd;
    return 0;
}

static int sfs_create(const char *path, mode_t mode,
                      struct fuse_file_info *fi)
{
    int fd = openat(root_fd, rel(path), (fi->flags & ~O_DIRECT) | O_CREAT,
                    mode);

    if (fd < 0) {
        return -errno;
    }
    fi->fh = fd;
    return 0;
}

static int sfs_read(const char *path, char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    ssize_t n = pread(fi->fh, buf, size, off);

    return n < 0 ? -errno : n;
}

static int sfs_write(const char *path, const char *buf, size_t size,
                     off_t off, struct fuse_file_info *fi)
{
    ssize_t n = pwrite(fi->fh, buf, size, off);

    return n < 0 ? -errno : n;
}

static int sfs_statfs(const char *path, struct statvfs *st)
{
    return fstatvfs(root_fd, st) < 0 ? -errno : 0;
}

static int sfs_release(const char *path, struct fuse_file_info *fi)
{
    close(fi->fh);
    return 0;
}

static int sfs_fallocate(const char *path, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
    return fallocate(fi->fh, mode, off, len) < 0 ? -errno : 0;
}

static const struct fuse_operations sfs_ops = {
    .init = sfs_init,
    .getattr = sfs_getattr,
    .access = sfs_access,
    .readlink = sfs_readlink,
    .readdir = sfs_readdir,
    .mkdir = sfs_mkdir,
    .unlink = sfs_unlink,
    .rmdir = sfs_rmdir,
    .symlink = sfs_symlink,
    .rename = sfs_rename,
    .link = sfs_link,
    .chmod = sfs_chmod,
    .chown = sfs_chown,
    .truncate = sfs_truncate,
    .utimens = sfs_utimens,
    .open = sfs_open,
    .create = sfs_create,
    .read = sfs_read,
    .write = sfs_write,
    .statfs = sfs_statfs,
    .flush = sfs_flush,
    .release = sfs_release,
    .fsync = sfs_fsync,
    .fallocate = sfs_fallocate,
};

/* The first non-option argument is REALDIR; libfuse takes the mount point. */
static int option_proc(void *data, const char *arg, int key,
                       struct fuse_args *out)
{
    if (key == FUSE_OPT_KEY_NONOPT && !opts.real) {
        opts.real = strdup(arg);
        return 0;
    }
    return 1;
}

/* libfuse's daemon runs in '/': make the paths we keep absolute first. */
static char *absolute(const char *path)
{
    char cwd[PATH_MAX], *abs;

    if (path[0] == '/' || !getcwd(cwd, sizeof(cwd))) {
        return strdup(path);
    }
    if (asprintf(&abs, "%s/%s", cwd, path) < 0) {
        return NULL;
    }
    return abs;
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    int ret;

    if (fuse_opt_parse(&args, &opts, option_spec, option_proc) < 0) {
        return 1;
    }
    if (!opts.real || !opts.log) {
        fprintf(stderr, "usage: %s REALDIR MOUNTPOINT -o log=FILE"
                "[,control=FILE][,delay_us=N]\n", argv[0]);
        return 1;
    }
    root_fd = open(opts.real, O_RDONLY | O_DIRECTORY);
    if (root_fd < 0) {
        perror(opts.real);
        return 1;
    }
    log_fd = open(opts.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        perror(opts.log);
        return 1;
    }
    if (opts.control) {
        opts.control = absolute(opts.control);
    }
    /* Files are created with the caller's modes, not ours. */
    umask(0);
    ret = fuse_main(args.argc, args.argv, &sfs_ops, NULL);
    fuse_opt_free_args(&args);
    return ret;
}
