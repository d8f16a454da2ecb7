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
    # the libvirt layer's private D-Bus (libvirt itself: below)
    dbus-daemon
    # make deb checks its package
    lintian
    # firmware for the x86 machines (the +ds base tarball has none)
    seabios qemu-system-data ipxe-qemu
    # the FUSE file system of the virtio-pmem tests (tests/fuse)
    fuse3 libfuse3-dev
    # the sanitizer build (make sanitized: ASan, UBSan, libFuzzer) and its
    # reports' symbols
    clang libclang-rt-14-dev llvm
    # Linux guest userland
    busybox-static
    # building the patched Linux 6.12 (tests/kernel)
    bc libelf-dev
    mdevctl  # run in the kernel layer's guest (tests/kernel/build copies it)
    # s390x guests and firmware
    binutils-s390x-linux-gnu gcc-s390x-linux-gnu
)
[ -n "${EXTRA_DEPS:-}" ] && pkgs+=($EXTRA_DEPS)

missing=()
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: need root to install packages (run: sudo $0)" >&2
        exit 1
    fi
}
export DEBIAN_FRONTEND=noninteractive

if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    need_root
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirt for the libvirt layer (tests/libvirt): bookworm's 9.0 refuses to
# start any virtio-pmem domain ("virtio-pmem memory device info is not
# handled yet"), so take Debian's bookworm-backports build (11.3), fetched
# through the private apt configuration; apt resolves the rest from the
# system's own bookworm sources.
libvirt_pkgs=(libvirt0 libvirt-common libvirt-clients libvirt-daemon libvirt-daemon-common
              libvirt-daemon-log libvirt-daemon-driver-qemu)
have=$(dpkg-query -W -f='${Version}' libvirt-daemon-driver-qemu 2>/dev/null || true)
case "$have" in
11.*) exit 0 ;;
esac
echo "deps: installing libvirt from bookworm-backports (now: ${have:-none})"
need_root
top=$(cd "$(dirname "$0")/.." && pwd)
bpo=$(mkdir -p "${DEPS_BUILD:-$top/build}" && cd "${DEPS_BUILD:-$top/build}" && pwd)/apt-backports
dl=$bpo/debs
rm -rf "$dl"
mkdir -p "$dl"
(cd "$dl" && APT_PRIVATE_SUITE=bookworm-backports "$top/scripts/apt-private" "$bpo" \
    -qq download "${libvirt_pkgs[@]}")
apt-get install -y -qq --no-install-recommends "$dl"/*.deb >/dev/null
