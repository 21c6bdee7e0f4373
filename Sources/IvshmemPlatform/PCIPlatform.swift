import CIvshmemShim
import IvshmemModel
import IvshmemSync
import Synchronization

/// A virtual PCI host: devices at bus/device/function addresses, config access through ECAM
/// and the legacy 0xCF8/0xCFC ports, BARs decoded where software programmed them, and an
/// interrupt controller that logs MSI-X messages and INTx edges.
///
/// Addresses nobody claims read all-ones and drop writes, as on a real bus; that is also what a
/// BAR looks like while its decode bit is off (CFG-CMD-7, CFG-CMD-8).
///
/// Concurrency: the accesses (config, memory, I/O) take no lock. The plugged devices are an
/// immutable table published through an atomic pointer (replaced tables are kept until the
/// platform goes away: plugging is rare); each device publishes its own decode windows
/// (``IvshmemDevice/decode(_:io:)``); the CF8 address register is an atomic word. Only
/// plugging and unplugging take a lock, among themselves.
public final class PCIPlatform: @unchecked Sendable {
    /// Base of the ECAM window: bus << 20 | device << 15 | function << 12 | offset.
    public let ecamBase: UInt64
    public static let ecamSize: UInt64 = 256 << 20
    public let interrupts = InterruptLog()

    /// One plugged function and the interrupt sink that knows its address, so a delivered
    /// interrupt needs no look-up (the function holds its sink weakly; the slot keeps it).
    final class Slot: InterruptSink, V1InterruptSink, @unchecked Sendable {
        let bdf: BDF
        let function: any PCIFunction
        /// The same object when it is an ivshmem v2 device (the unretained fast path).
        let device: IvshmemDevice?
        /// Strong: a link's thread may hold this sink while the platform is being released
        /// (a peer quitting as a doorbell arrives), and what it delivers must land somewhere.
        let log: InterruptLog
        init(bdf: BDF, function: any PCIFunction, log: InterruptLog) {
            self.bdf = bdf
            self.function = function
            self.device = function as? IvshmemDevice
            self.log = log
        }
        func msixMessage(from device: IvshmemDevice, vector: Int, address: UInt64, data: UInt32) {
            log.append(source: bdf, kind: .msix(vector: vector, address: address, data: data))
        }
        func intxEdge(from device: IvshmemDevice, pin: UInt8) {
            log.append(source: bdf, kind: .intx(pin: pin))
        }
        // An ivshmem v1 function (V1-IRQ-MSIX-1, V1-IRQ-INTX-1: its INTx is INTA#, logged on
        // each rising level).
        func msixMessage(vector: Int, address: UInt64, data: UInt32) {
            log.append(source: bdf, kind: .msix(vector: vector, address: address, data: data))
        }
        func intxLevel(_ asserted: Bool) {
            if asserted { log.append(source: bdf, kind: .intx(pin: 1)) }
        }
    }

    /// The plugged functions in BDF order (the decode paths walk it on every access). The
    /// access path reads `bdfs` and `devices` for ivshmem v2 devices (unretained: `slots`
    /// keeps them alive), so a look-up costs no reference counting; other functions (v1) are
    /// reached through `others`.
    final class Table: @unchecked Sendable {
        let slots: [Slot]
        let bdfs: [BDF]
        let devices: [Unmanaged<IvshmemDevice>]
        /// `devices[i]`'s decode windows, read directly by the memory and I/O decode.
        let windows: [DecodeWindowReader]
        let others: [Slot]
        /// The one ivshmem v2 device when there is exactly one (the usual guest), so its decode
        /// is a field away rather than an array walk.
        let single: (bdf: BDF, windows: DecodeWindowReader, device: Unmanaged<IvshmemDevice>)?
        init(_ slots: [Slot]) {
            self.slots = slots
            let v2 = slots.filter { $0.device != nil }
            bdfs = v2.map(\.bdf)
            devices = v2.map { Unmanaged.passUnretained($0.device!) }
            windows = v2.map { $0.device!.decodeReader }
            single = v2.count == 1 ? (bdfs[0], windows[0], devices[0]) : nil
            others = slots.filter { $0.device == nil }
        }
    }

    /// The current table, unretained (`tables` keeps it): inline in the platform object, one
    /// load away from the access path.
    private let current: Atomic<Unmanaged<Table>>
    /// Every table ever published, the current one last: writers' lock, and what keeps the
    /// tables readers may still hold alive.
    private let tables = Locked<[Table]>([])
    private let cf8 = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    public init(ecamBase: UInt64 = 0xE000_0000) {
        self.ecamBase = ecamBase
        cf8.initialize(to: 0)
        let empty = Table([])
        current = Atomic(Unmanaged.passUnretained(empty))
        tables.withLock { $0.append(empty) }
    }

    deinit {
        cf8.deallocate()
    }

