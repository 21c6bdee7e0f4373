import IvshmemSpec
import IvshmemSync

/// Which v1 device (spec/ivshmem1.md §0): QEMU's two, and the old INTx variant.
public enum V1Personality: String, Sendable, CaseIterable {
    /// `ivshmem-doorbell`: server, MSI-X in BAR1, doorbells.
    case doorbell
    /// `ivshmem-plain`: shared memory only.
    case plain
    /// No MSI-X, Interrupt Pin 1, interrupts through IntrStatus (V1-IRQ-INTX-1).
    case legacyINTx = "legacy-intx"
}

/// What defines one v1 function.
public struct V1DeviceConfiguration: Sendable, Equatable {
    public var personality: V1Personality
    /// The device's own vector count (QEMU's `vectors`, V1-WIRE-CLI-5): 1…64 for `doorbell`,
    /// 1 for `legacy-intx`, ignored for `plain`.
    public var vectors: Int
    /// The shared memory's size: BAR2's size, a power of two of at least 4 KiB (V1-CFG-BAR-3).
    public var sharedMemorySize: UInt64
    /// Record driver findings (V1-REG-ACC-1, V1-REG-DB-2, V1-MSIX-PBA-1).
    public var checking: Bool

    public init(personality: V1Personality = .doorbell, vectors: Int = 1, sharedMemorySize: UInt64, checking: Bool = true) {
        self.personality = personality
        self.vectors = personality == .plain ? 0 : personality == .legacyINTx ? 1 : vectors
        self.sharedMemorySize = sharedMemorySize
        self.checking = checking
    }

    public func validate() throws {
        guard sharedMemorySize >= 0x1000, sharedMemorySize & (sharedMemorySize - 1) == 0, sharedMemorySize <= 1 << 36 else {
            throw DeviceConfigurationError(parameter: "sharedMemorySize", message: "a v1 device maps its shared memory as a BAR: a power of two from 4 KiB to 64 GiB, got \(sharedMemorySize)")
        }
        if personality == .doorbell {
            guard (1...V1Limits.maxVectors).contains(vectors) else {
                throw DeviceConfigurationError(parameter: "vectors", message: "vectors must be between 1 and \(V1Limits.maxVectors), got \(vectors)")
            }
        }
    }
}

public enum V1Limits {
    /// The MSI-X vectors the model gives a v1 device (the reference server hands out ≤ 64).
    public static let maxVectors = 64
    /// BAR1: the MSI-X table at 0, the PBA at 800h (V1-CFG-BAR-2).
    public static let msixBARSize: UInt64 = 0x1000
    public static let pbaOffset = 0x800
}

/// How a v1 device reaches its peers: by ID and vector, through the eventfds its server sent.
public protocol V1PeerLink: AnyObject, Sendable {
    /// Signals peer `target`'s eventfd for `vector`; false when the device holds none
    /// (V1-REG-DB-2).
    func ring(target: UInt16, vector: Int) -> Bool
}

/// Where a v1 device's interrupts go.
public protocol V1InterruptSink: AnyObject, Sendable {
    /// An MSI-X message: a dword write of `data` to `address` (V1-IRQ-MSIX-1).
    func msixMessage(vector: Int, address: UInt64, data: UInt32)
    /// The INTx level changed (V1-IRQ-INTX-1).
    func intxLevel(_ asserted: Bool)
}

/// One ivshmem v1 PCI function (spec/ivshmem1.md), built from `v1-config-header.json`,
/// `v1-bar0.json` and the MSI-X tables of `msix.json` on the same register engine as the v2
/// device (``RegisterBlock``), with the v1 hooks (``RegisterHook/intrMask`` …). Accesses are
/// BAR-relative, as a platform decodes them; the shared memory is flat (V1-SHM-BAR-1).
///
/// Thread safety: every entry point may be called from any thread; links and sinks are called
/// after the lock is released.
public final class IvshmemV1Device: PCIFunction, @unchecked Sendable {
    public let configuration: V1DeviceConfiguration
    public let sharedMemory: SharedMemory
    private let config: RegisterBlock
    private let registers: RegisterBlock
    private let msixTable: RegisterBlock
    /// Where the tables put the BAR0 registers (for tools and scripts: no literal offsets).
    public let registerOffsets: V1BAR0Registers
    private var intrMaskOffset: Int { Int(registerOffsets.interruptMask) }
    private var intrStatusOffset: Int { Int(registerOffsets.interruptStatus) }
    private var ivPositionOffset: Int { Int(registerOffsets.ivPosition) }
    private let msixControlOffset: Int?
    private let vectorControlOffset: Int
    private let state: Locked<State>
    /// The windows this function decodes (Command and BARs), republished under the lock when
    /// they change and read by the platform without one (V1-CFG-BAR-1…4).
    private let windowTable = DecodeWindowTable()

