import IvshmemModel

/// What firmware does before a driver runs: find functions by vendor/device ID, size each BAR
/// with the all-ones protocol, assign addresses from simple bump allocators and enable decoding
/// and bus mastering. Drivers that do this themselves skip it.
public struct Firmware {
    public var nextMemory: UInt64
    public var nextMemory64: UInt64
    public var nextIO: UInt64

    public init(memoryBase: UInt64 = 0xC000_0000, memory64Base: UInt64 = 0x80_0000_0000, ioBase: UInt64 = 0xC000) {
        nextMemory = memoryBase
        nextMemory64 = memory64Base
        nextIO = ioBase
    }

    /// Functions whose Vendor/Device ID match, in BDF order.
    public static func enumerate(_ platform: PCIPlatform, vendor: UInt16 = 0x110A, device: UInt16 = 0x4106) -> [BDF] {
        platform.addresses.filter {
            platform.configRead($0, offset: 0, size: 4) == UInt32(device) << 16 | UInt32(vendor)
        }
    }

    /// Sizes and assigns every BAR of `bdf`, then sets Memory/I/O decode and Bus Master.
    /// Returns the assigned base of each implemented BAR.
    @discardableResult
    public mutating func assign(_ platform: PCIPlatform, _ bdf: BDF) -> [Int: UInt64] {
        var out: [Int: UInt64] = [:]
        var index = 0
        var command: PCICommand = .busMaster
        while index < 6 {
            let reg = PCIConfig.bar(index)
            let original = platform.configRead(bdf, offset: reg, size: 4)
            platform.configWrite(bdf, offset: reg, size: 4, value: 0xFFFF_FFFF)
            let lowMask = platform.configRead(bdf, offset: reg, size: 4)
            if lowMask == 0 { platform.configWrite(bdf, offset: reg, size: 4, value: original); index += 1; continue }
            if lowMask & 1 == 1 {  // I/O BAR
                let size = UInt64(~(lowMask & ~0x3) &+ 1)
                let base = align(nextIO, size)
                nextIO = base + size
                platform.configWrite(bdf, offset: reg, size: 4, value: UInt32(base))
                out[index] = base
                command.insert(.ioSpace)
                index += 1
                continue
            }
            let is64 = (lowMask >> 1) & 0x3 == 0x2
            var mask = UInt64(lowMask & ~0xF)
            if is64 {
                platform.configWrite(bdf, offset: reg + 4, size: 4, value: 0xFFFF_FFFF)
                mask |= UInt64(platform.configRead(bdf, offset: reg + 4, size: 4)) << 32
            } else {
                mask |= 0xFFFF_FFFF_0000_0000
            }
            let size = ~mask &+ 1
            let base: UInt64
            if is64 {
                base = align(nextMemory64, size)
                nextMemory64 = base + size
                platform.configWrite(bdf, offset: reg + 4, size: 4, value: UInt32(base >> 32))
            } else {
                base = align(nextMemory, size)
                nextMemory = base + size
            }
            platform.configWrite(bdf, offset: reg, size: 4, value: UInt32(truncatingIfNeeded: base))
            out[index] = base
            command.insert(.memorySpace)
            index += is64 ? 2 : 1
        }
        let old = platform.configRead(bdf, offset: PCIConfig.command, size: 2)
        platform.configWrite(bdf, offset: PCIConfig.command, size: 2, value: old | UInt32(command.rawValue))
        return out
    }

    private func align(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) / a * a }
}

/// What a minimal driver does after firmware: program one MSI-X entry per vector (message
/// address 0xFEE00000, data `dataBase + v`), unmask it, enable MSI-X, and set Interrupt Control
/// so events are delivered. Everything goes through the platform, as a driver's accesses would.
public enum DriverSetup {
    public static let messageAddress: UInt64 = 0xFEE0_0000

    /// Plugs `device` in at `bdf`, lets firmware assign its BARs and enables interrupts.
    /// Returns the assigned BAR bases.
    @discardableResult
    public static func plugAndEnable(_ device: IvshmemDevice, into platform: PCIPlatform, at bdf: BDF, dataBase: UInt32 = 0) throws -> [Int: UInt64] {
        try platform.add(device, at: bdf)
        var firmware = Firmware()
        let bars = firmware.assign(platform, bdf)
        enableInterrupts(device, on: platform, at: bdf, bars: bars, dataBase: dataBase)
        return bars
    }

    /// MSI-X entries (if the device has MSI-X and BAR1 is assigned), then Interrupt Control 1.
    public static func enableInterrupts(_ device: IvshmemDevice, on platform: PCIPlatform, at bdf: BDF, bars: [Int: UInt64], dataBase: UInt32 = 0) {
        if let table = bars[1], let cap = device.layout.capabilities.first(where: { $0.kind == .msix }) {
            for v in 0..<device.configuration.vectors {
                let entry = table + UInt64(v * MSIXTableEntry.size)
                platform.mmioWrite(entry + UInt64(MSIXTableEntry.messageAddress), size: 4, value: messageAddress)
                platform.mmioWrite(entry + UInt64(MSIXTableEntry.messageUpperAddress), size: 4, value: 0)
                platform.mmioWrite(entry + UInt64(MSIXTableEntry.messageData), size: 4, value: UInt64(dataBase) + UInt64(v))
                platform.mmioWrite(entry + UInt64(MSIXTableEntry.vectorControl), size: 4, value: 0)
            }
            let at = cap.offset + MSIXControl.capabilityOffset
            let control = platform.configRead(bdf, offset: at, size: 2)
            platform.configWrite(bdf, offset: at, size: 2, value: control | UInt32(MSIXControl.enable.rawValue))
        }
        if let regs = bars[0] {
            if device.layout.bar(.registers)?.kind == .io {
                platform.ioWrite(UInt16(truncatingIfNeeded: regs + device.registerOffsets.interruptControl), size: 4, value: InterruptControlBits.enable)
            } else {
                platform.mmioWrite(regs + device.registerOffsets.interruptControl, size: 4, value: UInt64(InterruptControlBits.enable))
            }
        } else {
            device.writeRegister(device.registerOffsets.interruptControl, InterruptControlBits.enable)
        }
    }
}
