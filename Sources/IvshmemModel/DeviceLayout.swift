import IvshmemSpec

/// What a BAR decodes. CFG-BAR-*
public enum BARRole: String, Sendable { case registers, msix, sharedMemory }

/// The roles of BARs 0…5 packed into one word, 4 bits each (0: not implemented), so the
/// access path finds a BAR's role without an array look-up.
struct BARRoleCode: Sendable {
    private let bits: UInt32

    init(_ bars: [BARInfo]) {
        var b: UInt32 = 0
        for bar in bars where (0..<6).contains(bar.index) { b |= Self.code(bar.role) << UInt32(bar.index * 4) }
        bits = b
    }

    private static func code(_ r: BARRole) -> UInt32 {
        switch r {
        case .registers: 1
        case .msix: 2
        case .sharedMemory: 3
        }
    }

    /// The role of BAR `index`; nil when it is not implemented or `index` is not 0…5.
    @inline(__always)
    subscript(index: Int) -> BARRole? {
        guard index >= 0, index < 6 else { return nil }
        switch bits >> UInt32(index * 4) & 0xF {
        case 1: return .registers
        case 2: return .msix
        case 3: return .sharedMemory
        default: return nil
        }
    }
}

/// One implemented BAR: its role, address-space type and (power-of-two) size.
public struct BARInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case memory32, io, memory64Prefetchable }
    public var index: Int
    public var role: BARRole
    public var kind: Kind
    public var size: UInt64

    /// The read-only type bits a BAR reports in its low nibble.
    public var typeBits: UInt64 {
        switch kind {
        case .memory32: return 0x0
        case .io: return 0x1
        case .memory64Prefetchable: return 0xC
        }
    }
    /// Address bits software may program: the sizing mask. CFG-BAR-4
    public var addressMask: UInt64 {
        let low: UInt64 = kind == .io ? 0x3 : 0xF
        let mask = ~(size - 1) & ~low
        return kind == .memory64Prefetchable ? mask : mask & 0xFFFF_FFFF
    }
}

/// Everything derived from a configuration and a profile before any register exists: BARs,
/// MSI-X table geometry, shared-memory geometry and the values of the tables' @parameters.
public struct DeviceLayout: Sendable {
    public let configuration: DeviceConfiguration
    public let profile: Profile
    public let geometry: SharedMemoryGeometry
    public let bars: [BARInfo]
    public let msixTableBytes: Int
    public let msixPBAOffset: Int
    public let msixPBABytes: Int
    public let registerRegionSize: UInt64
    /// The capabilities present, in list order.
    public let capabilities: [Capability]
    public struct Capability: Sendable, Equatable {
        public var kind: Profile.CapabilityKind
        public var offset: Int
    }
    private let parameters: [String: UInt64]

    public var usesMSIX: Bool { configuration.interrupts == .msix }
    public func bar(_ role: BARRole) -> BARInfo? { bars.first { $0.role == role } }

