import IvshmemSpec

/// How the register region (BAR0) is decoded: memory-mapped (the default, 4 KiB) or port I/O
/// (256 bytes). CFG-BAR-1
public enum RegisterSpace: String, Sendable, CaseIterable { case memory, io }

/// MSI-X (the default, required where the platform has it) or INTx on pin 1–4. IRQ-VEC-1
public enum InterruptMode: Sendable, Equatable {
    case msix
    case intx(pin: UInt8)
}

/// Everything that defines one ivshmem v2 function as its user sees it. DEV-CFG-*
public struct DeviceConfiguration: Sendable, Equatable {
    public var profileName: String
    /// This peer's ID (REG-ID-1).
    public var id: UInt32
    /// Maximum Peers register, 2…65536 (REG-MAXP-1).
    public var maxPeers: UInt32
    /// Interrupt vectors, identical for all peers (IRQ-VEC-1); 1 in INTx mode.
    public var vectors: Int
    /// 16-bit protocol type reported in the class code (CFG-CLASS-2, PROTO-*).
    public var protocolType: UInt16
    public var rwSectionSize: UInt64
    public var outputSectionSize: UInt64
    /// Explicit state table size; nil derives it from maxPeers (SharedMemoryGeometry).
    public var stateTableSize: UInt64?
    public var registerSpace: RegisterSpace
    public var interrupts: InterruptMode
    /// Where the shared memory sits for profiles without BAR2 (CAP-VS-7).
    public var baseAddress: UInt64
    /// Record driver spec violations as findings.
    public var checking: Bool

    public init(
        profile: String = "spec", id: UInt32 = 0, maxPeers: UInt32 = 2, vectors: Int = 1, protocolType: UInt16 = 0,
        rwSectionSize: UInt64 = 0x1000, outputSectionSize: UInt64 = 0, stateTableSize: UInt64? = nil,
        registerSpace: RegisterSpace = .memory, interrupts: InterruptMode = .msix,
        baseAddress: UInt64 = 0x1_0000_0000, checking: Bool = true
    ) {
        self.profileName = profile
        self.id = id
        self.maxPeers = maxPeers
        self.vectors = vectors
        self.protocolType = protocolType
        self.rwSectionSize = rwSectionSize
        self.outputSectionSize = outputSectionSize
        self.stateTableSize = stateTableSize
        self.registerSpace = registerSpace
        self.interrupts = interrupts
        self.baseAddress = baseAddress
        self.checking = checking
    }

    /// The largest section this model accepts (64 GiB): keeps every size computation far from
    /// 64-bit overflow, whatever a table, a script or a server supplies.
    public static let maxSectionSize: UInt64 = 1 << 36

    /// The shared-memory layout this configuration asks for.
    public func geometry() throws -> SharedMemoryGeometry {
        do {
            return try SharedMemoryGeometry(
                maxPeers: UInt64(maxPeers), stateTableSize: stateTableSize, rwSectionSize: rwSectionSize,
                outputSectionSize: outputSectionSize)
        } catch let e as GeometryError {
            throw DeviceConfigurationError(parameter: e.parameter, message: e.message)
        }
    }

    /// Checks every parameter against the spec and the profile; throws naming the first bad one.
    public func validate(profile: Profile) throws {
        func fail(_ p: String, _ m: String) -> DeviceConfigurationError { DeviceConfigurationError(parameter: p, message: m) }
        guard maxPeers >= 2, UInt64(maxPeers) <= SharedMemoryGeometry.maxPeers else {
            throw fail("maxPeers", "maximum peers must be between 2 and 65536, got \(maxPeers)")
        }
        guard id < maxPeers else { throw fail("id", "peer ID \(id) is not below maximum peers \(maxPeers)") }
        switch interrupts {
        case .msix:
            guard vectors >= 1, vectors <= profile.maxVectors else {
                throw fail("vectors", "vectors must be between 1 and \(profile.maxVectors) for profile '\(profile.name)', got \(vectors)")
            }
        case .intx(let pin):
            guard profile.allowsINTx else { throw fail("interrupts", "profile '\(profile.name)' has no INTx mode (DEV-CFG-7)") }
            guard (1...4).contains(pin) else { throw fail("interrupts", "INTx pin must be 1 (INTA#) to 4 (INTD#), got \(pin)") }
            guard vectors == 1 else { throw fail("vectors", "INTx mode has exactly one vector, got \(vectors)") }
        }
        for (name, v) in [("rwSectionSize", rwSectionSize), ("outputSectionSize", outputSectionSize), ("stateTableSize", stateTableSize ?? 0)]
        where v > Self.maxSectionSize {
            throw fail(name, "\(name) \(v) is larger than the \(Self.maxSectionSize >> 30) GiB this model supports")
        }
        if registerSpace == .io && !profile.allowsIORegisters {
            throw fail("registerSpace", "profile '\(profile.name)' has no I/O register region (DEV-CFG-7)")
        }
        if let st = stateTableSize, st != SharedMemoryGeometry.stateTableSize(maxPeers: UInt64(maxPeers)) {
            throw fail("stateTableSize", "state table size must be \(SharedMemoryGeometry.stateTableSize(maxPeers: UInt64(maxPeers))) bytes for \(maxPeers) peers (SHM-LAYOUT-8), got \(st)")
        }
        if let fixed = profile.fixedMSIXBAR, interrupts == .msix, vectors * 16 > fixed.pbaOffset {
            throw fail("vectors", "\(vectors) vectors do not fit the profile's \(fixed.pbaOffset)-byte MSI-X table")
        }
        if !profile.sharedMemoryInBAR2 {
            guard baseAddress % SharedMemoryGeometry.pageSize == 0 else {
                throw fail("baseAddress", "base address 0x\(String(baseAddress, radix: 16)) is not page aligned")
            }
        }
        _ = try geometry()
    }
}

/// A construction parameter that the spec or the profile does not allow. DEV-CFG-*
public struct DeviceConfigurationError: Error, Equatable, CustomStringConvertible {
    public var parameter: String
    public var message: String
    public var description: String { "invalid \(parameter): \(message)" }
}
