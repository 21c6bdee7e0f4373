/// The PCI configuration registers and bits the model and its tools name, in PCI Local Bus
/// terms (PCI 3.0 §6.2, MSI-X §6.8.2). Offsets and bits that come from the ivshmem spec
/// tables are found in the tables (``RegisterMap/offset(of:)``); these are the fixed PCI ones.
public enum PCIConfig {
    public static let vendorID = 0x00
    public static let deviceID = 0x02
    public static let command = 0x04
    public static let status = 0x06
    public static let revisionID = 0x08
    public static let classCode = 0x09
    public static let headerType = 0x0E
    /// BAR n is at `bar0 + 4 n` (n = 0…5).
    public static let bar0 = 0x10
    public static let barsEnd = 0x28
    public static let subsystemVendorID = 0x2C
    public static let subsystemID = 0x2E
    public static let capabilitiesPointer = 0x34
    public static let interruptLine = 0x3C
    public static let interruptPin = 0x3D

    /// The config offset of BAR `index`.
    public static func bar(_ index: Int) -> Int { bar0 + 4 * index }
}

/// Command register bits (CFG-CMD-*).
public struct PCICommand: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let ioSpace = PCICommand(rawValue: 1 << 0)
    public static let memorySpace = PCICommand(rawValue: 1 << 1)
    public static let busMaster = PCICommand(rawValue: 1 << 2)
    public static let interruptDisable = PCICommand(rawValue: 1 << 10)
}

/// Status register bits (CFG-STS-*).
public struct PCIStatus: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let interruptStatus = PCIStatus(rawValue: 1 << 3)
    public static let capabilitiesList = PCIStatus(rawValue: 1 << 4)
}

/// MSI-X Message Control bits (MSIX-CAP-2), at capability offset 2.
public struct MSIXControl: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let enable = MSIXControl(rawValue: 1 << 15)
    public static let functionMask = MSIXControl(rawValue: 1 << 14)
    /// Table Size − 1 (bits 10:0).
    public static let tableSizeMask: UInt16 = 0x07FF
    /// Offset of Message Control within the MSI-X capability.
    public static let capabilityOffset = 2
}

/// One 16-byte MSI-X table entry (MSIX-TBL-1, -2).
public enum MSIXTableEntry {
    public static let size = 16
    public static let messageAddress = 0x0
    public static let messageUpperAddress = 0x4
    public static let messageData = 0x8
    public static let vectorControl = 0xC
    /// Vector Control bit 0: the vector is masked.
    public static let masked: UInt32 = 1
}

/// Interrupt Control (REG-IC-1) bit 0: interrupts enabled.
public enum InterruptControlBits {
    public static let enable: UInt32 = 1
}

/// The BAR0 registers of one device, where its tables put them (REG-*): tools, the harness and
/// scripts use these instead of literal offsets, so a spec change that moves a register moves
/// their accesses too.
public struct BAR0Registers: Sendable, Equatable {
    public var id: UInt64
    public var maxPeers: UInt64
    public var interruptControl: UInt64
    public var doorbell: UInt64
    public var state: UInt64

    public init(id: UInt64, maxPeers: UInt64, interruptControl: UInt64, doorbell: UInt64, state: UInt64) {
        self.id = id
        self.maxPeers = maxPeers
        self.interruptControl = interruptControl
        self.doorbell = doorbell
        self.state = state
    }

    /// The Doorbell value that rings `vector` of peer `peer` (REG-DB-1: peer in bits 31:16).
    public static func doorbellValue(peer: UInt32, vector: UInt32) -> UInt32 { peer << 16 | (vector & 0xFFFF) }
}

/// The v1 device's BAR0 registers, where `spec/tables/v1-bar0.json` puts them (V1-REG-*): the
/// v1 peer, scripts and checks use these instead of literal offsets.
public struct V1BAR0Registers: Sendable, Equatable {
    public var interruptMask: UInt64
    public var interruptStatus: UInt64
    public var ivPosition: UInt64
    public var doorbell: UInt64

    public init(interruptMask: UInt64, interruptStatus: UInt64, ivPosition: UInt64, doorbell: UInt64) {
        self.interruptMask = interruptMask
        self.interruptStatus = interruptStatus
        self.ivPosition = ivPosition
        self.doorbell = doorbell
    }

    /// The Doorbell value that rings `vector` of peer `peer` (V1-REG-DB-1: peer in bits 31:16).
    public static func doorbellValue(peer: UInt32, vector: UInt32) -> UInt32 { BAR0Registers.doorbellValue(peer: peer, vector: vector) }
}

extension RegisterBlock {
    /// The address software programmed into BAR `index` of this config space: type bits
    /// stripped (I/O: 2, memory: 4), a 64-bit BAR joined with the next dword (CFG-BAR-*,
    /// V1-CFG-BAR-*). Shared by the v2 and v1 devices' decode windows.
    func programmedBAR(_ index: Int, io: Bool, is64: Bool) -> UInt64 {
        let lo = raw(offset: PCIConfig.bar(index), size: 4)
        if io { return lo & ~0x3 }
        let base = lo & ~0xF
        return is64 ? base | raw(offset: PCIConfig.bar(index + 1), size: 4) << 32 : base
    }
}
