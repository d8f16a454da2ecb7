#!/usr/bin/env bash
# Install the build and test dependencies from Debian's archive (the system's
# own bookworm sources).  Idempotent: prints nothing when all are present.
set -euo pipefail

pkgs=(
    # QEMU build
    build-essential ninja-build pkg-config bison flex ccache python3 python3-venv
    libglib2.0-dev libpixman-1-dev libaio-dev libslirp-dev libfdt-dev zlib1g-dev
    # fetching and unpacking the base and guest assets
    dpkg-dev xz-utils cpio kmod e2fsprogs rsync
    # make deb checks its package
    lintian
    # firmware for the x86 machines (the +ds base tarball has none)
    seabios qemu-system-data ipxe-qemu
    # the FUSE file system of the virtio-pmem tests (tests/fuse)
    fuse3 libfuse3-dev
    # Linux guest userland
    busybox-static
    # building the patched Linux 6.12 (tests/kernel)
    bc libelf-dev
    # s390x guests and firmware
    binutils-s390x-linux-gnu gcc-s390x-linux-gnu
)
[ -n "${EXTRA_DEPS:-}" ] && pkgs+=($EXTRA_DEPS)

missing=()
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install packages (run: sudo $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