    struct State {
        var pending: [Bool]
        var findings = BoundedLog<Finding>(capacity: 10_000)
        var intxAsserted = false
        weak var link: (any V1PeerLink)?
        weak var sink: (any V1InterruptSink)?
    }

    /// The capability the doorbell personality has, at 40h (V1-CFG-CAP-1).
    public static let msixCapabilityOffset = 0x40

    public init(configuration c: V1DeviceConfiguration, sharedMemory: SharedMemory, tables: SpecTables = .builtIn) throws {
        try c.validate()
        guard UInt64(sharedMemory.size) >= c.sharedMemorySize else {
            throw DeviceConfigurationError(parameter: "sharedMemory", message: "shared memory of \(sharedMemory.size) bytes is smaller than the device's \(c.sharedMemorySize)")
        }
        configuration = c
        self.sharedMemory = sharedMemory
        let msix = c.personality == .doorbell
        let bar2Mask = ~(c.sharedMemorySize - 1) & ~0xF
        let p: [String: UInt64] = [
            "status": msix ? 0x0010 : 0,
            "capabilityPointer": msix ? UInt64(Self.msixCapabilityOffset) : 0,
            "interruptPin": c.personality == .legacyINTx ? 1 : 0,
            "bar0Type": 0, "bar0Writable": ~UInt64(0xFF) & 0xFFFF_FFFF,
            "bar1Type": 0, "bar1Writable": msix ? ~(V1Limits.msixBARSize - 1) & 0xFFFF_FFFF : 0,
            "bar2Type": 0xC, "bar2WritableLow": bar2Mask & 0xFFFF_FFFF, "bar2WritableHigh": bar2Mask >> 32,
            "ivPosition": c.personality == .plain ? 0 : 0xFFFF_FFFF,
            "next": 0,
            "msixTableSizeField": UInt64(max(c.vectors - 1, 0)),
            "msixTableOffsetBIR": 1,
            "msixPBAOffsetBIR": UInt64(V1Limits.pbaOffset) | 1,
        ]
        let lookup = { (n: String) in p[n] }
        var headerFields = try tables.v1Header.map { try ResolvedField($0, lookup: lookup) }
        if msix { headerFields += try tables.msixCapability.map { try ResolvedField($0, base: Self.msixCapabilityOffset, lookup: lookup) } }
        config = try RegisterBlock(size: ConfigSpace.size, fields: headerFields)
        guard let regSize = Int(exactly: try tables.v1Bar0Size.resolve(field: "v1-bar0.size", lookup)), regSize == 0x100 else {
            throw SpecError.invalidValue(field: "v1-bar0", key: "size", text: tables.v1Bar0Size.description)
        }
        registers = try RegisterBlock(size: regSize, fields: tables.v1Bar0.map { try ResolvedField($0, lookup: lookup) })
        var entries: [ResolvedField] = []
        for v in 0..<(msix ? c.vectors : 0) {
            for f in tables.msixTableEntry {
                var r = try ResolvedField(f, base: v * MSIXTableEntry.size, lookup: lookup)
                r.name = "\(f.name) [\(v)]"
                entries.append(r)
            }
        }
        msixTable = try RegisterBlock(size: max(c.vectors, 1) * MSIXTableEntry.size, fields: entries)
        func required(_ h: RegisterHook, _ offset: Int?, _ part: String) throws -> Int {
            guard let offset else { throw SpecError.missingHook(hook: h.rawValue, part: part) }
            return offset
        }
        let registerMap = registers.map
        func register(_ h: RegisterHook) throws -> UInt64 { UInt64(try required(h, registerMap.offset(of: h), "the v1 register region")) }
        registerOffsets = V1BAR0Registers(interruptMask: try register(.intrMask), interruptStatus: try register(.intrStatus),
                                          ivPosition: try register(.ivPosition), doorbell: try register(.v1Doorbell))
        msixControlOffset = config.map.offset(of: .msixControl)
        vectorControlOffset = try required(.vectorControl, tables.msixTableEntry.first { $0.hook == .vectorControl }?.offset, "the MSI-X table entry")
        state = Locked(State(pending: Array(repeating: false, count: msix ? c.vectors : 0)))
    }

