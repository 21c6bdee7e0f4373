import IvshmemSpec

/// The mutable state of one device, guarded by the device's lock. Each method is one concern
/// of the spec: config hooks, the register region, the MSI-X table/PBA, delivery, reset.
struct DeviceState {
    var config: ConfigSpace
    var registers: RegisterBlock
    var msixTable: RegisterBlock
    var pending: [Bool]
    /// Bounded: a driver (or a peer) that provokes findings in a loop costs fixed memory.
    var findings = BoundedLog<Finding>(capacity: DeviceState.findingCapacity)
    static let findingCapacity = 10_000
    var stats = InterruptStatistics()
    let checking: Bool
    /// Where the hooked config fields sit, found by hook name in the tables (so that a spec
    /// change moving them moves the behaviour too).
    let privilegedControlOffset: Int?
    let msixControlOffset: Int?
    /// Offset of Vector Control within a 16-byte MSI-X table entry.
    let vectorControlOffset: Int

    init(layout: DeviceLayout, tables: SpecTables) throws {
        config = try ConfigSpace(layout: layout, tables: tables)
        let lookup = { (n: String) in layout.parameter(n) }
        guard let regSize = Int(exactly: try tables.bar0Size.resolve(field: "bar0.size", lookup)) else {
            throw SpecError.invalidValue(field: "bar0", key: "size", text: tables.bar0Size.description)
        }
        guard regSize == Int(layout.registerRegionSize) || layout.configuration.registerSpace == .io else {
            throw SpecError.invalidValue(field: "bar0", key: "size", text: String(regSize))
        }
        registers = try RegisterBlock(size: Int(layout.registerRegionSize), fields: tables.bar0.map { try ResolvedField($0, lookup: lookup) })
        for f in registers.fields where f.hook != nil && !["interruptControl", "doorbell", "state"].contains(f.hook!) {
            throw SpecError.unknownHook(field: f.name, name: f.hook!)
        }
        interruptControlOffset = registers.field(hook: "interruptControl")?.offset
        stateOffset = registers.field(hook: "state")?.offset
        var entries: [ResolvedField] = []
        let vectorCount = layout.usesMSIX ? layout.configuration.vectors : 0
        for v in 0..<vectorCount {
            for f in tables.msixTableEntry {
                var r = try ResolvedField(f, base: v * 16, lookup: lookup)
                r.name = "\(f.name) [\(v)]"
                entries.append(r)
            }
        }
        msixTable = try RegisterBlock(size: layout.msixTableBytes, fields: entries)
        pending = Array(repeating: false, count: vectorCount)
        checking = layout.configuration.checking
        privilegedControlOffset = config.block.field(hook: "privilegedControl")?.offset
        msixControlOffset = config.block.field(hook: "msixControl")?.offset
        vectorControlOffset = tables.msixTableEntry.first { $0.hook == "vectorControl" }?.offset ?? 12
        for f in config.block.fields where f.hook != nil && !["privilegedControl", "msixControl"].contains(f.hook!) {
            throw SpecError.unknownHook(field: f.name, name: f.hook!)
        }
    }

    /// The address software programmed into `bar` (type bits stripped; 64-bit BARs joined).
    func programmedBase(_ bar: BARInfo) -> UInt64 {
        let lo = config.block.raw(offset: 0x10 + 4 * bar.index, size: 4)
        switch bar.kind {
        case .io: return lo & ~0x3
        case .memory32: return lo & ~0xF
        case .memory64Prefetchable: return (lo & ~0xF) | config.block.raw(offset: 0x14 + 4 * bar.index, size: 4) << 32
        }
    }

    /// Recomputes `windows` from Command and the BARs.
    mutating func refreshWindows(layout: DeviceLayout) {
        var w: [DecodeWindow] = []
        if !layout.profile.sharedMemoryInBAR2 {
            w.append(DecodeWindow(bar: -1, base: layout.configuration.baseAddress, size: layout.geometry.totalSize, isIO: false))
        }
        for bar in layout.bars {
            let enabled = bar.kind == .io ? command & 0x1 != 0 : command & 0x2 != 0
            guard enabled else { continue }
            let base = programmedBase(bar)
            if base != 0 { w.append(DecodeWindow(bar: bar.index, base: base, size: bar.size, isIO: bar.kind == .io)) }
        }
        windows = w
    }

    // MARK: derived register values

    var command: UInt16 { UInt16(truncatingIfNeeded: config.block.raw(offset: 0x04, size: 2)) }
    var oneShot: Bool { privilegedControlOffset.map { config.block.raw(offset: $0, size: 1) & 1 != 0 } ?? false }
    var msixControl: UInt16 { msixControlOffset.map { UInt16(truncatingIfNeeded: config.block.raw(offset: $0, size: 2)) } ?? 0 }
    var msixEnabled: Bool { msixControl & 0x8000 != 0 }
    var msixFunctionMasked: Bool { msixControl & 0x4000 != 0 }
    func vectorMasked(_ v: Int) -> Bool { msixTable.raw(offset: v * 16 + vectorControlOffset, size: 4) & 1 != 0 }
    /// Offsets of the hooked BAR0 registers, resolved once from the tables (hot path).
    /// The ranges the device claims, recomputed whenever config space changes, so that
    /// address decode costs one lock, not one per BAR.
    var windows: [DecodeWindow] = []
    /// Removed from its link: state writes no longer reach the shared state table.
    var detached = false
    let interruptControlOffset: Int?
    let stateOffset: Int?
    var interruptControl: UInt64 { interruptControlOffset.map { registers.raw(offset: $0, size: 4) } ?? 0 }

