import ArgumentParser
import IvshmemServer
#if canImport(Glibc)
import Glibc
#endif

/// `ivshmem2 server-v1`: the ivshmem v1 server (spec/ivshmem1.md §7), option-compatible with
/// QEMU's `ivshmem-server` (same options, same defaults: V1-SRV-CFG-1), on the same event loop,
/// queues and socket handling as `ivshmem2 server` (V1-SRV-ROB-1).
struct ServerV1Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server-v1",
        abstract: "Run the ivshmem v1 server (option-compatible with QEMU's ivshmem-server).",
        discussion: """
            Peers (QEMU's ivshmem-doorbell, `ivshmem2 peer --v1`, any v1 client) connect to
            the UNIX socket and receive the protocol version, their ID, the shared memory
            and every peer's eventfds, one per vector.

            Examples:
              ivshmem2 server-v1 -F -S /tmp/ivshmem_socket -l 1M -n 2
              qemu-system-x86_64 … -chardev socket,id=ivs,path=/tmp/ivshmem_socket \\
                  -device ivshmem-doorbell,chardev=ivs,vectors=2

            Like the reference, the shared memory is the POSIX object `ivshmem` unless -M,
            -m or --memfd says otherwise; the size must be a power of two (QEMU maps it as a
            PCI BAR). Without -F the server detaches and writes its pid to the pid file.
            """)

    @OptionGroup var common: ServerCommonOptions

    @Option(name: [.customShort("l", allowingJoined: true), .customLong("size")],
            help: "Size of the shared memory (K/M/G suffixes; a power of two).")
    var size: String = "4M"

    @Option(name: [.customShort("n", allowingJoined: true), .customLong("vectors")],
            help: "Interrupt vectors (eventfds) per peer (1…64).")
    var vectors: String = "1"

    func validate() throws {
        _ = try makeConfiguration()
    }

    /// The options as a v1 configuration (V1-SRV-CFG-1, V1-SRV-CFG-2); each error names its option.
    func makeConfiguration() throws -> ServerConfiguration {
        try common.configuration(ServerConfiguration.v1(), defaultBacking: .posix(name: "ivshmem"), size: size) { config in
            config.vectors = try ServerCommonOptions.parse(vectors, OptionValueParsing.unsigned, option: "-n/--vectors", expecting: "a number")
        }
    }

    func run() throws {
        try common.launcher(name: "ivshmem2 server-v1").launch(try makeConfiguration())
    }
}
