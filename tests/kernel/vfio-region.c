// SPDX-License-Identifier: GPL-2.0
/*
 * vfio-region: open an mdev through VFIO's group/container interface and
 * print the size of each of its regions, one "region INDEX SIZE" line each.
 *
 * Usage: vfio-region UUID
 *
 * The mdev's group is found through /sys/bus/mdev/devices/UUID/iommu_group.
 * An mdev sits in an "emulated IOMMU" group: the type1 IOMMU backend of the
 * container takes it without any hardware IOMMU.  Exit status 0 when every
 * step worked, 1 (with a message on stderr) otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/vfio.h>

static int fail(const char *what)
{
	fprintf(stderr, "vfio-region: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	char link[PATH_MAX], target[PATH_MAX], path[PATH_MAX];
	int container, group, device;
	unsigned int i;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: vfio-region UUID\n");
		return 2;
	}

	snprintf(link, sizeof(link), "/sys/bus/mdev/devices/%s/iommu_group",
		 argv[1]);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return fail(link);
	target[n] = '\0';
	snprintf(path, sizeof(path), "/dev/vfio/%s", basename(target));

	container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		return fail("/dev/vfio/vfio");
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
		errno = EINVAL;
		return fail("VFIO_GET_API_VERSION");
	}
	if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1) {
		errno = ENOTSUP;
		return fail("VFIO_CHECK_EXTENSION(TYPE1v2)");
	}

	group = open(path, O_RDWR);
	if (group < 0)
		return fail(path);
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &status))
		return fail("VFIO_GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = EBUSY;
		return fail("group not viable");
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		return fail("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return fail("VFIO_SET_IOMMU(TYPE1v2)");

	device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, argv[1]);
	if (device < 0)
		return fail("VFIO_GROUP_GET_DEVICE_FD");
	if (ioctl(device, VFIO_DEVICE_GET_INFO, &info))
		return fail("VFIO_DEVICE_GET_INFO");
	printf("group %s regions %u flags 0x%x\n", basename(target),
	       info.num_regions, info.flags);

	for (i = 0; i < info.num_regions; i++) {
		struct vfio_region_info reg = {
			.argsz = sizeof(reg),
			.index = i,
		};

		if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &reg)) {
			/* a driver may leave an index unimplemented */
			if (errno == EINVAL)
				continue;
			return fail("VFIO_DEVICE_GET_REGION_INFO");
		}
		printf("region %u %llu\n", i, (unsigned long long)reg.size);
	}

	close(device);
	close(group);
	close(container);
	return 0;
}