    mutating func record(_ requirement: String, _ message: String, _ access: Access?, peer: UInt32, kind: Finding.Kind = .violation) {
        guard checking else { return }
        findings.append(Finding(kind: kind, requirement: requirement, message: message, access: access, peer: peer))
    }

    // MARK: config hooks

    mutating func configHook(_ w: FieldWrite, layout: DeviceLayout, access: Access, peer: UInt32, effects: inout [Effect]) {
        switch w.field.hook {
        case "msixControl":
            let enabling = w.new & 0x8000 != 0 && w.old & 0x8000 == 0
            if enabling && command & 0x4 == 0 {
                record("CFG-CMD-9", "MSI-X enabled while Bus Master is off: no message can be sent", access, peer: peer, kind: .ineffective)
            }
            flushPending(layout: layout, effects: &effects)
        case "privilegedControl", nil:
            break
        default:
            break
        }
    }

    // MARK: register region (BAR0)

    func isValidRegisterAccess(offset: UInt64, size: Int) -> Bool { size == 4 && offset % 4 == 0 }

    mutating func registerRead(offset: UInt64, size: Int, layout: DeviceLayout, peer: UInt32) -> UInt64 {
        guard isValidRegisterAccess(offset: offset, size: size), offset < UInt64(registers.size) else {
            record("REG-ACC-3", "register read of \(size) byte(s) at 0x\(String(offset, radix: 16)): only aligned 32-bit accesses are valid; read returns 0",
                   Access(space: .bar(0), offset: offset, size: size, isWrite: false), peer: peer)
            return 0
        }
        return registers.read(offset: Int(offset), size: 4)
    }

    mutating func registerWrite(offset: UInt64, size: Int, value: UInt64, layout: DeviceLayout, memory: SharedMemory, peer: UInt32, effects: inout [Effect]) {
        let access = Access(space: .bar(0), offset: offset, size: size, isWrite: true, value: value)
        guard isValidRegisterAccess(offset: offset, size: size), offset < UInt64(registers.size) else {
            record("REG-ACC-3", "register write of \(size) byte(s) at 0x\(String(offset, radix: 16)): only aligned 32-bit accesses are valid; write dropped", access, peer: peer)
            return
        }
        let target = Int(offset & layout.profile.bar0WriteAliasMask)
        guard registers.field(at: target) != nil else { return }  // REG-ACC-2: unbacked, ignored
        for w in registers.write(offset: target, size: 4, value: value) {
            switch w.field.hook {
            case "doorbell":
                let v = UInt32(truncatingIfNeeded: value)
                let vector = v & layout.profile.doorbellVectorMask
                let dest = v >> 16
                effects.append(.ring(target: dest, vector: vector, access: access))
            case "state":
                let new = UInt32(truncatingIfNeeded: w.new)
                if !detached && !memory.storeState(peer: peer, new) {
                    record("SHM-SIZE-1", "the State Table is gone (the shared memory shrank under the device): State 0x\(String(new, radix: 16)) not published", access, peer: peer, kind: .environment)
                }
                if w.old != w.new { effects.append(.broadcastState) }
            default:
                break
            }
        }
    }

    // MARK: MSI-X table and PBA (BAR1)

    mutating func msixRead(offset: UInt64, size: Int, layout: DeviceLayout, peer: UInt32) -> UInt64 {
        let access = Access(space: .bar(1), offset: offset, size: size, isWrite: false)
        guard (size == 4 || size == 8), offset % UInt64(size) == 0 else {
            record("MSIX-TBL-4", "MSI-X read of \(size) bytes at 0x\(String(offset, radix: 16)): must be an aligned dword or qword", access, peer: peer)
            return 0
        }
        if offset <= UInt64(layout.msixTableBytes), UInt64(size) <= UInt64(layout.msixTableBytes) - offset {
            return msixTable.read(offset: Int(offset), size: size)
        }
        let pba = UInt64(layout.msixPBAOffset)
        if offset >= pba, offset - pba <= UInt64(layout.msixPBABytes), UInt64(size) <= UInt64(layout.msixPBABytes) - (offset - pba) {
            guard layout.profile.maskedEvents == .latch else {  // MSIX-PBA-1: there are no pending bits to rely on
                record("MSIX-PBA-1", "PBA read: this device has no pending bits (always 0); derive event state from shared memory", access, peer: peer, kind: .ineffective)
                return 0
            }
            var v: UInt64 = 0
            for bit in 0..<(size * 8) {
                let vec = Int(offset - pba) * 8 + bit
                if vec < pending.count, pending[vec] { v |= 1 << UInt64(bit) }
            }
            return v
        }
        record("MSIX-TBL-5", "MSI-X read at 0x\(String(offset, radix: 16)) is outside the table (\(layout.msixTableBytes) bytes) and the PBA: reads 0", access, peer: peer, kind: .ineffective)
        return 0
    }

