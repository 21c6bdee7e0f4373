import ArgumentParser
import IvshmemModel
import IvshmemPlatform

/// `ivshmem2 dump-config`: the emulated config space in `lspci -xxx` format, so that lspci and
/// libpci decode exactly what a driver would see — as it comes out of reset, or after firmware
/// assigned its BARs (`--after-firmware`).
struct DumpConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump-config",
        abstract: "Print an emulated device's config space in lspci -xxx format.",
        discussion: """
            Example: ivshmem2 dump-config --vectors 4 | lspci -F /dev/stdin -vvv -nn
            By default the function is shown as it comes out of reset (BARs 0, decoding off).
            With --after-firmware it is shown as a guest's lspci shows it: firmware has sized
            and assigned every BAR (32-bit memory from 0xc0000000, 64-bit from 0x8000000000,
            I/O from 0xc000) and turned on decoding and bus mastering, so lspci prints the
            Region lines with their addresses.
            """)

    @OptionGroup var device: DeviceOptions
    @Option(help: "Bus address printed before the dump (bb:dd.f).") var address: String = "00:05.0"
    @Flag(name: .customLong("after-firmware"), help: "Show the function after firmware-style BAR assignment (as in a guest).")
    var afterFirmware = false
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        logging.apply()
        let dev = try device.makeStandaloneDevice()
        var title = "profile \(dev.profile.name)"
        if afterFirmware {
            let platform = PCIPlatform()
            let bdf = try BDF(device: 5)
            try platform.add(dev, at: bdf)
            var firmware = Firmware()
            let bars = firmware.assign(platform, bdf)
            title += ", after firmware: " + bars.sorted { $0.key < $1.key }.map { "BAR\($0.key)=0x\(String($0.value, radix: 16))" }.joined(separator: " ")
        }
        var out = "\(address) Inter-VM shared memory v2 [110a:4106] (\(title))\n"
        out += ConfigDump.lspciHex(dev)
        writeStdout(out)
    }
}
