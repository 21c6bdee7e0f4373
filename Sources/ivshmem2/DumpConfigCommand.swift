import ArgumentParser
import IvshmemModel

/// `ivshmem2 dump-config`: the emulated config space in `lspci -xxx` format, so that lspci and
/// libpci decode exactly what a driver would see.
struct DumpConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-config",
        abstract: "Print an emulated device's config space in lspci -xxx format.",
        discussion: "Example: ivshmem2 dump-config --vectors 4 | lspci -F /dev/stdin -vvv -nn")

    @OptionGroup var device: DeviceOptions
    @Option(help: "Bus address printed before the dump (bb:dd.f).") var address: String = "00:05.0"

    func run() throws {
        let dev = try device.makeStandaloneDevice()
        var out = "\(address) Inter-VM shared memory v2 [110a:4106] (profile \(dev.profile.name))\n"
        out += ConfigDump.lspciHex(dev)
        writeStdout(out)
    }
}
