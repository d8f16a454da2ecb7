# QEMU device-model tree: our files and patches on a pinned QEMU 10.0 base.
# `make` builds with the defaults; `./configure --help` lists the options.

-include config.mak
TARGETS ?= x86_64,s390x
# The base is built for the comparisons and the compat tests (x86_64, s390x).
UPSTREAM_TARGETS ?= x86_64,s390x
ASAN ?= no
# make install: where (the build is relocatable: any absolute PREFIX works)
PREFIX ?= /usr/local
DESTDIR ?=
BASE ?=
WITH_UPSTREAM ?= no

B := build
comma := ,
empty :=
space := $(empty) $(empty)
target_names := $(subst $(comma),$(space),$(TARGETS))
QEMU_OPTS := --target-list=$(subst $(space),$(comma),$(foreach t,$(target_names),$(t)-softmmu)) \
	--enable-kvm $(if $(filter yes,$(ASAN)),--enable-asan --enable-ubsan)
UPSTREAM_OPTS := --target-list=$(subst $(space),$(comma),$(foreach t,$(subst $(comma),$(space),$(UPSTREAM_TARGETS)),$(t)-softmmu)) \
	--enable-kvm $(if $(filter yes,$(ASAN)),--enable-asan --enable-ubsan)
BASEDIR := $(if $(BASE),$(BASE),$(B)/base)
# The sanitizer build (build/sanitized): ours with Debian's clang, ASan, UBSan
# and libFuzzer's instrumentation, for the asan and fuzz layers.
SANITIZED_OPTS := --cc='ccache clang' --host-cc='ccache clang' --cxx='ccache clang++' \
	--target-list=x86_64-softmmu --enable-kvm --enable-asan --enable-ubsan --enable-fuzzing

# What our tests need from the QEMU build.
unit_tests := $(shell sed -e 's/\#.*//' tests/unit/downstream-unit-tests.txt | awk 'NF {print $$1}')
qtests := $(shell sed -e 's/\#.*//' tests/qtest/downstream-qtests.txt)
ours_targets := $(foreach t,$(target_names),qemu-system-$(t)) \
	$(addprefix tests/unit/,$(unit_tests)) $(addprefix tests/qtest/,$(qtests))
sanitized_targets := qemu-system-x86_64 qemu-fuzz-x86_64 \
	$(addprefix tests/unit/,$(unit_tests)) $(addprefix tests/qtest/,$(qtests))

