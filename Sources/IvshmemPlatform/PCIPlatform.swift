import IvshmemModel
import IvshmemSync

/// A virtual PCI host: devices at bus/device/function addresses, config access through ECAM
/// and the legacy 0xCF8/0xCFC ports, BARs decoded where software programmed them, and an
/// interrupt controller that logs MSI-X messages and INTx edges.
///
/// Addresses nobody claims read all-ones and drop writes, as on a real bus; that is also what a
/// BAR looks like while its decode bit is off (CFG-CMD-7, CFG-CMD-8).
public final class PCIPlatform: InterruptSink, @unchecked Sendable {
    /// Base of the ECAM window: bus << 20 | device << 15 | function << 12 | offset.
    public let ecamBase: UInt64
    public static let ecamSize: UInt64 = 256 << 20
    public let interrupts = InterruptLog()

    private struct State {
        /// Plugged devices in BDF order: the decode paths walk it on every access, so it is kept
        /// sorted by add/remove rather than sorted per access.
        var ordered: [(bdf: BDF, device: IvshmemDevice)] = []
        var cf8: UInt32 = 0
    }
    private let state = Locked(State())

    public init(ecamBase: UInt64 = 0xE000_0000) { self.ecamBase = ecamBase }

    // MARK: devices

    /// Plugs `device` in at `bdf`; the platform becomes its interrupt sink.
    public func add(_ device: IvshmemDevice, at bdf: BDF) throws {
        try state.withLock { s in
            guard !s.ordered.contains(where: { $0.bdf == bdf }) else { throw PlatformError.slotOccupied(bdf) }
            let at = s.ordered.firstIndex { $0.bdf > bdf } ?? s.ordered.count
            s.ordered.insert((bdf, device), at: at)
        }
        device.interruptSink = self
        device.plugged(intoSlot: bdf.device)
    }

    public func remove(at bdf: BDF) {
        let d = state.withLock { s -> IvshmemDevice? in
            guard let i = s.ordered.firstIndex(where: { $0.bdf == bdf }) else { return nil }
            return s.ordered.remove(at: i).device
        }
        if d?.interruptSink === self { d?.interruptSink = nil }
    }

    /// A linear scan of the (few) plugged devices: cheaper than hashing a BDF per access.
    public func device(at bdf: BDF) -> IvshmemDevice? { state.withLock { s in s.ordered.first { $0.bdf == bdf }?.device } }
    public var devices: [(bdf: BDF, device: IvshmemDevice)] {
        state.withLock { $0.ordered }
    }
    public func address(of device: IvshmemDevice) -> BDF? {
        state.withLock { $0.ordered.first { $0.device === device }?.bdf }
    }

    // MARK: config space by BDF

    /// An absent function reads all-ones, like a master abort.
    public func configRead(_ bdf: BDF, offset: Int, size: Int) -> UInt32 {
        guard let d = device(at: bdf) else { return size >= 4 ? .max : (1 << UInt32(size * 8)) - 1 }
        return d.configRead(offset: offset, size: size)
    }

    public func configWrite(_ bdf: BDF, offset: Int, size: Int, value: UInt32) {
        device(at: bdf)?.configWrite(offset: offset, size: size, value: value)
    }

    // MARK: memory space

    public func mmioRead(_ address: UInt64, size: Int) -> UInt64 {
        if let (bdf, off) = ecamTarget(address) {
            return off < 0x100 ? UInt64(configRead(bdf, offset: off, size: size)) : (device(at: bdf) == nil ? Self.ones(size) : 0)
        }
        guard let hit = decodeMemory(address) else { return Self.ones(size) }
        if hit.bar < 0 { return hit.device.sharedMemoryLoad(offset: hit.offset, size: size) }
        return hit.device.barRead(hit.bar, offset: hit.offset, size: size)
    }