    /// BAR `index`'s size, nil when the personality does not implement it (V1-CFG-BAR-1…3).
    private func barSize(_ index: Int) -> UInt64? {
        switch index {
        case 0: return UInt64(registers.size)
        case 1: return configuration.personality == .doorbell ? V1Limits.msixBARSize : nil
        case 2: return configuration.sharedMemorySize
        default: return nil
        }
    }

    /// The windows Command and the BARs decode now (BAR2 is 64-bit: BAR2/BAR3).
    private func currentWindows() -> [DecodeWindow] {
        guard command.contains(.memorySpace) else { return [] }
        var out: [DecodeWindow] = []
        for index in 0...2 {
            guard let size = barSize(index) else { continue }
            let base = config.programmedBAR(index, io: false, is64: index == 2)
            if base != 0 { out.append(DecodeWindow(bar: index, base: base, size: size, isIO: false)) }
        }
        return out
    }

    /// Where `address` lands in this function, without a lock.
    public func decode(_ address: UInt64, io: Bool) -> (bar: Int, offset: UInt64)? { windowTable.lookup(address, io: io) }
    /// The ranges this function claims now.
    public var decodeWindows: [DecodeWindow] { windowTable.windows }
    /// v1 has no slot-dependent strap: QEMU's Interrupt Pin is fixed by the personality.
    public func plugged(intoSlot slot: UInt8) {}

    // MARK: wiring

    public var link: (any V1PeerLink)? {
        get { state.withLock { $0.link } }
        set { state.withLock { $0.link = newValue } }
    }
    public var interruptSink: (any V1InterruptSink)? {
        get { state.withLock { $0.sink } }
        set { state.withLock { $0.sink = newValue } }
    }

    /// The server gave this device `id` (V1-REG-POS-1).
    public func assignID(_ id: UInt16) {
        state.withLock { _ in registers.setRaw(offset: ivPositionOffset, size: 4, value: UInt64(id)) }
    }

    public var findings: [Finding] { state.withLock { $0.findings.elements } }
    public func clearFindings() { state.withLock { $0.findings.removeAll() } }
    public var intxAsserted: Bool { state.withLock { $0.intxAsserted } }

    // MARK: config space

    /// A naturally aligned 1, 2 or 4-byte read; anything else reads 0.
    public func configRead(offset: Int, size: Int) -> UInt32 {
        guard IvshmemDevice.validConfigAccess(offset: offset, size: size) else { return 0 }
        return UInt32(truncatingIfNeeded: config.read(offset: offset, size: size))
    }

    /// A config write through the generic rule; MSI-X Enable and Function Mask may release
    /// latched messages (V1-MSIX-CAP-2, V1-IRQ-MSIX-2).
    public func configWrite(offset: Int, size: Int, value: UInt32) {
        guard IvshmemDevice.validConfigAccess(offset: offset, size: size) else { return }
        perform { s, fx in
            var decodeChanged = false
            config.write(offset: offset, size: size, value: UInt64(value)) { w, field in
                if w.old != w.new && DeviceState.affectsDecode(field.offset) { decodeChanged = true }
            }
            if decodeChanged { windowTable.publish(currentWindows()) }
            flushPending(&s, &fx)
        }
    }

    private var command: PCICommand { PCICommand(rawValue: UInt16(truncatingIfNeeded: config.raw(offset: PCIConfig.command, size: 2))) }
    private var msixControl: MSIXControl {
        MSIXControl(rawValue: msixControlOffset.map { UInt16(truncatingIfNeeded: config.raw(offset: $0, size: 2)) } ?? 0)
    }
    private var msix: MSIXTable { MSIXTable(block: msixTable, vectorControlOffset: vectorControlOffset) }
    private func vectorMasked(_ v: Int) -> Bool { msix.masked(v) }

    // MARK: BARs

