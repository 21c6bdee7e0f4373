SHELL := /bin/bash
# ivshmem2 — build, test and demo entry points. `make test` and `make demo` work on a fresh
# machine: they install the system packages they need first (libpci-dev, pciutils, pkg-config).

SWIFT       ?= swift
SWIFT_FLAGS ?=
BIN_DEBUG   := .build/debug/ivshmem2
BIN_RELEASE := .build/release/ivshmem2
PREFIX      ?= /usr/local

.PHONY: all build release test demo uio virtio-drivers deps qemu tables bench bench-smoke conformance stress clean help fuzz test-sanitize guest

all: build

help:
	@echo "make build    debug build of the library and the ivshmem2 tool"
	@echo "make test     install deps, build, run every test, the conformance suite, a benchmark smoke run, the drivers and the real guest"
	@echo "make demo     start a server and two emulated peers, print their conversation"
	@echo "make bench    release build, run every benchmark against its baseline, write bench/"
	@echo "make bench-smoke  the same benchmarks, tiny (CI: keeps the benchmark code from rotting)"
	@echo "make install  PREFIX=/usr/local: libivshmem2.so, include/ivshmem2.h, lib/pkgconfig/ivshmem2.pc"
	@echo "make uio      install into a temporary prefix, run UIO programs under LD_PRELOAD=libivshmem2-uio.so"
	@echo "make virtio-drivers  the C virtio front-end (ivshmem2_virtio.h) against ivshmem2 virtio back-ends"
	@echo "make drivers  install into a temporary prefix, build the example C drivers with pkg-config, run them"
	@echo "make stress  STRESS_N=20: process/socket/simulation tests and the conformance suite, N rounds, next to two busy loops"
	@echo "make fuzz     libFuzzer builds of the wire decoder, script parser and spec-table loader, FUZZ_SECONDS (120) each"
	@echo "make test-sanitize  the Swift test suites under ThreadSanitizer, then AddressSanitizer"
	@echo "make guest    boot Debian's kernel in QEMU with the device behind QEMU's PCI proxy; a guest program talks to a peer outside"
	@echo "make tables   regenerate Sources/IvshmemSpec/EmbeddedTables.swift from spec/tables"

# System packages: libpci (our config-space decoder) and lspci (used by the tests).
deps:
	@if ! pkg-config --exists libpci 2>/dev/null || ! command -v lspci >/dev/null 2>&1; then \
		echo "installing libpci-dev pciutils pkg-config"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libpci-dev pciutils pkg-config >/dev/null; \
	fi

# QEMU (Debian's qemu-system-x86): the v1 checks run QEMU's ivshmem-doorbell as a peer of our v1
# server through qtest. When it cannot be installed, those checks are skipped with a message.
qemu:
	@if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then \
		echo "installing qemu-system-x86 (the v1 checks run real QEMU)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq qemu-system-x86 >/dev/null) \
			|| echo "qemu-system-x86 could not be installed: the QEMU checks will be skipped"; \
	fi