    public func mmioWrite(_ address: UInt64, size: Int, value: UInt64) {
        if let (bdf, off) = ecamTarget(address) {
            if off < 0x100 { configWrite(bdf, offset: off, size: size, value: UInt32(truncatingIfNeeded: value)) }
            return
        }
        guard let hit = decodeMemory(address) else { return }
        if hit.bar < 0 { return hit.device.sharedMemoryStore(offset: hit.offset, size: size, value: value) }
        hit.device.barWrite(hit.bar, offset: hit.offset, size: size, value: value)
    }

    /// Which device, BAR and offset a memory address reaches (bar -1: a Base Address range).
    public func decodeMemory(_ address: UInt64) -> (device: IvshmemDevice, bar: Int, offset: UInt64)? {
        for (_, d) in devices {
            for w in d.decodeWindows where !w.isIO {
                if let off = w.offset(of: address) { return (d, w.bar, off) }
            }
        }
        return nil
    }

    private func ecamTarget(_ address: UInt64) -> (BDF, Int)? {
        guard address >= ecamBase, address - ecamBase < Self.ecamSize else { return nil }
        let rel = address - ecamBase
        guard let bdf = try? BDF(bus: UInt8(rel >> 20 & 0xFF), device: UInt8(rel >> 15 & 0x1F), function: UInt8(rel >> 12 & 0x7)) else { return nil }
        return (bdf, Int(rel & 0xFFF))
    }

    // MARK: I/O space

    /// Port reads: 0xCF8 (config address), 0xCFC–0xCFF (config data), then I/O BARs.
    public func ioRead(_ port: UInt16, size: Int) -> UInt32 {
        if port == 0xCF8 && size == 4 { return state.withLock { $0.cf8 } }
        if (0xCFC...0xCFF).contains(port) {
            guard let (bdf, off) = cf8Target(port: port) else { return UInt32(Self.ones(size)) }
            return configRead(bdf, offset: off, size: size)
        }
        guard let hit = decodeIO(port) else { return UInt32(Self.ones(size)) }
        return UInt32(truncatingIfNeeded: hit.device.barRead(hit.bar, offset: hit.offset, size: size))
    }

    public func ioWrite(_ port: UInt16, size: Int, value: UInt32) {
        if port == 0xCF8 && size == 4 {
            state.withLock { $0.cf8 = value & 0x80FF_FFFC }
            return
        }
        if (0xCFC...0xCFF).contains(port) {
            if let (bdf, off) = cf8Target(port: port) { configWrite(bdf, offset: off, size: size, value: value) }
            return
        }
        guard let hit = decodeIO(port) else { return }
        hit.device.barWrite(hit.bar, offset: hit.offset, size: size, value: UInt64(value))
    }

    public func decodeIO(_ port: UInt16) -> (device: IvshmemDevice, bar: Int, offset: UInt64)? {
        for (_, d) in devices {
            for w in d.decodeWindows where w.isIO {
                if let off = w.offset(of: UInt64(port)) { return (d, w.bar, off) }
            }
        }
        return nil
    }

    private func cf8Target(port: UInt16) -> (BDF, Int)? {
        let a = state.withLock { $0.cf8 }
        guard a & 0x8000_0000 != 0 else { return nil }
        guard let bdf = try? BDF(bus: UInt8(a >> 16 & 0xFF), device: UInt8(a >> 11 & 0x1F), function: UInt8(a >> 8 & 0x7)) else { return nil }
        return (bdf, Int(a & 0xFC) + Int(port - 0xCFC))
    }

    static func ones(_ size: Int) -> UInt64 { size >= 8 ? .max : (1 << UInt64(size * 8)) - 1 }

    // MARK: InterruptSink

    public func msixMessage(from device: IvshmemDevice, vector: Int, address: UInt64, data: UInt32) {
        guard let bdf = self.address(of: device) else { return }
        interrupts.append(source: bdf, kind: .msix(vector: vector, address: address, data: data))
    }

    public func intxEdge(from device: IvshmemDevice, pin: UInt8) {
        guard let bdf = address(of: device) else { return }
        interrupts.append(source: bdf, kind: .intx(pin: pin))
    }
}
