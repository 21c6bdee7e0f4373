// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "ivshmem2",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ivshmem2", targets: ["ivshmem2"]),
        .library(name: "IvshmemModel", targets: ["IvshmemModel"]),
        .library(name: "IvshmemPlatform", targets: ["IvshmemPlatform"]),
        .library(name: "IvshmemServer", targets: ["IvshmemServer"]),
        .library(name: "IvshmemTransport", targets: ["IvshmemTransport"]),
        .library(name: "IvshmemHarness", targets: ["IvshmemHarness"]),
        .library(name: "IvshmemVirtio", targets: ["IvshmemVirtio"]),
        .executable(name: "ivshmem2-bench", targets: ["ivshmem2-bench"]),
        // libivshmem2.so: the C API for guest drivers (include/ivshmem2.h; `make install`).
        .library(name: "ivshmem2c", type: .dynamic, targets: ["IvshmemC"]),
        // libivshmem2-uio.so: the uio_ivshmem view for unmodified UIO programs (LD_PRELOAD; `make install`).
        .library(name: "ivshmem2uio", type: .dynamic, targets: ["CIvshmemUIO"]),
        // Fuzz targets (`make fuzz` builds them with libFuzzer; a normal build replays files).
        .executable(name: "fuzz-wire", targets: ["fuzz-wire"]),
        .executable(name: "fuzz-script", targets: ["fuzz-script"]),
        .executable(name: "fuzz-tables", targets: ["fuzz-tables"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
    ],
    targets: [
        // C shims: cmsg macros, eventfd, epoll, memfd, atomics on shared memory.
        .target(name: "CIvshmemShim"),
        // libpci through pkg-config, plus a shim for its variadic/exit-on-error API.
        .systemLibrary(name: "CLibPCI", pkgConfig: "libpci", providers: [.apt(["libpci-dev"])]),
        .target(name: "CPCIShim", dependencies: ["CLibPCI"]),

        // Layer 0: the spec as data; locks that ThreadSanitizer can see.
        .target(name: "IvshmemSpec"),
        .target(name: "IvshmemSync", dependencies: ["CIvshmemShim"]),
        // Layer 1: thin typed syscall wrappers.
        .target(name: "IvshmemPosix", dependencies: ["CIvshmemShim", "IvshmemSync"]),
        // Layer 2: the device model (config space, capabilities, BAR0, shared memory, interrupts).
        .target(name: "IvshmemModel", dependencies: ["IvshmemSpec", "IvshmemSync", "CIvshmemShim"]),
        // Layer 3: the virtual PCI platform (bus, ECAM, CF8/CFC, BAR decode, interrupt sink).
        .target(name: "IvshmemPlatform", dependencies: ["IvshmemModel", "IvshmemSync", "CIvshmemShim"]),
        // Layer 4: wire messages, the server, and the device attached to a server.
        .target(name: "IvshmemWire"),
        .target(name: "IvshmemServer", dependencies: [
            "IvshmemWire", "IvshmemPosix", "IvshmemSpec", "IvshmemSync",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The server link: wire messages and descriptors, no device model (it does not import it).
        .target(name: "IvshmemLink", dependencies: ["IvshmemSpec", "IvshmemWire", "IvshmemPosix", "IvshmemSync"]),
        // The device attached to a server: builds the device from INIT over the link.
        .target(name: "IvshmemTransport", dependencies: [
            "IvshmemLink", "IvshmemWire", "IvshmemPosix", "IvshmemModel", "IvshmemSync",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The device inside a real QEMU VM through QEMU's multi-process PCI proxy.
        .target(name: "IvshmemQEMUProxy", dependencies: ["IvshmemModel", "IvshmemPosix", "IvshmemSync"]),
        // Layer 5: the register-level test harness, scripts and their runner.
        .target(name: "IvshmemHarness", dependencies: [
            "IvshmemVirtio", "IvshmemModel", "IvshmemPlatform", "IvshmemTransport", "IvshmemServer", "IvshmemPosix", "IvshmemSpec", "IvshmemSync",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Virtio over ivshmem: the back-end library, the front-end driver model, console and block.
        .target(name: "IvshmemVirtio", dependencies: [
            "IvshmemModel", "IvshmemPlatform", "IvshmemTransport", "IvshmemPosix", "IvshmemSync", "CIvshmemShim",
        ]),
        // libpci decoding of config-space dumps.
        .target(name: "IvshmemPCIDump", dependencies: ["CPCIShim", "CLibPCI"]),

        .executableTarget(name: "ivshmem2", dependencies: [
            "IvshmemModel", "IvshmemPlatform", "IvshmemServer", "IvshmemTransport", "IvshmemPosix", "IvshmemHarness", "IvshmemSync",
            "IvshmemQEMUProxy", "IvshmemVirtio",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Benchmarks (`make bench`): the C baselines and the runner that compares against them.
        .target(name: "CBench", cSettings: [.unsafeFlags(["-O2"])]),
        .executableTarget(name: "ivshmem2-bench", dependencies: [
            "CBench", "IvshmemModel", "IvshmemPlatform", "IvshmemServer", "IvshmemTransport", "IvshmemPosix",
            "IvshmemSpec", "CIvshmemShim", "IvshmemVirtio",
            // The C API (its header and libivshmem2's code) for the trapped-window rows.
            "CIvshmemTrap", "IvshmemC",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // The C API for guest drivers: @_cdecl exports (IvshmemC) over a C part (CIvshmemTrap:
        // the public header, trapped MMIO windows with an x86-64 MOV decoder, mmap helpers).
        .target(name: "CIvshmemTrap"),
        // ivshmem2_virtio.h: the C API's virtio front-end block (a module of its own).
        .target(name: "CIvshmemVirtioAPI", dependencies: ["CIvshmemTrap"]),
        .target(name: "IvshmemC", dependencies: [
            "CIvshmemTrap", "CIvshmemVirtioAPI", "IvshmemVirtio", "IvshmemModel", "IvshmemPlatform", "IvshmemTransport", "IvshmemServer", "IvshmemPosix", "IvshmemSync",
            .product(name: "Logging", package: "swift-log"),
        ], linkerSettings: [
            // The product is `ivshmem2c` (the executable already owns the name `ivshmem2`);
            // `make install` installs it as libivshmem2.so, the name drivers link against.
            .unsafeFlags(["-Xlinker", "-soname", "-Xlinker", "libivshmem2.so"]),
        ]),

        // The uio_ivshmem view (/dev/uio0, /sys/class/uio/uio0) over the C API, for LD_PRELOAD.
        // It loads libivshmem2.so at run time (no link dependency: its symbols stay its own).
        .target(name: "CIvshmemUIO", linkerSettings: [
            .linkedLibrary("dl"),
            .unsafeFlags(["-Xlinker", "-soname", "-Xlinker", "libivshmem2-uio.so"]),
        ]),

        // Fuzzing (`make fuzz`): the targets as functions of bytes, and one thin executable each
        // whose libFuzzer entry point exists only when built with -D FUZZING.
        .target(name: "IvshmemFuzz", dependencies: ["IvshmemWire", "IvshmemHarness", "IvshmemModel", "IvshmemSpec"]),
        .executableTarget(name: "fuzz-wire", dependencies: ["IvshmemFuzz"]),
        .executableTarget(name: "fuzz-script", dependencies: ["IvshmemFuzz"]),
        .executableTarget(name: "fuzz-tables", dependencies: ["IvshmemFuzz"]),

        // What every test target shares (repository paths, scratch folders, the built ivshmem2,
        // descriptor-leak checks, an embedded server, conformance files run as tests): one
        // implementation, not one per target.
        .target(name: "IvshmemTestSupport", dependencies: [
            "IvshmemPosix", "IvshmemServer", "IvshmemHarness", .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/IvshmemTestSupport"),

        .testTarget(name: "IvshmemModelTests", dependencies: ["IvshmemModel", "IvshmemSpec", "IvshmemPlatform", "IvshmemSync", "IvshmemTestSupport"]),
        .testTarget(name: "IvshmemPCIDumpTests", dependencies: ["IvshmemPCIDump", "IvshmemModel", "IvshmemTestSupport"]),
        .testTarget(name: "IvshmemServerTests", dependencies: [
            "IvshmemServer", "IvshmemLink", "IvshmemTransport", "IvshmemWire", "IvshmemPosix", "IvshmemModel", "IvshmemPlatform", "IvshmemHarness", "IvshmemSync", "IvshmemTestSupport",
        ]),
        .testTarget(name: "IvshmemTransportTests", dependencies: [
            "IvshmemTransport", "IvshmemServer", "IvshmemWire", "IvshmemPosix", "IvshmemModel", "IvshmemPlatform", "IvshmemHarness", "IvshmemSync", "IvshmemTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "IvshmemHarnessTests", dependencies: ["IvshmemHarness", "IvshmemPosix", "IvshmemSpec", "IvshmemSync", "IvshmemTestSupport"]),
        .testTarget(name: "IvshmemQEMUProxyTests", dependencies: [
            "IvshmemQEMUProxy", "IvshmemModel", "IvshmemPosix", "IvshmemSync", "IvshmemServer", "IvshmemTransport", "IvshmemTestSupport",
        ]),
        .testTarget(name: "IvshmemVirtioTests", dependencies: ["IvshmemVirtio", "IvshmemHarness", "IvshmemServer", "IvshmemPosix", "IvshmemTestSupport"]),
        .testTarget(name: "SpecCoverageTests", dependencies: ["IvshmemSpec", "IvshmemTestSupport"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["IvshmemFuzz", "IvshmemHarness", "IvshmemSpec", "IvshmemWire", "IvshmemTestSupport"]),
    ]
)