    /// A read of BAR `bar` at `offset` (after the platform decoded the address).
    public func barRead(_ bar: Int, offset: UInt64, size: Int) -> UInt64 {
        switch bar {
        case 0:
            return perform { s, fx in
                guard size == 4, offset % 4 == 0, offset < UInt64(registers.size) else {
                    record(&s, "V1-REG-ACC-1", "register read of \(size) byte(s) at 0x\(String(offset, radix: 16)): only aligned 32-bit accesses are valid; read returns 0",
                           Access(space: .bar(0), offset: offset, size: size, isWrite: false))
                    return 0
                }
                let value = registers.read(offset: Int(offset), size: 4)
                if Int(offset) == intrStatusOffset {  // V1-REG-STAT-1: reading clears
                    registers.setRaw(offset: intrStatusOffset, size: 4, value: 0)
                    updateINTx(&s, &fx)
                }
                return value
            }
        case 1 where configuration.personality == .doorbell:
            return perform { s, _ in msixRead(&s, offset: offset, size: size) }
        case 2:
            var v: UInt64 = 0
            guard offset < configuration.sharedMemorySize, UInt64(size) <= configuration.sharedMemorySize - offset else { return 0 }
            withUnsafeMutableBytes(of: &v) { _ = sharedMemory.read(offset: Int(offset), into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<min(size, 8)])) }
            return v
        default:
            return 0
        }
    }

    /// A write to BAR `bar` at `offset`.
    public func barWrite(_ bar: Int, offset: UInt64, size: Int, value: UInt64) {
        switch bar {
        case 0:
            perform { s, fx in registerWrite(&s, &fx, offset: offset, size: size, value: value) }
        case 1 where configuration.personality == .doorbell:
            perform { s, fx in msixWrite(&s, &fx, offset: offset, size: size, value: value) }
        case 2:
            guard offset < configuration.sharedMemorySize, UInt64(size) <= configuration.sharedMemorySize - offset else { return }
            withUnsafeBytes(of: value) { _ = sharedMemory.write(offset: Int(offset), from: UnsafeRawBufferPointer(rebasing: $0[0..<min(size, 8)])) }
        default:
            break
        }
    }

    public func readRegister(_ offset: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: barRead(0, offset: offset, size: 4)) }
    public func writeRegister(_ offset: UInt64, _ value: UInt32) { barWrite(0, offset: offset, size: 4, value: UInt64(value)) }

    private func registerWrite(_ s: inout State, _ fx: inout [V1Effect], offset: UInt64, size: Int, value: UInt64) {
        guard size == 4, offset % 4 == 0, offset < UInt64(registers.size) else {
            record(&s, "V1-REG-ACC-1", "register write of \(size) byte(s) at 0x\(String(offset, radix: 16)): only aligned 32-bit accesses are valid; write dropped",
                   Access(space: .bar(0), offset: offset, size: size, isWrite: true, value: value))
            return
        }
        var hooks: [RegisterHook] = []
        registers.write(offset: Int(offset), size: 4, value: value) { _, info in
            if let hook = info.hook { hooks.append(hook) }
        }
        for hook in hooks {
            switch hook {
            case .intrMask, .intrStatus:  // V1-REG-MASK-1, V1-REG-STAT-1: the INTx level follows
                updateINTx(&s, &fx)
            case .v1Doorbell:  // V1-REG-DB-1: peer in bits 31:16, vector in 15:0
                let v = UInt32(truncatingIfNeeded: value)
                fx.append(.ring(target: UInt16(v >> 16), vector: Int(v & 0xFFFF), value: value))
            case .ivPosition:
                break  // read-only (V1-REG-POS-1): the generic rule kept it
            case .privilegedControl, .msixControl, .vectorControl, .peerID, .maxPeers, .interruptControl, .doorbell, .state:
                break  // v2 hooks: HookRules keeps them out of v1-bar0.json
            }
        }
    }

    private func msixRead(_ s: inout State, offset: UInt64, size: Int) -> UInt64 {
        guard size == 4 || size == 8, offset % UInt64(size) == 0 else { return 0 }
        let tableBytes = UInt64(s.pending.count * MSIXTableEntry.size)
        if offset + UInt64(size) <= tableBytes { return msixTable.read(offset: Int(offset), size: size) }
        let pba = UInt64(V1Limits.pbaOffset)
        guard offset >= pba else { return 0 }
        var v: UInt64 = 0
        for bit in 0..<(size * 8) {
            let vec = Int(offset - pba) * 8 + bit
            if vec < s.pending.count, s.pending[vec] { v |= 1 << UInt64(bit) }
        }
        return v
    }

    private func msixWrite(_ s: inout State, _ fx: inout [V1Effect], offset: UInt64, size: Int, value: UInt64) {
        guard size == 4 || size == 8, offset % UInt64(size) == 0 else { return }
        let tableBytes = UInt64(s.pending.count * MSIXTableEntry.size)
        if offset + UInt64(size) <= tableBytes {
            msixTable.write(offset: Int(offset), size: size, value: value) { _, _ in }
            flushPending(&s, &fx)
        } else if offset >= UInt64(V1Limits.pbaOffset) && offset < V1Limits.msixBARSize {
            record(&s, "V1-MSIX-PBA-1", "write to the read-only Pending Bit Array ignored",
                   Access(space: .bar(1), offset: offset, size: size, isWrite: true, value: value), kind: .ineffective)
        }
    }

    // MARK: events

    /// An event on the device's own eventfd for `vector` (V1-IRQ-MSIX-1 … V1-IRQ-INTX-1).
    public func receiveEvent(vector: Int) {
        perform { s, fx in
            switch configuration.personality {
            case .plain:
                break
            case .legacyINTx:  // V1-IRQ-INTX-1: IntrStatus becomes 1
                registers.setRaw(offset: intrStatusOffset, size: 4, value: 1)
                updateINTx(&s, &fx)
            case .doorbell:
                guard vector >= 0, vector < s.pending.count, msixControl.contains(.enable) else { return }  // V1-IRQ-MSIX-3
                if msixControl.contains(.functionMask) || vectorMasked(vector) {
                    s.pending[vector] = true  // V1-IRQ-MSIX-2
                } else if command.contains(.busMaster) {  // V1-CFG-CMD-1
                    fx.append(message(vector))
                }
            }
        }
    }

    /// Device reset (V1-REG-RST-1): registers, MSI-X and config space to their reset values;
    /// the ID, the eventfds and the shared memory stay.
    public func reset() {
        perform { s, fx in
            let id = registers.raw(offset: ivPositionOffset, size: 4)
            config.reset()
            registers.reset()
            registers.setRaw(offset: ivPositionOffset, size: 4, value: id)
            msixTable.reset()
            for i in s.pending.indices { s.pending[i] = false }
            windowTable.publish(currentWindows())
            updateINTx(&s, &fx)
        }
    }

    // MARK: internals

    private func updateINTx(_ s: inout State, _ fx: inout [V1Effect]) {
        guard configuration.personality == .legacyINTx else { return }
        let status = registers.raw(offset: intrStatusOffset, size: 4), mask = registers.raw(offset: intrMaskOffset, size: 4)
        let level = status & mask != 0 && !command.contains(.interruptDisable)
        if level != s.intxAsserted {
            s.intxAsserted = level
            fx.append(.intx(level))
        }
    }

    private func flushPending(_ s: inout State, _ fx: inout [V1Effect]) {
        guard msixControl.contains(.enable), !msixControl.contains(.functionMask) else { return }
        for v in msix.releasable(s.pending) {
            s.pending[v] = false
            if command.contains(.busMaster) { fx.append(message(v)) }
        }
    }

    private func message(_ v: Int) -> V1Effect {
        let m = msix.message(v)
        return .msix(vector: v, address: m.address, data: m.data)
    }

    private func record(_ s: inout State, _ requirement: String, _ message: String, _ access: Access?, kind: Finding.Kind = .violation) {
        guard configuration.checking else { return }
        let id = UInt32(truncatingIfNeeded: registers.raw(offset: ivPositionOffset, size: 4))
        s.findings.append(Finding(kind: kind, requirement: requirement, message: message, access: access, peer: id))
    }

    /// Runs `body` under the lock, then its effects without it.
    private func perform<T>(_ body: (inout State, inout [V1Effect]) -> T) -> T {
        var effects: [V1Effect] = []
        var link: (any V1PeerLink)?
        var sink: (any V1InterruptSink)?
        let result = state.withLock { s -> T in
            let r = body(&s, &effects)
            link = s.link
            sink = s.sink
            return r
        }
        for effect in effects {
            switch effect {
            case .ring(let target, let vector, let value):
                if link?.ring(target: target, vector: vector) != true {
                    state.withLock { s in
                        record(&s, "V1-REG-DB-2", "doorbell to peer \(target) vector \(vector): no eventfd for it; no effect",
                               Access(space: .bar(0), offset: registerOffsets.doorbell, size: 4, isWrite: true, value: value), kind: .ineffective)
                    }
                }
            case .msix(let vector, let address, let data):
                sink?.msixMessage(vector: vector, address: address, data: data)
            case .intx(let level):
                sink?.intxLevel(level)
            }
        }
        return result
    }
}

/// A v1 device's side effect, carried out after its lock is released.
enum V1Effect {
    case ring(target: UInt16, vector: Int, value: UInt64)
    case msix(vector: Int, address: UInt64, data: UInt32)
    case intx(Bool)
}
