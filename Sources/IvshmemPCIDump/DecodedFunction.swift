/// One PCI function as libpci decodes it from a config-space dump (`lspci -xxx` format).
///
/// Identity, class and BAR fields come from `pci_fill_info`; the interrupt pin, header type and
/// capability contents are read with `pci_read_byte/word/long` through the same `pci_dev`.
public struct DecodedFunction: Sendable, Equatable, CustomStringConvertible {
    public var domain: Int
    public var bus: UInt8
    public var device: UInt8
    public var function: UInt8

    public var vendorID: UInt16
    public var deviceID: UInt16
    /// Base class (config byte 0Bh).
    public var baseClass: UInt8
    /// Sub-class (config byte 0Ah).
    public var subClass: UInt8
    /// Programming interface (config byte 09h).
    public var progIF: UInt8
    public var revision: UInt8
    /// The full Header Type byte (0Eh), including the multi-function bit 7.
    public var headerType: UInt8
    public var subsystemVendorID: UInt16
    public var subsystemID: UInt16
    public var command: UInt16
    public var status: UInt16
    /// Capabilities Pointer (34h), low two bits cleared as PCI requires.
    public var capabilitiesPointer: UInt8
    /// Interrupt Line (3Ch); what libpci reports as `irq` for a dump.
    public var interruptLine: UInt8
    /// Interrupt Pin (3Dh): 0 = none, 1…4 = INTA#…INTD#.
    public var interruptPin: UInt8
    /// The six BAR slots in order (an upper half of a 64-bit BAR has kind `.upperHalf`).
    public var bars: [BaseAddressRegister]
    /// libpci's capability list (`pci_dev.first_cap`), in list order.
    public var capabilities: [Capability]
    public var msix: MSIXCapability?
    /// The first vendor-specific capability (ID 09h), if any.
    public var vendorCapability: VendorCapability?
    /// The raw config space as libpci's dump back-end holds it (256 bytes, or more for an
    /// extended dump up to 4096).
    public var configSpace: [UInt8]

    /// `bb:dd.f`, or `dddd:bb:dd.f` outside domain 0, like lspci prints it.
    public var address: String { Self.formatAddress(domain: domain, bus: bus, device: device, function: function) }

    /// 24-bit class code as lspci's `[cccc]` shows the top 16 bits: base·100h + sub.
    public var classWord: UInt16 { UInt16(baseClass) << 8 | UInt16(subClass) }

    /// The BAR that starts at `index` (nil for an upper half or an index outside 0…5).
    public func bar(_ index: Int) -> BaseAddressRegister? {
        guard bars.indices.contains(index), bars[index].kind != .upperHalf else { return nil }
        return bars[index]
    }

    public var description: String {
        var s = "\(address) [\(hex(vendorID, 4)):\(hex(deviceID, 4))] class \(hex(baseClass, 2))\(hex(subClass, 2)) prog-if \(hex(progIF, 2))"
        s += " rev \(hex(revision, 2)) hdr \(hex(headerType, 2)) subsys \(hex(subsystemVendorID, 4)):\(hex(subsystemID, 4)) pin \(interruptPin)"
        s += " caps " + capabilities.map { "\(hex($0.id, 2))@\(hex($0.offset, 2))" }.joined(separator: "→")
        return s
    }
}

/// One BAR slot, decoded from the raw register and from libpci's `base_addr`.
public struct BaseAddressRegister: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// I/O space (bit 0 = 1).
        case io
        /// 32-bit memory (type bits 00b). A register that reads 0 also decodes as this: a dump
        /// cannot tell an unassigned 32-bit memory BAR from an unimplemented one.
        case memory32
        /// Memory below 1 MiB (type bits 01b, reserved since PCI 3.0).
        case memoryBelow1M
        /// 64-bit memory (type bits 10b); the next slot holds the upper half.
        case memory64
        /// The upper 32 bits of the 64-bit BAR in the previous slot.
        case upperHalf
    }

    public var index: Int
    /// The config dword at 10h + 4·index.
    public var register: UInt32
    /// `pci_dev.base_addr[index]`: the address with its flag bits, the upper half folded in
    /// for a 64-bit BAR. libpci leaves it 0 for a register that reads 0 or FFFFFFFFh, and for
    /// an upper-half slot.
    public var libpciBaseAddress: UInt64
    public var kind: Kind
    /// Bit 3 of a memory BAR.
    public var prefetchable: Bool
    /// The address without flag bits (64 bits wide for a 64-bit BAR).
    public var address: UInt64

    public var isIO: Bool { kind == .io }
    public var is64Bit: Bool { kind == .memory64 }
    /// True when the register (and, for a 64-bit BAR, its upper half) is all zero: either
    /// unimplemented or a 32-bit memory BAR not yet assigned.
    public var isZero: Bool { register == 0 && address == 0 }
}

/// One entry of the capability list.
public struct Capability: Sendable, Equatable, CustomStringConvertible {
    public var id: UInt8
    public var offset: Int
    public init(id: UInt8, offset: Int) {
        self.id = id
        self.offset = offset
    }
    public var description: String { "\(hex(id, 2))h@\(hex(offset, 2))h" }
}

/// The MSI-X capability (ID 11h) fields.
public struct MSIXCapability: Sendable, Equatable {
    public var offset: Int
    public var messageControl: UInt16
    /// Message Control bits 10:0 + 1.
    public var tableSize: Int
    public var enabled: Bool
    public var functionMasked: Bool
    public var tableBIR: Int
    public var tableOffset: UInt32
    public var pbaBIR: Int
    public var pbaOffset: UInt32
}

/// The ivshmem v2 vendor-specific capability (ID 09h) fields (spec section 4).
public struct VendorCapability: Sendable, Equatable {
    public var offset: Int
    /// Length byte (+02h): 18h, or 20h with the Base Address field.
    public var length: UInt8
    /// Privileged Control byte (+03h).
    public var privilegedControl: UInt8
    /// State Table Size (+04h, 32 bits).
    public var stateTableSize: UInt32
    /// R/W Section Size (+08h, 64 bits).
    public var rwSectionSize: UInt64
    /// Output Section Size (+10h, 64 bits).
    public var outputSectionSize: UInt64
    /// Base Address (+18h, 64 bits) when the length is at least 20h.
    public var baseAddress: UInt64?
}

func hex<T: BinaryInteger>(_ v: T, _ width: Int) -> String {
    let s = String(v, radix: 16)
    return s.count < width ? String(repeating: "0", count: width - s.count) + s : s
}
