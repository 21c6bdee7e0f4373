import ArgumentParser
import IvshmemModel
import IvshmemSpec

/// Options that describe one emulated device, shared by the commands that build one.
struct DeviceOptions: ParsableArguments {
    @Option(help: "Behaviour profile: spec, jailhouse or qemu-rfc.") var profile: String = "spec"
    @Option(help: "Interrupt vectors (MSI-X table size).") var vectors: Int = 1
    @Option(name: .customLong("max-peers"), help: "Maximum Peers (2…65536).") var maxPeers: UInt32 = 2
    @Option(help: "This peer's ID.") var id: UInt32 = 0
    @Option(name: .customLong("protocol"), help: "16-bit protocol type (e.g. 0x4001).", transform: parseNumber)
    var protocolType: UInt64 = 0
    @Option(name: .customLong("rw-size"), help: "R/W section size (K/M/G suffixes; page multiple).", transform: parseSize)
    var rwSectionSize: UInt64 = 0x1000
    @Option(name: .customLong("output-size"), help: "Output section size per peer (page multiple).", transform: parseSize)
    var outputSectionSize: UInt64 = 0
    @Option(name: .customLong("register-space"), help: "BAR0 register region: memory or io.") var registerSpace: String = "memory"
    @Option(name: .customLong("intx"), help: "Use INTx on this pin (1-4) instead of MSI-X.") var intxPin: UInt8?
    @Option(name: .customLong("base-address"), help: "Shared memory address for profiles without BAR2.", transform: parseNumber)
    var baseAddress: UInt64 = 0x1_0000_0000

    func configuration() throws -> DeviceConfiguration {
        guard let space = RegisterSpace(rawValue: registerSpace) else {
            throw ValidationError("--register-space must be 'memory' or 'io', got '\(registerSpace)'")
        }
        guard protocolType <= 0xFFFF else { throw ValidationError("--protocol must fit in 16 bits, got 0x\(String(protocolType, radix: 16))") }
        return DeviceConfiguration(
            profile: profile, id: id, maxPeers: maxPeers, vectors: vectors, protocolType: UInt16(protocolType),
            rwSectionSize: rwSectionSize, outputSectionSize: outputSectionSize, registerSpace: space,
            interrupts: intxPin.map { .intx(pin: $0) } ?? .msix, baseAddress: baseAddress)
    }

    /// A device over its own memory, not linked to any peer (for inspection commands).
    func makeStandaloneDevice() throws -> IvshmemDevice {
        let config = try configuration()
        do {
            let fabric = try LocalFabric(template: config)
            return try fabric.addDevice(id: config.id)
        } catch let e as DeviceConfigurationError {
            throw ToolFailure(e.description)
        } catch let e as SpecError {
            throw ToolFailure(e.description)
        }
    }
}

/// Parses `0x…` hex or decimal.
func parseNumber(_ text: String) throws -> UInt64 {
    guard let v = SpecValue.parseNumber(text) else { throw ValidationError("'\(text)' is not a number (decimal or 0x hex)") }
    return v
}

/// Parses a size with an optional K, M or G suffix (powers of 1024), like the reference server.
func parseSize(_ text: String) throws -> UInt64 {
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
    var body = Substring(text)
    var scale: UInt64 = 1
    if let last = body.last?.uppercased().first, let u = units[last] {
        scale = u
        body = body.dropLast()
    }
    guard let n = SpecValue.parseNumber(String(body)) else { throw ValidationError("'\(text)' is not a size (e.g. 4096, 64K, 4M, 1G)") }
    let (v, overflow) = n.multipliedReportingOverflow(by: scale)
    guard !overflow else { throw ValidationError("size '\(text)' is too large") }
    return v
}
