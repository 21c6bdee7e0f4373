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

            Exit status: 0 success, 1 failure (a case failed, a file or server could not be
            used), 64 usage error (only then is the usage printed); `run` also uses 65 when a
            script cannot be read or parsed and 5 when every case was skipped.
            """,
        version: ToolVersion.string,
        subcommands: Ivshmem2.allSubcommands
    )
}

/// Runs the command line: usage errors (and --help, --version) the ArgumentParser way, a
/// ``ToolFailure`` as one message line and its status, without the usage text.
func runTool() -> Never {
    do {
        var command = try Ivshmem2.parseAsRoot()
        try command.run()
        Ivshmem2.exit()
    } catch let failure as ToolFailure {
        writeStderr("ivshmem2: \(failure.message)\n")
        Ivshmem2.exit(withError: ExitCode(failure.status))
    } catch {
        Ivshmem2.exit(withError: error)
    }
}

runTool()