    /// Runs `body` with the current table, without a lock or a reference count.
    @inline(__always)
    private func withTable<R>(_ body: (Table) -> R) -> R {
        current.load(ordering: .acquiring)._withUnsafeGuaranteedRef(body)
    }

    private func republish(_ change: ([Slot]) throws -> [Slot]) rethrows {
        try tables.withLock { list in
            let next = Table(try change(list.last!.slots))
            list.append(next)
            current.store(Unmanaged.passUnretained(next), ordering: .releasing)
        }
    }

    // MARK: devices

    /// Plugs `function` in at `bdf`; the platform becomes its interrupt sink (v2 and v1 devices).
    public func add(_ function: any PCIFunction, at bdf: BDF) throws {
        let slot = Slot(bdf: bdf, function: function, log: interrupts)
        try republish { slots in
            guard !slots.contains(where: { $0.bdf == bdf }) else { throw PlatformError.slotOccupied(bdf) }
            var next = slots
            next.insert(slot, at: slots.firstIndex { $0.bdf > bdf } ?? slots.count)
            return next
        }
        if let d = function as? IvshmemDevice { d.interruptSink = slot }
        if let d = function as? IvshmemV1Device { d.interruptSink = slot }
        function.plugged(intoSlot: bdf.device)
    }

    public func remove(at bdf: BDF) {
        var removed: Slot?
        republish { slots in
            removed = slots.first { $0.bdf == bdf }
            return slots.filter { $0.bdf != bdf }
        }
        if let r = removed, let d = r.device, d.interruptSink === r { d.interruptSink = nil }
        if let r = removed, let d = r.function as? IvshmemV1Device, d.interruptSink === r { d.interruptSink = nil }
    }

    /// A linear scan of the (few) plugged devices: cheaper than hashing a BDF per access.
    public func device(at bdf: BDF) -> IvshmemDevice? {
        withTable { t in
            for s in t.slots where s.bdf == bdf { return s.device }
            return nil
        }
    }

    /// The function at `bdf`, whatever its kind.
    public func function(at bdf: BDF) -> (any PCIFunction)? {
        withTable { t in t.slots.first { $0.bdf == bdf }?.function }
    }

    /// The device at `bdf`, unretained (the current table keeps it alive).
    @inline(__always)
    private func unmanagedDevice(at bdf: BDF) -> Unmanaged<IvshmemDevice>? {
        withTable { t in
            if let one = t.single { return one.bdf == bdf ? one.device : nil }
            for i in t.bdfs.indices where t.bdfs[i] == bdf { return t.devices[i] }
            return nil
        }
    }
    /// The ivshmem v2 devices plugged in.
    public var devices: [(bdf: BDF, device: IvshmemDevice)] {
        withTable { t in t.slots.compactMap { s in s.device.map { (s.bdf, $0) } } }
    }
    /// Every plugged function's address, in BDF order.
    public var addresses: [BDF] { withTable { t in t.slots.map(\.bdf) } }
    public func address(of function: any PCIFunction) -> BDF? {
        withTable { t in t.slots.first { $0.function === function }?.bdf }
    }

    // MARK: config space by BDF

    /// An absent function reads all-ones, like a master abort.
    public func configRead(_ bdf: BDF, offset: Int, size: Int) -> UInt32 {
        if let d = unmanagedDevice(at: bdf) { return d._withUnsafeGuaranteedRef { $0.configRead(offset: offset, size: size) } }
        guard let f = otherFunction(at: bdf) else { return size >= 4 ? .max : (1 << UInt32(size * 8)) - 1 }
        return f.configRead(offset: offset, size: size)
    }

    public func configWrite(_ bdf: BDF, offset: Int, size: Int, value: UInt32) {
        if let d = unmanagedDevice(at: bdf) { return d._withUnsafeGuaranteedRef { $0.configWrite(offset: offset, size: size, value: value) } }
        otherFunction(at: bdf)?.configWrite(offset: offset, size: size, value: value)
    }

    /// A function at `bdf` that is not an ivshmem v2 device (the general path).
    private func otherFunction(at bdf: BDF) -> (any PCIFunction)? {
        withTable { t in t.others.first { $0.bdf == bdf }?.function }
    }

    // MARK: memory space

    public func mmioRead(_ address: UInt64, size: Int) -> UInt64 {
        if let (bdf, off) = ecamTarget(address) {
            return off < 0x100 ? UInt64(configRead(bdf, offset: off, size: size)) : (function(at: bdf) == nil ? Self.ones(size) : 0)
        }
        guard let (d, bar, offset) = decoded(address, io: false) else {
            guard let (f, bar, offset) = decodedOther(address, io: false) else { return Self.ones(size) }
            return f.barRead(bar, offset: offset, size: size)
        }
        if bar < 0 { return d._withUnsafeGuaranteedRef { $0.sharedMemoryLoad(offset: offset, size: size) } }
        return d._withUnsafeGuaranteedRef { $0.barRead(bar, offset: offset, size: size) }
    }