    mutating func msixWrite(offset: UInt64, size: Int, value: UInt64, layout: DeviceLayout, peer: UInt32, effects: inout [Effect]) {
        let access = Access(space: .bar(1), offset: offset, size: size, isWrite: true, value: value)
        guard (size == 4 || size == 8), offset % UInt64(size) == 0 else {
            record("MSIX-TBL-4", "MSI-X write of \(size) bytes at 0x\(String(offset, radix: 16)): must be an aligned dword or qword", access, peer: peer)
            return
        }
        if offset <= UInt64(layout.msixTableBytes), UInt64(size) <= UInt64(layout.msixTableBytes) - offset {
            _ = msixTable.write(offset: Int(offset), size: size, value: value)
            flushPending(layout: layout, effects: &effects)
            return
        }
        let pba = UInt64(layout.msixPBAOffset)
        if offset >= pba, offset - pba < UInt64(layout.msixPBABytes) {
            record("MSIX-PBA-2", "write to the read-only Pending Bit Array ignored", access, peer: peer, kind: .ineffective)
            return
        }
        record("MSIX-TBL-5", "MSI-X write at 0x\(String(offset, radix: 16)) is outside the table (\(layout.msixTableBytes) bytes) and the PBA: ignored", access, peer: peer, kind: .ineffective)
    }

    /// Sends latched messages whose vector is now unmasked (qemu-rfc profile only has any).
    mutating func flushPending(layout: DeviceLayout, effects: inout [Effect]) {
        guard msixEnabled, !msixFunctionMasked else { return }
        for v in pending.indices where pending[v] && !vectorMasked(v) {
            pending[v] = false
            if command & 0x4 != 0 {
                stats.delivered += 1
                effects.append(message(v))
            } else {
                stats.droppedNoBusMaster += 1
            }
        }
    }

    func message(_ v: Int) -> Effect {
        let lo = msixTable.raw(offset: v * 16, size: 4)
        let hi = msixTable.raw(offset: v * 16 + 4, size: 4)
        let data = UInt32(truncatingIfNeeded: msixTable.raw(offset: v * 16 + 8, size: 4))
        return .msix(vector: v, address: lo | hi << 32, data: data)
    }

    // MARK: delivery

    mutating func deliver(vector: Int, layout: DeviceLayout, peer: UInt32, effects: inout [Effect]) {
        stats.received += 1
        guard vector >= 0, vector < layout.configuration.vectors else { return }
        guard interruptControl & 1 != 0 else {  // IRQ-EN-1
            stats.droppedDisabled += 1
            return
        }
        switch layout.configuration.interrupts {
        case .msix:
            if !msixEnabled {
                stats.droppedMasked += 1
            } else if msixFunctionMasked || vectorMasked(vector) {
                if layout.profile.maskedEvents == .latch {
                    pending[vector] = true
                    stats.latched += 1
                } else {
                    stats.droppedMasked += 1
                }
            } else if command & 0x4 == 0 {  // no bus mastering: the message write never happens
                stats.droppedNoBusMaster += 1
                record("CFG-CMD-9", "interrupt on vector \(vector) lost: MSI-X is enabled but Bus Master is off", nil, peer: peer, kind: .ineffective)
            } else {
                stats.delivered += 1
                effects.append(message(vector))
            }
        case .intx(let pin):
            if command & 0x400 != 0 {  // IRQ-INTX-1: INTx disable
                stats.droppedMasked += 1
            } else {
                stats.delivered += 1
                effects.append(.intx(pin: pin))
            }
        }
        if oneShot, let ic = interruptControlOffset {  // IRQ-ONESHOT-1
            registers.setRaw(offset: ic, size: 4, value: registers.raw(offset: ic, size: 4) & ~1)
        }
    }

    // MARK: reset

    mutating func reset(layout: DeviceLayout, memory: SharedMemory, peer: UInt32, effects: inout [Effect]) {
        let keepOneShot = layout.profile.oneShotSurvivesReset ? oneShot : false
        let oldState = stateOffset.map { registers.raw(offset: $0, size: 4) } ?? 0
        config.block.reset()
        if keepOneShot, let pc = privilegedControlOffset { config.block.setRaw(offset: pc, size: 1, value: 1) }
        registers.reset()
        msixTable.reset()
        for i in pending.indices { pending[i] = false }
        refreshWindows(layout: layout)
        if !detached { memory.storeState(peer: peer, 0) }
        if oldState != 0 { effects.append(.broadcastState) }
    }
}