tiny_guests := $(patsubst tests/guest/%.S,$(B)/guest/%.bin,$(wildcard tests/guest/*.S))
s390x_guests := $(patsubst tests/guest-s390x/%.S,$(B)/guest/s390x/%.elf,$(wildcard tests/guest-s390x/*.S))
# The s390x layer runs when the s390x target is built.
s390x_layer := $(if $(filter s390x,$(target_names)),s390x)
RUNNER := python3 tests/runner.py --build $(B)

.PHONY: all deps base prepare build sanitized install install-extras uninstall deb upstream guest guest-tiny guest-linux bench-tools fuse-tools \
	kernel lab lab-kernel check check-unit check-qtest check-kvm check-e2e check-migration check-compat check-install check-libvirt check-style check-s390x \
	check-asan check-kernel check-lab check-fuzz check-mutations guest-s390x demo bench clean distclean

all: build $(if $(filter yes,$(WITH_UPSTREAM)),upstream)

deps:
	@scripts/deps.sh

base: deps
	@scripts/fetch-base $(B) $(BASE)

# Always re-prepared: the sync keeps unchanged files' mtimes, so ninja
# rebuilds exactly what changed and never builds stale sources.
prepare: base
	@scripts/prepare-tree $(BASEDIR) $(B)/ours/src

build: prepare
	@scripts/build-qemu dm $(B)/ours/src $(B)/ours/qemu $(B)/tools "$(QEMU_OPTS)" $(ours_targets)

# What make install adds to the test build: qemu-img (libvirt and users
# create images with it) and the trace event list QEMU's tracing reads.
install_targets := qemu-img trace/trace-events-all

install-extras: build
	@scripts/build-qemu dm $(B)/ours/src $(B)/ours/qemu $(B)/tools "$(QEMU_OPTS)" $(install_targets)

install: install-extras
	@scripts/install-qemu $(B)/ours/qemu $(PREFIX) $(DESTDIR)

uninstall:
	@scripts/install-qemu --uninstall $(PREFIX) $(DESTDIR)

# The Debian package qemu-dm-system (build/deb/), beside Debian's own QEMU.
deb: install-extras
	@scripts/make-deb $(B)

sanitized: prepare
	@scripts/build-qemu dm-sanitized $(B)/ours/src $(B)/sanitized/qemu $(B)/tools \
		"$(SANITIZED_OPTS)" $(sanitized_targets)

upstream: base
	@scripts/prepare-tree --pristine $(BASEDIR) $(B)/upstream/src
	@scripts/build-qemu upstream $(B)/upstream/src $(B)/upstream/qemu $(B)/tools "$(UPSTREAM_OPTS)" \
		$(foreach t,$(subst $(comma),$(space),$(UPSTREAM_TARGETS)),qemu-system-$(t))

guest: guest-tiny guest-linux $(if $(s390x_layer),guest-s390x)
guest-tiny: $(tiny_guests)
guest-s390x: deps $(s390x_guests)
	@scripts/guest-s390x-linux $(B)/guest
guest-linux: deps
	@scripts/guest-linux $(B)/guest

# Linux 6.12 with kernel-patches/6.12 applied, and its test initramfs.
kernel: deps
	@tests/kernel/build $(B)/kernel

# The KVM lab: an L1 Linux guest (Debian's kernel) under our QEMU with TCG,
# whose kvm_amd gives the KVM tests a real /dev/kvm (tests/lab/lab.py).
lab: build guest-linux
	@scripts/lab-build $(B)/guest $(B)/lab

# The lab's second L1 kernel (DM_LAB_KERNEL=ours): our patched 6.12, its
# KVM selftest coalesced_io_test and its initramfs (build/kernel/lab).
lab-kernel: deps
	@scripts/lab-kernel $(B)/kernel

# Tiny real-mode guests: 64 KiB flat images loaded with -bios.
$(B)/guest/%.bin: tests/guest/%.S $(wildcard tests/guest/*.inc)
	@mkdir -p $(@D)
	@echo "guest: assembling $*"
	@gcc -c -nostdinc -I tests/guest -o $(B)/guest/$*.o $<
	@ld -Ttext=0 -e 0 -o $(B)/guest/$*.elf $(B)/guest/$*.o
	@objcopy -O binary -j .text $(B)/guest/$*.elf $@

# Tiny s390x guests: ELF images loaded with -kernel.
$(B)/guest/s390x/%.elf: tests/guest-s390x/%.S
	@mkdir -p $(@D)
	@echo "guest: assembling s390x $*"
	@s390x-linux-gnu-gcc -c -nostdinc -o $(B)/guest/s390x/$*.o $<
	@s390x-linux-gnu-ld -Ttext=0x10000 -e _start -o $@ $(B)/guest/s390x/$*.o

$(B)/bench/kvm-port-loop: bench/kvm-port-loop.c linux-headers/linux/kvm.h
	@mkdir -p $(@D)
	@gcc -O2 -Wall -I linux-headers -o $@ $<
$(B)/bench/fsync-rate: bench/fsync-rate.c
	@mkdir -p $(@D)
	@gcc -O2 -Wall -pthread -o $@ $<
bench-tools: $(B)/bench/kvm-port-loop $(B)/bench/fsync-rate

# The FUSE file system the virtio-pmem qtests observe syncs through
# (tests/fuse/syncfs-mount mounts it).
$(B)/fuse/syncfs: tests/fuse/syncfs.c | deps
	@mkdir -p $(@D)
	@gcc -O2 -Wall -o $@ $< $$(pkg-config --cflags --libs fuse3)
fuse-tools: $(B)/fuse/syncfs

# The unmodified base too: qtests check migration to and from it.
check: build install-extras deb upstream guest kernel lab lab-kernel fuse-tools sanitized
	@$(RUNNER) style unit qtest kvm kvm-migration e2e install libvirt migration compat $(s390x_layer) \
		kernel asan fuzz lab lab-ours
check-unit: build
	@$(RUNNER) unit
check-qtest: build upstream fuse-tools
	@$(RUNNER) qtest
check-kvm: build guest-tiny
	@$(RUNNER) kvm kvm-migration
check-e2e: build guest-linux
	@$(RUNNER) e2e
check-migration: build upstream guest-tiny
	@$(RUNNER) migration
check-s390x: build guest-s390x
	@$(RUNNER) s390x
check-compat: build upstream guest
	@$(RUNNER) compat
check-install: install-extras deb guest-linux fuse-tools
	@$(RUNNER) install
check-style: base kernel
	@$(RUNNER) style
check-libvirt: install-extras guest-linux
	@$(RUNNER) libvirt
# The unit, qtest and migration layers with the sanitizer build (tests/asan).
check-asan: sanitized upstream guest-tiny fuse-tools
	@$(RUNNER) asan
check-kernel: build kernel
	@$(RUNNER) kernel
# Our libFuzzer targets of the sanitizer build, a bounded time each, and
# their kept crash inputs replayed (docs/testing.md, "Fuzzing").
check-fuzz: sanitized
	@$(RUNNER) fuzz
# Every KVM test, in the lab's nested KVM (the host's /dev/kvm is not used),
# on Debian's L1 kernel and on ours.
check-lab: build upstream guest-tiny lab lab-kernel sanitized
	@$(RUNNER) lab lab-ours
# Deliberate breakages, each built into build/mutant and run against the
# layer that must catch it (docs/testing.md); not part of make check.
check-mutations: build upstream guest kernel lab fuse-tools
	@python3 tests/mutations.py --build $(B)

demo: build guest bench-tools
	@python3 scripts/demo.py --build $(B)

bench: build upstream guest-tiny guest-linux bench-tools fuse-tools lab
	@python3 bench/coalesced_io.py --build $(B)
	@python3 bench/virtio_pmem.py --build $(B)
	@python3 bench/virtio_pmem_guest.py --build $(B)
	@python3 bench/migration.py --build $(B)
	@python3 bench/kvm_dirty_log.py --build $(B)

clean:
	rm -rf $(B)/ours/qemu $(B)/upstream/qemu $(B)/guest/*.bin $(B)/guest/s390x $(B)/bench
distclean:
	rm -rf $(B) config.mak
