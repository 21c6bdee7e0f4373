import ArgumentParser

/// `ivshmem2`: the ivshmem v2 device model, server and tools.
struct Ivshmem2: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ivshmem2",
        abstract: "A software model of the ivshmem v2 PCI device (110a:4106) and of ivshmem v1 (1af4:1110), their servers, and tools to test guest drivers against them.",
        discussion: """
            Start a server, attach emulated devices to it, and inspect what a driver
            sees:
              ivshmem2 server -F -S /tmp/ivshmem_socket -n 4 -V 2
              ivshmem2 peer --socket /tmp/ivshmem_socket
              ivshmem2 dump-config --profile jailhouse | lspci -F /dev/stdin -vvv -nn

            ivshmem v1 (QEMU's ivshmem-doorbell speaks it):
              ivshmem2 server-v1 -F -S /tmp/ivshmem_socket -l 1M -n 2
              ivshmem2 peer --v1 --vectors 2 --socket /tmp/ivshmem_socket

            Test at the register level, check conformance, simulate many peers:
              ivshmem2 run fixtures/scripts/two-peers.ivs
              ivshmem2 conformance
              ivshmem2 simulate --peers 64 --scenario storm
              ivshmem2 spec check --spec fixtures/spec-changes/base-address-in-spec
            """,
        subcommands: Ivshmem2.allSubcommands
    )
}

Ivshmem2.main()
