import CIvshmemShim
import IvshmemSpec
import IvshmemSync
import Synchronization

/// One ivshmem v2 PCI function: config space, BAR0 registers, MSI-X table and PBA, and the
/// driver's view of the shared memory, all built from the spec tables.
///
/// Thread safety: every entry point may be called from any thread. Side effects on other
/// objects (ringing peers, raising interrupts) run after the device's lock is released, so a
/// sink or a link may call back into any device.
public final class IvshmemDevice: @unchecked Sendable {
    public let layout: DeviceLayout
    public let sharedMemory: SharedMemory
    public let sharedMemoryLayout: SharedMemoryLayout
    public var configuration: DeviceConfiguration { layout.configuration }
    public var profile: Profile { layout.profile }
    public var id: UInt32 { layout.configuration.id }

    private let state: Locked<DeviceState>
    /// The link and the interrupt sink, as an immutable pair published through an atomic
    /// pointer: every access with an effect reads it without a lock. Replaced pairs are kept
    /// until the device goes away (wiring changes a few times per device), so a reader never
    /// sees a freed one.
    private let wiringSlot = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1)
    private let wirings = Locked<[Wiring]>([])
    private final class Wiring: @unchecked Sendable {
        // Never reassigned after init (weak: a link or sink that goes away reads nil).
        weak var link: (any PeerLink)?
        weak var sink: (any InterruptSink)?
        init(link: (any PeerLink)?, sink: (any InterruptSink)?) {
            self.link = link
            self.sink = sink
        }
    }
    /// Removed from its link: state writes no longer reach the shared state table (SHM-ST-5).
    private let detached = Atomic<Bool>(false)
    private let findingHandler: Locked<(@Sendable (Finding) -> Void)?> = Locked(nil)
    /// Shared with `state` for lock-free reads (see ``RegisterBlock``).
    private let configBlock: RegisterBlock
    private let registerBlock: RegisterBlock
    /// The windows this device decodes, republished under the lock when Command or a BAR
    /// changes, read by the platform without a lock.
    private let windowTable = DecodeWindowTable()
    /// Role of BAR n (n = 0…5), nil when not implemented: one array index per access.
    /// Each BAR's role, 4 bits per BAR index (``BARRoleCode``): a word in the object itself, so
    /// the access path dispatches without reaching into an array.
    private let barRoles: BARRoleCode
    /// Where this device's tables put the BAR0 registers.
    public let registerOffsets: BAR0Registers

    /// Creates a device over `sharedMemory`, linked to the other peers by `link`.
    /// Throws `DeviceConfigurationError` (naming the parameter) or `SpecError`.
    public init(configuration: DeviceConfiguration, sharedMemory: SharedMemory, link: (any PeerLink)?, tables: SpecTables = .builtIn) throws {
        let profile = try Profile.named(configuration.profileName, in: tables)
        let layout = try DeviceLayout(configuration: configuration, profile: profile)
        guard UInt64(sharedMemory.size) >= layout.geometry.totalSize else {
            throw DeviceConfigurationError(
                parameter: "sharedMemory",
                message: "shared memory of \(sharedMemory.size) bytes is smaller than the layout (\(layout.geometry))")
        }
        self.layout = layout
        self.sharedMemory = sharedMemory
        sharedMemoryLayout = try SharedMemoryLayout(geometry: layout.geometry, viewer: configuration.id, profile: profile, tables: tables)
        let initial = try DeviceState(layout: layout, tables: tables)
        wiringSlot.initialize(to: nil)
        configBlock = initial.config.block
        registerBlock = initial.registers
        let map = initial.registers.map
        func offset(_ h: RegisterHook) throws -> UInt64 {
            guard let o = map.offset(of: h) else { throw SpecError.missingHook(hook: h.rawValue, part: "the register region (BAR0)") }
            return UInt64(o)
        }
        registerOffsets = BAR0Registers(id: try offset(.peerID), maxPeers: try offset(.maxPeers), interruptControl: try offset(.interruptControl),
                                        doorbell: try offset(.doorbell), state: try offset(.state))
        barRoles = BARRoleCode(layout.bars)
        windowTable.publish(initial.currentWindows(layout: layout))
        state = Locked(initial)
        rewire { _ in Wiring(link: link, sink: nil) }
    }

    deinit { wiringSlot.deallocate() }

    @inline(__always)
    private func withWiring<R>(_ body: (Wiring) -> R) -> R {
        Unmanaged<Wiring>.fromOpaque(ivs_load_ptr_acquire(wiringSlot)!)._withUnsafeGuaranteedRef(body)
    }

    private func rewire(_ change: (Wiring?) -> Wiring) {
        wirings.withLock { list in
            let next = change(list.last)
            list.append(next)
            ivs_store_ptr_release(wiringSlot, Unmanaged.passUnretained(next).toOpaque())
        }
    }

    // MARK: wiring

    /// How this device reaches the other peers. Held weakly.
    public var link: (any PeerLink)? {
        get { withWiring { $0.link } }
        set { rewire { Wiring(link: newValue, sink: $0?.sink) } }
    }
    /// Receives MSI-X messages and INTx edges. Held weakly.
    public var interruptSink: (any InterruptSink)? {
        get { withWiring { $0.sink } }
        set { rewire { Wiring(link: $0?.link, sink: newValue) } }
    }

    /// Takes the device off its link for good (an in-process fabric removed it): its doorbells
    /// and state writes reach nobody and no longer touch the state table (SHM-ST-5).
    public func detach() {
        link = nil
        detached.store(true, ordering: .releasing)
    }
    /// Called for each finding as it is recorded (e.g. to stop on the first one).
    public func onFinding(_ handler: (@Sendable (Finding) -> Void)?) { findingHandler.withLock { $0 = handler } }

    /// The findings kept (the newest ``DeviceState/findingCapacity``), oldest first.
    public var findings: [Finding] { state.withLock { $0.findings.elements } }
    /// Every finding ever recorded, kept or not: a position for ``findings(since:)``.
    public var findingCount: Int { state.withLock { $0.findings.total } }
    /// Findings recorded at positions `position` and later (see ``findingCount``).
    public func findings(since position: Int) -> [Finding] { state.withLock { $0.findings.elements(since: position) } }
    /// Findings dropped to keep memory bounded.
    public var droppedFindings: Int { state.withLock { $0.findings.dropped } }
    public func clearFindings() { state.withLock { $0.findings.removeAll() } }

    /// Records something a peer or the server did to this device (``Finding/Kind/environment``):
    /// the link calls it, e.g. for a state-change signal it had to drop (WIRE-CLI-21).
    public func recordEnvironmentFinding(_ requirement: String, _ message: String) {
        perform { s, _ in s.record(requirement, message, nil, peer: id, kind: .environment) }
    }
    public var statistics: InterruptStatistics { state.withLock { $0.stats } }

    // MARK: config space

    /// A config-space read of 1, 2 or 4 naturally aligned bytes (CFG-ACC-1), without a lock.
    /// Other accesses read 0 and are recorded (CFG-ACC-2).
    @inline(__always)
    public func configRead(offset: Int, size: Int) -> UInt32 {
        guard Self.validConfigAccess(offset: offset, size: size) else {
            perform { s, _ in
                s.record("CFG-ACC-2", "config read of \(size) bytes at 0x\(String(offset, radix: 16)) is not a naturally aligned 1/2/4-byte access inside 256 bytes",
                         Access(space: .config, offset: UInt64(max(offset, 0)), size: size, isWrite: false), peer: id)
            }
            return 0
        }
        return UInt32(truncatingIfNeeded: configBlock.read(offset: offset, size: size))
    }

    /// A config-space write through the generic rule; read-only bytes keep their value inside
    /// wider writes (CFG-ACC-3). Writing a read-only register is allowed and ignored, so it is
    /// not a violation (spec section 0: "Nothing else is a violation").
    ///
    /// The write is applied without a lock (``RegisterBlock/write``); only a write with
    /// something more to do — a finding, a Command or BAR change to publish, an MSI-X Control
    /// change — takes the device's lock afterwards.
    public func configWrite(offset: Int, size: Int, value: UInt32) {
        guard Self.validConfigAccess(offset: offset, size: size) else {
            perform { s, _ in
                s.record("CFG-ACC-2", "config write of \(size) bytes at 0x\(String(offset, radix: 16)) is not a naturally aligned 1/2/4-byte access inside 256 bytes",
                         Access(space: .config, offset: UInt64(max(offset, 0)), size: size, isWrite: true, value: UInt64(value)), peer: id)
            }
            return
        }
        var touched = TouchedFields()
        var needsLock = false
        configBlock.write(offset: offset, size: size, value: UInt64(value)) { w, field in
            touched.append(w)
            if DeviceState.configWriteNeedsLock(w, field) { needsLock = true }
        }
        guard needsLock else { return }
        perform { s, fx in
            // Decode windows change only when Command or a BAR actually changed; they are
            // computed from the registers as they are now, under the lock, so the last
            // publication is always the latest state.
            if s.configWritten(touched, offset: offset, size: size, value: value, layout: layout, peer: id, effects: &fx) {
                windowTable.publish(s.currentWindows(layout: layout))
            }
        }
    }

    @inline(__always)
    static func validConfigAccess(offset: Int, size: Int) -> Bool {
        (size == 1 || size == 2 || size == 4) && offset >= 0 && offset <= ConfigSpace.size - size && offset % size == 0
    }

    /// Tells the device which PCI device number (slot) it was plugged into. Profiles whose
    /// Interrupt Pin follows the slot strap it here: pin = (slot mod 4) + 1 (CFG-INT-2).
    public func plugged(intoSlot slot: UInt8) {
        guard profile.intxPinFromSlot, case .intx = configuration.interrupts else { return }
        state.withLock { $0.config.block.strap(offset: PCIConfig.interruptPin, value: UInt64(slot % 4) + 1) }
    }

    /// The requirement of the config register at `offset` (for traces), if one is declared.
    public func configRequirement(at offset: Int) -> String? { configBlock.field(at: offset)?.requirement }
    /// The requirement of the BAR0 register at `offset` (for traces), if one is declared.
    public func registerRequirement(at offset: Int) -> String? { registerBlock.field(at: offset)?.requirement }

    // MARK: decode state (read by the platform)

    /// The ranges this device claims now. CFG-CMD-7, CFG-CMD-8
    public var decodeWindows: [DecodeWindow] { windowTable.windows }

    /// The BAR (or -1: the Base Address range) and offset that `address` reaches in this
    /// device's memory (`io` false) or I/O space, without a lock. CFG-CMD-7, CFG-CMD-8
    @inline(__always)
    public func decode(_ address: UInt64, io: Bool) -> (bar: Int, offset: UInt64)? { windowTable.lookup(address, io: io) }
    /// The same look-up without going through the device object (the platform's access path).
    public var decodeReader: DecodeWindowReader { windowTable.reader }

    private var command: PCICommand { PCICommand(rawValue: UInt16(truncatingIfNeeded: configBlock.raw(offset: PCIConfig.command, size: 2))) }
    public var memoryDecodeEnabled: Bool { command.contains(.memorySpace) }
    public var ioDecodeEnabled: Bool { command.contains(.ioSpace) }
    public var busMasterEnabled: Bool { command.contains(.busMaster) }

    /// The address software programmed into BAR `index` (type bits stripped), or nil when the
    /// BAR is not implemented.
    public func programmedAddress(bar index: Int) -> UInt64? {
        guard let info = layout.bars.first(where: { $0.index == index }) else { return nil }
        return state.withLock { $0.programmedBase(info) }
    }

    // MARK: BAR accesses (after the platform decoded the address)

    /// BAR0 register reads take no lock (REG-ACC-1); MSI-X reads do (the PBA is device state).
    @inline(__always)
    public func barRead(_ index: Int, offset: UInt64, size: Int) -> UInt64 {
        switch barRoles[index] {
        case nil: return 0
        case .registers?:
            guard DeviceState.isValidRegisterAccess(offset: offset, size: size), offset < UInt64(registerBlock.size) else {
                perform { s, _ in s.recordInvalidRegisterAccess(offset: offset, size: size, value: nil, peer: id) }
                return 0
            }
            return registerBlock.read(offset: Int(offset), size: 4)
        case .msix?: return perform { s, _ in s.msixRead(offset: offset, size: size, layout: layout, peer: id) }
        case .sharedMemory?: return sharedMemoryLoad(offset: offset, size: size)
        }
    }

    public func barWrite(_ index: Int, offset: UInt64, size: Int, value: UInt64) {
        switch barRoles[index] {
        case nil: return
        case .registers?:
            registerWrite(offset: offset, size: size, value: value)
        case .msix?:
            perform { s, fx in s.msixWrite(offset: offset, size: size, value: value, layout: layout, peer: id, effects: &fx) }
        case .sharedMemory?:
            sharedMemoryStore(offset: offset, size: size, value: value)
        }
    }

    /// A BAR0 register write, without the device's lock: the rule applies atomically
    /// (``RegisterBlock/write``) and the hooked registers do their part after it. The one
    /// exhaustive switch over the BAR0 hooks. REG-ACC-1…3
    @inline(__always)
    private func registerWrite(offset: UInt64, size: Int, value: UInt64) {
        guard DeviceState.isValidRegisterAccess(offset: offset, size: size), offset < UInt64(registerBlock.size) else {
            perform { s, _ in s.recordInvalidRegisterAccess(offset: offset, size: size, value: value, peer: id) }
            return
        }
        let target = Int(offset & layout.profile.bar0WriteAliasMask)
        guard let index = registerBlock.map.index(at: target) else { return }  // REG-ACC-2: unbacked, ignored
        var changed = false
        registerBlock.write(offset: target, size: 4, value: value) { w, _ in changed = w.old != w.new }
        switch registerBlock.map.info[index].hook {
        case .doorbell:  // REG-DB-1…3: peer in bits 31:16, vector in the profile's vector bits
            let v = UInt32(truncatingIfNeeded: value)
            var fx = Effects()
            fx.append(.ring(target: v >> 16, vector: v & layout.profile.doorbellVectorMask, offset: offset, value: value))
            withWiring { run(fx, link: $0.link, sink: nil) }
        case .state:  // REG-ST-2, -3: through to the State Table; peers told of a change
            publishState(offset: offset, value: value, register: target)
            if changed { withWiring { $0.link?.broadcastStateChange(from: id) } }
        case .interruptControl, .peerID, .maxPeers:
            break  // the generic rule is all (REG-IC-1; ID and Maximum Peers are read-only)
        case .privilegedControl, .msixControl, .vectorControl, nil:
            break  // not BAR0 hooks (HookRules keeps them out of bar0.json); nil: a plain register
        case .intrMask, .intrStatus, .ivPosition, .v1Doorbell:
            break  // the v1 device's (IvshmemV1Device); HookRules keeps them out of bar0.json
        }
    }

    /// Copies State to this peer's State Table entry until the two agree: a writer racing this
    /// one may store its value in between, and whoever stores last re-reads the register, so
    /// when every writer has returned the entry equals the register (REG-ST-2, SHM-ST-2).
    private func publishState(offset: UInt64, value: UInt64, register: Int) {
        guard !detached.load(ordering: .acquiring) else { return }
        var current = UInt32(truncatingIfNeeded: registerBlock.raw(offset: register, size: 4))
        while true {
            guard sharedMemory.storeState(peer: id, current) else {
                perform { s, _ in
                    s.record("SHM-SIZE-1", "the State Table is gone (the shared memory shrank under the device): State 0x\(String(current, radix: 16)) not published",
                             Access(space: .bar(0), offset: offset, size: 4, isWrite: true, value: value), peer: id, kind: .environment)
                }
                return
            }
            let now = UInt32(truncatingIfNeeded: registerBlock.raw(offset: register, size: 4))
            if now == current { return }
            current = now
        }
    }

    /// Convenience for drivers and tests: 32-bit BAR0 register access by offset.
    public func readRegister(_ offset: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: barRead(0, offset: offset, size: 4)) }
    public func writeRegister(_ offset: UInt64, _ value: UInt32) { barWrite(0, offset: offset, size: 4, value: UInt64(value)) }

    // MARK: shared memory, as the driver sees it (rights enforced, violations recorded)

    /// Copies `buffer.count` bytes from shared memory at `offset`. Bytes outside every section
    /// read 0 and the access is recorded. Returns false when anything was refused.
    @discardableResult
    public func sharedMemoryRead(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        let n = UInt64(buffer.count)
        if n == 0 { return true }
        if offset <= layout.geometry.totalSize, n <= layout.geometry.totalSize - offset,
            sharedMemoryLayout.denial(offset: offset, length: n, write: false) == nil
        {
            if sharedMemory.read(offset: Int(offset), into: buffer) { return true }
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            recordShrunk(offset: offset, size: Int(n), write: false)
            return false
        }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        recordOutside(offset: offset, size: Int(n), write: false, value: nil)
        return false
    }

    /// Copies bytes into shared memory at `offset` if this peer may write all of them:
    /// not the state table (SHM-ST-1), not another peer's output section (SHM-OUT-1).
    /// A refused write changes nothing and is recorded.
    @discardableResult
    public func sharedMemoryWrite(offset: UInt64, from buffer: UnsafeRawBufferPointer) -> Bool {
        let n = UInt64(buffer.count)
        if n == 0 { return true }
        if offset <= layout.geometry.totalSize, n <= layout.geometry.totalSize - offset {
            if let denied = sharedMemoryLayout.denial(offset: offset, length: n, write: true) {
                if let sec = denied.section {
                    perform { s, _ in
                        s.record(sec.requirement, "write into read-only \(sec.name) at 0x\(String(denied.offset, radix: 16)) dropped",
                                 Access(space: .sharedMemory, offset: offset, size: Int(n), isWrite: true), peer: id)
                    }
                } else {
                    recordOutside(offset: offset, size: Int(n), write: true, value: nil)
                }
                return false
            }
            if sharedMemory.write(offset: Int(offset), from: buffer) { return true }
            recordShrunk(offset: offset, size: Int(n), write: true)
            return false
        }
        recordOutside(offset: offset, size: Int(n), write: true, value: nil)
        return false
    }

    public func sharedMemoryLoad(offset: UInt64, size: Int) -> UInt64 {
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { _ = sharedMemoryRead(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<min(size, 8)])) }
        return v
    }

    public func sharedMemoryStore(offset: UInt64, size: Int, value: UInt64) {
        withUnsafeBytes(of: value) { _ = sharedMemoryWrite(offset: offset, from: UnsafeRawBufferPointer(rebasing: $0[0..<min(size, 8)])) }
    }

    /// SHM-SIZE-1: the backing shrank under the device (another process truncated an unsealed
    /// object): the access failed cleanly. Not the driver's doing.
    private func recordShrunk(offset: UInt64, size: Int, write: Bool) {
        perform { s, _ in
            s.record("SHM-SIZE-1", "shared memory at 0x\(String(offset, radix: 16)) is gone: the backing object shrank below the \(layout.geometry.totalSize) bytes it had at attach; the access failed",
                     Access(space: .sharedMemory, offset: offset, size: size, isWrite: write), peer: id, kind: .environment)
        }
    }

    /// Peer `peer`'s entry in the state table (SHM-ST-2).
    public func stateTableEntry(_ peer: UInt32) -> UInt32 { sharedMemory.loadState(peer: peer) }

    /// Bytes the driver can reach that belong to no section read 0 and ignore writes without
    /// being a violation: BAR2's rounding gap (SHM-BAR-2) and the qemu-rfc tail (SHM-BAR-5).
    /// Only an access beyond what BAR2 (or, without BAR2, the Base Address range) decodes is recorded.
    private func recordOutside(offset: UInt64, size: Int, write: Bool, value: UInt64?) {
        let window = layout.bar(.sharedMemory)?.size ?? layout.geometry.totalSize
        if offset <= window, UInt64(size) <= window - offset { return }
        perform { s, _ in
            s.record("SHM-LAYOUT-9", "\(write ? "write" : "read") of \(size) bytes at 0x\(String(offset, radix: 16)) is outside the \(layout.geometry.totalSize)-byte shared memory layout",
                     Access(space: .sharedMemory, offset: offset, size: size, isWrite: write, value: value), peer: id)
        }
    }

    // MARK: events from peers

    /// An event arrived on this device's `vector` (a peer rang it, a peer's state changed, or
    /// a peer left). Delivery follows IRQ-EN, IRQ-MSIX/IRQ-INTX and IRQ-ONESHOT; the same code
    /// serves the in-process fabric and the socket transport.
    public func receiveEvent(vector: Int) {
        perform { s, fx in s.deliver(vector: vector, layout: layout, peer: id, effects: &fx) }
    }

    /// A peer left (PEER_GONE): like the RFC device, signal our own vector 0 so the driver
    /// re-reads the state table (DEV-PEER-1).
    public func peerDeparted(id other: UInt32) {
        receiveEvent(vector: 0)
    }

    /// Device reset (DEV-RST-*): Interrupt Control 0, State 0 written to the table and
    /// propagated if it changed, MSI-X and config space back to reset values.
    public func reset() {
        perform { s, fx in
            s.reset(layout: layout, memory: sharedMemory, detached: detached, peer: id, effects: &fx)
            windowTable.publish(s.currentWindows(layout: layout))
        }
    }

    // MARK: internals

    /// Runs `body` under the lock, then carries out the side effects it queued, after the
    /// lock is released (they may call back into this or any device).
    private func perform<T>(_ body: (inout DeviceState, inout Effects) -> T) -> T {
        var effects = Effects()
        let (result, newFindings) = state.withLock { s -> (T, [Finding]) in
            let before = s.findings.total
            let r = body(&s, &effects)
            // Copied under the same lock: another thread's finding cannot shift this slice.
            return (r, s.findings.total > before ? s.findings.elements(since: before) : [])
        }
        if !newFindings.isEmpty, let handler = findingHandler.withLock({ $0 }) {
            for f in newFindings { handler(f) }
        }
        if !effects.isEmpty { withWiring { run(effects, link: $0.link, sink: $0.sink) } }
        return result
    }

    private func run(_ effects: Effects, link: (any PeerLink)?, sink: (any InterruptSink)?) {
        effects.forEach { e in
            switch e {
            case .ring(let target, let vector, let offset, let value):
                let outcome = link?.ring(from: id, target: target, vector: vector) ?? .linkDown
                let access = Access(space: .bar(0), offset: offset, size: 4, isWrite: true, value: value)
                switch outcome {
                case .delivered: break
                case .inactiveTarget:
                    perform { s, _ in s.record("REG-DB-5", "doorbell to peer \(target), which is not connected: no effect", access, peer: id, kind: .ineffective) }
                case .noSuchVector(let n):
                    perform { s, _ in s.record("REG-DB-4", "doorbell to vector \(vector) of peer \(target), which has \(n) vector(s): no effect", access, peer: id, kind: .ineffective) }
                case .dropped(let why), .failed(let why):
                    // Another peer's doing, not the driver's; the driver should still know.
                    perform { s, _ in s.record("WIRE-CLI-21", "doorbell to peer \(target) vector \(vector) dropped: \(why)", access, peer: id, kind: .environment) }
                case .linkDown, .notYetAnnounced:
                    break  // not the driver's doing: no finding
                }
            case .broadcastState:
                link?.broadcastStateChange(from: id)
            case .msix(let vector, let address, let data):
                sink?.msixMessage(from: self, vector: vector, address: address, data: data)
            case .intx(let pin):
                sink?.intxEdge(from: self, pin: pin)
            }
        }
    }
}
