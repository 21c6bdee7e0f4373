import IvshmemSpec
import IvshmemSync
import Synchronization

/// The mutable state of one device, guarded by the device's lock. Each method is one concern
/// of the spec: config hooks, the register region, the MSI-X table/PBA, delivery, reset.
///
/// The register blocks are shared with lock-free readers (``RegisterBlock``); every mutation of
/// them happens here, under the lock.
struct DeviceState {
    let config: ConfigSpace
    let registers: RegisterBlock
    let msixTable: RegisterBlock
    var pending: [Bool]
    /// Bounded: a driver (or a peer) that provokes findings in a loop costs fixed memory.
    var findings = BoundedLog<Finding>(capacity: DeviceState.findingCapacity)
    static let findingCapacity = 10_000
    var stats = InterruptStatistics()
    let checking: Bool
    /// Where the hooked fields sit, found by hook in the tables (so that a spec change moving
    /// them moves the behaviour too). nil: the capability is absent in this configuration.
    let privilegedControlOffset: Int?
    let msixControlOffset: Int?
    /// Offset of Vector Control within a 16-byte MSI-X table entry.
    let vectorControlOffset: Int
    let interruptControlOffset: Int
    let stateOffset: Int

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
        var entries: [ResolvedField] = []
        let vectorCount = layout.usesMSIX ? layout.configuration.vectors : 0
        for v in 0..<vectorCount {
            for f in tables.msixTableEntry {
                var r = try ResolvedField(f, base: v * MSIXTableEntry.size, lookup: lookup)
                r.name = "\(f.name) [\(v)]"
                entries.append(r)
            }
        }
        msixTable = try RegisterBlock(size: layout.msixTableBytes, fields: entries)
        pending = Array(repeating: false, count: vectorCount)
        checking = layout.configuration.checking
        privilegedControlOffset = config.block.map.offset(of: .privilegedControl)
        msixControlOffset = config.block.map.offset(of: .msixControl)
        // The tables were validated at load (HookRules); tables built in memory may still lack
        // a hook: say which, never fall back to a default.
        func required(_ h: RegisterHook, _ offset: Int?, _ part: String) throws -> Int {
            guard let offset else { throw SpecError.missingHook(hook: h.rawValue, part: part) }
            return offset
        }
        vectorControlOffset = try required(.vectorControl, tables.msixTableEntry.first { $0.hook == .vectorControl }?.offset, "the MSI-X table entry")
        interruptControlOffset = try required(.interruptControl, registers.map.offset(of: .interruptControl), "the register region (BAR0)")
        stateOffset = try required(.state, registers.map.offset(of: .state), "the register region (BAR0)")
        _ = try required(.doorbell, registers.map.offset(of: .doorbell), "the register region (BAR0)")
    }

    /// The address software programmed into `bar` (type bits stripped; 64-bit BARs joined).
    func programmedBase(_ bar: BARInfo) -> UInt64 {
        config.block.programmedBAR(bar.index, io: bar.kind == .io, is64: bar.kind == .memory64Prefetchable)
    }

    /// The windows Command and the BARs decode now.
    func currentWindows(layout: DeviceLayout) -> [DecodeWindow] {
        var w: [DecodeWindow] = []
        if !layout.profile.sharedMemoryInBAR2 {
            w.append(DecodeWindow(bar: -1, base: layout.configuration.baseAddress, size: layout.geometry.totalSize, isIO: false))
        }
        for bar in layout.bars {
            let enabled = command.contains(bar.kind == .io ? .ioSpace : .memorySpace)
            guard enabled else { continue }
            let base = programmedBase(bar)
            if base != 0 { w.append(DecodeWindow(bar: bar.index, base: base, size: bar.size, isIO: bar.kind == .io)) }
        }
        return w
    }

    // MARK: derived register values

    var command: PCICommand { PCICommand(rawValue: UInt16(truncatingIfNeeded: config.block.raw(offset: PCIConfig.command, size: 2))) }
    var oneShot: Bool { privilegedControlOffset.map { config.block.raw(offset: $0, size: 1) & 1 != 0 } ?? false }
    var msixControl: MSIXControl {
        MSIXControl(rawValue: msixControlOffset.map { UInt16(truncatingIfNeeded: config.block.raw(offset: $0, size: 2)) } ?? 0)
    }
    var msixEnabled: Bool { msixControl.contains(.enable) }
    var msixFunctionMasked: Bool { msixControl.contains(.functionMask) }
    var msix: MSIXTable { MSIXTable(block: msixTable, vectorControlOffset: vectorControlOffset) }
    func vectorMasked(_ v: Int) -> Bool { msix.masked(v) }
    var interruptControl: UInt32 { UInt32(truncatingIfNeeded: registers.raw(offset: interruptControlOffset, size: 4)) }

    mutating func record(_ requirement: String, _ message: @autoclosure () -> String, _ access: Access?, peer: UInt32, kind: Finding.Kind = .violation) {
        guard checking else { return }
        findings.append(Finding(kind: kind, requirement: requirement, message: message(), access: access, peer: peer))
    }

    // MARK: config space

    /// What a config write did that needs the lock: CFG-ACC-3 findings, the MSI-X Control hook,
    /// and whether Command or a BAR changed (the decode windows must be republished, which the
    /// caller does). The write itself already happened (``RegisterBlock/write``).
    mutating func configWritten(_ touched: TouchedFields, offset: Int, size: Int, value: UInt32, layout: DeviceLayout, peer: UInt32, effects: inout Effects) -> Bool {
        let access = Access(space: .config, offset: UInt64(offset), size: size, isWrite: true, value: UInt64(value))
        var decodeChanged = false
        let map = config.block.map
        touched.forEach { w in
            let field = map.info[w.index]
            // CFG-ACC-3: a read-only register keeps its value. Trying to change one is an
            // ineffective access, except in BARs, which firmware probes with all-ones
            // whether they are implemented or not.
            if w.ignoredBits != 0 && field.isReadOnly && !Self.isBAR(field.offset) {
                record("CFG-ACC-3", "write to read-only '\(map.fields[w.index].name)' ignored (tried to change bits 0x\(String(w.ignoredBits, radix: 16)))", access, peer: peer, kind: .ineffective)
            }
            if w.old != w.new && Self.affectsDecode(field.offset) { decodeChanged = true }
            if let hook = field.hook { configHook(hook, w, layout: layout, access: access, peer: peer, effects: &effects) }
        }
        return decodeChanged
    }

    @inline(__always) static func isBAR(_ offset: Int) -> Bool { offset >= PCIConfig.bar0 && offset < PCIConfig.barsEnd }
    @inline(__always) static func affectsDecode(_ offset: Int) -> Bool { offset == PCIConfig.command || isBAR(offset) }

    /// Whether a write that touched `w` must take the device's lock: a finding to record, a
    /// decode change to publish, or a hook with behaviour on change (MSI-X Control).
    @inline(__always)
    static func configWriteNeedsLock(_ w: FieldWrite, _ field: RegisterMap.FieldInfo) -> Bool {
        if w.ignoredBits != 0 && field.isReadOnly && !isBAR(field.offset) { return true }
        guard w.old != w.new else { return false }
        return affectsDecode(field.offset) || field.hook == .msixControl
    }

    /// The behaviour of hooked config fields. Exhaustive: a new hook must say what it does here.
    mutating func configHook(_ hook: RegisterHook, _ w: FieldWrite, layout: DeviceLayout, access: Access, peer: UInt32, effects: inout Effects) {
        switch hook {
        case .msixControl:
            let enabling = MSIXControl(rawValue: UInt16(truncatingIfNeeded: w.new)).contains(.enable)
                && !MSIXControl(rawValue: UInt16(truncatingIfNeeded: w.old)).contains(.enable)
            if enabling && !command.contains(.busMaster) {
                record("CFG-CMD-9", "MSI-X enabled while Bus Master is off: no message can be sent", access, peer: peer, kind: .ineffective)
            }
            flushPending(layout: layout, effects: &effects)
        case .privilegedControl:
            break  // read where it matters: at delivery (IRQ-ONESHOT-1) and reset (DEV-RST-*)
        case .vectorControl, .peerID, .maxPeers, .interruptControl, .doorbell, .state:
            break  // not config-space hooks (HookRules keeps them out of config tables)
        case .intrMask, .intrStatus, .ivPosition, .v1Doorbell:
            break  // the v1 device's (IvshmemV1Device); HookRules keeps them out of v2 tables
        }
    }

    // MARK: register region (BAR0)

    @inline(__always)
    static func isValidRegisterAccess(offset: UInt64, size: Int) -> Bool { size == 4 && offset % 4 == 0 }

    mutating func recordInvalidRegisterAccess(offset: UInt64, size: Int, value: UInt64?, peer: UInt32) {
        let verb = value == nil ? "read" : "write"
        let outcome = value == nil ? "read returns 0" : "write dropped"
        record("REG-ACC-3", "register \(verb) of \(size) byte(s) at 0x\(String(offset, radix: 16)): only aligned 32-bit accesses are valid; \(outcome)",
               Access(space: .bar(0), offset: offset, size: size, isWrite: value != nil, value: value), peer: peer)
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

    mutating func msixWrite(offset: UInt64, size: Int, value: UInt64, layout: DeviceLayout, peer: UInt32, effects: inout Effects) {
        let access = Access(space: .bar(1), offset: offset, size: size, isWrite: true, value: value)
        guard (size == 4 || size == 8), offset % UInt64(size) == 0 else {
            record("MSIX-TBL-4", "MSI-X write of \(size) bytes at 0x\(String(offset, radix: 16)): must be an aligned dword or qword", access, peer: peer)
            return
        }
        if offset <= UInt64(layout.msixTableBytes), UInt64(size) <= UInt64(layout.msixTableBytes) - offset {
            // Vector Control (the only hook here) is read at delivery; unmasking may release a
            // latched message.
            msixTable.write(offset: Int(offset), size: size, value: value) { _, _ in }
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
    mutating func flushPending(layout: DeviceLayout, effects: inout Effects) {
        guard msixEnabled, !msixFunctionMasked else { return }
        for v in msix.releasable(pending) {
            pending[v] = false
            if command.contains(.busMaster) {
                stats.delivered += 1
                effects.append(message(v))
            } else {
                stats.droppedNoBusMaster += 1
            }
        }
    }

    func message(_ v: Int) -> Effect {
        let m = msix.message(v)
        return .msix(vector: v, address: m.address, data: m.data)
    }

    // MARK: delivery

    mutating func deliver(vector: Int, layout: DeviceLayout, peer: UInt32, effects: inout Effects) {
        stats.received += 1
        guard vector >= 0, vector < layout.configuration.vectors else { return }
        guard interruptControl & InterruptControlBits.enable != 0 else {  // IRQ-EN-1
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
            } else if !command.contains(.busMaster) {  // no bus mastering: the message write never happens
                stats.droppedNoBusMaster += 1
                record("CFG-CMD-9", "interrupt on vector \(vector) lost: MSI-X is enabled but Bus Master is off", nil, peer: peer, kind: .ineffective)
            } else {
                stats.delivered += 1
                effects.append(message(vector))
            }
        case .intx(let pin):
            if command.contains(.interruptDisable) {  // IRQ-INTX-1: INTx disable
                stats.droppedMasked += 1
            } else {
                stats.delivered += 1
                effects.append(.intx(pin: pin))
            }
        }
        if oneShot {  // IRQ-ONESHOT-1: clears only the enable bit, atomically (drivers write it without the lock)
            registers.clearBits(offset: interruptControlOffset, mask: InterruptControlBits.enable)
        }
    }

    // MARK: reset

    mutating func reset(layout: DeviceLayout, memory: SharedMemory, detached: borrowing Atomic<Bool>, peer: UInt32, effects: inout Effects) {
        let keepOneShot = layout.profile.oneShotSurvivesReset ? oneShot : false
        let oldState = registers.raw(offset: stateOffset, size: 4)
        config.block.reset()
        if keepOneShot, let pc = privilegedControlOffset { config.block.setRaw(offset: pc, size: 1, value: 1) }
        registers.reset()
        msixTable.reset()
        for i in pending.indices { pending[i] = false }
        if !detached.load(ordering: .acquiring) { memory.storeState(peer: peer, 0) }
        if oldState != 0 { effects.append(.broadcastState) }
    }
}

/// A side effect queued under the device lock and carried out after it is released.
enum Effect {
    case ring(target: UInt32, vector: UInt32, offset: UInt64, value: UInt64)
    case broadcastState
    case msix(vector: Int, address: UInt64, data: UInt32)
    case intx(pin: UInt8)
}

/// The fields one config write touched (at most four: accesses are at most 4 bytes), kept
/// inline so that the lock-free write path allocates nothing.
struct TouchedFields {
    private var a: FieldWrite?
    private var b: FieldWrite?
    private var c: FieldWrite?
    private var d: FieldWrite?

    mutating func append(_ w: FieldWrite) {
        if a == nil { a = w } else if b == nil { b = w } else if c == nil { c = w } else { d = w }
    }

    func forEach(_ body: (FieldWrite) -> Void) {
        if let a { body(a) }
        if let b { body(b) }
        if let c { body(c) }
        if let d { body(d) }
    }
}

/// The effects of one access: almost always none or one, kept inline so that an access
/// allocates nothing; more (a flush of latched messages) spill into an array.
struct Effects {
    private(set) var first: Effect?
    private(set) var rest: [Effect] = []
    var isEmpty: Bool { first == nil }

    mutating func append(_ e: Effect) {
        if first == nil { first = e } else { rest.append(e) }
    }

    func forEach(_ body: (Effect) -> Void) {
        guard let first else { return }
        body(first)
        for e in rest { body(e) }
    }
}
