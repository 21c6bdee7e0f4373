import ArgumentParser
import IvshmemPosix
import IvshmemServer
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `ivshmem2 server`: the ivshmem v2 server, option-compatible with the reference
/// `ivshmem2-server` (same short options, same defaults but the memfd backing), so that
/// scripts written for it keep working (spec §12).
struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the ivshmem v2 server (option-compatible with the reference ivshmem2-server).",
        discussion: """
            Peers (devices, `ivshmem2 peer`, QEMU's ivshmem2 device) connect to the UNIX
            socket and receive the shared memory and every other peer's eventfds.

            Examples:
              ivshmem2 server -F -S /tmp/ivshmem_socket -n 4 -V 2
              ivshmem2 server -F -S /tmp/sock -m /dev/hugepages -l 2M -o 64K

            Without -F the server detaches (new session) and writes its pid to the pid
            file. Sizes take K, M and G suffixes; numbers take 0x for hexadecimal.
            SIGTERM or SIGINT stop it cleanly: peers see the hang-up, the socket and a
            named shm are removed.
            """)

    @OptionGroup var common: ServerCommonOptions

    @Option(name: [.customShort("l", allowingJoined: true), .customLong("size")],
            help: "Size of the shared memory (K/M/G suffixes; a page multiple).")
    var size: String = "4M"

    @Option(name: [.customShort("o", allowingJoined: true), .customLong("output-section-size")],
            help: "Size of each peer's output section (K/M/G suffixes; a page multiple).")
    var outputSectionSize: String = "0"

    @Option(name: [.customShort("n", allowingJoined: true), .customLong("max-peers")],
            help: "Maximum number of peers (2…65536).")
    var maxPeers: String = "2"

    @Option(name: [.customShort("V", allowingJoined: true), .customLong("vectors")],
            help: "Interrupt vectors per peer (1…1024).")
    var vectors: String = "1"

    @Option(name: [.customShort("P", allowingJoined: true), .customLong("protocol")],
            help: "16-bit protocol to advertise (0x… or decimal). Virtio (0x8000…0xffff): at most 2 peers; peer 0 is the back-end.")
    var protocolValue: String = "0"

    // MARK: Validation (SRV-CFG-2)

    func validate() throws {
        _ = try makeConfiguration()
    }

    func makeConfiguration() throws -> ServerConfiguration {
        try common.configuration(ServerConfiguration(), defaultBacking: .memfd, size: size) { config in
            config.outputSectionSize = try ServerCommonOptions.parse(outputSectionSize, OptionValueParsing.size, option: "-o/--output-section-size", expecting: "a size like 0, 4K or 64K")
            config.maxPeers = try ServerCommonOptions.parse(maxPeers, OptionValueParsing.unsigned, option: "-n/--max-peers", expecting: "a number")
            config.vectors = try ServerCommonOptions.parse(vectors, OptionValueParsing.unsigned, option: "-V/--vectors", expecting: "a number")
            config.protocolValue = try ServerCommonOptions.parse(protocolValue, OptionValueParsing.unsigned, option: "-P/--protocol", expecting: "a number like 0x4001 or 16385")
        }
    }

    // MARK: Running

    func run() throws {
        try common.launcher(name: "ivshmem2 server").launch(try makeConfiguration())
    }
}
