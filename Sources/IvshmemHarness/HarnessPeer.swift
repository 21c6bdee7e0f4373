import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemTransport

/// One emulated device as a test drives it: config, MMIO, port I/O and shared-memory accesses
/// of any size, interrupts with timeouts, findings — all traced.
public final class HarnessPeer: @unchecked Sendable {
    public let name: String
    public let link: AttachedDevice
    public let platform = PCIPlatform()
    public let bdf: BDF
    public private(set) var bars: [Int: UInt64] = [:]
    private let trace: TraceRecorder
    private var findingsSeen = 0

    public var device: IvshmemDevice { link.device }
    public var id: UInt32 { device.id }

    init(name: String, link: AttachedDevice, trace: TraceRecorder) throws {
        self.name = name
        self.link = link
        self.trace = trace
        bdf = try BDF(device: 3)
        try platform.add(link.device, at: bdf)
        platform.interrupts.addHandler { [trace, name] r in
            switch r.kind {
            case .msix(let v, let a, let d):
                trace.record(name, .interrupt, address: a, size: 4, value: UInt64(d), detail: "MSI-X vector \(v)", requirement: "IRQ-MSIX-1")
            case .intx(let pin):
                trace.record(name, .interrupt, detail: "INTx pin \(pin) edge", requirement: "IRQ-INTX-1")
            }
        }
        link.onLinkEvent { [trace, name] e in trace.record(name, .wire, detail: e.description) }
        link.device.onFinding { [trace, name] f in
            trace.record(name, .finding, address: f.access?.offset, size: f.access?.size, value: f.access?.value, detail: f.message, requirement: f.requirement)
        }
    }

    /// Firmware-style set-up (see `PeerSetup`).
    func prepare(_ setup: PeerSetup) throws {
        guard setup != .raw else { return }
        var fw = Firmware()
        bars = fw.assign(platform, bdf)
        trace.record(name, .lifecycle, detail: "firmware assigned " + bars.sorted { $0.key < $1.key }.map { "BAR\($0.key)=0x\(String($0.value, radix: 16))" }.joined(separator: " "))
        guard setup == .ready else { return }
        DriverSetup.enableInterrupts(device, on: platform, at: bdf, bars: bars)
        trace.record(name, .lifecycle, detail: "driver enabled MSI-X (entry v: 0x\(String(DriverSetup.messageAddress, radix: 16)), data v) and Interrupt Control")
    }

    // MARK: traced accesses

    public func configRead(_ offset: Int, size: Int) -> UInt32 {
        let v = platform.configRead(bdf, offset: offset, size: size)
        trace.record(name, .configRead, address: UInt64(offset), size: size, value: UInt64(v), requirement: device.configRequirement(at: offset))
        return v
    }

    public func configWrite(_ offset: Int, size: Int, value: UInt32) {
        trace.record(name, .configWrite, address: UInt64(offset), size: size, value: UInt64(value), requirement: device.configRequirement(at: offset))
        platform.configWrite(bdf, offset: offset, size: size, value: value)
    }

    public func mmioRead(_ address: UInt64, size: Int) -> UInt64 {
        let v = platform.mmioRead(address, size: size)
        trace.record(name, .mmioRead, address: address, size: size, value: v, requirement: registerRequirement(address))
        return v
    }

    public func mmioWrite(_ address: UInt64, size: Int, value: UInt64) {
        trace.record(name, .mmioWrite, address: address, size: size, value: value, requirement: registerRequirement(address))
        platform.mmioWrite(address, size: size, value: value)
    }

    public func pioRead(_ port: UInt16, size: Int) -> UInt32 {
        let v = platform.ioRead(port, size: size)
        trace.record(name, .pioRead, address: UInt64(port), size: size, value: UInt64(v))
        return v
    }

    public func pioWrite(_ port: UInt16, size: Int, value: UInt32) {
        trace.record(name, .pioWrite, address: UInt64(port), size: size, value: UInt64(value))
        platform.ioWrite(port, size: size, value: value)
    }

    /// The BAR0 register an MMIO address reaches, for the trace.
    private func registerRequirement(_ address: UInt64) -> String? {
        guard let base = bars[0], address >= base, address - base < 0x1000 else { return nil }
        return device.registerRequirement(at: Int(address - base))
    }

    /// Where BAR `index` is mapped (the Base Address for BAR2 in profiles without BAR2).
    public func barBase(_ index: Int) -> UInt64? {
        if index == 2 && !device.profile.sharedMemoryInBAR2 { return device.configuration.baseAddress }
        return bars[index]
    }

    /// A BAR access at `offset` through the platform's decode (I/O BARs through port I/O).
    /// How many bytes BAR `index` decodes (the layout size for the Base Address range).
    private func barSize(_ index: Int) -> UInt64 {
        if index == 2 && !device.profile.sharedMemoryInBAR2 { return device.layout.geometry.totalSize }
        return device.layout.bars.first { $0.index == index }?.size ?? 0
    }

    public func barRead(_ index: Int, offset: UInt64, size: Int) -> UInt64 {
        // Beyond the BAR nothing answers: all-ones, as on a bus (and no address overflow).
        guard offset < barSize(index) else { return size >= 8 ? .max : (1 << UInt64(size * 8)) - 1 }
        guard let base = barBase(index) else { return device.barRead(index, offset: offset, size: size) }
        if device.layout.bars.first(where: { $0.index == index })?.kind == .io {
            return UInt64(pioRead(UInt16(truncatingIfNeeded: base + offset), size: size))
        }
        return mmioRead(base + offset, size: size)
    }

    public func barWrite(_ index: Int, offset: UInt64, size: Int, value: UInt64) {
        guard offset < barSize(index) else { return }
        guard let base = barBase(index) else {
            trace.record(name, .mmioWrite, address: offset, size: size, value: value, detail: "BAR\(index) (unassigned, direct)")
            device.barWrite(index, offset: offset, size: size, value: value)
            return
        }
        if device.layout.bars.first(where: { $0.index == index })?.kind == .io {
            pioWrite(UInt16(truncatingIfNeeded: base + offset), size: size, value: UInt32(truncatingIfNeeded: value))
            return
        }
        mmioWrite(base + offset, size: size, value: value)
    }

    /// The driver's view of shared memory (rights enforced).
    public func shmRead(_ offset: UInt64, size: Int) -> UInt64 {
        let v = device.sharedMemoryLoad(offset: offset, size: size)
        trace.record(name, .shmRead, address: offset, size: size, value: v)
        return v
    }

    public func shmWrite(_ offset: UInt64, size: Int, value: UInt64) {
        trace.record(name, .shmWrite, address: offset, size: size, value: value)
        device.sharedMemoryStore(offset: offset, size: size, value: value)
    }

    public func shmWrite(_ offset: UInt64, bytes: [UInt8]) -> Bool {
        trace.record(name, .shmWrite, address: offset, size: bytes.count, detail: "\(bytes.count) bytes")
        return bytes.withUnsafeBytes { device.sharedMemoryWrite(offset: offset, from: $0) }
    }

    // MARK: interrupts and findings

    /// The next interrupt logged at or after `after`, optionally for one MSI-X vector.
    public func waitForInterrupt(vector: Int? = nil, after: Int, timeout: Double) -> InterruptRecord? {
        platform.interrupts.wait(after: after, timeout: timeout) { r in
            guard let vector else { return true }
            if case .msix(let v, _, _) = r.kind { return v == vector }
            return vector == 0
        }
    }

    public var interruptCount: Int { platform.interrupts.count }
    public var findings: [Finding] { device.findings }
}