    public init(configuration c: DeviceConfiguration, profile: Profile) throws {
        try c.validate(profile: profile)
        configuration = c
        self.profile = profile
        geometry = try c.geometry()
        registerRegionSize = c.registerSpace == .memory ? 0x1000 : 0x100
        var bars = [BARInfo(index: 0, role: .registers, kind: c.registerSpace == .memory ? .memory32 : .io, size: registerRegionSize)]
        let vectors = c.vectors
        msixTableBytes = vectors * 16
        msixPBABytes = (vectors + 63) / 64 * 8
        // Table at 0; PBA at max(800h, 16·V) in a power-of-two BAR, or the profile's fixed layout.
        let msixBARSize: UInt64
        if let fixed = profile.fixedMSIXBAR {
            msixPBAOffset = fixed.pbaOffset
            msixBARSize = fixed.size
        } else {
            msixPBAOffset = max(0x800, msixTableBytes)
            msixBARSize = Self.powerOfTwo(atLeast: UInt64(msixPBAOffset + msixPBABytes), minimum: 0x1000)
        }
        if c.interrupts == .msix {
            bars.append(BARInfo(index: 1, role: .msix, kind: .memory32, size: msixBARSize))
        }
        if profile.sharedMemoryInBAR2 {
            bars.append(BARInfo(index: 2, role: .sharedMemory, kind: .memory64Prefetchable, size: Self.powerOfTwo(atLeast: geometry.totalSize, minimum: 0x1000)))
        }
        self.bars = bars
        // The MSI-X capability exists only in MSI-X mode (CFG-INT-1); list order is the profile's.
        let capabilities = profile.capabilities.filter { $0.kind == .vendor || c.interrupts == .msix }
        self.capabilities = capabilities.map { Capability(kind: $0.kind, offset: $0.offset) }

        var p: [String: UInt64] = [:]
        p["id"] = UInt64(c.id)
        p["maxPeers"] = UInt64(c.maxPeers)
        p["protocolLow"] = UInt64(c.protocolType & 0xFF)
        p["protocolHigh"] = UInt64(c.protocolType >> 8)
        p["commandWritable"] = 0x0406 | (c.registerSpace == .io ? 0x0001 : 0)
        p["subsystemVendorID"] = UInt64(profile.subsystemVendorID)
        p["subsystemID"] = UInt64(profile.subsystemID)
        p["capabilityPointer"] = UInt64(capabilities.first?.offset ?? 0)
        if case .intx(let pin) = c.interrupts { p["interruptPin"] = UInt64(pin) } else { p["interruptPin"] = 0 }
        for (name, index) in [("bar0", 0), ("bar1", 1)] {
            let b = bars.first { $0.index == index }
            p[name + "Type"] = b?.typeBits ?? 0
            p[name + "Writable"] = b?.addressMask ?? 0
        }
        let b2 = bars.first { $0.index == 2 }
        p["bar2Type"] = b2?.typeBits ?? 0
        p["bar2WritableLow"] = (b2?.addressMask ?? 0) & 0xFFFF_FFFF
        p["bar2WritableHigh"] = (b2?.addressMask ?? 0) >> 32
        p["registerRegionSize"] = registerRegionSize
        p["vendorCapabilityLength"] = profile.sharedMemoryInBAR2 ? 0x18 : 0x20
        p["stateTableSize"] = geometry.stateTableSize
        p["rwSectionSize"] = geometry.rwSectionSize
        p["outputSectionSize"] = geometry.outputSectionSize
        p["baseAddress"] = profile.sharedMemoryInBAR2 ? 0 : c.baseAddress
        p["msixTableSizeField"] = UInt64(max(vectors - 1, 0))
        p["msixTableOffsetBIR"] = 0x0 | 1
        p["msixPBAOffsetBIR"] = UInt64(msixPBAOffset) | 1
        parameters = p
    }

    /// The value of a table @parameter, or nil when the tables name one the model lacks.
    public func parameter(_ name: String) -> UInt64? { parameters[name] }
    /// The smallest power of two ≥ v (and ≥ minimum); sizes are capped well below 2^63 by
    /// `DeviceConfiguration.validate`, so this cannot wrap.
    static func powerOfTwo(atLeast v: UInt64, minimum: UInt64) -> UInt64 {
        var s = minimum
        while s < v && s < (1 << 62) { s <<= 1 }
        return s
    }
}

/// An address range the device currently claims: an enabled, programmed BAR (or, without BAR2,
/// the fixed Base Address range, bar -1). CFG-CMD-7, CFG-CMD-8, SHM-BAR-3
public struct DecodeWindow: Sendable, Equatable {
    public var bar: Int
    public var base: UInt64
    public var size: UInt64
    public var isIO: Bool

    @inline(__always) public func offset(of address: UInt64) -> UInt64? {
        address >= base && address - base < size ? address - base : nil
    }
}