    public func mmioWrite(_ address: UInt64, size: Int, value: UInt64) {
        if let (bdf, off) = ecamTarget(address) {
            if off < 0x100 { configWrite(bdf, offset: off, size: size, value: UInt32(truncatingIfNeeded: value)) }
            return
        }
        guard let (d, bar, offset) = decoded(address, io: false) else {
            if let (f, bar, offset) = decodedOther(address, io: false) { f.barWrite(bar, offset: offset, size: size, value: value) }
            return
        }
        if bar < 0 { return d._withUnsafeGuaranteedRef { $0.sharedMemoryStore(offset: offset, size: size, value: value) } }
        d._withUnsafeGuaranteedRef { $0.barWrite(bar, offset: offset, size: size, value: value) }
    }

    /// Which device, BAR and offset a memory address reaches (bar -1: a Base Address range).
    /// Runs `body` with the device, BAR (-1: a Base Address range) and offset `address`
    /// reaches (device nil: nobody claims it), without a lock and without retaining the device.
    @inline(__always)
    private func decoded(_ address: UInt64, io: Bool) -> (Unmanaged<IvshmemDevice>, Int, UInt64)? {
        withTable { t in
            if let (_, windows, device) = t.single {
                guard let hit = windows.lookup(address, io: io) else { return nil }
                return (device, hit.bar, hit.offset)
            }
            for i in t.windows.indices {
                if let hit = t.windows[i].lookup(address, io: io) { return (t.devices[i], hit.bar, hit.offset) }
            }
            return nil
        }
    }

    /// A function other than an ivshmem v2 device that claims `address` (the general path).
    private func decodedOther(_ address: UInt64, io: Bool) -> (any PCIFunction, Int, UInt64)? {
        withTable { t in
            for s in t.others {
                if let hit = s.function.decode(address, io: io) { return (s.function, hit.bar, hit.offset) }
            }
            return nil
        }
    }

    /// Which ivshmem v2 device, BAR and offset a memory address reaches.
    public func decodeMemory(_ address: UInt64) -> (device: IvshmemDevice, bar: Int, offset: UInt64)? {
        withTable { t in
            for s in t.slots {
                if let d = s.device, let hit = d.decode(address, io: false) { return (d, hit.bar, hit.offset) }
            }
            return nil
        }
    }

    @inline(__always)
    private func ecamTarget(_ address: UInt64) -> (BDF, Int)? {
        guard address >= ecamBase, address - ecamBase < Self.ecamSize else { return nil }
        let rel = address - ecamBase
        guard let bdf = try? BDF(bus: UInt8(rel >> 20 & 0xFF), device: UInt8(rel >> 15 & 0x1F), function: UInt8(rel >> 12 & 0x7)) else { return nil }
        return (bdf, Int(rel & 0xFFF))
    }

    // MARK: I/O space

    /// Port reads: 0xCF8 (config address), 0xCFC–0xCFF (config data), then I/O BARs.
    public func ioRead(_ port: UInt16, size: Int) -> UInt32 {
        if port == 0xCF8 && size == 4 { return ivs_load32_acquire(cf8) }
        if (0xCFC...0xCFF).contains(port) {
            guard let (bdf, off) = cf8Target(port: port) else { return UInt32(Self.ones(size)) }
            return configRead(bdf, offset: off, size: size)
        }
        guard let hit = decodeIO(port) else { return UInt32(Self.ones(size)) }
        return UInt32(truncatingIfNeeded: hit.device.barRead(hit.bar, offset: hit.offset, size: size))
    }

    public func ioWrite(_ port: UInt16, size: Int, value: UInt32) {
        if port == 0xCF8 && size == 4 {
            ivs_store32_release(cf8, value & 0x80FF_FFFC)
            return
        }
        if (0xCFC...0xCFF).contains(port) {
            if let (bdf, off) = cf8Target(port: port) { configWrite(bdf, offset: off, size: size, value: value) }
            return
        }
        guard let hit = decodeIO(port) else { return }
        hit.device.barWrite(hit.bar, offset: hit.offset, size: size, value: UInt64(value))
    }

    public func decodeIO(_ port: UInt16) -> (device: any PCIFunction, bar: Int, offset: UInt64)? {
        withTable { t in
            for s in t.slots {
                if let hit = s.function.decode(UInt64(port), io: true) { return (s.function, hit.bar, hit.offset) }
            }
            return nil
        }
    }

    private func cf8Target(port: UInt16) -> (BDF, Int)? {
        let a = ivs_load32_acquire(cf8)
        guard a & 0x8000_0000 != 0 else { return nil }
        guard let bdf = try? BDF(bus: UInt8(a >> 16 & 0xFF), device: UInt8(a >> 11 & 0x1F), function: UInt8(a >> 8 & 0x7)) else { return nil }
        return (bdf, Int(a & 0xFC) + Int(port - 0xCFC))
    }

    static func ones(_ size: Int) -> UInt64 { size >= 8 ? .max : (1 << UInt64(size * 8)) - 1 }
}