# The spec tables are compiled into the library; regenerate the embedded copy when they change.
tables: Sources/IvshmemSpec/EmbeddedTables.swift
Sources/IvshmemSpec/EmbeddedTables.swift: spec/tables/*.json spec/embed-tables
	spec/embed-tables > $@.tmp && mv $@.tmp $@

build: deps tables
	$(SWIFT) build $(SWIFT_FLAGS)

release: deps tables
	$(SWIFT) build -c release $(SWIFT_FLAGS)

test: build qemu
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build --no-parallel $(SWIFT_FLAGS) 2>&1 | tee .build/test.log; exit $${PIPESTATUS[0]}
	$(BIN_DEBUG) conformance --junit .build/conformance.xml
	$(BIN_DEBUG) conformance --dir fixtures/conformance-virtio --spec spec/virtio-ivshmem.md --junit .build/conformance-virtio.xml
	$(MAKE) bench-smoke
	$(MAKE) drivers
	$(MAKE) guest
	$(MAKE) uio
	$(MAKE) virtio-drivers

# Benchmarks: ratios against baselines measured in the same run (never timed assertions).
# `bench` writes bench/results.json, bench/results.md and bench/latency.svg.
BENCH_RELEASE := .build/release/ivshmem2-bench
# Cross-module optimisation: the register path crosses four modules (platform, model, spec,
# shim); like LTO for C, it lets the optimiser inline across them.
BENCH_FLAGS ?= -Xswiftc -cross-module-optimization
bench: deps tables
	$(SWIFT) build -c release --product ivshmem2-bench $(BENCH_FLAGS) $(SWIFT_FLAGS)
	$(BENCH_RELEASE) --out bench

# Small N, few iterations, debug build; results go to .build/bench-smoke, not bench/.
bench-smoke: deps tables
	$(SWIFT) build --product ivshmem2-bench $(SWIFT_FLAGS)
	.build/debug/ivshmem2-bench --smoke --out .build/bench-smoke

# The C API for guest drivers. The SwiftPM product is `ivshmem2c` (the tool owns `ivshmem2`); its
# SONAME is libivshmem2.so, the name it is installed under. LIB_CONFIG=release for installs,
# debug when `make test` installs into a temporary prefix.
LIB_CONFIG ?= release
install: deps tables
	$(SWIFT) build -c $(LIB_CONFIG) --product ivshmem2c $(SWIFT_FLAGS)
	$(SWIFT) build -c $(LIB_CONFIG) --product ivshmem2uio $(SWIFT_FLAGS)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 0755 .build/$(LIB_CONFIG)/libivshmem2c.so $(DESTDIR)$(PREFIX)/lib/libivshmem2.so
	install -m 0755 .build/$(LIB_CONFIG)/libivshmem2uio.so $(DESTDIR)$(PREFIX)/lib/libivshmem2-uio.so
	install -m 0644 Sources/CIvshmemTrap/include/ivshmem2.h $(DESTDIR)$(PREFIX)/include/ivshmem2.h
	install -m 0644 Sources/CIvshmemVirtioAPI/include/ivshmem2_virtio.h $(DESTDIR)$(PREFIX)/include/ivshmem2_virtio.h
	sed -e 's|@PREFIX@|$(PREFIX)|' fixtures/drivers/ivshmem2.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ivshmem2.pc

# Example drivers (fixtures/drivers): install into a temporary prefix, build them outside the
# repository with `cc $$(pkg-config --cflags --libs ivshmem2)`, run them against our server.
drivers: deps tables
	$(SWIFT) build --product ivshmem2 $(SWIFT_FLAGS)
	@prefix=$$(mktemp -d /tmp/ivshmem2-prefix.XXXXXX) && \
	$(MAKE) --no-print-directory install PREFIX=$$prefix LIB_CONFIG=debug && \
	fixtures/drivers/run-drivers.sh $$prefix $(BIN_DEBUG); rc=$$?; rm -rf $$prefix; exit $$rc

# UIO programs (fixtures/uio) built with the system cc, run unmodified under
# LD_PRELOAD=libivshmem2-uio.so against our server: the uio_ivshmem view of an emulated device.
uio: deps tables
	$(SWIFT) build --product ivshmem2 $(SWIFT_FLAGS)
	@prefix=$$(mktemp -d /tmp/ivshmem2-prefix.XXXXXX) && \
	$(MAKE) --no-print-directory install PREFIX=$$prefix LIB_CONFIG=debug && \
	fixtures/uio/run-uio.sh $$prefix $(BIN_DEBUG); rc=$$?; rm -rf $$prefix; exit $$rc

# The virtio front-end driver model of the C API (ivshmem2_virtio.h), built outside the repository
# with pkg-config, against `ivshmem2 virtio --backend` processes (fixtures/virtio).
virtio-drivers: deps tables
	$(SWIFT) build --product ivshmem2 $(SWIFT_FLAGS)
	@prefix=$$(mktemp -d /tmp/ivshmem2-prefix.XXXXXX) && \
	$(MAKE) --no-print-directory install PREFIX=$$prefix LIB_CONFIG=debug && \
	fixtures/virtio/run-virtio-c.sh $$prefix $(BIN_DEBUG); rc=$$?; rm -rf $$prefix; exit $$rc

# Timing-dependent tests under CPU contention (tools/stress.sh; STRESS_N rounds, default 20).
stress: build
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	tools/stress.sh

# Fuzzing: each target built with libFuzzer (clang's runtime ships with the Swift toolchain) in
# release mode in its own scratch path, then run for FUZZ_SECONDS; fails when one finds a crash.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= wire script tables
FUZZ_BUILD   := .build-fuzz
fuzz: tables
	for t in $(FUZZ_TARGETS); do \
		$(SWIFT) build -c release --sanitize=fuzzer -Xswiftc -DFUZZING --scratch-path $(FUZZ_BUILD) --product fuzz-$$t $(SWIFT_FLAGS) || exit 1; \
	done
	tools/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Sanitizers: every Swift test suite under ThreadSanitizer, then under AddressSanitizer, each
# built in its own scratch path (the ivshmem2 processes the tests spawn are instrumented too).
# tools/sanitize.sh fails on a test failure or on any process's report. Under ASan the server
# churn test is skipped: its bound on the server's resident memory measures the allocator, and
# ASan's quarantine keeps freed memory by design (its descriptor and ID checks run under TSan).
test-sanitize: deps tables
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan $(SWIFT_FLAGS)
	tools/sanitize.sh thread .build-tsan
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan $(SWIFT_FLAGS)
	tools/sanitize.sh address .build-asan --skip serverChurn

# A real Linux guest drives the device (tools/guest): Debian's kernel and busybox from Debian
# packages, cached in .build/guest; QEMU (installed when missing) with the device behind its
# multi-process PCI proxy; a guest program talks to an outside peer. Ends with `guest: PASS`.
guest: deps tables
	$(SWIFT) build --product ivshmem2 $(SWIFT_FLAGS)
	tools/guest/run.sh $(BIN_DEBUG) .build/guest

demo: build
	$(BIN_DEBUG) demo

conformance: build
	$(BIN_DEBUG) conformance
	$(BIN_DEBUG) conformance --dir fixtures/conformance-virtio --spec spec/virtio-ivshmem.md

clean:
	rm -rf .build
