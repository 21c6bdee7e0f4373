SHELL := /bin/bash
# ivshmem2 — build, test and demo entry points. `make test` and `make demo` work on a fresh
# machine: they install the system packages they need first (libpci-dev, pciutils, pkg-config).

SWIFT       ?= swift
SWIFT_FLAGS ?=
BIN_DEBUG   := .build/debug/ivshmem2
BIN_RELEASE := .build/release/ivshmem2
PREFIX      ?= /usr/local

.PHONY: all build release test demo deps tables bench bench-smoke conformance clean help

all: build

help:
	@echo "make build    debug build of the library and the ivshmem2 tool"
	@echo "make test     install deps, build, run every test, the conformance suite and a benchmark smoke run"
	@echo "make demo     start a server and two emulated peers, print their conversation"
	@echo "make bench    release build, run every benchmark against its baseline, write bench/"
	@echo "make bench-smoke  the same benchmarks, tiny (CI: keeps the benchmark code from rotting)"
	@echo "make tables   regenerate Sources/IvshmemSpec/EmbeddedTables.swift from spec/tables"

# System packages: libpci (our config-space decoder) and lspci (used by the tests).
deps:
	@if ! pkg-config --exists libpci 2>/dev/null || ! command -v lspci >/dev/null 2>&1; then \
		echo "installing libpci-dev pciutils pkg-config"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libpci-dev pciutils pkg-config >/dev/null; \
	fi

# The spec tables are compiled into the library; regenerate the embedded copy when they change.
tables: Sources/IvshmemSpec/EmbeddedTables.swift
Sources/IvshmemSpec/EmbeddedTables.swift: spec/tables/*.json spec/embed-tables
	spec/embed-tables > $@.tmp && mv $@.tmp $@

build: deps tables
	$(SWIFT) build $(SWIFT_FLAGS)

release: deps tables
	$(SWIFT) build -c release $(SWIFT_FLAGS)

test: build
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build --no-parallel $(SWIFT_FLAGS) 2>&1 | tee .build/test.log; exit $${PIPESTATUS[0]}
	$(BIN_DEBUG) conformance --junit .build/conformance.xml
	$(MAKE) bench-smoke

# Benchmarks: ratios against baselines measured in the same run (never timed assertions).
# `bench` writes bench/results.json, bench/results.md and bench/latency.svg.
BENCH_RELEASE := .build/release/ivshmem2-bench
bench: deps tables
	$(SWIFT) build -c release --product ivshmem2-bench $(SWIFT_FLAGS)
	$(BENCH_RELEASE) --out bench

# Small N, few iterations, debug build; results go to .build/bench-smoke, not bench/.
bench-smoke: deps tables
	$(SWIFT) build --product ivshmem2-bench $(SWIFT_FLAGS)
	.build/debug/ivshmem2-bench --smoke --out .build/bench-smoke

demo: build
	$(BIN_DEBUG) demo

conformance: build
	$(BIN_DEBUG) conformance

clean:
	rm -rf .build
